"""Speech activity: where a recording holds speech, as turns ``(start, end)`` in seconds.

Two detectors:

``silero``
    silero-vad's model (shipped inside its PyPI package, run offline with ONNX Runtime; the
    ``vad`` extra: ``pip install 'emovision[vad]'``): speech probability every 32 ms.
``energy``
    No dependency: frame energy (25 ms frames every 10 ms) against the recording's own noise
    floor (its 10th percentile); a frame is speech when it is ``energy_margin_db`` above the
    floor and within 50 dB of the loudest frame. Good for clean recordings, fooled by loud noise.

``auto`` (the default) is silero when installed, else energy. Both then apply the same rules
(:class:`VadOptions`): pauses shorter than ``min_silence`` do not end a turn, turns shorter than
``min_speech`` are dropped, and every turn is widened by ``padding`` on both sides (without
overlapping its neighbours or leaving the recording).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from emovision.errors import EmovisionError

DETECTORS = ("auto", "silero", "energy")
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class VadOptions:
    """Turn rules, in seconds; ``threshold`` is silero's speech probability."""

    min_speech: float = 0.25
    min_silence: float = 0.4
    padding: float = 0.1
    threshold: float = 0.5
    energy_margin_db: float = 12.0

    def __post_init__(self) -> None:
        checks = [
            (self.min_speech > 0, "--min-speech must be positive (seconds)"),
            (self.min_silence > 0, "--min-silence must be positive (seconds)"),
            (self.padding >= 0, "--vad-padding must be at least 0 (seconds)"),
            (0 < self.threshold < 1, "--vad-threshold must be between 0 and 1"),
            (self.energy_margin_db > 0, "the energy margin must be positive (dB)"),
        ]
        for ok, message in checks:
            if not ok:
                raise EmovisionError(message)


def resolve_detector(name: str) -> str:
    """``silero`` or ``energy`` for ``name`` (``auto``: silero when installed)."""
    if name not in DETECTORS:
        raise EmovisionError(f"--vad must be one of {', '.join(DETECTORS)}, got {name!r}")
    if name == "energy":
        return name
    try:
        import onnxruntime  # noqa: F401
        import silero_vad  # noqa: F401
    except ImportError:
        if name == "silero":
            raise EmovisionError(
                "--vad silero needs silero-vad and ONNX Runtime: pip install 'emovision[vad]'"
            ) from None
        return "energy"
    return "silero"


def speech_turns(
    samples: np.ndarray, options: VadOptions | None = None, detector: str = "auto"
) -> np.ndarray:
    """Turns ``(N, 2)`` (start, end in seconds) of mono ``samples`` at 16 kHz; ``(0, 2)`` for none."""
    options = options or VadOptions()
    detector = resolve_detector(detector)
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    active, hop = (
        _silero_frames(samples, options) if detector == "silero" else _energy_frames(samples, options)
    )
    return _turns(active, hop, samples.size / SAMPLE_RATE, options)


def _silero_frames(samples: np.ndarray, options: VadOptions) -> tuple[np.ndarray, float]:
    """Speech (bool per 512-sample window) from silero-vad's ONNX model, and the window in seconds."""
    model = _silero_model()
    model.reset_states()
    window = 512
    count = -(-samples.size // window)
    padded = np.zeros(count * window, dtype=np.float32)
    padded[: samples.size] = samples
    import torch

    chunks = torch.from_numpy(padded).view(count, window)
    probabilities = np.array([float(model(chunk.unsqueeze(0), SAMPLE_RATE)) for chunk in chunks])
    return probabilities >= options.threshold, window / SAMPLE_RATE


_LOCAL = threading.local()


def _silero_model():
    """The ONNX silero model, loaded once per thread (it keeps a state while it runs)."""
    if getattr(_LOCAL, "model", None) is None:
        from silero_vad import load_silero_vad

        _LOCAL.model = load_silero_vad(onnx=True)
    return _LOCAL.model


def _energy_frames(samples: np.ndarray, options: VadOptions) -> tuple[np.ndarray, float]:
    """Speech (bool per 10 ms frame) by energy against the recording's noise floor."""
    frame, hop = int(0.025 * SAMPLE_RATE), int(0.010 * SAMPLE_RATE)
    if samples.size < frame:
        return np.zeros(0, dtype=bool), hop / SAMPLE_RATE
    count = 1 + (samples.size - frame) // hop
    windows = np.lib.stride_tricks.sliding_window_view(samples, frame)[::hop][:count]
    energy = 10 * np.log10(np.mean(windows.astype(np.float64) ** 2, axis=1) + 1e-12)
    floor, loudest = np.percentile(energy, 10), energy.max()
    threshold = max(floor + options.energy_margin_db, loudest - 50.0)
    return energy > threshold, hop / SAMPLE_RATE


def _turns(active: np.ndarray, hop: float, duration: float, options: VadOptions) -> np.ndarray:
    """Runs of active frames (``hop`` seconds each) as turns, after the pause, length and padding rules."""
    if not active.any():
        return np.zeros((0, 2))
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1) * hop, np.flatnonzero(edges == -1) * hop
    merged: list[list[float]] = []
    for start, end in zip(starts, np.minimum(ends, duration), strict=True):
        if merged and start - merged[-1][1] < options.min_silence:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    kept = [turn for turn in merged if turn[1] - turn[0] >= options.min_speech]
    padded = []
    for i, (start, end) in enumerate(kept):
        low = (kept[i - 1][1] + start) / 2 if i else 0.0  # never past the middle of a pause
        high = (end + kept[i + 1][0]) / 2 if i + 1 < len(kept) else duration
        padded.append((max(low, start - options.padding), min(high, end + options.padding)))
    return np.array(padded, dtype=np.float64).reshape(-1, 2)
