"""Utterance-level decisions from segment scores, and the SER metrics.

**WA** (weighted accuracy) is the accuracy over utterances; **UA** (unweighted accuracy)
the mean of the per-class recalls, so every class counts the same however rare it is.

Importing this module does not import torch (the ONNX inference path uses it); only
:func:`segment_log_probs` needs torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from emovision.training.options import AGGREGATES

if TYPE_CHECKING:
    import torch
    from torch import nn


def utterance_scores(
    segment_log_probs: np.ndarray, segments_per_utterance: np.ndarray, rule: str = "logprob"
) -> np.ndarray:
    """Per-utterance log-probabilities ``(U, K)`` from segment log-probabilities ``(N, K)``.

    ``logprob`` averages the segments' log-probabilities (the original's rule) and
    renormalises; ``prob`` averages the probabilities.
    """
    if rule not in AGGREGATES:
        raise ValueError(f"unknown aggregation {rule!r}")
    owners = np.repeat(np.arange(len(segments_per_utterance)), segments_per_utterance)
    values = segment_log_probs if rule == "logprob" else np.exp(segment_log_probs)
    sums = np.zeros((len(segments_per_utterance), segment_log_probs.shape[1]), dtype=np.float64)
    np.add.at(sums, owners, values)
    means = sums / np.maximum(segments_per_utterance, 1)[:, None]
    if rule == "prob":
        return np.log(np.maximum(means, 1e-30))
    return means - np.logaddexp.reduce(means, axis=1, keepdims=True)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts ``(K, K)``: row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return matrix


def metrics_from_confusion(matrix: np.ndarray, classes: list[str]) -> dict:
    """WA, UA, per-class recall and the confusion matrix as plain JSON-ready values.

    Classes absent from the truth are left out of UA (their recall is undefined).
    """
    support = matrix.sum(axis=1)
    present = support > 0
    recall = np.where(present, np.diag(matrix) / np.maximum(support, 1), np.nan)
    total = int(matrix.sum())
    return {
        "wa": float(np.trace(matrix) / total) if total else float("nan"),
        "ua": float(np.nanmean(recall)) if present.any() else float("nan"),
        "recall": {
            name: (None if np.isnan(r) else float(r)) for name, r in zip(classes, recall, strict=True)
        },
        "confusion": matrix.tolist(),
        "utterances": total,
    }


def fold_summary(results: list[dict], classes: list[str]) -> dict:
    """Over fold results (each with ``wa``, ``ua`` and ``confusion``): WA and UA mean ± standard
    deviation (``ddof = 1``; 0 for a single fold) and the pooled metrics of the summed confusions."""
    wa = np.array([r["wa"] for r in results])
    ua = np.array([r["ua"] for r in results])
    ddof = 1 if len(results) > 1 else 0
    return {
        "wa_mean": float(wa.mean()),
        "wa_std": float(wa.std(ddof=ddof)),
        "ua_mean": float(ua.mean()),
        "ua_std": float(ua.std(ddof=ddof)),
        "pooled": metrics_from_confusion(
            np.sum([np.asarray(r["confusion"]) for r in results], axis=0), classes
        ),
    }


def paired_difference(deltas: np.ndarray) -> dict:
    """Per-fold differences ``(N,)`` (e.g. UA of run B − run A on the same folds) as ``mean``, its
    standard error ``se`` (0 for a single fold), the folds where B is ``better`` and ``folds``."""
    deltas = np.asarray(deltas, dtype=np.float64)
    se = float(deltas.std(ddof=1) / np.sqrt(deltas.size)) if deltas.size > 1 else 0.0
    return {
        "mean": float(deltas.mean()),
        "se": se,
        "better": int((deltas > 0).sum()),
        "folds": int(deltas.size),
    }


def score_utterances(y_true: np.ndarray, utterance_log_probs: np.ndarray, classes: list[str]) -> dict:
    """Metrics of the argmax decisions of ``utterance_log_probs`` ``(U, K)`` against ``y_true``."""
    predictions = utterance_log_probs.argmax(axis=1)
    return metrics_from_confusion(confusion_matrix(y_true, predictions, len(classes)), classes)


def segment_log_probs(
    model: nn.Module, segments: torch.Tensor, batch_size: int = 256, autocast: bool = False
) -> np.ndarray:
    """Log-probabilities ``(N, K)`` of ``segments`` ``(N, C, F, T)`` (on the model's device)."""
    import torch

    with torch.no_grad():
        return _segment_log_probs(model, segments, batch_size, autocast)


def segment_embeddings(model: nn.Module, segments: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """The embedding ``(N, D)`` of each segment ``(N, C, F, T)``: what the model's classifier
    receives (see :meth:`emovision.training.models.SERModel.embed`), in float32 on the CPU."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    outputs = []
    with torch.no_grad():
        for start in range(0, segments.shape[0], batch_size):
            batch = (
                segments[start : start + batch_size].to(device).contiguous(memory_format=torch.channels_last)
            )
            outputs.append(model.embed(batch).float().cpu())
    return torch.cat(outputs).numpy() if outputs else np.zeros((0, 0), dtype=np.float32)


def _segment_log_probs(
    model: nn.Module, segments: torch.Tensor, batch_size: int, autocast: bool
) -> np.ndarray:
    import torch

    model.eval()
    device = next(model.parameters()).device
    outputs = []
    for start in range(0, segments.shape[0], batch_size):
        batch = segments[start : start + batch_size].to(device, non_blocking=True)
        batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(batch)
        outputs.append(torch.log_softmax(logits.float(), dim=1).cpu())
    if not outputs:
        return np.zeros((0, 0), dtype=np.float32)
    return torch.cat(outputs).numpy()
