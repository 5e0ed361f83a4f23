"""Classical reference: openSMILE functionals + linear SVM, on the folds of a features file.

For every fold of ``emovision cv``'s fold rule, the utterances of the training speakers
train a standardised linear SVM on openSMILE functionals (eGeMAPSv02, 88 values, or
ComParE_2016, 6373 values); ``C`` is chosen on the validation speaker by UA; the test
speaker gives WA and UA, summarised exactly like ``emovision cv``.

    .venv/bin/python benchmarks/opensmile_svm.py emodb ../shared/data/emodb FEATURES.h5 \\
        --feature-set eGeMAPSv02 --out runs/opensmile-egemaps
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import opensmile
from rich.progress import track
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from emovision.audio import load_audio
from emovision.corpora import load_corpus
from emovision.cv import make_folds, summary_markdown
from emovision.dataset import open_source
from emovision.evaluate import confusion_matrix, metrics_from_confusion
from emovision.store import atomic_write_bytes, load_speakers

C_GRID = (0.0001, 0.001, 0.01, 0.1, 1.0)


def functionals(paths: list[Path], feature_set: str, sample_rate: int) -> np.ndarray:
    """``(U, D)`` openSMILE functionals of each file (read and resampled by emovision's loader)."""
    smile = opensmile.Smile(
        feature_set=getattr(opensmile.FeatureSet, feature_set),
        feature_level=opensmile.FeatureLevel.Functionals,
    )
    rows = [
        smile.process_signal(load_audio(p, sample_rate), sample_rate).to_numpy()[0]
        for p in track(paths, "openSMILE")
    ]
    return np.nan_to_num(np.stack(rows).astype(np.float64))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("corpus")
    parser.add_argument("root", type=Path)
    parser.add_argument("features", type=Path, help="the features file whose utterances and folds are used")
    parser.add_argument("--feature-set", default="eGeMAPSv02", choices=["eGeMAPSv02", "ComParE_2016"])
    parser.add_argument("--folds", default="auto")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    source = open_source(args.features)
    corpus = load_corpus(args.corpus, args.root, ",".join(source.classes))
    paths = {u.id: u.path for u in corpus.utterances}
    data = load_speakers(args.features)
    ids = [uid for speaker in source.speakers for uid in data[speaker].utterance_ids]
    speakers = np.array([speaker for speaker in source.speakers for _ in data[speaker].utterance_ids])
    labels = np.concatenate([data[speaker].utterance_labels for speaker in source.speakers])
    matrix = functionals([paths[uid] for uid in ids], args.feature_set, source.config.sample_rate)

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

    wa = np.array([r["test"]["wa"] for r in results])
    ua = np.array([r["test"]["ua"] for r in results])
    pooled = np.sum([np.array(r["test"]["confusion"]) for r in results], axis=0)
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
        "wa_mean": float(wa.mean()),
        "wa_std": float(wa.std(ddof=1)),
        "ua_mean": float(ua.mean()),
        "ua_std": float(ua.std(ddof=1)),
        "pooled": metrics_from_confusion(pooled, source.classes),
        "repeats": 1,
        "train_config": {
            "model": f"openSMILE {args.feature_set} + linear SVM",
            "epochs": "-",
            "batch_size": "-",
            "lr": "-",
            "seed": 0,
            "pretrained": False,
            "mixup": False,
            "stability": False,
            "oversampling": False,
            "class_weighted": True,
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
