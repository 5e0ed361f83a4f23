"""How the late fusion chooses its linear model's ``C`` and its image weight: by validation UA (what
``emovision fuse`` did first) or by the validation cross-entropy, class-balanced and at the best
temperature (``nll``), paired on the same folds, linear models and image scores.

    .venv/bin/python benchmarks/fusion_selection.py CACHE FUNCTIONALS CV [CV ...]

``CV``: finished cv folders of one corpus with the same folds (e.g. two training seeds); ``FUNCTIONALS``:
their ComParE_2016 functionals with noisy, reverberant and speed-perturbed copies (``extract --augment
noise,reverb,speed --functionals ComParE_2016``), on which the plain linear model of every ``C`` is
trained once per fold, as ``fuse --augment noise,reverb,speed`` does. ``CACHE`` keeps each fold's
validation and test scores (``CACHE/linear-FOLD.npz``, ``CACHE/image-CV-FOLD.npz``), so an interrupted
run resumes. The validation speakers decide; the test speakers only score. Prints, per cv and rule,
the pooled cold UA of the fusion, and the paired ΔUA nll − ua over the folds of every cv.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from emovision.evaluation.functionals_table import functionals_table
from emovision.evaluation.fusion import WEIGHTS, mean_image_scores
from emovision.evaluation.linear_model import (
    C_GRID,
    LinearTraining,
    fit_linear_pipeline,
    fold_linear_data,
    linear_log_probs,
)
from emovision.files import atomic_write_bytes
from emovision.inference.fusion_model import mix
from emovision.inference.runs import finished_runs
from emovision.tables import paired_change
from emovision.training.calibration import fit_temperature
from emovision.training.dataset import load_split, open_source
from emovision.training.metrics import paired_difference, score_utterances

COPY_KINDS = ("noise", "reverb", "speed")


def balanced_nll(log_scores: np.ndarray, labels: np.ndarray) -> float:
    """The cross-entropy of ``labels`` under ``log_scores`` ``(U, K)`` at its best temperature, averaged
    within each class first (as UA averages recall), in nats."""
    scaled = log_scores / fit_temperature(log_scores, labels)
    log_probs = scaled - np.logaddexp.reduce(scaled, axis=1, keepdims=True)
    losses = -log_probs[np.arange(len(labels)), labels]
    return float(np.mean([losses[labels == k].mean() for k in np.unique(labels)]))


def cached(path: Path, compute, *args) -> dict[str, np.ndarray]:
    """The arrays in ``path``, ``compute(*args)`` written atomically the first time."""
    if not path.is_file():
        arrays = compute(*args)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **arrays)
        atomic_write_bytes(path, tmp.read_bytes())
        tmp.unlink()
    with np.load(path) as data:
        return dict(data)


def linear_scores(table, fold: dict, val, test, classes: list[str]) -> dict[str, np.ndarray]:
    """Validation and test log-probabilities ``(C, U, K)`` of the fold's plain linear model per ``C``."""
    x_train, y_train, _ = fold_linear_data(table, fold, LinearTraining(table.available(COPY_KINDS)))
    x_val, x_test = table.lookup(val.utterance_ids), table.lookup(test.utterance_ids)
    out = defaultdict(list)
    for c in C_GRID:
        model = fit_linear_pipeline(c, x_train, y_train)
        out["val"].append(linear_log_probs(model, x_val, len(classes)))
        out["test"].append(linear_log_probs(model, x_test, len(classes)))
        print(f"  {fold['name']} C={c}", flush=True)
    return {key: np.stack(value) for key, value in out.items()}


def image_scores(members: list, val, test) -> dict[str, np.ndarray]:
    """Validation and test log-probabilities ``(U, K)`` of a fold's image models (mean over repeats)."""
    return {"val": mean_image_scores(members, val), "test": mean_image_scores(members, test)}


def choose(rule: str, image: np.ndarray, linear: np.ndarray, labels: np.ndarray, classes: list[str]):
    """``(C index, weight)`` by ``rule`` from the validation scores (ties: the smaller C, the weight nearest 0.5 and then the larger, as ``fuse``)."""

    def better(scores: np.ndarray) -> float:
        if rule == "ua":
            return score_utterances(labels, scores, classes)["ua"]
        return -balanced_nll(scores, labels)

    c = max(range(len(C_GRID)), key=lambda i: (better(linear[i]), -i))
    weight = max(WEIGHTS, key=lambda w: (better(mix(image, linear[c], w)), -abs(w - 0.5), w))
    return c, weight


def main() -> None:
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    cache, functionals, cvs = Path(sys.argv[1]), Path(sys.argv[2]), [Path(p) for p in sys.argv[3:]]
    cache.mkdir(parents=True, exist_ok=True)
    folds_ua: dict[str, dict[str, float]] = defaultdict(dict)
    for cv in cvs:
        record, runs = finished_runs(cv)
        source = open_source(record["features_file"])
        table = functionals_table(functionals, source.classes)
        groups = defaultdict(list)
        for run in runs:
            groups[run.metrics["fold"]["name"]].append(run)
        pooled = {rule: ([], []) for rule in ("ua", "nll")}
        for name, members in groups.items():
            fold = members[0].metrics["fold"] | {"name": name}
            val, test = load_split(source, fold["val"]), load_split(source, fold["test"])
            linear = cached(
                cache / f"linear-{name}.npz", linear_scores, table, fold, val, test, source.classes
            )
            image = cached(
                cache / f"image-{cv.name}-{name}.npz",
                image_scores,
                members,
                val,
                test,
            )
            for rule, (truth, scores) in pooled.items():
                c, weight = choose(rule, image["val"], linear["val"], val.utterance_labels, source.classes)
                fused = mix(image["test"], linear["test"][c], weight)
                folds_ua[rule][f"{cv.name}/{name}"] = score_utterances(
                    test.utterance_labels, fused, source.classes
                )["ua"]
                truth.append(test.utterance_labels)
                scores.append(fused)
                print(
                    f"  {cv.name} {name} {rule}: C={C_GRID[c]} w={weight} UA={folds_ua[rule][f'{cv.name}/{name}']:.3f}"
                )
        for rule, (truth, scores) in pooled.items():
            ua = score_utterances(np.concatenate(truth), np.concatenate(scores), source.classes)["ua"]
            print(f"| {cv.name} | {rule} | {ua:.3f} |")
    keys = sorted(folds_ua["ua"])
    diff = paired_difference(np.array([folds_ua["nll"][k] - folds_ua["ua"][k] for k in keys]))
    print(f"paired ΔUA nll − ua: {paired_change(diff)}")


if __name__ == "__main__":
    main()
