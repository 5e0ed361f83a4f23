"""Inference speed: one utterance's latency, folder throughput, and the REST API under load.

    .venv/bin/python benchmarks/bench_predict.py [--checkpoint best.pth] [--repeats 200]
        [--clients 20] [--seconds 30] [--parts latency,throughput,api] [--json out.json]

* latency: one 3-second utterance end to end (read the WAV, resample, features, model) with
  ``Recognizer.predict``, in a child process pinned to one CPU core with one model thread, for
  PyTorch (the checkpoint) and ONNX Runtime (its export); ``--repeats`` timed calls after 10
  untimed ones; median, p95, and the median of each stage. The utterance is two real emoDB
  recordings joined and cut to 3.0 s (22.05 kHz, 16-bit, as the corpus files).
* throughput: ``Recognizer.iter_predict`` over every emoDB recording (files per second), on
  the CPU (all cores, the libraries' default threads) with PyTorch and ONNX Runtime, and on the
  GPU with PyTorch (and ONNX Runtime's CUDA provider) where CUDA exists; one untimed pass over
  64 files first.
* api: ``emovision serve`` on the ONNX model in its own process, ``--clients`` concurrent
  clients posting emoDB recordings to ``/api/predict`` on loopback for ``--seconds``; requests
  per second, errors and latency percentiles.

Without ``--checkpoint`` the model is an untrained ``alexnet_gap`` for the default features
(log-mel, 128 bands, 300-frame segments): speed does not depend on the weights. "other load"
is the CPU time other processes used meanwhile, in cores: on a shared machine it slows every row.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
EMODB = Path(os.environ.get("EMOVISION_SHARED_DATA", ROOT.parent / "shared" / "data")) / "emodb"
console = Console(stderr=True)


# ----- helpers --------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its threads (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """CPU seconds all processes used since boot (Linux)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """Cores used by other processes than this one, its finished children and ``pids``, while measuring."""

    def __init__(self, *pids: int) -> None:
        self.pids = (os.getpid(), *pids)

    def _own(self) -> float:
        children = os.times()
        return sum(cpu_seconds(pid) for pid in self.pids) + children.children_user + children.children_system

    def start(self) -> None:
        self.wall = time.perf_counter()
        self.busy = busy_seconds()
        self.own = self._own()

    def stop(self) -> float:
        wall = time.perf_counter() - self.wall
        return max(0.0, busy_seconds() - self.busy - (self._own() - self.own)) / wall


def machine() -> dict:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    from emovision.system import available_cores

    return {"cpu": model, "cores": available_cores(), "python": platform.python_version()}


def make_models(folder: Path, checkpoint: Path | None) -> tuple[Path, Path]:
    """The checkpoint (given, or an untrained alexnet_gap for the default features) and its ONNX export."""
    import torch

    from emovision.data.features import FeatureConfig
    from emovision.inference.onnx_export import export_onnx
    from emovision.training.checkpoint import FORMAT, VERSION, save_checkpoint
    from emovision.training.models import build_ser_model

    if checkpoint is None:
        config = FeatureConfig()
        torch.manual_seed(0)
        model = build_ser_model("alexnet_gap", 7, config.channels, config.height).eval()
        spec = {"name": "alexnet_gap", "num_classes": 7, "channels": config.channels, "height": config.height}
        spec |= {"frames": config.segment_frames, "input_norm": "bin", "resize": None}
        payload = {
            "format": FORMAT,
            "version": VERSION,
            "model": spec,
            "classes": ["anger", "boredom", "disgust", "fear", "happiness", "sadness", "neutral"],
            "feature_config": config.to_dict(),
            "aggregate": "logprob",
            "state_dict": model.state_dict(),
        }
        checkpoint = save_checkpoint(payload, folder / "alexnet_gap.pth")
    onnx_path = export_onnx(checkpoint, folder / "model.onnx").path
    return checkpoint, onnx_path


def three_second_wav(folder: Path, wavs: list[Path]) -> Path:
    """Two emoDB recordings joined and cut to 3.0 s at their own rate (16-bit WAV)."""
    parts = [sf.read(wav, dtype="float32")[0] for wav in wavs[:2]]
    rate = sf.info(wavs[0]).samplerate
    path = folder / "utterance-3s.wav"
    sf.write(path, np.concatenate(parts)[: 3 * rate], rate, subtype="PCM_16")
    return path


# ----- latency (child process, one core) ----------------------------------------------------------
def latency_worker(model: str, wav: str, repeats: int) -> dict:
    """Runs in a child pinned to one core: ``Recognizer.predict`` latencies in milliseconds."""
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
    from emovision import Recognizer
    from emovision.data.audio import load_audio
    from emovision.data.features import segment

    recognizer = Recognizer.load(model, threads=1)
    config = recognizer.config
    for _ in range(10):
        recognizer.predict(wav)
    total, decode, features, scoring = [], [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        recognizer.predict(wav)
        total.append(1000 * (time.perf_counter() - start))
    for _ in range(repeats):
        start = time.perf_counter()
        samples = load_audio(wav, config.sample_rate, min_samples=config.min_samples)
        decoded = time.perf_counter()
        segments = segment(recognizer.features(samples, Path(wav).stem), config)
        featurised = time.perf_counter()
        recognizer.predict_segments(segments)
        done = time.perf_counter()
        decode.append(1000 * (decoded - start))
        features.append(1000 * (featurised - decoded))
        scoring.append(1000 * (done - featurised))
    return {
        "backend": recognizer.backend,
        "segments": int(segments.shape[0]),
        "torch_imported": "torch" in sys.modules,
        "median_ms": statistics.median(total),
        "p95_ms": percentile(total, 95),
        "mean_ms": statistics.fmean(total),
        "decode_ms": statistics.median(decode),
        "features_ms": statistics.median(features),
        "model_ms": statistics.median(scoring),
    }


def measure_latency(models: dict[str, Path], wav: Path, repeats: int) -> list[dict]:
    rows = []
    for name, model in models.items():
        console.print(f"latency: {name}, {repeats} calls on one core")
        command = [sys.executable, __file__, "--latency-worker", str(model), str(wav), str(repeats)]
        load = OtherLoad()
        load.start()
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append({"runtime": name, **row, "other_load": load.stop()})
    return rows


# ----- throughput ---------------------------------------------------------------------------------
def measure_throughput(models: dict[str, Path], wavs: list[Path]) -> list[dict]:
    import onnxruntime as ort
    import torch

    from emovision import Recognizer
    from emovision.inference.results import Failure

    seconds = sum(sf.info(wav).duration for wav in wavs)
    setups = [("PyTorch", "cpu", models["PyTorch"]), ("ONNX Runtime", "cpu", models["ONNX Runtime"])]
    if torch.cuda.is_available():
        setups.append(("PyTorch", "cuda", models["PyTorch"]))
        if "CUDAExecutionProvider" in ort.get_available_providers():
            setups.append(("ONNX Runtime", "cuda", models["ONNX Runtime"]))
    rows = []
    for name, device, model in setups:
        recognizer = Recognizer.load(model, device=device)
        for _ in recognizer.iter_predict(wavs[:64]):
            pass
        load = OtherLoad()
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task(f"throughput: {name} on {device}", total=len(wavs))
            load.start()
            start = time.perf_counter()
            failed = 0
            for result in recognizer.iter_predict(wavs):
                failed += isinstance(result, Failure)
                bar.advance(task)
            elapsed = time.perf_counter() - start
        rows.append(
            {
                "runtime": name,
                "device": torch.cuda.get_device_name()
                if device == "cuda"
                else f"CPU ({os.cpu_count()} cores)",
                "files": len(wavs),
                "failed": failed,
                "seconds": elapsed,
                "files_per_s": len(wavs) / elapsed,
                "audio_s_per_s": seconds / elapsed,
                "other_load": load.stop(),
            }
        )
    if not torch.cuda.is_available():
        rows.append(
            {"runtime": "PyTorch", "device": "GPU", "files_per_s": None, "note": "no CUDA: not measured"}
        )
    return rows


# ----- REST API under load -------------------------------------------------------------------------
async def _client(url: str, payloads: list[tuple[str, bytes]], until: float, log: list) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=120) as client:
        while time.perf_counter() < until:
            name, data = random.choice(payloads)
            start = time.perf_counter()
            try:
                response = await client.post(url, files={"file": (name, data, "audio/wav")})
                ok = response.status_code == 200
                status = response.status_code
            except Exception as exc:
                ok, status = False, type(exc).__name__
            log.append((time.perf_counter() - start, ok, status))


@contextmanager
def serve_process(model: Path, *options: str) -> Iterator[tuple[subprocess.Popen, int]]:
    """``emovision serve MODEL OPTIONS…`` in its own process on a free loopback port, answering
    ``/api/health``; yields the process and the port, and stops it afterwards."""
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "emovision", "serve", str(model), "--port", str(port), *options]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(
                    f"the server did not start: {server.stderr.read() if server.stderr else ''}"
                )
            time.sleep(0.2)
        yield server, port
    finally:
        server.terminate()
        server.wait(timeout=30)


def measure_api(model: Path, wavs: list[Path], clients: int, seconds: float) -> dict:
    with serve_process(model) as (server, port):
        base = f"http://127.0.0.1:{port}"
        random.seed(0)
        payloads = [(wav.name, wav.read_bytes()) for wav in wavs]
        log: list[tuple[float, bool, object]] = []
        load = OtherLoad(server.pid)
        console.print(f"api: {clients} clients for {seconds:.0f} s on {base}")
        load.start()
        start = time.perf_counter()

        async def run_all() -> None:
            until = time.perf_counter() + seconds
            await asyncio.gather(
                *(_client(f"{base}/api/predict", payloads, until, log) for _ in range(clients))
            )

        asyncio.run(run_all())
        elapsed = time.perf_counter() - start
        other = load.stop()
    latencies = [1000 * seconds for seconds, ok, _ in log if ok]
    errors = [status for _, ok, status in log if not ok]
    return {
        "clients": clients,
        "seconds": elapsed,
        "requests": len(log),
        "errors": len(errors),
        "error_kinds": sorted({str(status) for status in errors}),
        "requests_per_s": len(log) / elapsed,
        "p50_ms": percentile(latencies, 50) if latencies else None,
        "p95_ms": percentile(latencies, 95) if latencies else None,
        "p99_ms": percentile(latencies, 99) if latencies else None,
        "max_ms": max(latencies) if latencies else None,
        "other_load": other,
    }


# ----- report ----------------------------------------------------------------------------------------
def print_report(results: dict) -> None:
    out = Console()
    if "latency" in results:
        table = Table(title="latency of one 3-second utterance, one CPU core (ms)")
        for column in ("runtime", "median", "p95", "decode", "features", "model", "other load"):
            table.add_column(column, justify="left" if column == "runtime" else "right")
        for row in results["latency"]:
            table.add_row(
                row["runtime"],
                *(
                    f"{row[key]:.1f}"
                    for key in ("median_ms", "p95_ms", "decode_ms", "features_ms", "model_ms")
                ),
                f"{row['other_load']:.2f}",
            )
        out.print(table)
    if "throughput" in results:
        table = Table(title="predict over the emoDB folder")
        for column in ("runtime", "device", "files/s", "audio s/s", "other load"):
            table.add_column(column, justify="left" if column in ("runtime", "device") else "right")
        for row in results["throughput"]:
            if row["files_per_s"] is None:
                table.add_row(row["runtime"], row["device"], row["note"], "", "")
                continue
            table.add_row(
                row["runtime"],
                row["device"],
                f"{row['files_per_s']:.1f}",
                f"{row['audio_s_per_s']:.1f}",
                f"{row['other_load']:.2f}",
            )
        out.print(table)
    if "api" in results:
        api = results["api"]
        table = Table(title=f"/api/predict, {api['clients']} clients, {api['seconds']:.0f} s on loopback")
        for column in ("requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "other load"):
            table.add_column(column, justify="right")
        table.add_row(
            str(api["requests"]),
            str(api["errors"]),
            f"{api['requests_per_s']:.1f}",
            *(f"{api[key]:.0f}" for key in ("p50_ms", "p95_ms", "p99_ms")),
            f"{api['other_load']:.2f}",
        )
        out.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, default=None, help="trained model (default: untrained)")
    parser.add_argument("--emodb", type=Path, default=EMODB, help="emoDB folder (with wav/)")
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per latency measurement")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0, help="duration of the API load test")
    parser.add_argument("--parts", default="latency,throughput,api")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--latency-worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.latency_worker:
        model, wav, repeats = args.latency_worker
        print(json.dumps(latency_worker(model, wav, int(repeats))))
        return
    wavs = sorted((args.emodb / "wav").glob("*.wav"))
    if not wavs:
        sys.exit(f"no emoDB recordings under {args.emodb / 'wav'}")
    parts = set(args.parts.split(","))
    results: dict = {"machine": machine(), "command": " ".join(sys.argv)}
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        console.print("preparing the model and its ONNX export")
        checkpoint, onnx_path = make_models(folder, args.checkpoint)
        models = {"PyTorch": checkpoint, "ONNX Runtime": onnx_path}
        if "latency" in parts:
            results["latency"] = measure_latency(models, three_second_wav(folder, wavs), args.repeats)
        if "throughput" in parts:
            results["throughput"] = measure_throughput(models, wavs)
        if "api" in parts:
            results["api"] = measure_api(onnx_path, wavs, args.clients, args.seconds)
    print_report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
