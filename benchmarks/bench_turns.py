"""Speech turns: how well the detectors find them, and long recordings in bounded memory.

    .venv/bin/python benchmarks/bench_turns.py --checkpoint best.pth [--minutes 10,30,60] [--json out.json]

* segmentation: every emoDB recording, its own leading and trailing silence trimmed (frames
  40 dB below its loudest), joined into conversations of 20 utterances separated by pauses of
  low room noise drawn from 0.5–2.0 s (seed 0). For each detector (silero, energy), with no
  padding: the share of true turn boundaries (starts and ends) found within 0.2 s, turns found
  inside a pause (overlapping no true turn), and true turns missed.
* long recordings: conversations of emoDB utterances and pauses written as 16 kHz WAV files of
  ``--minutes``; ``emovision predict MODEL.onnx FILE --turns --json`` (ONNX Runtime, the default
  detector) in a fresh process each: wall time, real-time factor (audio seconds per second,
  detection and scoring included) and the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import EMODB, OtherLoad, machine, make_models

from emovision.data.audio import load_audio
from emovision.data.vad import VadOptions, speech_turns

console = Console(stderr=True)
RATE = 16000
TOLERANCE = 0.2


def trimmed(samples: np.ndarray, top_db: float = 40.0, frame: int = 400) -> np.ndarray:
    """``samples`` without leading and trailing frames ``top_db`` below the loudest frame."""
    energy = np.array([np.mean(samples[i : i + frame] ** 2) for i in range(0, samples.size - frame, frame)])
    loud = np.flatnonzero(10 * np.log10(energy + 1e-12) > 10 * np.log10(energy.max()) - top_db)
    return samples[loud[0] * frame : (loud[-1] + 1) * frame]


def conversation(utterances: list[np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Utterances with pauses of room noise (0.5–2.0 s) before each and after the last; the true turns."""
    parts, truth, t = [], [], 0.0
    for speech in utterances:
        pause = rng.uniform(0.5, 2.0)
        parts += [(rng.standard_normal(int(pause * RATE)) * 1e-4).astype(np.float32), speech]
        truth.append((t + pause, t + pause + speech.size / RATE))
        t += pause + speech.size / RATE
    parts.append((rng.standard_normal(RATE) * 1e-4).astype(np.float32))
    return np.concatenate(parts), np.array(truth)


def segmentation(wavs: list[Path]) -> list[dict]:
    rng = np.random.default_rng(0)
    utterances = [trimmed(load_audio(wav, RATE)) for wav in wavs]
    talks = [conversation(utterances[i : i + 20], rng) for i in range(0, len(utterances), 20)]
    rows = []
    for detector in ("silero", "energy"):
        hits = boundaries = inside = missed = found_total = 0
        start = time.perf_counter()
        for samples, truth in talks:
            found = speech_turns(samples, VadOptions(padding=0.0), detector)
            found_total += len(found)
            for column in (0, 1):
                for edge in truth[:, column]:
                    boundaries += 1
                    hits += bool(found.size and np.abs(found[:, column] - edge).min() <= TOLERANCE)
            overlaps = lambda a, b: a[0] < b[1] and b[0] < a[1]  # noqa: E731
            inside += sum(not any(overlaps(f, t) for t in truth) for f in found)
            missed += sum(not any(overlaps(t, f) for f in found) for t in truth)
        seconds = sum(samples.size for samples, _ in talks) / RATE
        rows.append({
            "detector": detector, "conversations": len(talks), "turns": sum(len(t) for _, t in talks),
            "found": found_total, "boundaries_within": hits / boundaries, "turns_in_pauses": inside,
            "missed": missed, "audio_s": seconds, "realtime": seconds / (time.perf_counter() - start),
        })  # fmt: skip
        console.print(rows[-1])
    return rows


# Peak memory is the process's own VmHWM: getrusage's ru_maxrss would carry over the (large)
# resident size of this benchmark process, which the child was forked from.
CHILD = """
import json, sys, time
from pathlib import Path
from emovision.cli import main
start = time.perf_counter()
code = main(["predict", sys.argv[1], sys.argv[2], "--turns", "--json", "--quiet"])
peak = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
            if line.startswith("VmHWM:"))
print(json.dumps({"code": code, "seconds": time.perf_counter() - start, "peak_mb": peak / 1024}), file=sys.stderr)
"""


def long_recordings(model: Path, wavs: list[Path], minutes: list[float], folder: Path) -> list[dict]:
    rng = np.random.default_rng(1)
    utterances = [trimmed(load_audio(wav, RATE)) for wav in wavs]
    rows = []
    for length in minutes:
        path = folder / f"talk-{length:g}min.wav"
        with sf.SoundFile(path, "w", RATE, 1, subtype="PCM_16") as out:
            written, order = 0.0, rng.permutation(len(utterances))
            while written < length * 60:
                samples, _ = conversation([utterances[i] for i in order[:20]], rng)
                out.write(samples[: int((length * 60 - written) * RATE)])
                written += samples.size / RATE
                order = np.roll(order, 20)
        load = OtherLoad()
        load.start()
        result = subprocess.run(
            [sys.executable, "-c", CHILD, str(model), str(path)], capture_output=True, text=True, check=True
        )
        other = load.stop()
        measured = json.loads(result.stderr.strip().splitlines()[-1])
        turns = len(result.stdout.splitlines())
        rows.append({
            "minutes": length, "turns": turns, "seconds": measured["seconds"],
            "realtime": length * 60 / measured["seconds"], "peak_mb": measured["peak_mb"], "other_load": other,
        })  # fmt: skip
        console.print(rows[-1])
        path.unlink()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, default=None, help="trained model (default: untrained)")
    parser.add_argument("--emodb", type=Path, default=EMODB, help="emoDB folder (with wav/)")
    parser.add_argument("--minutes", default="10,30,60", help="lengths of the long recordings")
    parser.add_argument("--parts", default="segmentation,long")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    wavs = sorted((args.emodb / "wav").glob("*.wav"))
    if not wavs:
        sys.exit(f"no emoDB recordings under {args.emodb / 'wav'}")
    results: dict = {"machine": machine(), "command": " ".join(sys.argv)}
    parts = set(args.parts.split(","))
    if "segmentation" in parts:
        results["segmentation"] = segmentation(wavs)
    if "long" in parts:
        with tempfile.TemporaryDirectory() as temp:
            _, onnx_path = make_models(Path(temp), args.checkpoint)
            minutes = [float(m) for m in args.minutes.split(",")]
            results["long"] = long_recordings(onnx_path, wavs, minutes, Path(temp))
    out = Console()
    if "segmentation" in results:
        table = Table(title=f"speech turns found, tolerance {TOLERANCE} s")
        for column in (
            "detector",
            "turns",
            "found",
            "boundaries within",
            "in pauses",
            "missed",
            "× real time",
        ):
            table.add_column(column, justify="right")
        for row in results["segmentation"]:
            table.add_row(row["detector"], str(row["turns"]), str(row["found"]), f"{row['boundaries_within']:.1%}",
                          str(row["turns_in_pauses"]), str(row["missed"]), f"{row['realtime']:.0f}")  # fmt: skip
        out.print(table)
    if "long" in results:
        table = Table(title="predict --turns on long recordings (ONNX Runtime)")
        for column in ("minutes", "turns", "seconds", "× real time", "peak MB", "other load"):
            table.add_column(column, justify="right")
        for row in results["long"]:
            table.add_row(f"{row['minutes']:g}", str(row["turns"]), f"{row['seconds']:.1f}", f"{row['realtime']:.0f}",
                          f"{row['peak_mb']:.0f}", f"{row['other_load']:.2f}")  # fmt: skip
        out.print(table)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
