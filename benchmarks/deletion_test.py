"""The deletion test of the explanations (emovision.inference.explain.deletion_flips) on every fold of cv folders.

Each fold's model explains its own test speaker's recordings (the features file's segments, scored
cold: a speaker-normalised model normalises each recording by itself); the 20 % most salient frames
of each recording are hidden, then as many random frames (five draws: scattered single frames, and
one run of consecutive frames at a random place), and the share of decisions that changed is
counted. The maps would be noise if hiding salient frames changed no more than hiding random ones.

    .venv/bin/python benchmarks/deletion_test.py RUN [RUN ...] [--fraction 0.2] [--draws 5] [--cam-stride 8]
        [--out FILE]

RUN is a finished emovision cv folder; its features file is the one it was trained on.
"""

from __future__ import annotations

import argparse
import json
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch

from emovision.data.speaker_norm import SpeakerNormaliser
from emovision.data.store import load_speakers
from emovision.files import atomic_write_bytes, read_json
from emovision.inference import explain
from emovision.inference.explain import deletion_flips, method_of
from emovision.training.checkpoint import load_checkpoint, model_from_checkpoint


def fold_utterances(payload: dict, features: str, speakers: list[str]) -> list[torch.Tensor]:
    """Every test utterance's segments ``(n, C, F, T)`` as the model takes them in the cold mode."""
    normaliser = SpeakerNormaliser.from_dict(payload.get("speaker_norm"))
    utterances = []
    for data in load_speakers(features, speakers).values():
        for a, b in pairwise(np.cumsum([0, *data.segments_per_utterance])):
            segments = data.segments[a:b]
            if normaliser is not None:
                segments = normaliser.cold(segments)
            utterances.append(torch.from_numpy(np.ascontiguousarray(segments, dtype=np.float32)))
    return utterances


def run(folder: Path, fraction: float, draws: int) -> dict:
    record = read_json(folder / "cv.json", "cross-validation record")
    totals = {"utterances": 0, "salient": 0.0, "random": 0.0, "block": 0.0}
    method, started = "", time.time()
    for fold_dir in sorted(p for p in folder.iterdir() if (p / "best.pth").is_file()):
        payload = load_checkpoint(fold_dir / "best.pth")
        model = model_from_checkpoint(payload)
        method = method_of(model)
        utterances = fold_utterances(payload, record["features_file"], payload["fold"]["test"])
        result = deletion_flips(model, utterances, fraction, draws, seed=0, aggregate=payload["aggregate"])
        print(
            f"{folder.name} {fold_dir.name}: salient {result['salient']:.3f}, random {result['random']:.3f}, "
            f"block {result['block']:.3f}",
            flush=True,
        )
        for key in ("salient", "random", "block"):
            totals[key] += result[key] * result["utterances"]
        totals["utterances"] += result["utterances"]
    n = totals["utterances"]
    salient, random, block = (totals[key] / n for key in ("salient", "random", "block"))
    return {
        "run": folder.name,
        "method": method,
        "utterances": n,
        "fraction": fraction,
        "draws": draws,
        "salient": round(salient, 4),
        "random": round(random, 4),
        "block": round(block, 4),
        "over_random": round(salient / random, 2) if random else None,
        "over_block": round(salient / block, 2) if block else None,
        "seconds": round(time.time() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", metavar="RUN")
    parser.add_argument("--fraction", type=float, default=0.2, help="share of each recording's frames hidden")
    parser.add_argument("--draws", type=int, default=5, help="random draws per recording")
    parser.add_argument(
        "--cam-stride",
        type=int,
        default=explain.CAM_STRIDE,
        help="Grad-CAM on the last block at 1/N of the input's resolution (32: the last block of "
        "efficientnet_lite0)",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args()
    explain.CAM_STRIDE = args.cam_stride
    results = [run(folder, args.fraction, args.draws) for folder in args.runs]
    share = f"{100 * args.fraction:g} %"
    print(
        f"| run | map | recordings | decisions changed: salient {share} hidden | random frames | "
        "random block | salient ÷ random | salient ÷ block |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['run']} | {r['method']} | {r['utterances']} | {r['salient']:.3f} | {r['random']:.3f} | "
            f"{r['block']:.3f} | {r['over_random']} | {r['over_block']} |"
        )
    if args.out:
        atomic_write_bytes(args.out, json.dumps(results, indent=2).encode())


if __name__ == "__main__":
    main()
