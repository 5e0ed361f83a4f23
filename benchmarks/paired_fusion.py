"""Paired UA differences of two late fusions of the same cv folds, per evaluation mode, over several pairs.

    .venv/bin/python benchmarks/paired_fusion.py A1:B1 A2:B2 [...]

Each argument pairs two folders holding a ``fusion.json`` of the same folds (``emovision fuse``), e.g. the
plain linear model (A) and the speaker-centred one (B, ``fuse --centre``) of ``benchmarks/centred_fusion.sh``.
A fusion without modes counts the same in every mode (it uses nothing of the speaker; its UA over all of
the test speaker's recordings stands for the enrolled mode's remaining ones). Prints, per mode and model
(linear, fusion), B's pooled UA for each pair and the paired difference B − A over the folds of all
pairs: mean ± standard error (folds better).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from emovision.data.speaker_norm import MODES
from emovision.files import read_json
from emovision.tables import paired_change
from emovision.training.metrics import paired_difference


def mode_results(report: dict, mode: str, model: str) -> tuple[dict[str, float], float]:
    """Per fold name the UA of ``model`` in ``mode``, and the pooled UA over the folds."""
    if mode == "cold" or "modes" not in report:
        return {f["name"]: f[model]["ua"] for f in report["folds"]}, report["summary"][model]["pooled"]["ua"]
    folds = {f["name"]: f["modes"][mode][model]["ua"] for f in report["folds"]}
    return folds, report["modes"][mode][model]["pooled"]["ua"]


def main() -> None:
    pairs = [argument.split(":") for argument in sys.argv[1:]]
    if not pairs or any(len(pair) != 2 for pair in pairs):
        sys.exit(__doc__)
    reports = [tuple(read_json(Path(p) / "fusion.json", "fusion report") for p in pair) for pair in pairs]
    print(
        f"| mode | model | A pooled UA | B pooled UA ({', '.join(Path(b).name for _, b in pairs)}) | paired ΔUA B − A |"
    )
    print("|---|---|---|---|---|")
    for mode in MODES:
        for model in ("linear", "fusion"):
            deltas, pooled_a, pooled_b = [], [], []
            for a, b in reports:
                first, pa = mode_results(a, mode, model)
                second, pb = mode_results(b, mode, model)
                deltas += [ua - first[name] for name, ua in second.items() if name in first]
                pooled_a.append(pa)
                pooled_b.append(pb)
            a_text = " / ".join(f"{v:.3f}" for v in dict.fromkeys(pooled_a))
            b_text = " / ".join(f"{v:.3f}" for v in pooled_b)
            print(
                f"| {mode} | {model} | {a_text} | {b_text} | {paired_change(paired_difference(np.array(deltas)))} |"
            )


if __name__ == "__main__":
    main()
