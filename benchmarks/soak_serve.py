"""The web server under hostile load: many clients mixing good and bad requests for a minute.

    .venv/bin/python benchmarks/soak_serve.py [--checkpoint best.pth] [--clients 50] [--seconds 60]
        [--warmup 15] [--speakers 20] [--json out.json]

``emovision serve`` runs on the checkpoint's ONNX export in its own process, with a 4 MB upload
limit and 60-second recordings (``--max-upload-mb 4 --max-seconds 60 --concurrency 2``). Each
of ``--clients`` concurrent clients sends, until ``--seconds`` are over, requests drawn at
random from:

=================  ===========================================================  ========
kind               request                                                      expected
=================  ===========================================================  ========
valid              a real emoDB recording                                       200
oversized          a 5 MB body (over the upload limit)                          413
truncated          a multipart body cut off halfway, then the connection closed  (none)
non-audio part     a text file sent as ``text/plain``                           415
text as audio      a text file sent as ``audio/wav``                            422
zero-length        an empty ``audio/wav`` part                                  400
very long          90 s of speech as 8 kHz 8-bit WAV (720 kB; over 60 s)         413
not multipart      a raw ``audio/wav`` body                                     415
=================  ===========================================================  ========

With ``--speakers N`` every valid request names one of N speaker keys at random
(``?speaker=speaker-K``) and the server holds N keys (``--max-speakers N``): with a
speaker-normalised checkpoint (``train --speaker-norm``) each key's statistics grow with every
upload, and memory must stay flat once every key has been seen.

Meanwhile ``/api/health`` is asked every 0.5 s (answered within 5 s, or counted as missed), and
the server's resident memory is sampled every second. Passes when: no 5xx, every answer is the
expected status, no health check missed, and the resident memory after ``--warmup`` seconds
stays within 10 % of its value at the end of the warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import EMODB, OtherLoad, machine, make_models, percentile, serve_process

console = Console(stderr=True)
MAX_UPLOAD_MB, MAX_SECONDS = 4, 60
EXPECTED = {
    "valid": 200,
    "oversized": 413,
    "truncated": None,
    "non-audio part": 415,
    "text as audio": 422,
    "zero-length": 400,
    "very long": 413,
    "not multipart": 415,
}
WEIGHTS = {"valid": 8, "oversized": 2, "truncated": 2, "non-audio part": 1, "text as audio": 1,
           "zero-length": 1, "very long": 2, "not multipart": 1}  # fmt: skip


def long_recording(wavs: list[Path], seconds: float = 90.0) -> bytes:
    """``seconds`` of real emoDB speech as an 8 kHz, 8-bit mono WAV (small, yet too long)."""
    import librosa

    parts, total = [], 0
    for wav in wavs:
        samples, _ = librosa.load(wav, sr=8000)
        parts.append(samples)
        total += samples.size
        if total >= seconds * 8000:
            break
    buffer = io.BytesIO()
    sf.write(buffer, np.concatenate(parts)[: int(seconds * 8000)], 8000, subtype="PCM_U8", format="WAV")
    return buffer.getvalue()


async def _truncated(port: int) -> str:
    """A multipart upload whose body stops halfway; the connection is then closed."""
    body = (
        b"--x\r\nContent-Disposition: form-data; name=file; filename=a.wav\r\nContent-Type: audio/wav\r\n\r\n"
    )
    body += b"RIFF" + bytes(200_000)
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
    writer.write(head + body[: len(body) // 2])
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    return "closed"


async def _client(
    port: int, payloads: dict, until: float, log: list, rng: random.Random, speakers: int = 0
) -> None:
    import httpx

    url = f"http://127.0.0.1:{port}/api/predict"
    kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
    async with httpx.AsyncClient(timeout=120) as client:
        while time.perf_counter() < until:
            kind = rng.choices(kinds, weights)[0]
            start = time.perf_counter()
            try:
                if kind == "truncated":
                    status = await _truncated(port)
                elif kind == "not multipart":
                    response = await client.post(url, content=payloads["valid"][0][1],
                                                 headers={"Content-Type": "audio/wav"})  # fmt: skip
                    status = response.status_code
                else:
                    name, data, content_type = rng.choice(payloads[kind])
                    params = (
                        {"speaker": f"speaker-{rng.randrange(speakers)}"}
                        if speakers and kind == "valid"
                        else {}
                    )
                    response = await client.post(
                        url, files={"file": (name, data, content_type)}, params=params
                    )
                    status = response.status_code
            except Exception as exc:  # a refused or reset connection is a result, not a crash
                status = type(exc).__name__
            log.append((kind, status, time.perf_counter() - start))


def _payloads(wavs: list[Path]) -> dict[str, list[tuple[str, bytes, str]]]:
    text = b"kein Ton, nur Text\n" * 50
    return {
        "valid": [(wav.name, wav.read_bytes(), "audio/wav") for wav in wavs[:40]],
        "oversized": [("big.wav", b"RIFF" + bytes(5 * 1024 * 1024), "audio/wav")],
        "non-audio part": [("notes.txt", text, "text/plain")],
        "text as audio": [("notes.wav", text, "audio/wav")],
        "zero-length": [("empty.wav", b"", "audio/wav")],
        "very long": [("long.wav", long_recording(wavs), "audio/wav")],
    }


def _resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class _Watch(threading.Thread):
    """Health checks every 0.5 s and the server's resident memory every second, until stopped."""

    def __init__(self, base: str, pid: int) -> None:
        super().__init__(daemon=True)
        self.base, self.pid = base, pid
        self.stop = threading.Event()
        self.health: list[tuple[float, object]] = []
        self.memory: list[tuple[float, float]] = []

    def run(self) -> None:
        import httpx

        start, next_memory = time.perf_counter(), 0.0
        while not self.stop.is_set():
            began = time.perf_counter()
            try:
                status: object = httpx.get(f"{self.base}/api/health", timeout=5).status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            self.health.append((time.perf_counter() - began, status))
            if began - start >= next_memory:
                self.memory.append((began - start, _resident_mb(self.pid)))
                next_memory += 1.0
            self.stop.wait(0.5)


def soak(
    model: Path, wavs: list[Path], clients: int, seconds: float, warmup: float, speakers: int = 0
) -> dict:
    payloads = _payloads(wavs)
    limits = ("--max-upload-mb", str(MAX_UPLOAD_MB), "--max-seconds", str(MAX_SECONDS), "--concurrency", "2")
    limits += ("--max-speakers", str(speakers)) if speakers else ()
    with serve_process(model, *limits) as (server, port):
        base = f"http://127.0.0.1:{port}"
        log: list[tuple[str, object, float]] = []
        watch = _Watch(base, server.pid)
        load = OtherLoad(server.pid)
        console.print(f"soak: {clients} clients for {seconds:.0f} s on {base}")
        load.start()
        watch.start()

        async def run_all() -> None:
            until = time.perf_counter() + seconds
            await asyncio.gather(
                *(_client(port, payloads, until, log, random.Random(i), speakers) for i in range(clients))
            )

        asyncio.run(run_all())
        watch.stop.set()
        watch.join()
        other = load.stop()
        alive = server.poll() is None
    return _summary(log, watch, clients, seconds, warmup, alive, other) | {"speakers": speakers}


def _summary(
    log, watch: _Watch, clients: int, seconds: float, warmup: float, alive: bool, other: float
) -> dict:
    by_kind: dict[str, dict[str, int]] = {}
    unexpected, server_errors = 0, 0
    for kind, status, _ in log:
        counts = by_kind.setdefault(kind, {})
        counts[str(status)] = counts.get(str(status), 0) + 1
        if isinstance(status, int) and status >= 500:
            server_errors += 1
        if EXPECTED[kind] is not None and status != EXPECTED[kind]:
            unexpected += 1
    valid = [elapsed for kind, status, elapsed in log if kind == "valid" and status == 200]
    warm = [mb for t, mb in watch.memory if t >= warmup]
    base_mb = warm[0] if warm else float("nan")
    missed = [status for _, status in watch.health if status != 200]
    result = {
        "clients": clients,
        "seconds": seconds,
        "requests": len(log),
        "by_kind": by_kind,
        "server_errors": server_errors,
        "unexpected": unexpected,
        "valid_p50_ms": percentile([1000 * v for v in valid], 50) if valid else None,
        "valid_p99_ms": percentile([1000 * v for v in valid], 99) if valid else None,
        "health_checks": len(watch.health),
        "health_missed": len(missed),
        "health_max_ms": 1000 * max(t for t, _ in watch.health) if watch.health else None,
        "rss_mb_after_warmup": base_mb,
        "rss_mb_max": max(warm) if warm else None,
        "rss_mb_final": warm[-1] if warm else None,
        "rss_growth": (max(warm) - base_mb) / base_mb if warm else None,
        "rss_samples": watch.memory,
        "server_alive": alive,
        "other_load": other,
    }
    result["passed"] = bool(
        alive and not server_errors and not unexpected and not missed and result["rss_growth"] is not None
        and result["rss_growth"] <= 0.10
    )  # fmt: skip
    return result


def print_report(result: dict) -> None:
    out = Console()
    table = Table(
        title=f"{result['clients']} clients, {result['seconds']:.0f} s: {result['requests']} requests"
    )
    for column in ("kind", "expected", "answers"):
        table.add_column(column)
    for kind, counts in result["by_kind"].items():
        expected = EXPECTED[kind] or "—"
        table.add_row(
            kind, str(expected), ", ".join(f"{status} × {n}" for status, n in sorted(counts.items()))
        )
    out.print(table)
    out.print(
        f"5xx: {result['server_errors']}, unexpected: {result['unexpected']}; valid p50 "
        f"{result['valid_p50_ms']:.0f} ms, p99 {result['valid_p99_ms']:.0f} ms; health {result['health_checks']} "
        f"checks, missed {result['health_missed']}, slowest {result['health_max_ms']:.0f} ms; resident memory "
        f"{result['rss_mb_after_warmup']:.0f} MB after warm-up, max {result['rss_mb_max']:.0f} MB "
        f"({100 * result['rss_growth']:+.1f} %), final {result['rss_mb_final']:.0f} MB; "
        f"other load {result['other_load']:.2f} cores; {'PASSED' if result['passed'] else 'FAILED'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, default=None, help="trained model (default: untrained)")
    parser.add_argument("--emodb", type=Path, default=EMODB, help="emoDB folder (with wav/)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds before memory must stay flat")
    parser.add_argument("--speakers", type=int, default=0, help="speaker keys the valid requests use")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    wavs = sorted((args.emodb / "wav").glob("*.wav"))
    if not wavs:
        sys.exit(f"no emoDB recordings under {args.emodb / 'wav'}")
    with tempfile.TemporaryDirectory() as temp:
        _, onnx_path = make_models(Path(temp), args.checkpoint)
        result = soak(onnx_path, wavs, args.clients, args.seconds, args.warmup, args.speakers)
    result |= {"machine": machine(), "command": " ".join(sys.argv)}
    print_report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    sys.exit(0 if result["passed"] else 1)


if __name__ == "__main__":
    main()
