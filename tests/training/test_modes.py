"""Accuracy per evaluation mode over folds, checked against scikit-learn on random scores."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from emovision.training.modes import mode_summary

CLASSES = ["a", "b", "c"]


def _fold(rng: np.random.Generator, name: str, size: int) -> dict:
    labels = rng.integers(0, 3, size)
    labels[:3] = [0, 1, 2]  # every class present in every fold
    modes = {mode: {"scores": rng.normal(size=(size, 3)).tolist()} for mode in ("cold", "transductive")}
    draws = []
    for _ in range(3):
        scored = np.ones(size, dtype=bool)
        scored[rng.choice(np.arange(3, size), 5, replace=False)] = False
        draws.append({"scored": scored.tolist(), "scores": rng.normal(size=(size, 3)).tolist()})
    modes["enrolled"] = {"k": 5, "draws": draws}
    return {"fold": {"name": name}, "test_labels": labels.tolist(), "test_modes": modes}


def test_mode_figures_match_sklearn_fold_by_fold_and_pooled():
    rng = np.random.default_rng(7)
    results = [_fold(rng, f"f{i}", size) for i, size in enumerate((30, 41, 25))]
    summary = mode_summary(results, CLASSES)
    for mode in ("cold", "transductive"):
        per_fold = [
            balanced_accuracy_score(r["test_labels"], np.argmax(r["test_modes"][mode]["scores"], axis=1))
            for r in results
        ]
        assert summary[mode]["folds"] == pytest.approx(per_fold)
        assert summary[mode]["ua_mean"] == pytest.approx(np.mean(per_fold))
        assert summary[mode]["ua_std"] == pytest.approx(np.std(per_fold, ddof=1))
        labels = np.concatenate([r["test_labels"] for r in results])
        predictions = np.concatenate([np.argmax(r["test_modes"][mode]["scores"], axis=1) for r in results])
        assert summary[mode]["pooled"]["ua"] == pytest.approx(balanced_accuracy_score(labels, predictions))
        assert summary[mode]["pooled"]["wa"] == pytest.approx(accuracy_score(labels, predictions))
    pooled_per_draw = []
    for d in range(3):
        kept = [np.asarray(r["test_modes"]["enrolled"]["draws"][d]["scored"]) for r in results]
        labels = np.concatenate([np.asarray(r["test_labels"])[k] for r, k in zip(results, kept, strict=True)])
        predictions = np.concatenate(
            [np.argmax(np.asarray(r["test_modes"]["enrolled"]["draws"][d]["scores"])[k], axis=1)
             for r, k in zip(results, kept, strict=True)]
        )  # fmt: skip
        pooled_per_draw.append(balanced_accuracy_score(labels, predictions))
    assert summary["enrolled"]["pooled"]["ua"] == pytest.approx(np.mean(pooled_per_draw))
    delta = np.array(summary["cold"]["folds"]) - np.array(summary["transductive"]["folds"])
    assert summary["delta"]["cold"]["mean"] == pytest.approx(delta.mean())
    assert summary["delta"]["cold"]["better"] == int((delta > 0).sum())


def test_runs_without_modes_have_no_mode_summary():
    assert mode_summary([{"fold": {"name": "f"}, "test_labels": [0], "test_modes": None}], CLASSES) is None
