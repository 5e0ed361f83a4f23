"""The fusion's linear model and image weight: variants of the model, and how to choose them.

    .venv/bin/python benchmarks/linear_variants.py FUNCTIONALS.h5 CV_DIR [CV_DIR …] \
        [--variants standard,anova-select] [--json OUT] [--from-json OUT]

On the folds of finished cvs (the same folds; the first one's test and validation speakers), each
variant of the linear model is trained as ``fuse`` trains it (the training speakers' functionals and
those of their copies of the kinds the image models trained on) for every value of its grid, and scored
cold on the validation and test speakers; each cv's image model scores them too. Two ways to choose
the grid value and the image weight of :data:`~emovision.evaluation.fusion.WEIGHTS`:

- **per fold**, as ``fuse`` does: the best UA on the fold's own validation speakers (one speaker of
  emoDB, two of RAVDESS);
- **pooled**: the best UA averaged over the validation speakers of every fold whose validation
  speakers are not the fold's test speakers — a choice made on all validation speakers at once, as
  the deployed fusion (median ``C`` and weight of the folds) is.

Prints, per cv, the cold test UA of the linear model and of the fusion (fold mean, pooled over the
folds' utterances) and the paired difference from ``standard`` chosen per fold (``fuse``'s default).
``--json`` keeps every score, ``--from-json`` reprints from it without fitting.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import numpy as np

from emovision.data.store import open_info
from emovision.errors import EmovisionError
from emovision.evaluation.functionals_table import functionals_table
from emovision.evaluation.fusion import WEIGHTS, choose_weight, mean_image_scores
from emovision.evaluation.linear_model import C_GRID, fit_linear_pipeline, linear_log_probs
from emovision.inference.fusion_model import mix
from emovision.inference.runs import finished_runs
from emovision.training.dataset import load_split, open_source
from emovision.training.metrics import paired_difference, score_utterances

KEEP = (500, 1000, 2000)
SELECT_C = (1e-3, 1e-2)


def _anova_select(c: float, keep: int, x: np.ndarray, y: np.ndarray):
    """Standardised class-balanced logistic regression on the ``keep`` functionals of highest ANOVA
    F for the emotion over the training rows."""
    from sklearn.feature_selection import SelectKBest, f_classif
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(),
        SelectKBest(f_classif, k=keep),
        LogisticRegression(C=c, class_weight="balanced", max_iter=3000),
    ).fit(x, y)


VARIANTS: dict[str, tuple[tuple, Callable]] = {
    "standard": (C_GRID, lambda c, x, y: fit_linear_pipeline(c, x, y)),
    "anova-select": (
        tuple((c, k) for k in KEEP for c in SELECT_C),
        lambda h, x, y: _anova_select(h[0], h[1], x, y),
    ),
}


def fit_grids(functionals: str, cvs: list[str], variants: list[str]) -> dict:
    """Every variant's validation and test log-probabilities per grid value and fold, and every cv's
    image log-probabilities, as JSON-ready lists."""
    import warnings

    finished = {cv: finished_runs(cv) for cv in cvs}
    sources = {cv: open_source(record["features_file"]) for cv, (record, _) in finished.items()}
    runs = finished[cvs[0]][1]
    classes = list(open_info(functionals).classes)
    table = functionals_table(functionals, classes)
    copy_kinds = table.available(runs[0].train_config.copy_kinds)
    out = {"classes": classes, "folds": {}, "images": {cv: {} for cv in cvs}}
    for index, run in enumerate(runs):
        fold = run.metrics["fold"]
        x, y = table.training(fold["train"], copy_kinds)
        record = {"val": fold["val"], "test": fold["test"], "labels": {}, "variants": {}}
        ids = {}
        for role in ("val", "test"):
            for cv in cvs:
                split = load_split(sources[cv], fold[role])
                ids.setdefault(role, split.utterance_ids)
                if split.utterance_ids != ids[role]:
                    raise EmovisionError(f"{cv} orders the {role} utterances of {run.name} unlike {cvs[0]}")
                scores = mean_image_scores([finished[cv][1][index]], split)
                out["images"][cv].setdefault(run.name, {})[role] = scores.tolist()
            record["labels"][role] = split.utterance_labels.tolist()
        for name in variants:
            grid, fit = VARIANTS[name]
            record["variants"][name] = []
            for h in grid:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model = fit(h, x, y)
                record["variants"][name].append(
                    {
                        "h": h,
                        **{
                            role: linear_log_probs(model, table.lookup(ids[role]), len(classes)).tolist()
                            for role in ("val", "test")
                        },
                    }
                )
        out["folds"][run.name] = record
        print(f"{run.name}: {len(variants)} variants fitted", flush=True)
    return out


def _ua(labels: list[int], scores, classes: list[str]) -> float:
    return score_utterances(np.asarray(labels), np.asarray(scores), classes)["ua"]


def choices(grids: dict, cv: str, variant: str) -> dict[str, list[tuple[int, float | None]]]:
    """Per fold, the grid index (and image weight) chosen per fold and pooled, for the linear model
    alone and for the fusion."""
    classes, folds = grids["classes"], grids["folds"]
    images = grids["images"][cv]
    linear_val, fusion_val = {}, {}
    for name, fold in folds.items():
        labels, image = fold["labels"]["val"], np.asarray(images[name]["val"])
        every = fold["variants"][variant]
        linear_val[name] = np.array([_ua(labels, e["val"], classes) for e in every])
        fusion_val[name] = np.array(
            [[_ua(labels, mix(image, np.asarray(e["val"]), w), classes) for w in WEIGHTS] for e in every]
        )
    out: dict[str, list] = {}
    for name, fold in folds.items():
        h = int(np.argmax(linear_val[name]))
        image, linear = np.asarray(images[name]["val"]), np.asarray(fold["variants"][variant][h]["val"])
        weight = choose_weight(image, [("cold", linear, None)], np.asarray(fold["labels"]["val"]), classes)
        out.setdefault("linear, per fold", []).append((h, None))
        out.setdefault("fusion, per fold", []).append((h, weight))
        eligible = [other for other, f in folds.items() if not set(f["val"]) & set(fold["test"])]
        pooled_linear = np.mean([linear_val[other] for other in eligible], axis=0)
        out.setdefault("linear, pooled", []).append((int(np.argmax(pooled_linear)), None))
        pooled = np.mean([fusion_val[other] for other in eligible], axis=0)
        h, w = np.unravel_index(np.argmax(pooled), pooled.shape)
        out.setdefault("fusion, pooled", []).append((int(h), WEIGHTS[int(w)]))
    return out


def report(grids: dict, cv: str, variants: list[str]) -> None:
    classes, folds = grids["classes"], grids["folds"]
    images = grids["images"][cv]
    results = {}
    for variant in variants:
        for key, chosen in choices(grids, cv, variant).items():
            labels, scored = [], []
            for (h, w), (name, fold) in zip(chosen, folds.items(), strict=True):
                scores = np.asarray(fold["variants"][variant][h]["test"])
                scored.append(scores if w is None else mix(np.asarray(images[name]["test"]), scores, w))
                labels.append(fold["labels"]["test"])
            uas = np.array([_ua(y, s, classes) for y, s in zip(labels, scored, strict=True)])
            results[(variant, key)] = (uas, _ua(np.concatenate(labels), np.concatenate(scored), classes))
    print(f"\n{cv}\n\n| variant | model, choice | UA | pooled UA | paired ΔUA from standard per fold |")
    print("|---|---|---|---|---|")
    for (variant, key), (uas, pooled) in results.items():
        base = results[("standard", key.split(",")[0] + ", per fold")][0]
        d = paired_difference(uas - base)
        delta = (
            "—"
            if (variant, key.endswith("per fold")) == ("standard", True)
            else (f"{d['mean']:+.3f} ± {d['se']:.3f} ({d['better']}/{d['folds']})")
        )
        print(f"| {variant} | {key} | {uas.mean():.3f} ± {uas.std():.3f} | {pooled:.3f} | {delta} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("functionals")
    parser.add_argument("cvs", nargs="+")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--json", help="write every score here")
    parser.add_argument("--from-json", help="read the scores from here instead of fitting")
    args = parser.parse_args()
    variants = args.variants.split(",")
    if args.from_json:
        with open(args.from_json) as f:
            grids = json.load(f)
    else:
        grids = fit_grids(args.functionals, args.cvs, variants)
        if args.json:
            with open(args.json, "w") as out:
                json.dump(grids, out)
    for cv in args.cvs:
        report(grids, cv, variants)


if __name__ == "__main__":
    main()
