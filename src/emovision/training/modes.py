"""Accuracy over folds in each evaluation mode: cold, enrolled-K and transductive.

Fold runs of a model trained with ``--speaker-norm transductive|mixed`` record their test speaker
in the three modes (``test_modes`` of ``metrics.json``, see :mod:`emovision.data.speaker_norm`). Here
they become, per mode, WA/UA per fold, mean ± standard deviation (``ddof = 1``), pooled over all
scored test utterances (enrolled: pooled per draw, then averaged over the draws), and the paired
difference of each mode to the transductive one per fold. A model without pipeline normalisation
needs no speaker information: its modes coincide, and :func:`mode_summary` returns None.
"""

from __future__ import annotations

import numpy as np

from emovision.data.speaker_norm import MODES, mode_label
from emovision.tables import ResultTable, mean_std, paired_change
from emovision.training.metrics import fold_summary, paired_difference, score_utterances


def runs_mode(runs: list) -> str:
    """How fold runs (``FoldRun``s) meet their test speakers when scored without enrolment: ``cold``
    (normalised in the data pipeline: each recording by itself), ``transductive`` (features extracted
    with ``--speaker-norm``: each test speaker by all of its recordings) or ``any`` (no speaker
    normalisation: the modes coincide)."""
    if any(run.checkpoint.get("speaker_norm") for run in runs):
        return "cold"
    if any(run.feature_config is not None and run.feature_config.speaker_norm for run in runs):
        return "transductive"
    return "any"


def mode_summary(results: list[dict], classes: list[str]) -> dict | None:
    """Per mode: ``ua_mean``, ``ua_std``, ``wa_mean``, ``wa_std``, ``pooled`` and ``folds`` (UA per
    fold); ``delta``: each mode's paired UA difference to ``transductive``; ``k``: enrolment size."""
    if not results or not all(r.get("test_modes") for r in results):
        return None
    summary: dict = {"k": results[0]["test_modes"]["enrolled"]["k"]}
    for mode in MODES:
        if mode == "enrolled":
            summary[mode] = _enrolled(results, classes)
            continue
        metrics = [
            score_utterances(
                np.asarray(r["test_labels"]), np.asarray(r["test_modes"][mode]["scores"]), classes
            )
            for r in results
        ]
        summary[mode] = {**fold_summary(metrics, classes), "folds": [m["ua"] for m in metrics]}
    reference = np.array(summary["transductive"]["folds"])
    summary["delta"] = {
        mode: paired_difference(np.array(summary[mode]["folds"]) - reference) for mode in ("cold", "enrolled")
    }
    return summary


def _enrolled(results: list[dict], classes: list[str]) -> dict:
    draws = len(results[0]["test_modes"]["enrolled"]["draws"])
    per_draw = []
    for d in range(draws):
        metrics = []
        for r in results:
            entry = r["test_modes"]["enrolled"]["draws"][d]
            kept = np.asarray(entry["scored"], dtype=bool)
            labels = np.asarray(r["test_labels"])[kept]
            metrics.append(score_utterances(labels, np.asarray(entry["scores"])[kept], classes))
        per_draw.append(fold_summary(metrics, classes) | {"folds": [m["ua"] for m in metrics]})
    folds = np.mean([s["folds"] for s in per_draw], axis=0)
    ddof = 1 if len(folds) > 1 else 0
    return {
        "ua_mean": float(folds.mean()),
        "ua_std": float(folds.std(ddof=ddof)),
        "wa_mean": float(np.mean([s["wa_mean"] for s in per_draw])),
        "wa_std": float(np.mean([s["wa_std"] for s in per_draw])),
        "pooled": {
            "ua": float(np.mean([s["pooled"]["ua"] for s in per_draw])),
            "wa": float(np.mean([s["pooled"]["wa"] for s in per_draw])),
        },
        "folds": folds.tolist(),
        "draws": draws,
    }


def modes_table(summary: dict) -> ResultTable:
    """The modes as a table, with the paired differences to transductive."""
    table = ResultTable(
        [
            "mode (cold: a recording alone)",
            "UA (fold mean ± std)",
            "pooled UA",
            "pooled WA",
            "ΔUA vs transductive (folds better)",
        ],
        title="accuracy by how much the model knows of the test speaker",
    )
    for mode in MODES:
        entry = summary[mode]
        table.add(
            mode_label(mode, summary["k"]),
            mean_std(entry),
            f"{entry['pooled']['ua']:.3f}",
            f"{entry['pooled']['wa']:.3f}",
            paired_change(summary["delta"].get(mode)),
        )
    return table


def modes_markdown(summary: dict) -> list[str]:
    """The modes as Markdown lines (:func:`modes_table`)."""
    return modes_table(summary).markdown()
