"""Extraction speed on emoDB: emovision against a plain sequential librosa implementation.

    .venv/bin/python benchmarks/bench_extract.py [--repeats N] [--json out.json] [--emodb DIR]

One run measures, on all emoDB recordings:

* baseline: librosa, one file after another, as the original code did: ``librosa.load(sr=16000)``,
  pre-emphasis, ``librosa.stft``, mel filterbank or the bins below 4 kHz, ``power_to_db(ref=max,
  top_db=80)``, 300-frame segments, one pickle file at the end. Once with numpy's BLAS threads as
  they are (the original) and once limited to one thread (a stronger baseline on small machines);
* emovision: ``extract_corpus`` (reads, computes and writes the HDF5 features file) with one
  worker and with all cores, for the four feature types (``--device cpu``);
* the batched torch path through ``extract_corpus`` on CPU tensors (``cpu-torch``), and on the
  GPU (``cuda``) when torch sees one;
* compute only: the features of audio already decoded in memory (no reading, resampling or
  writing), numpy one by one and torch in batches of 64, to show what the feature math costs.

Every emovision measurement runs in a lean side process started once for the whole run, as
``emovision extract`` would: the ``cpu`` rows in one that never imports torch, the torch rows in
another. This process holds librosa, the baseline's results and all the decoded audio, and a
process that large forks its worker processes tens of milliseconds slower. First one untimed warm-up round of every
measurement (imports, caches, the files in the page cache, the CUDA context), then ``--repeats``
timed rounds, each running every measurement once (a change in the machine's load hits all of
them alike); the table gives the median over the rounds.

Real-time factor (RTF) = seconds of audio / wall seconds; ratios are against the baseline of the
same feature type with BLAS threads as they are (and, in brackets, with one BLAS thread). The
time for IEMOCAP (12.4 h of audio) is extrapolated from each RTF. "CPU s" is the CPU time of the
measurement's processes (what the work costs, whatever else runs); "other load" is the CPU time
that other processes used meanwhile, in cores (median over the rounds): on a shared machine it
slows every row, and the parallel ones most.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pickle
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
from bench_predict import machine
from threadpoolctl import threadpool_info, threadpool_limits

from emovision.data.audio import load_audio
from emovision.data.corpora import load_corpus
from emovision.data.extract import default_workers, extract_corpus
from emovision.data.features import FEATURE_TYPES, FeatureConfig, compute_features

ROOT = Path(__file__).resolve().parents[1]
IEMOCAP_SECONDS = 12.4 * 3600
STFT = {"n_fft": 800, "hop_length": 160, "win_length": 640, "window": "hamming"}
SEGMENT_FRAMES = 300
BATCH = 64


def baseline_features(path: Path, kind: str) -> np.ndarray:
    """Segments ``(N, 1, F, 300)`` of one file, computed directly with librosa (the original approach)."""
    y, _ = librosa.load(path, sr=16000)
    emphasised = np.append(y[0], y[1:] - np.float32(0.97) * y[:-1])
    power = np.abs(librosa.stft(emphasised, **STFT)) ** 2
    if kind == "logmelspec":
        power = librosa.feature.melspectrogram(S=power, sr=16000, n_mels=128)
    else:
        power = power[:200]
    level = librosa.power_to_db(power, ref=np.max, top_db=80)
    frames = level.shape[1]
    count = max(1, -(-frames // SEGMENT_FRAMES))
    padded = np.full((level.shape[0], count * SEGMENT_FRAMES), level.min(), dtype=np.float32)
    padded[:, :frames] = level
    return np.stack([padded[None, :, i * SEGMENT_FRAMES : (i + 1) * SEGMENT_FRAMES] for i in range(count)])


def run_baseline(paths: list[Path], kind: str, out: Path, blas_threads: int | None = None) -> None:
    """Every file in turn, then one pickle of ``{file: segments}``; ``blas_threads`` limits numpy's BLAS."""
    with threadpool_limits(blas_threads):
        features = {path.stem: baseline_features(path, kind) for path in paths}
    out.write_bytes(pickle.dumps(features, protocol=4))


@dataclass(frozen=True)
class Timed:
    """A measurement made in the torch process: its wall seconds and CPU seconds."""

    seconds: float
    cpu: float


def _own_cpu_seconds() -> float:
    """CPU seconds of this process and its finished children."""
    own = os.times()
    return own.user + own.system + own.children_user + own.children_system


def _cpu_seconds() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process and its children)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK"), _own_cpu_seconds()


def measure(function: Callable[[], object]) -> tuple[float, float | None, float]:
    """Wall seconds of ``function()``, the cores other processes used meanwhile (``None`` off Linux),
    and the CPU seconds of the measurement (this process, its workers, or the torch process)."""
    linux = Path("/proc/stat").exists()
    busy, own = _cpu_seconds() if linux else (0.0, _own_cpu_seconds())
    start = time.perf_counter()
    result = function()
    seconds = time.perf_counter() - start
    busy_after, own_after = _cpu_seconds() if linux else (0.0, _own_cpu_seconds())
    cpu = own_after - own
    if isinstance(result, Timed):
        cpu += result.cpu
    other = max(0.0, (busy_after - busy) - cpu) / seconds if linux else None
    return (result.seconds if isinstance(result, Timed) else seconds), other, cpu


_SIDE: dict = {}


def torch_info() -> dict:
    """In the torch process: torch's version, threads and GPU."""
    import torch

    return {
        "torch": str(torch.__version__),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def side_extract(emodb: str, kind: str, device: str, workers: int, out: str) -> Timed:
    """In a side process: one ``extract_corpus`` with ``device`` and ``workers``."""
    corpus = _SIDE.setdefault("corpus", load_corpus("emodb", emodb))
    own, start = _own_cpu_seconds(), time.perf_counter()
    extract_corpus(corpus, FeatureConfig(kind=kind), out, workers, progress=False, device=device)
    return Timed(time.perf_counter() - start, _own_cpu_seconds() - own)


def torch_compute(emodb: str, kind: str, device: str) -> Timed:
    """In the torch process: the features of every decoded recording, ``BATCH`` at a time."""
    from emovision.data.features_torch import batch_features

    if "decoded" not in _SIDE:
        paths = sorted((Path(emodb) / "wav").glob("*.wav"))
        _SIDE["decoded"] = ([load_audio(p) for p in paths], [p.stem for p in paths])
    decoded, keys = _SIDE["decoded"]
    config = FeatureConfig(kind=kind)
    own, start = _own_cpu_seconds(), time.perf_counter()
    for i in range(0, len(decoded), BATCH):
        batch_features(decoded[i : i + BATCH], config, keys[i : i + BATCH], device=device)
    return Timed(time.perf_counter() - start, _own_cpu_seconds() - own)


def machine_with_libraries(torch_side: dict) -> dict:
    """What ran the benchmark (:func:`bench_predict.machine`), with its memory, GPU and numeric libraries."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    blas = sorted(
        {f"{i['internal_api']} {i['version']} ({i['num_threads']} threads)" for i in threadpool_info()}
    )
    return machine() | {
        "cores_usable": default_workers(),
        "memory_gib": round(memory, 1),
        "gpu": torch_side["gpu"],
        "os": platform.platform(),
        "versions": {
            "numpy": np.__version__,
            "librosa": librosa.__version__,
            "blas": blas,
            "torch": torch_side["torch"],
            "torch_threads": torch_side["torch_threads"],
        },
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (the table gives medians)")
    parser.add_argument("--json", type=Path, default=None, help="also write every timing here")
    default_shared = Path(os.environ.get("EMOVISION_SHARED_DATA", ROOT.parent / "shared" / "data"))
    parser.add_argument("--emodb", type=Path, default=default_shared / "emodb", help="emoDB folder")
    args = parser.parse_args()

    paths = sorted((args.emodb / "wav").glob("*.wav"))
    if not paths:
        parser.error(f"no emoDB recordings in {args.emodb / 'wav'}")
    audio_seconds = sum(sf.info(path).frames / sf.info(path).samplerate for path in paths)
    workers = default_workers()
    side = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    lean = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    info = machine_with_libraries(side.submit(torch_info).result())
    devices = ["cpu-torch", *(["cuda"] if info["gpu"] else [])]
    print(
        f"{len(paths)} files, {audio_seconds:.1f} s of audio; {info['cpu']}, {workers} cores, GPU: {info['gpu']}"
    )

    folder = tempfile.TemporaryDirectory()
    out = Path(folder.name)
    emodb = str(args.emodb)
    measurements: list[tuple[str, str, Callable[[], object]]] = []
    for kind in ("logmelspec", "logspec"):
        measurements.append(("baseline librosa", kind, lambda k=kind: run_baseline(paths, k, out / "b.pkl")))
        measurements.append(
            ("baseline librosa, 1 BLAS thread", kind, lambda k=kind: run_baseline(paths, k, out / "b.pkl", 1))
        )
    for kind in FEATURE_TYPES:
        for count in sorted({1, workers}):
            measurements.append(
                (
                    f"emovision cpu, {count} worker{'s' * (count > 1)}",
                    kind,
                    lambda k=kind, n=count: lean.submit(
                        side_extract, emodb, k, "cpu", n, str(out / "e.h5")
                    ).result(),
                )
            )
        for device in devices:
            measurements.append(
                (
                    f"emovision {device}, {workers} workers",
                    kind,
                    lambda k=kind, d=device: side.submit(
                        side_extract, emodb, k, d, workers, str(out / "t.h5")
                    ).result(),
                )
            )
    decoded = [load_audio(path) for path in paths]
    keys = [path.stem for path in paths]
    for kind in FEATURE_TYPES:
        config = FeatureConfig(kind=kind)
        measurements.append(
            (
                "compute only: numpy, 1 process",
                kind,
                lambda c=config: [compute_features(y, c, k) for y, k in zip(decoded, keys, strict=True)],
            )
        )
        for device in ("cpu", *devices[1:]):
            measurements.append(
                (
                    f"compute only: torch {device}, batches of {BATCH}",
                    kind,
                    lambda k=kind, d=device: side.submit(torch_compute, emodb, k, d).result(),
                )
            )

    rows = [
        {"name": name, "kind": kind, "runs": [], "other_load": [], "cpu_seconds": []}
        for name, kind, _ in measurements
    ]
    with folder, side, lean:
        for round_ in range(args.repeats + 1):
            print("warm-up round" if round_ == 0 else f"round {round_} of {args.repeats}", flush=True)
            for row, (_, _, function) in zip(rows, measurements, strict=True):
                seconds, other, cpu = measure(function)
                if round_ > 0:
                    row["runs"].append(seconds)
                    row["other_load"].append(other)
                    row["cpu_seconds"].append(cpu)
    for row in rows:
        row["seconds"] = statistics.median(row["runs"])

    baseline = {
        (row["kind"], row["name"]): row["seconds"] for row in rows if row["name"].startswith("baseline")
    }
    print()
    print(
        "| measurement | features | seconds | RTF | × baseline (1 BLAS thread) | IEMOCAP 12.4 h "
        "| CPU s | other load |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        row["rtf"] = audio_seconds / row["seconds"]
        whole = not row["name"].startswith("compute only")
        plain = baseline.get((row["kind"], "baseline librosa")) if whole else None
        single = baseline.get((row["kind"], "baseline librosa, 1 BLAS thread")) if whole else None
        row["ratio"] = plain / row["seconds"] if plain else None
        row["ratio_1_thread"] = single / row["seconds"] if single else None
        row["iemocap_seconds"] = IEMOCAP_SECONDS / row["rtf"] if whole else None
        ratio = f"{row['ratio']:.1f} ({row['ratio_1_thread']:.1f})" if plain else "–"
        iemocap = f"{row['iemocap_seconds'] / 60:.1f} min" if whole else "–"
        known = [load for load in row["other_load"] if load is not None]
        other = f"{statistics.median(known):.2f}" if known else "–"
        print(
            f"| {row['name']} | {row['kind']} | {row['seconds']:.2f} | {row['rtf']:.0f}× | {ratio} "
            f"| {iemocap} | {statistics.median(row['cpu_seconds']):.2f} | {other} |"
        )
    loads = [load for row in rows for load in row["other_load"] if load is not None]
    info["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    info["other_load_cores_median"] = statistics.median(loads) if loads else None
    info["other_load_cores_max"] = max(loads) if loads else None
    print()
    if loads:
        print(f"other processes used {statistics.median(loads):.2f} cores (median; max {max(loads):.2f})")
    if args.json:
        payload = {
            "files": len(paths),
            "audio_seconds": audio_seconds,
            "repeats": args.repeats,
            "machine": info,
            "rows": rows,
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"timings written to {args.json}")


if __name__ == "__main__":
    main()
