"""How a linear model on openSMILE functionals meets a speaker: plain, z-scored or centred, in each mode.

    .venv/bin/python benchmarks/linear_modes.py FEATURES.h5 [--c 0.01] [--weight 3]

A probe on the clean functionals of a features file (``extract … --functionals ComParE_2016``), leave
one speaker out, fixed ``C``, no copies and no image model: the standardised, class-balanced logistic
regression of ``fuse`` on

- plain functionals (no speaker information: the same in every mode);
- functionals z-scored by the speaker (mean and standard deviation of the known recordings), trained on
  training speakers z-scored by all of their recordings; scored enrolled-5 and transductive;
- centred functionals (``fuse --centre``: ``x − (Σ known + τ·m₀)/(n + τ)``), trained on every training
  utterance in the three modes; scored cold, enrolled-5 and transductive.

The enrolled mode uses the draws of ``emovision.data.speaker_norm.enrolment`` (3 draws of 5 recordings,
the enrolment recordings not scored). Prints the UA averaged over the held-out speakers.
"""

from __future__ import annotations

import argparse

import numpy as np

from emovision.data.speaker_norm import ENROL_DRAWS, FunctionalsCentre, enrolment
from emovision.evaluation.functionals_table import functionals_table
from emovision.evaluation.linear_model import (
    LinearRecipe,
    centred_training,
    fit_linear_pipeline,
    linear_log_probs,
)
from emovision.training.dataset import open_source
from emovision.training.metrics import score_utterances

K = 5


def zscores(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    std = known.std(axis=0)
    return (values - known.mean(axis=0)) / np.where(std < 1e-8, 1e-8, std)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("features")
    parser.add_argument("--c", type=float, default=0.01)
    parser.add_argument("--weight", type=float, default=3.0)
    args = parser.parse_args()
    source = open_source(args.features)
    classes = list(source.classes)
    table = functionals_table(source.path, classes)
    ids = list(table.utterances)
    x = np.stack([table.utterances[u][0] for u in ids]).astype(np.float64)
    speakers = np.array([table.utterances[u][1] for u in ids])
    y = np.array([table.utterances[u][2] for u in ids])
    names = sorted(set(speakers.tolist()))

    def ua(model, values, labels) -> float:
        return score_utterances(labels, linear_log_probs(model, values, len(classes)), classes)["ua"]

    results: dict[str, list[float]] = {}
    for test in names:
        train = speakers != test
        rows = np.flatnonzero(~train)
        draws = [rows[enrolment(test, rows.size, K, d)] for d in range(ENROL_DRAWS)]
        kept = [np.setdiff1d(rows, known) for known in draws]
        plain = fit_linear_pipeline(args.c, x[train], y[train])
        results.setdefault("plain, any mode", []).append(ua(plain, x[rows], y[rows]))
        z = x.copy()
        for name in names:
            z[speakers == name] = zscores(x[speakers == name], x[speakers == name])
        scored = fit_linear_pipeline(args.c, z[train], y[train])
        enrolled = [ua(scored, zscores(x[k], x[known]), y[k]) for k, known in zip(kept, draws, strict=True)]
        results.setdefault("z-scored, enrolled-5", []).append(float(np.mean(enrolled)))
        results.setdefault("z-scored, transductive", []).append(ua(scored, z[rows], y[rows]))
        centre = FunctionalsCentre(x[train].mean(axis=0), args.weight)
        recipe = LinearRecipe(args.weight, K, 0)
        centred = fit_linear_pipeline(
            args.c, *centred_training(table, [n for n in names if n != test], (), centre, recipe.rng(test))
        )
        results.setdefault("centred, cold", []).append(ua(centred, centre.cold(x[rows]), y[rows]))
        enrolled = [
            ua(centred, centre.centre(x[k], x[known].sum(axis=0), known.size), y[k])
            for k, known in zip(kept, draws, strict=True)
        ]
        results.setdefault("centred, enrolled-5", []).append(float(np.mean(enrolled)))
        results.setdefault("centred, transductive", []).append(
            ua(centred, centre.centre(x[rows], x[rows].sum(axis=0), rows.size), y[rows])
        )
    print(f"| {args.features}: linear model, mode | UA (mean over {len(names)} held-out speakers) |")
    print("|---|---|")
    for name, values in results.items():
        print(f"| {name} | {np.mean(values):.3f} |")


if __name__ == "__main__":
    main()
