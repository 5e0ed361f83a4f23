"""How the late fusion's linear model scales its functionals (``fuse --scaling``): standardised or
mapped through their training quantiles to normal scores, paired on the same folds, each recording
alone, without the image model.

    .venv/bin/python benchmarks/linear_scaling.py CACHE FUNCTIONALS [FUNCTIONALS ...]

``FUNCTIONALS``: a corpus's ComParE_2016 functionals with noisy, reverberant and speed-perturbed copies
(``extract --augment noise,reverb,speed --functionals ComParE_2016``). For every fold of the corpus's
default rule (emoDB: leave one speaker out; RAVDESS: pairs of actors), the class-balanced logistic
regression of ``fuse`` is trained on the training speakers' functionals and their copies with each
scaling and each ``C`` of the fusion's grid (ascending, each fit warm-started from the last: quicker
than ``fuse``, which starts every fit afresh); the validation speakers choose ``C`` by UA (ties: the
smaller ``C``), the test speakers only score, on their clean recordings. ``CACHE`` keeps each fold's
result (``CACHE/CORPUS-FOLD-SCALING.json``), so an interrupted run resumes. Prints, per corpus, the
pooled and fold-mean UA of every scaling and its paired ΔUA from the standardised one (mean ± standard
error over folds, folds better)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from emovision.evaluation.fusion import C_GRID, functionals_scaler, functionals_table, linear_log_probs
from emovision.files import atomic_write_bytes
from emovision.inference.fusion_model import SCALINGS
from emovision.tables import paired_change
from emovision.training.dataset import open_source
from emovision.training.folds import make_folds
from emovision.training.metrics import paired_difference, score_utterances

COPY_KINDS = ("noise", "reverb", "speed")


def fold_result(table, fold, scaling: str, classes: list[str]) -> dict:
    """The fold's chosen ``C``, its validation UA, and the test labels and predictions. The scaler is
    fitted once; the regression runs along the ``C`` grid, each fit starting from the last."""
    from sklearn.linear_model import LogisticRegression

    x_train, y_train = table.training(fold.train, table.available(COPY_KINDS))
    val_ids = [u for u, (_, speaker, _) in table.utterances.items() if speaker in fold.val]
    test_ids = [u for u, (_, speaker, _) in table.utterances.items() if speaker in fold.test]
    y_val = np.array([table.utterances[u][2] for u in val_ids])
    transform = functionals_scaler(scaling).fit(x_train)
    x_train, x_val = transform.transform(x_train), transform.transform(table.lookup(val_ids))
    x_test = transform.transform(table.lookup(test_ids))
    model = LogisticRegression(class_weight="balanced", max_iter=3000, warm_start=True)
    best = None
    for c in C_GRID:
        model.set_params(C=c).fit(x_train, y_train)
        ua = score_utterances(y_val, linear_log_probs(model, x_val, len(classes)), classes)["ua"]
        if best is None or ua > best[0]:
            best = (ua, c, linear_log_probs(model, x_test, len(classes)).argmax(axis=1).tolist())
    ua, c, predictions = best
    labels = [int(table.utterances[u][2]) for u in test_ids]
    return {"c": c, "val_ua": ua, "labels": labels, "predictions": predictions}


def corpus_results(cache: Path, path: str) -> tuple[str, dict[str, list[dict]]]:
    """Every scaling's fold results for the functionals file at ``path`` (cached)."""
    source = open_source(path)
    classes = list(source.classes)
    table = functionals_table(source.path, classes)
    results: dict[str, list[dict]] = {scaling: [] for scaling in SCALINGS}
    for fold in make_folds(source):
        for scaling in SCALINGS:
            file = cache / f"{source.corpus}-{fold.name}-{scaling}.json"
            if not file.is_file():
                atomic_write_bytes(file, json.dumps(fold_result(table, fold, scaling, classes)).encode())
            result = json.loads(file.read_text())
            results[scaling].append(result)
            print(f"{source.corpus} {fold.name} {scaling}: C={result['c']}", file=sys.stderr, flush=True)
    return source.corpus, {"classes": classes, **results}


def ua(labels, predictions, classes: list[str]) -> float:
    """UA of ``predictions`` (class indices) against ``labels``."""
    scores = np.full((len(predictions), len(classes)), -1.0)
    scores[np.arange(len(predictions)), predictions] = 0.0
    return score_utterances(np.asarray(labels), scores, classes)["ua"]


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    cache = Path(sys.argv[1])
    cache.mkdir(parents=True, exist_ok=True)
    print("| corpus | scaling | pooled UA | UA (fold mean) | ΔUA from standard | C chosen (median) |")
    print("|---|---|---|---|---|---|")
    for path in sys.argv[2:]:
        corpus, results = corpus_results(cache, path)
        classes = results.pop("classes")
        base = [ua(r["labels"], r["predictions"], classes) for r in results["standard"]]
        for scaling, folds in results.items():
            per_fold = [ua(r["labels"], r["predictions"], classes) for r in folds]
            pooled = ua(
                [v for r in folds for v in r["labels"]], [v for r in folds for v in r["predictions"]], classes
            )
            delta = (
                "" if scaling == "standard" else paired_change(paired_difference(np.subtract(per_fold, base)))
            )
            c = float(np.median([r["c"] for r in folds]))
            print(f"| {corpus} | {scaling} | {pooled:.3f} | {np.mean(per_fold):.3f} | {delta} | {c:g} |")


if __name__ == "__main__":
    main()
