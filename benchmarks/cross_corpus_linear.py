"""Cross-corpus accuracy of the fusion's linear model on openSMILE functionals, plain or speaker-centred,
in each evaluation mode, on the classes two corpora share.

    .venv/bin/python benchmarks/cross_corpus_linear.py TRAIN.h5 TEST.h5 [--c 0.01] [--weight 3] \
        [--scaling standard|quantile]

``TRAIN.h5`` and ``TEST.h5``: features files with ComParE_2016 functionals (``extract … --functionals
ComParE_2016``) of two corpora, e.g. emoDB and RAVDESS. The classes are matched by name after
:data:`SHARED` (anger, happiness, sadness, fear, disgust, neutral for emoDB and RAVDESS); the model is
trained on every speaker of ``TRAIN.h5`` in those classes (clean recordings, fixed ``C``, no copies) and
scored on every speaker of ``TEST.h5`` in them, as ``benchmarks/linear_modes.py`` does within a corpus:

- plain functionals (no speaker information: the same in every mode);
- centred functionals (``fuse --centre``), cold, enrolled-5 (3 draws of 5 other recordings of the test
  speaker, any class) and transductive (all of the test speaker's recordings).

``--scaling`` is ``fuse --scaling``: each functional standardised, or mapped through its training
quantiles to a normal score.

Prints UA over the shared classes, pooled over the test corpus's speakers.
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
from emovision.inference.fusion_model import DEFAULT_SCALING, SCALINGS
from emovision.training.dataset import open_source
from emovision.training.metrics import score_utterances

K = 5
SHARED = {"angry": "anger", "happy": "happiness", "sad": "sadness", "fearful": "fear"}


def shared_table(path: str, names: list[str]):
    """The functionals table of ``path`` restricted to the classes ``names`` (after :data:`SHARED`), its
    labels renumbered to their index in ``names``; and the arrays ``x`` ``(U, D)``, ``y``, ``speakers``."""
    source = open_source(path)
    table = functionals_table(source.path, list(source.classes))
    index = {
        k: names.index(SHARED.get(c, c)) for k, c in enumerate(source.classes) if SHARED.get(c, c) in names
    }
    table.utterances = {u: (v, s, index[y]) for u, (v, s, y) in table.utterances.items() if y in index}
    table.copies = {}
    ids = list(table.utterances)
    x = np.stack([table.utterances[u][0] for u in ids]).astype(np.float64)
    y = np.array([table.utterances[u][2] for u in ids])
    speakers = np.array([table.utterances[u][1] for u in ids])
    return table, x, y, speakers


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("train")
    parser.add_argument("test")
    parser.add_argument("--c", type=float, default=0.01)
    parser.add_argument("--weight", type=float, default=3.0)
    parser.add_argument("--scaling", choices=SCALINGS, default=DEFAULT_SCALING)
    args = parser.parse_args()
    names = sorted(
        {SHARED.get(c, c) for c in open_source(args.train).classes}
        & {SHARED.get(c, c) for c in open_source(args.test).classes}
    )
    table, x_train, y_train, train_speakers = shared_table(args.train, names)
    _, x, y, speakers = shared_table(args.test, names)
    plain = fit_linear_pipeline(args.c, x_train, y_train, args.scaling)
    centre = FunctionalsCentre(x_train.mean(axis=0), args.weight)
    x_centred, y_centred = centred_training(
        table, sorted(set(train_speakers.tolist())), (), centre, LinearRecipe(args.weight, K).rng("all")
    )
    centred = fit_linear_pipeline(args.c, x_centred, y_centred, args.scaling)
    parts: dict[str, tuple[list, list]] = {
        m: ([], []) for m in ("plain", "centred, cold", "centred, enrolled-5", "centred, transductive")
    }
    for speaker in sorted(set(speakers.tolist())):
        rows = np.flatnonzero(speakers == speaker)
        views = {
            "plain": [(plain, x[rows], rows)],
            "centred, cold": [(centred, centre.cold(x[rows]), rows)],
            "centred, transductive": [
                (centred, centre.centre(x[rows], x[rows].sum(axis=0), rows.size), rows)
            ],
            "centred, enrolled-5": [],
        }
        for draw in range(ENROL_DRAWS):
            known = rows[enrolment(speaker, rows.size, K, draw)]
            kept = np.setdiff1d(rows, known)
            views["centred, enrolled-5"].append(
                (centred, centre.centre(x[kept], x[known].sum(axis=0), known.size), kept)
            )
        for mode, scored in views.items():
            for model, values, kept in scored:
                parts[mode][0].append(y[kept])
                parts[mode][1].append(linear_log_probs(model, values, len(names)))
    print(f"| {args.train} → {args.test} ({', '.join(names)}) | UA | WA |")
    print("|---|---|---|")
    for mode, (truth, scores) in parts.items():
        metrics = score_utterances(np.concatenate(truth), np.concatenate(scores), names)
        print(f"| {mode} | {metrics['ua']:.3f} | {metrics['wa']:.3f} |")


if __name__ == "__main__":
    main()
