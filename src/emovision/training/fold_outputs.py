"""The report of a finished fold: its metrics, the calibration summary they hold, and its files.

Files in the run folder: ``metrics.json`` (:func:`fold_metrics`, written last: a run folder that has it
holds a finished run), ``curves.png`` (the training curves) and ``confusion.png`` (the test confusion
matrix, with a test speaker only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from emovision import plots
from emovision.errors import EmovisionError
from emovision.files import atomic_write_bytes, read_json
from emovision.system import software_versions
from emovision.training.calibration import apply_temperature, fit_temperature, mean_nll, reliability
from emovision.training.dataset import Split
from emovision.training.folds import Fold
from emovision.training.options import TrainConfig
from emovision.training.resume import RunPosition

METRICS_FILE = "metrics.json"


@dataclass
class SplitScores:
    """The best epoch on one split: the served mode's utterance metrics, the utterance log-probabilities
    ``(U, K)`` and every mode's metrics (``None`` without pipeline speaker normalisation)."""

    split: Split
    metrics: dict
    scores: np.ndarray
    modes: dict | None


def calibration_summary(
    val_scores: np.ndarray,
    val_labels: np.ndarray,
    test_scores: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
) -> dict:
    """The temperature fitted on the validation utterances, their NLL (nats) before and after, and the
    test utterances' expected calibration error before and after (:mod:`emovision.training.calibration`);
    scores are utterance log-probabilities ``(U, K)``, labels class indices ``(U,)``."""
    temperature = fit_temperature(val_scores, val_labels)
    result = {
        "temperature": temperature,
        "val_nll": mean_nll(val_scores, val_labels),
        "val_nll_calibrated": mean_nll(val_scores, val_labels, temperature),
    }
    if test_scores is not None:
        result["test_ece"] = reliability(apply_temperature(test_scores, 1.0), test_labels)["ece"]
        result["test_ece_calibrated"] = reliability(apply_temperature(test_scores, temperature), test_labels)[
            "ece"
        ]
    return result


def fold_metrics(
    fold: Fold,
    config: TrainConfig,
    position: RunPosition,
    val: SplitScores | None,
    test: SplitScores | None,
    classes: list[str],
    device: torch.device,
    world: int,
) -> dict:
    """The metrics of a finished fold (``metrics.json``): the best epoch's validation and test results,
    the test utterances' scores, the calibration summary (with a validation speaker), the history."""
    calibration = None
    if val is not None:
        calibration = calibration_summary(
            val.scores,
            np.asarray(val.split.utterance_labels),
            test.scores if test is not None else None,
            np.asarray(test.split.utterance_labels) if test is not None else None,
        )
    test_scores = test.scores if test is not None else []
    return {
        "fold": fold.to_dict(),
        "best_epoch": position.best["epoch"],
        "epochs_run": position.epoch,
        "select_by": config.select_by,
        "val": val.metrics if val is not None else None,
        "test": test.metrics if test is not None else None,
        "test_utterance_ids": test.split.utterance_ids if test is not None else [],
        "test_labels": test.split.utterance_labels.tolist() if test is not None else [],
        "test_scores": np.round(np.asarray(test_scores, dtype=np.float64), 6).tolist(),
        "test_modes": test.modes if test is not None else None,
        "speaker_norm": config.speaker_norm if config.speaker_norm != "none" else None,
        "calibration": calibration,
        "history": position.history,
        "classes": list(classes),
        "train_config": config.to_dict(),
        "device": str(device),
        "world_size": world,
        "versions": software_versions(),
    }


def write_fold_outputs(out_dir: Path, title: str, metrics: dict, classes: list[str]) -> None:
    """``curves.png``, ``confusion.png`` (with test results) and, last, ``metrics.json`` in ``out_dir``;
    ``title`` (the fold's name) heads the plots."""
    plots.training_curves(metrics["history"], out_dir / "curves.png", title=title)
    test = metrics["test"]
    if test is not None:
        plots.confusion(
            test["confusion"],
            classes,
            out_dir / "confusion.png",
            title=f"{title}: WA {test['wa']:.3f}, UA {test['ua']:.3f}",
        )
    atomic_write_bytes(out_dir / METRICS_FILE, json.dumps(metrics, indent=2).encode())


def finished_metrics(out_dir: Path, fold: Fold, config: TrainConfig, resume: bool) -> dict | None:
    """The metrics of the finished run in ``out_dir`` that ``resume`` may return, None when there is none
    (``out_dir`` is created: a folder that cannot be is an error before any work); an error when the
    finished run may not be returned (no ``resume``, other options or speakers)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmovisionError(f"cannot write the run folder {out_dir}: {exc.strerror or exc}") from None
    finished = out_dir / METRICS_FILE
    if not finished.exists():
        return None
    previous = read_json(finished, "metrics")
    same_config = TrainConfig.saved_identity(previous.get("train_config", {})) == config.identity()
    if resume and same_config and previous.get("fold") == fold.to_dict():
        return previous
    raise EmovisionError(
        f"{out_dir} already holds a finished run"
        + (
            " with other options: use another --out"
            if resume
            else ": use another --out, or --resume to read it"
        )
    )
