"""Late fusion of cv folds without validation speakers: C, image weight and temperature chosen on the
other folds' test speakers.

A fold whose validation speakers train too (``cv --validation train``) has no held-out speaker for
:func:`~emovision.evaluation.fusion.fuse_fold` to choose its linear model's ``C`` and its image weight
on. Instead, every fold first scores its own test utterances with its image model(s) and with its
linear model at each ``C`` of its grid (:class:`~emovision.evaluation.linear_model.LinearTraining`,
:func:`score_fold`); then each fold takes the ``C`` whose linear model has the best UA on the pooled test utterances of the
*other* folds (each scored by its own fold's models), the image weight whose fusion does best there
(ties: nearest 0.5) and the temperature that fits the fused scores there (:func:`fuse_across_folds`).
Folds sharing a test speaker with it are left out, so none of its own test utterances is scored for
its choices, as in :mod:`emovision.training.cross_calibration`; the other folds' models did train on
its test speakers, so their labels reach its choices only through those models' scores of other
speakers. Each fold's result says so (``fitted_on``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emovision.errors import EmovisionError
from emovision.evaluation.functionals_table import FunctionalsTable
from emovision.evaluation.fusion import choose_weight, fold_result, fuse_fold
from emovision.evaluation.linear_model import (
    LinearTraining,
    fit_linear_pipeline,
    fold_linear_data,
    mode_mean_ua,
    score_views,
    split_views,
)
from emovision.inference.fusion_model import mix
from emovision.training.calibration import fit_temperature
from emovision.training.cross_calibration import FITTED_ON_OTHER_FOLDS


@dataclass
class FoldScores:
    """One fold's test scores: ``image`` ``(U, K)`` utterance log-probabilities of its image model(s),
    ``labels`` ``(U,)``, and ``linear`` ``{C: views (mode, scores (U, K), scored (U,) or None)}`` of its
    linear model trained at each ``C`` of the grid, in increasing order."""

    name: str
    fold: dict
    image: np.ndarray
    labels: np.ndarray
    linear: dict[float, list[tuple]]


def score_fold(
    name: str,
    fold: dict,
    image: np.ndarray,
    test,
    table: FunctionalsTable,
    classes: list[str],
    linear: LinearTraining,
) -> FoldScores:
    """The test scores of one fold: ``image`` ``(U, K)``, its image scores of the ``test`` split, and its
    linear model (trained as :func:`~emovision.evaluation.fusion.fuse_fold` trains it) at every ``C``."""
    x_train, y_train, centring = fold_linear_data(table, fold | {"name": name}, linear)
    views = split_views(table, test, centring, linear.centre)
    scores = {
        c: score_views(fit_linear_pipeline(c, x_train, y_train, linear.scaling), views, classes)
        for c in linear.c_grid
    }
    return FoldScores(name, fold, image, test.utterance_labels, scores)


def fold_fusion(
    name: str,
    fold: dict,
    image: dict,
    splits: dict,
    table: FunctionalsTable,
    classes: list[str],
    linear: LinearTraining,
) -> dict | FoldScores:
    """A fold with validation speakers fused on them (:func:`~emovision.evaluation.fusion.fuse_fold`), or
    one without its test scores for :func:`fuse_across_folds`; ``image`` (``(U, K)``) and ``splits`` by
    role, ``"val"`` only where the fold has validation speakers; ``linear``: how its linear model is trained
    (copy kinds settled)."""
    if fold["val"]:
        return fuse_fold(name, fold, image, splits["val"], splits["test"], table, classes, linear)
    return score_fold(name, fold, image["test"], splits["test"], table, classes, linear)


def fuse_across_folds(scored: list[FoldScores], classes: list[str]) -> list[dict]:
    """Each fold's fusion result (as :func:`~emovision.evaluation.fusion.fold_result`, with ``fitted_on``),
    its C, image weight and temperature chosen on the folds of ``scored`` that share no test speaker with
    it."""
    return [_fuse_on_others(fold, _others(fold, scored), classes) for fold in scored]


def _others(fold: FoldScores, scored: list[FoldScores]) -> list[FoldScores]:
    test = set(fold.fold["test"])
    others = [other for other in scored if not test & set(other.fold["test"])]
    if not others:
        raise EmovisionError(
            f"fold {fold.name} has no validation speakers and no other fold with other test speakers: the "
            "fusion has nothing to choose its C and image weight on"
        )
    return others


def _fuse_on_others(fold: FoldScores, others: list[FoldScores], classes: list[str]) -> dict:
    labels = np.concatenate([other.labels for other in others])
    image = np.concatenate([other.image for other in others])
    grid = list(fold.linear)
    linear = {c: pool_views([other.linear[c] for other in others]) for c in grid}
    # ties go to the smaller C, as on validation speakers
    c = max(grid, key=lambda c: (mode_mean_ua(labels, linear[c], classes), -grid.index(c)))
    weight = choose_weight(image, linear[c], labels, classes)
    temperature = fit_temperature(mix(image, linear[c][0][1], weight), labels)
    chosen = {"C": c, "weight": weight, "temperature": temperature, "fitted_on": FITTED_ON_OTHER_FOLDS}
    return fold_result(fold.name, fold.fold, chosen, fold.image, fold.linear[c], fold.labels, classes)


def pool_views(folds: list[list[tuple]]) -> list[tuple]:
    """The views ``(mode, scores (U, K), scored (U,) or None)`` of several folds, each view's rows
    concatenated over the folds (every fold has the same views in the same order)."""
    pooled = []
    for parts in zip(*folds, strict=True):
        scores = np.concatenate([part[1] for part in parts])
        kept = None
        if any(part[2] is not None for part in parts):
            kept = np.concatenate([np.ones(len(s), bool) if k is None else k for _, s, k in parts])
        pooled.append((parts[0][0], scores, kept))
    return pooled
