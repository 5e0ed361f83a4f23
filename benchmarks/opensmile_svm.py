"""Classical reference: openSMILE functionals + linear SVM, on the folds of a features file.

For every fold of ``emovision cv``'s fold rule, the utterances of the training speakers
train a standardised linear SVM on the openSMILE functionals stored in the features file
(``emovision extract … --functionals ComParE_2016``: 6373 values, or ``eGeMAPSv02``: 88);
``C`` is chosen on the validation speaker by UA; the test speaker gives WA and UA, summarised
exactly like ``emovision cv``. With ``--speaker-norm`` every speaker's functionals are first
standardised by that speaker's own mean and standard deviation (the usual speaker normalisation
of the ComParE baselines; it uses the test speaker's unlabelled utterances). The utterances and their labels are the features file's own,
so every corpus and class preset works as it was extracted.

    .venv/bin/python benchmarks/opensmile_svm.py FEATURES.h5 --out runs/opensmile-compare
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import opensmile
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from emovision.data.store import read_functionals
from emovision.files import atomic_write_bytes
from emovision.training.cv import summary_markdown
from emovision.training.dataset import open_source
from emovision.training.folds import make_folds
from emovision.training.metrics import confusion_matrix, fold_summary, metrics_from_confusion

C_GRID = (0.0001, 0.001, 0.01, 0.1, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("features", type=Path, help="a features file made with --functionals SET")
    parser.add_argument("--folds", default="auto")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--speaker-norm",
        action="store_true",
        help="standardise each speaker's functionals by its own statistics",
    )
    args = parser.parse_args()

    source = open_source(args.features)
    table = read_functionals(args.features)
    feature_set = source.functionals
    speakers = np.array([speaker for speaker in source.speakers for _ in table[speaker][0]])
    matrix = np.concatenate([table[speaker][1] for speaker in source.speakers]).astype(np.float64)
    labels = np.concatenate([table[speaker][2] for speaker in source.speakers])
    if args.speaker_norm:
        for speaker in source.speakers:
            rows = speakers == speaker
            matrix[rows] = (matrix[rows] - matrix[rows].mean(axis=0)) / (matrix[rows].std(axis=0) + 1e-8)

    results = []
    for fold in make_folds(source, args.folds):
        train, val, test = (np.isin(speakers, names) for names in (fold.train, fold.val, fold.test))
        best = None
        for c in C_GRID:
            model = make_pipeline(StandardScaler(), LinearSVC(C=c, class_weight="balanced", max_iter=20000))
            model.fit(matrix[train], labels[train])
            val_metrics = _metrics(labels[val], model.predict(matrix[val]), source.classes)
            if best is None or val_metrics["ua"] > best[0]["ua"]:
                best = (val_metrics, c, model)
        val_metrics, c, model = best
        test_metrics = _metrics(labels[test], model.predict(matrix[test]), source.classes)
        results.append({"fold": fold.to_dict(), "C": c, "val": val_metrics, "test": test_metrics})
        print(f"{fold.name}: C={c} WA {test_metrics['wa']:.3f} UA {test_metrics['ua']:.3f}")

    summary = {
        "features_file": str(args.features),
        "corpus": source.corpus,
        "classes": source.classes,
        "folds": [
            {
                "name": r["fold"]["name"],
                "test": r["fold"]["test"],
                "val": r["fold"]["val"],
                "seed": 0,
                "wa": r["test"]["wa"],
                "ua": r["test"]["ua"],
                "val_ua": r["val"]["ua"],
                "best_epoch": f"C={r['C']}",
                "utterances": r["test"]["utterances"],
            }
            for r in results
        ],
        **fold_summary([r["test"] for r in results], source.classes),
        "repeats": 1,
        "train_config": {
            "model": f"openSMILE {feature_set} + linear SVM",
            "epochs": "-",
            "batch_size": "-",
            "lr": "-",
            "seed": 0,
            "pretrained": False,
            "mixup": False,
            "stability": False,
            "oversampling": False,
            "class_weighted": True,
            "speaker_norm": args.speaker_norm,
        },
        "versions": {"opensmile": opensmile.__version__},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out / "summary.json", json.dumps(summary, indent=2).encode())
    atomic_write_bytes(args.out / "summary.md", summary_markdown(summary).encode())
    print(
        f"mean WA {summary['wa_mean']:.3f} ± {summary['wa_std']:.3f}, UA {summary['ua_mean']:.3f} ± {summary['ua_std']:.3f}"
    )


def _metrics(truth: np.ndarray, predicted: np.ndarray, classes: list[str]) -> dict:
    return metrics_from_confusion(confusion_matrix(truth, predicted, len(classes)), classes)


if __name__ == "__main__":
    main()
