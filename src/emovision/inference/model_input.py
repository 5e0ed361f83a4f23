"""What a model hears: a recording read at the model's rate and turned into the trained features.

:class:`AudioRequest` names one recording (a path, the bytes of a file, or samples) and how to read
it; :class:`ModelInput` turns it into the segments ``(N, C, F, T)`` of every ensemble member
(unnormalised: speaker normalisation is :mod:`emovision.inference.normalisation`'s), the openSMILE
functionals of a fused model and, for :meth:`ModelInput.speech`, the speech turns. Features are
computed exactly as at training time from the model's :class:`~emovision.data.features.FeatureConfig`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from emovision.data.audio import audio_info, load_audio, prepare_audio, read_span, stream_audio
from emovision.data.features import FeatureConfig, compute_features, feature_key, segment, speech_span
from emovision.data.vad import SAMPLE_RATE as VAD_RATE
from emovision.data.vad import SpeechDetector
from emovision.errors import AudioError, CheckpointError, EmovisionError, TooLongError
from emovision.inference.sources import (
    BUFFER_REPR,
    STREAMED_SUFFIXES,
    Normalise,
    Source,
    Speech,
    check_duration,
)


@dataclass(frozen=True)
class AudioRequest:
    """One recording to read: ``source`` (path, bytes or samples ``(n,)`` / ``(n, channels)``),
    ``sample_rate`` (Hz, samples only), ``key`` seeding ``lognrevspec`` (default: the file stem, or
    ``""``), ``name`` reported instead of the source, ``max_seconds`` above which it is refused."""

    source: Source
    sample_rate: int | None = None
    key: str | None = None
    name: str | None = None
    max_seconds: float | None = None


@dataclass
class Recording:
    """A recording read for the model: its reported ``label``, mono ``samples`` at the model's rate
    and the feature ``key``."""

    label: str
    samples: np.ndarray
    key: str


@dataclass
class Prepared:
    """One recording ready to score: ``segments`` ``(N, C, F, T)`` of the model, ``extra`` those of
    the further ensemble members, ``raw`` every member's before speaker normalisation, ``duration``
    (s, NaN for precomputed segments), the whole ``features`` ``(C, F, T)`` when kept, their
    ``frames``, the ``functionals`` ``(1, D)`` of a fused model, and the ``offset`` (s) of leading
    silence cut before the features (``FeatureConfig.trim_db``)."""

    source: str
    segments: np.ndarray
    duration: float
    features: np.ndarray | None
    frames: int | None = None
    functionals: np.ndarray | None = None
    extra: list[np.ndarray] = field(default_factory=list)
    raw: list[np.ndarray] = field(default_factory=list)
    offset: float = 0.0

    def normalised(self, normalise: Normalise) -> Prepared:
        """This recording with every member's segments normalised by ``normalise(segments, member)``."""
        segments = [normalise(part, member) for member, part in enumerate(self.raw)]
        return replace(self, segments=segments[0], extra=segments[1:])


class ModelInput:
    """Audio → the features and segments of a model (``config``) and of the further ensemble members
    (``extra_configs``), plus the functionals of a fused model (``functionals(samples, rate)``)."""

    def __init__(
        self,
        config: FeatureConfig | None,
        extra_configs: list[FeatureConfig],
        functionals: Callable[[np.ndarray, int], np.ndarray] | None = None,
    ) -> None:
        self._config = config
        self.extra_configs = list(extra_configs)
        self.functionals = functionals

    @property
    def config(self) -> FeatureConfig:
        """The model's feature configuration; a legacy model without one cannot hear audio."""
        if self._config is None:
            raise CheckpointError(
                "this model was trained on a legacy pickle features file: its feature configuration "
                "is unknown, so it cannot compute features from audio. Retrain it on a features "
                "file made by emovision extract"
            )
        return self._config

    def load(self, request: AudioRequest) -> Recording:
        """The recording's mono samples at the model's rate (:class:`AudioError` if unusable,
        :class:`TooLongError` over ``max_seconds``, checked from the file header before decoding)."""
        config = self.config
        source, key = request.source, request.key
        if isinstance(source, np.ndarray):
            label = request.name or "<samples>"
            if request.sample_rate is None:
                raise EmovisionError("predicting from samples needs their sample_rate (Hz)")
            samples = prepare_audio(
                source, request.sample_rate, config.sample_rate, min_samples=config.min_samples, source=label
            )
            key = key or ""
        else:
            label = request.name or ("<upload>" if isinstance(source, bytes) else str(source))
            if key is None:
                key = feature_key(source if not isinstance(source, bytes) else request.name or "")
            if request.max_seconds is not None:
                check_duration(source, label, request.max_seconds)
            try:
                samples = load_audio(source, config.sample_rate, min_samples=config.min_samples)
            except AudioError as exc:
                raise AudioError(label, BUFFER_REPR.sub("the data", exc.reason)) from None
        duration = samples.size / config.sample_rate
        if request.max_seconds is not None and duration > request.max_seconds:
            raise TooLongError(label, duration, request.max_seconds)
        return Recording(label, samples, key)

    def prepare(self, request: AudioRequest, keep_features: bool = False) -> Prepared:
        """The recording's unnormalised segments of every member (see :meth:`Prepared.normalised`)."""
        config = self.config
        recording = self.load(request)
        samples, key = recording.samples, recording.key
        feature = compute_features(samples, config, key)
        values = None if self.functionals is None else self.functionals(samples, config.sample_rate)[None]
        raw = [segment(feature, config)]
        raw += [segment(compute_features(samples, extra, key), extra) for extra in self.extra_configs]
        return Prepared(
            source=recording.label,
            segments=raw[0],
            duration=samples.size / config.sample_rate,
            features=feature if keep_features else None,
            frames=feature.shape[-1],
            functionals=values,
            extra=raw[1:],
            raw=raw,
            offset=speech_span(samples, config)[0] / config.sample_rate,
        )

    def whole(self, request: AudioRequest, normalise: Normalise) -> tuple[str, list[tuple]]:
        """The recording as one utterance: its label and one batch ``(spans (1, 2) s, [segments
        (N, C, F, T) normalised by normalise(segments, 0)])`` of the model's segments."""
        config = self.config
        recording = self.load(request)
        whole = np.array([[0.0, recording.samples.size / config.sample_rate]])
        segments = segment(compute_features(recording.samples, config, recording.key), config)
        return recording.label, [(whole, [normalise(segments, 0)])]

    def speech(
        self,
        request: AudioRequest,
        detector: SpeechDetector,
        normalise: Normalise,
        progress: Callable[[float, float], None] | None = None,
    ) -> Speech:
        """The speech turns of a recording found by ``detector``, and a way to get each turn's
        segments: a file is streamed block by block (``progress(seconds done, seconds in all)``),
        bytes and samples are held in memory. :class:`AudioError` when there is no speech."""
        config = self.config
        source = request.source
        if isinstance(source, (str, Path)) and Path(source).suffix.lower() in STREAMED_SUFFIXES:
            label, duration, read = self._stream(request, detector, progress)
            key = feature_key(source) if request.key is None else request.key
        else:
            recording = self.load(request)
            label, key, samples, rate = recording.label, recording.key, recording.samples, config.sample_rate
            detector.feed(
                samples if rate == VAD_RATE else prepare_audio(samples, rate, VAD_RATE, source=label)
            )
            duration = samples.size / rate

            def read(start: float, end: float) -> np.ndarray:
                return samples[int(start * rate) : int(end * rate)]

        spans = detector.turns()
        if spans.shape[0] == 0:
            raise AudioError(label, "no speech found (every part is below the speech detector's threshold)")
        extra = tuple(self.extra_configs)
        return Speech(label, duration, spans, read, config, key, self.functionals, extra, normalise)

    def _stream(
        self,
        request: AudioRequest,
        detector: SpeechDetector,
        progress: Callable[[float, float], None] | None,
    ) -> tuple[str, float, Callable[[float, float], np.ndarray]]:
        """Feed a file to ``detector`` block by block: its label, seconds and a reader of its spans."""
        path, rate = request.source, self.config.sample_rate
        label = request.name or str(path)
        frames, file_rate = audio_info(path)
        duration = frames / file_rate if file_rate else 0.0
        if request.max_seconds is not None and duration > request.max_seconds:
            raise TooLongError(label, duration, request.max_seconds)
        for block in stream_audio(path, VAD_RATE):
            detector.feed(block)
            if progress is not None:
                progress(detector.samples / VAD_RATE, duration)
        return label, duration, lambda start, end: read_span(path, start, end, rate)
