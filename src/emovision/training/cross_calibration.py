"""Temperatures for cv folds without a validation speaker, fitted on the other folds' test speakers.

A fold whose validation speakers train too (``cv --validation train``) has no held-out speaker to fit
its temperature on (:mod:`emovision.training.calibration`). Once every fold of the cv is finished,
such a fold gets the temperature that minimises the NLL of the *other* folds' test utterances, each
scored by its own fold's model: recordings of speakers that model never heard, scored the way this
fold's model will be used (:func:`~emovision.training.calibration.cross_fitted_temperatures`). Runs
that share a test speaker with the fold are left out, so none of its own test utterances is scored for
its temperature (the other folds' models trained on its test speakers, so these reach it only through
those models' scores of other speakers), and its test ECE stays an honest estimate.

The temperature is written into the fold's ``best.pth`` (``temperature``, and ``metrics`` with the
rest), then into ``metrics.json`` under ``calibration``, with ``fitted_on`` :data:`FITTED_ON_OTHER_FOLDS`.
Fitting is deterministic, so a cv interrupted between the two files writes both again when rerun.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from emovision.files import atomic_write_bytes, read_json
from emovision.training.calibration import apply_temperature, cross_fitted_temperatures, reliability
from emovision.training.checkpoint import load_checkpoint, save_checkpoint
from emovision.training.fold_outputs import METRICS_FILE
from emovision.training.train import BEST_FILE

FITTED_ON_OTHER_FOLDS = "the other folds' test speakers"


def calibrate_across_folds(run_dirs: list[Path]) -> list[dict] | None:
    """The metrics of the finished runs in ``run_dirs``, each run without a calibration (no validation
    speaker) and with test utterances calibrated on the others and its files rewritten; None, and
    nothing written, while any run is unfinished."""
    paths = [Path(d) / METRICS_FILE for d in run_dirs]
    if not all(p.is_file() for p in paths):
        return None
    results = [read_json(p, "metrics") for p in paths]
    uncalibrated = [
        not (r.get("calibration") or r["fold"].get("val")) and bool(r["test_labels"]) for r in results
    ]
    if not any(uncalibrated):
        return results
    temperatures = cross_fitted_temperatures(
        [
            (set(r["fold"]["test"]), np.asarray(r["test_scores"]), np.asarray(r["test_labels"]))
            for r in results
        ]
    )
    for run_dir, path, run, temperature, needed in zip(
        run_dirs, paths, results, temperatures, uncalibrated, strict=True
    ):
        if not needed or temperature is None:
            continue
        run["calibration"] = _calibration(run, temperature)
        checkpoint = load_checkpoint(Path(run_dir) / BEST_FILE)
        checkpoint["temperature"] = temperature
        checkpoint["metrics"] = run
        save_checkpoint(checkpoint, Path(run_dir) / BEST_FILE)
        atomic_write_bytes(path, json.dumps(run, indent=2).encode())
    return results


def _calibration(run: dict, temperature: float) -> dict:
    """The calibration summary of a fold's metrics ``run`` under a cross-fitted ``temperature``."""
    scores = np.asarray(run["test_scores"], dtype=np.float64)
    labels = np.asarray(run["test_labels"], dtype=np.int64)
    return {
        "temperature": temperature,
        "fitted_on": FITTED_ON_OTHER_FOLDS,
        "test_ece": reliability(apply_temperature(scores, 1.0), labels)["ece"],
        "test_ece_calibrated": reliability(apply_temperature(scores, temperature), labels)["ece"],
    }
