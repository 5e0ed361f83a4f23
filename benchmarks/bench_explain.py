"""What an explanation costs: ``Recognizer.explain`` against ``Recognizer.predict`` on the same recordings.

    .venv/bin/python benchmarks/bench_explain.py MODEL [MODEL ...] [--files 40] [--threads 1]

MODEL is a checkpoint or a cv folder. Each of the first ``--files`` emoDB recordings (sorted by
name, in ../shared/data/emodb) is predicted and explained once untimed, then timed alternately five
times; the table gives the median seconds per recording and the ratio explain ÷ predict.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from emovision import Recognizer
from emovision.data.audio import audio_files

EMODB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "emodb"


def median_seconds(call, files: list[Path], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        for path in files:
            started = time.perf_counter()
            call(path)
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", type=Path, nargs="+", metavar="MODEL")
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1, help="model threads (PyTorch)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    files = audio_files(EMODB)[: args.files]
    print(f"| model | map | predict (s) | explain (s) | explain ÷ predict |  ({len(files)} emoDB files)")
    print("|---|---|---|---|---|")
    for path in args.models:
        recognizer = Recognizer.load(path)
        for item in files:
            recognizer.predict(item)
            method = recognizer.explain(item).method
        predict = median_seconds(recognizer.predict, files)
        explain = median_seconds(recognizer.explain, files)
        print(f"| {path} | {method} | {predict:.4f} | {explain:.4f} | {explain / predict:.2f} |", flush=True)


if __name__ == "__main__":
    main()
