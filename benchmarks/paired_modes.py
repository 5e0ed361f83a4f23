"""Paired UA differences per evaluation mode over several seeds: B − A on every shared fold of every pair.

    .venv/bin/python benchmarks/paired_modes.py A_SEED1:B_SEED1 A_SEED2:B_SEED2 [...]

Each argument pairs two finished cv folders trained with the same seed on the same folds (e.g. the
``none`` and ``mixed`` runs of ``benchmarks/served_accuracy.sh``); the folds of all pairs are pooled
into one paired difference per mode (cold, enrolled, transductive): mean ± standard error and the
folds where B is better; a cv with unfinished folds pairs on those it has. Runs without speaker normalisation count the same in every mode.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from emovision.data.speaker_norm import MODES
from emovision.evaluation.report import cv_summary, mode_fold_ua
from emovision.tables import paired_change
from emovision.training.metrics import paired_difference


def _summary(folder: Path) -> dict:
    """The cv folder's summary, of the folds finished so far when some are not (only those pair)."""
    summary = cv_summary(folder)
    if summary is None:
        sys.exit(f"{folder} is no cv folder")
    return summary


def main() -> None:
    pairs = [argument.split(":") for argument in sys.argv[1:]]
    if not pairs or any(len(pair) != 2 for pair in pairs):
        sys.exit(__doc__)
    deltas: dict[str, list[float]] = {mode: [] for mode in MODES}
    for a, b in pairs:
        first = mode_fold_ua(_summary(Path(a)))
        second = mode_fold_ua(_summary(Path(b)))
        for mode in MODES:
            if mode in first and mode in second:
                deltas[mode] += [
                    ua - first[mode][key] for key, ua in second[mode].items() if key in first[mode]
                ]
    print("| mode | paired ΔUA (B − A), mean ± s.e. (folds better) |")
    print("|---|---|")
    for mode, values in deltas.items():
        print(f"| {mode} | {paired_change(paired_difference(np.array(values))) if values else '—'} |")


if __name__ == "__main__":
    main()
