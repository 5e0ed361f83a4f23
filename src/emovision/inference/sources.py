"""Where a Recognizer's audio comes from: files found in folders, a duration limit checked from the
header, and a recording's speech turns read stretch by stretch."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from emovision.data.audio import AUDIO_SUFFIXES, audio_files
from emovision.data.features import FeatureConfig, compute_features, segment
from emovision.errors import TooLongError
from emovision.inference.results import Failure

# Files read block by block by --turns (soundfile decodes and seeks them); others are read whole.
STREAMED_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".au", ".caf", ".w64", ".mp3")


Source = str | Path | bytes | np.ndarray


BUFFER_REPR = re.compile(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>")


def find_audio(paths: Iterable[str | Path]) -> tuple[list[Path], list[Failure]]:
    """Files to predict: each file as given, each folder's audio files; missing paths and empty folders fail."""
    files: list[Path] = []
    failures: list[Failure] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = audio_files(path)
            if not found:
                failures.append(
                    Failure(str(path), f"folder without audio files ({', '.join(AUDIO_SUFFIXES)})")
                )
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            failures.append(Failure(str(path), "no such file or folder"))
    return files, failures


def check_duration(source: str | Path | bytes, label: str, max_seconds: float) -> None:
    """Refuse a recording longer than ``max_seconds`` from its header, before decoding it."""
    try:
        info = sf.info(io.BytesIO(source) if isinstance(source, bytes) else str(source))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return
    if info.samplerate > 0 and info.frames / info.samplerate > max_seconds:
        seconds = info.frames / info.samplerate
        raise TooLongError(label, seconds, max_seconds)


Normalise = Callable[[np.ndarray, int], np.ndarray]
Learn = Callable[[list[np.ndarray], np.ndarray | None, float], None]


@dataclass
class Speech:
    """A recording's speech turns (``spans`` ``(N, 2)``, seconds) and ``read(start, end)`` for the
    samples of a stretch at the model's rate."""

    label: str
    duration: float
    spans: np.ndarray
    read: Callable[[float, float], np.ndarray]
    config: FeatureConfig
    key: str
    functionals: Callable[[np.ndarray, int], np.ndarray] | None = None
    extra_configs: tuple[FeatureConfig, ...] = ()
    normalise: Normalise = lambda segments, member: segments
    learn: Learn | None = None

    def follow_speaker(self, normalise: Normalise, learn: Learn, how: str) -> None:
        """Normalise the turns with ``normalise(segments, member)`` and give each turn's unnormalised
        segments, functionals and seconds to ``learn``: with ``how`` = ``recording`` every turn before
        any is scored, with ``causal`` each turn once it is normalised, with ``turn`` never."""
        self.normalise = normalise
        if how == "recording":
            for raw, values, seconds in self.raw_turns():
                learn(raw, values if values is None else values[None], seconds)
        elif how == "causal":
            self.learn = learn

    def raw_turns(self) -> Iterator[tuple[list[np.ndarray], np.ndarray | None, float]]:
        """Every turn's unnormalised segments per member, its functionals (or None) and its seconds."""
        minimum = self.config.min_samples / self.config.sample_rate
        configs = (self.config, *self.extra_configs)
        for start, end in self.spans:
            samples = self.read(float(start), max(float(end), float(start) + minimum))
            raw = [segment(compute_features(samples, config, self.key), config) for config in configs]
            values = None if self.functionals is None else self.functionals(samples, self.config.sample_rate)
            yield raw, values, samples.size / self.config.sample_rate

    def batches(self, segments_per_batch: int) -> Iterator[tuple]:
        """Turns ``(spans, pieces, values, extra)``, a batch of about ``segments_per_batch``
        segments at a time: their spans ``(n, 2)``, segments ``(n_i, C, F, T)`` per turn,
        functionals ``(n, D)`` for a fused model (else None) and, per extra ensemble member, its
        segments per turn (a turn shorter than one analysis window is widened to one). Each turn is
        normalised before :attr:`learn` (when set) is given it: causal normalisation."""
        spans, pieces, values, count = [], [], [], 0
        extra: list[list[np.ndarray]] = [[] for _ in self.extra_configs]
        for (start, end), (raw, functionals, seconds) in zip(self.spans, self.raw_turns(), strict=True):
            pieces.append(self.normalise(raw[0], 0))
            for m, member in enumerate(extra, start=1):
                member.append(self.normalise(raw[m], m))
            if functionals is not None:
                values.append(functionals)
            if self.learn is not None:
                self.learn(raw, None if functionals is None else functionals[None], seconds)
            spans.append((start, end))
            count += pieces[-1].shape[0]
            if count >= segments_per_batch:
                yield np.array(spans), pieces, np.stack(values) if values else None, extra
                spans, pieces, values, count = [], [], [], 0
                extra = [[] for _ in self.extra_configs]
        if spans:
            yield np.array(spans), pieces, np.stack(values) if values else None, extra
