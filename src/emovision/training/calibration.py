"""Confidence you can act on: temperature scaling and the expected calibration error.

A model's utterance probabilities are often over-confident. Temperature scaling (Guo et al.,
2017) divides the utterance log-scores by one number ``T`` fitted on the validation speakers
(minimum negative log-likelihood) and renormalises: the decisions stay the same, the
probabilities become honest. ``T`` is fitted at the end of training, stored in the checkpoint
(``temperature``) and applied by prediction.

The expected calibration error (ECE) bins the test utterances by their top probability (10
equal-width bins) and averages ``|accuracy − confidence|`` over the bins, weighted by their counts.
"""

from __future__ import annotations

import numpy as np

BINS = 10
VALIDATION_SPEAKERS = "each fold's validation speakers"
T_RANGE = (0.05, 20.0)


def apply_temperature(log_scores: np.ndarray, temperature: float) -> np.ndarray:
    """Log-probabilities ``(U, K)`` of ``log_scores / temperature``, renormalised."""
    scaled = np.asarray(log_scores, dtype=np.float64) / temperature
    return scaled - np.logaddexp.reduce(scaled, axis=1, keepdims=True)


def mean_nll(log_scores: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (nats) of the true ``labels`` under ``log_scores / temperature``."""
    log_probs = apply_temperature(log_scores, temperature)
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def fit_temperature(log_scores: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in ``T_RANGE`` that minimises the mean NLL of ``labels`` (1.0 without data)."""
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels, dtype=np.int64)
    if labels.size == 0:
        return 1.0
    result = minimize_scalar(
        lambda log_t: mean_nll(log_scores, labels, float(np.exp(log_t))),
        bounds=tuple(np.log(T_RANGE)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))


def cross_fitted_temperatures(folds: list[tuple[set[str], np.ndarray, np.ndarray]]) -> list[float | None]:
    """For each fold, given as (its test speakers, utterance log-scores ``(U, K)``, labels ``(U,)``), the
    temperature fitted on the pooled utterances of the folds that share none of its test speakers;
    None where there is no such fold. Nothing of a fold's own speakers reaches its temperature."""
    temperatures = []
    for speakers, _, _ in folds:
        others = [(s, y) for own, s, y in folds if not own & speakers and len(y)]
        if not others:
            temperatures.append(None)
            continue
        scores = np.concatenate([np.asarray(s, dtype=np.float64) for s, _ in others])
        labels = np.concatenate([np.asarray(y, dtype=np.int64) for _, y in others])
        temperatures.append(fit_temperature(scores, labels))
    return temperatures


def reliability(log_probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> dict:
    """ECE and the reliability diagram's bins (lower/upper confidence, count, mean confidence,
    accuracy) of utterance log-probabilities ``(U, K)`` against ``labels``."""
    probs = np.exp(np.asarray(log_probs, dtype=np.float64))
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    correct = predicted == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        inside = which == b
        count = int(inside.sum())
        row = {"lower": float(edges[b]), "upper": float(edges[b + 1]), "count": count}
        if count:
            row |= {"confidence": float(confidence[inside].mean()), "accuracy": float(correct[inside].mean())}
            ece += count * abs(row["accuracy"] - row["confidence"])
        rows.append(row)
    return {"ece": ece / max(len(confidence), 1), "bins": rows}


def pooled_calibration(results: list[dict]) -> dict | None:
    """Over fold runs' metrics (``test_scores``, ``test_labels``, ``calibration``): the pooled test
    ECE before and after each fold's own temperature, both reliability diagrams, the temperatures and
    what they were fitted on (``fitted_on``: each fold's validation speakers, or the other folds' test
    speakers, :mod:`emovision.training.cross_calibration`); None when no run was calibrated."""
    runs = [r for r in results if r.get("calibration") and r.get("test_scores")]
    if not runs:
        return None
    labels = np.concatenate([np.asarray(r["test_labels"], dtype=np.int64) for r in runs])
    raw = np.concatenate([apply_temperature(np.asarray(r["test_scores"]), 1.0) for r in runs])
    scaled = np.concatenate(
        [apply_temperature(np.asarray(r["test_scores"]), r["calibration"]["temperature"]) for r in runs]
    )
    before, after = reliability(raw, labels), reliability(scaled, labels)
    temperatures = [r["calibration"]["temperature"] for r in runs]
    fitted_on = {r["calibration"].get("fitted_on", VALIDATION_SPEAKERS) for r in runs}
    return {
        "runs": len(runs),
        "fitted_on": " and ".join(sorted(fitted_on)),
        "temperatures": temperatures,
        "temperature_median": float(np.median(temperatures)),
        "ece": before["ece"],
        "ece_calibrated": after["ece"],
        "bins": before["bins"],
        "bins_calibrated": after["bins"],
    }
