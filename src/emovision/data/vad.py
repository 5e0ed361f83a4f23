"""Speech activity: where a recording holds speech, as turns ``(start, end)`` in seconds.

Two detectors:

``silero``
    silero-vad's model (shipped inside its PyPI package, run offline with ONNX Runtime alone,
    without importing PyTorch; the ``vad`` extra: ``pip install 'emovision[vad]'``): speech
    probability every 32 ms.
``energy``
    No dependency: the energy of 20 ms frames against the recording's own noise floor (its 10th
    percentile); a frame is speech when it is ``energy_margin_db`` above the floor and within
    50 dB of the loudest frame. Good for clean recordings, fooled by loud noise.

``auto`` (the default) is silero when installed, else energy. Both then apply the same rules
(:class:`VadOptions`): pauses shorter than ``min_silence`` do not end a turn, turns shorter than
``min_speech`` are dropped, and every turn is widened by ``padding`` on both sides (without
overlapping its neighbours or leaving the recording); a turn longer than ``max_turn`` is cut
into equal parts.

:class:`SpeechDetector` takes a recording block by block (``feed``), so hours of audio need
only the detector's per-frame values in memory (4 bytes per 32 ms for silero, 8 bytes per 20 ms
for energy).
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from emovision.errors import EmovisionError, check_options

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
    max_turn: float = 30.0

    def __post_init__(self) -> None:
        checks = [
            (self.min_speech > 0, "--min-speech must be positive (seconds)"),
            (self.min_silence > 0, "--min-silence must be positive (seconds)"),
            (self.padding >= 0, "--vad-padding must be at least 0 (seconds)"),
            (0 < self.threshold < 1, "--vad-threshold must be between 0 and 1"),
            (self.energy_margin_db > 0, "the energy margin must be positive (dB)"),
            (self.max_turn >= 1, "--max-turn must be at least 1 (seconds)"),
        ]
        check_options(checks)


def resolve_detector(name: str) -> str:
    """``silero`` or ``energy`` for ``name`` (``auto``: silero when installed)."""
    if name not in DETECTORS:
        raise EmovisionError(f"--vad must be one of {', '.join(DETECTORS)}, got {name!r}")
    if name == "energy":
        return name
    if _silero_file() is None or importlib.util.find_spec("onnxruntime") is None:
        if name == "silero":
            raise EmovisionError(
                "--vad silero needs silero-vad and ONNX Runtime: pip install 'emovision[vad]'"
            )
        return "energy"
    return "silero"


def speech_turns(
    samples: np.ndarray, options: VadOptions | None = None, detector: str = "auto"
) -> np.ndarray:
    """Turns ``(N, 2)`` (start, end in seconds) of mono ``samples`` at 16 kHz; ``(0, 2)`` for none."""
    found = SpeechDetector(detector, options)
    found.feed(samples)
    return found.turns()


class SpeechDetector:
    """Speech turns of a recording given block by block (mono 16 kHz samples, any block sizes)."""

    def __init__(self, detector: str = "auto", options: VadOptions | None = None) -> None:
        self.options = options or VadOptions()
        self.detector = resolve_detector(detector)
        self.window = 512 if self.detector == "silero" else 320  # samples: 32 ms / 20 ms
        self._rest = np.zeros(0, dtype=np.float32)
        self._values: list[np.ndarray] = []
        self.samples = 0
        if self.detector == "silero":
            self._model = _silero_model()
            self._model.reset()

    def feed(self, samples: np.ndarray) -> None:
        """The next stretch of the recording."""
        samples = np.asarray(samples, dtype=np.float32)
        self.samples += samples.size
        joined = np.concatenate([self._rest, samples])
        whole = joined.size // self.window * self.window
        self._rest = joined[whole:].copy()
        if whole:
            self._values.append(self._frame_values(joined[:whole].reshape(-1, self.window)))

    def turns(self) -> np.ndarray:
        """Turns ``(N, 2)`` in seconds of everything fed so far (the last partial window padded)."""
        if self._rest.size:
            padded = np.zeros((1, self.window), dtype=np.float32)
            padded[0, : self._rest.size] = self._rest
            self._values.append(self._frame_values(padded))
            self._rest = np.zeros(0, dtype=np.float32)
        values = np.concatenate(self._values) if self._values else np.zeros(0)
        if self.detector == "silero":
            active = values >= self.options.threshold
        elif values.size:
            floor, loudest = np.percentile(values, 10), values.max()
            active = values > max(floor + self.options.energy_margin_db, loudest - 50.0)
        else:
            active = np.zeros(0, dtype=bool)
        return _turns(active, self.window / SAMPLE_RATE, self.samples / SAMPLE_RATE, self.options)

    def _frame_values(self, frames: np.ndarray) -> np.ndarray:
        """Per frame ``(n, window)``: silero's speech probability, or the energy in dB."""
        if self.detector == "energy":
            return 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
        return self._model.probabilities(np.ascontiguousarray(frames, dtype=np.float32))


def _silero_file() -> Path | None:
    """The ONNX model inside the installed silero-vad package, found without importing the package
    (which would import PyTorch)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad_16k_sequence.onnx"
    return path if path.is_file() else None


class _Silero:
    """silero-vad's sequence model run by ONNX Runtime alone: 512-sample windows at 16 kHz, each
    with the previous window's last 64 samples as context, up to 512 windows per call, the LSTM
    state ``h, c`` (1, 1, 128) carried from call to call (the same probabilities as the
    window-by-window streaming model, without a Python call per 32 ms)."""

    def __init__(self) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(
            str(_silero_file()), options, providers=["CPUExecutionProvider"]
        )
        self.reset()

    def reset(self) -> None:
        self.h = np.zeros((1, 1, 128), dtype=np.float32)
        self.c = np.zeros((1, 1, 128), dtype=np.float32)
        self.context = np.zeros(64, dtype=np.float32)

    def probabilities(self, frames: np.ndarray) -> np.ndarray:
        """Speech probability of each window ``(n, 512)``, in order (the state carries over)."""
        out = []
        for first in range(0, frames.shape[0], 512):
            block = frames[first : first + 512]
            contexts = np.empty((block.shape[0], 64), dtype=np.float32)
            contexts[0] = self.context
            contexts[1:] = block[:-1, -64:]
            self.context = block[-1, -64:].copy()
            inputs = {"input": np.concatenate([contexts, block], axis=1), "h": self.h, "c": self.c}
            probabilities, self.h, self.c = self.session.run(None, inputs)
            out.append(probabilities.reshape(-1))
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


_LOCAL = threading.local()


def _silero_model() -> _Silero:
    """The silero model, loaded once per thread (it keeps a state while it runs)."""
    if getattr(_LOCAL, "model", None) is None:
        _LOCAL.model = _Silero()
    return _LOCAL.model


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
    cut = []
    for start, end in padded:
        parts = max(1, int(np.ceil((end - start) / options.max_turn - 1e-9)))
        edges = np.linspace(start, end, parts + 1)
        cut += list(pairwise(edges))
    return np.array(cut, dtype=np.float64).reshape(-1, 2)
