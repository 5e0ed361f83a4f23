"""What a deployed model costs: load time and files per second of cv folders and ensemble folders,
with and without their late fusion, on emoDB recordings.

    .venv/bin/python benchmarks/bench_deployed.py MODEL [MODEL ...] [--files 100] [--json out.json]

MODEL: a checkpoint, a cv folder (its fold ensemble) or an ``emovision ensemble`` folder. A folder
with ``fusion-model.npz`` is measured twice: fused (``--fusion on``: openSMILE functionals of every
recording) and ``--fusion off``. Each row: ``Recognizer.iter_predict`` over the first ``--files``
emoDB recordings (sorted names, one untimed pass over 8 files first), on the CPU with the
libraries' default threads. Speed only: the deployed models have seen every emoDB speaker, so
their answers on these files say nothing about accuracy (``fusion.json`` and the cv summaries do).
"other load" is the CPU other processes used meanwhile, in cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench_predict import EMODB, OtherLoad, machine
from rich.console import Console
from rich.table import Table

from emovision.inference.fusion_model import FILE_NAME as FUSION_FILE
from emovision.inference.predict import Recognizer
from emovision.inference.results import Failure

console = Console()


def measure(model: Path, fusion: str, wavs: list[Path]) -> dict:
    """Load time (s) and files/s of ``model`` under ``fusion`` over ``wavs``."""
    start = time.perf_counter()
    recognizer = Recognizer.load(model, fusion=fusion)
    loaded = time.perf_counter() - start
    list(recognizer.iter_predict(wavs[:8]))
    load = OtherLoad()
    load.start()
    start = time.perf_counter()
    results = list(recognizer.iter_predict(wavs))
    seconds = time.perf_counter() - start
    failed = sum(isinstance(r, Failure) for r in results)
    return {
        "model": str(model),
        "name": recognizer.model["name"],
        "fusion": recognizer.fusion is not None,
        "load_s": loaded,
        "files": len(wavs),
        "failed": failed,
        "files_per_s": len(wavs) / seconds,
        "other_load": load.stop(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    wavs = sorted((EMODB / "wav").glob("*.wav"))[: args.files]
    rows = []
    for model in args.models:
        modes = ["on", "off"] if (model / FUSION_FILE).is_file() else ["off"]
        rows += [measure(model, mode, wavs) for mode in modes]
    table = Table(title=f"deployed models: {len(wavs)} emoDB recordings, CPU ({machine()['cores']} cores)")
    for column in ("model", "fusion", "load s", "files/s", "other load"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        table.add_row(
            row["model"],
            "yes" if row["fusion"] else "no",
            f"{row['load_s']:.1f}",
            f"{row['files_per_s']:.1f}",
            f"{row['other_load']:.2f}",
        )
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
