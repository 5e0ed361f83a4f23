"""Use a trained model on recordings: :class:`Recognizer` for checkpoints and exported ONNX files.

The features are computed exactly as at training time, from the feature configuration
stored in the model: audio is resampled to its rate, turned into the trained spectrogram
feature and cut into segments of its ``segment_frames`` frames; every segment is scored
and the segment log-probabilities are combined by the checkpoint's ``aggregate`` rule.
For ``lognrevspec`` features the noise and the room are seeded by the file name without folder
and suffix (:func:`~emovision.data.features.feature_key`, as at extraction); for samples or bytes by ``key``.

:meth:`Recognizer.predict_turns` first finds the speech turns (:mod:`emovision.data.vad`) and gives
each turn its own emotion; silence is never scored.

A cv folder whose fusion was scored (``emovision fuse`` or ``cv --fusion``) holds
``fusion-model.npz`` (:mod:`emovision.inference.fusion_model`): with ``fusion="on"`` (or ``"auto"``) the
utterance (and turn) probabilities are the late fusion of the fold ensemble with the linear
model on the recording's openSMILE functionals, which needs the ``opensmile`` extra;
``segment_probabilities`` stay the image models' (functionals describe a whole recording).

An ``emovision ensemble`` folder is the ensemble of its member cvs' fold ensembles: each member
computes its own features (segment lengths may differ) and the utterance log-probabilities of the
members are averaged, as the ensemble was scored; ``segment_probabilities`` and ``times`` are the
first member's.

A model trained on speaker-normalised features (``extract --speaker-norm``) needs the statistics
of the speaker it listens to: after :meth:`Recognizer.adapt` (several recordings of one speaker,
no labels) every segment is normalised by them; until then each recording (each turn with
``predict_turns``) is normalised by its own, which is less accurate than a speaker's statistics.

A checkpoint (``.pth``) runs with PyTorch; an ``.onnx`` file made by ``emovision export``
runs with ONNX Runtime alone, without importing torch. This module imports neither at
module level, so ``from emovision import Recognizer`` stays light.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np

from emovision.data.audio import (
    audio_info,
    load_audio,
    prepare_audio,
    read_span,
    stream_audio,
)
from emovision.data.features import (
    FeatureConfig,
    bin_frequencies,
    compute_features,
    feature_key,
    segment,
    segment_starts,
    segment_times,
    speaker_normalise,
    speech_span,
)
from emovision.data.speaker_norm import SpeakerNormaliser
from emovision.data.vad import SAMPLE_RATE as VAD_RATE
from emovision.data.vad import SpeechDetector, VadOptions
from emovision.errors import AudioError, CheckpointError, EmovisionError, TooLongError
from emovision.inference.backends import Member, OnnxBackend, TorchBackend
from emovision.inference.enrolment import Enrolment
from emovision.inference.fusion_model import LinearFusion
from emovision.inference.loading import recognizer_arguments
from emovision.inference.results import UNCERTAIN, Embedding, Failure, Prediction, Turn, TurnPrediction
from emovision.inference.sources import BUFFER_REPR, STREAMED_SUFFIXES, Source, Speech, check_duration
from emovision.training.calibration import apply_temperature
from emovision.training.metrics import utterance_scores

CALIBRATION_MODES = ("auto", "on", "off")
TURN_NORMALISATIONS = ("causal", "recording", "turn")
FUSION_MODES = ("auto", "on", "off")


@dataclass
class _Prepared:
    source: str
    segments: np.ndarray
    duration: float
    features: np.ndarray | None
    frames: int | None = None
    functionals: np.ndarray | None = None
    extra: list[np.ndarray] = field(default_factory=list)
    raw: list[np.ndarray] = field(default_factory=list)
    offset: float = 0.0  # seconds of leading silence cut before the features (FeatureConfig.trim_db)


class Recognizer:
    """A trained model ready to predict emotions from audio (see the module docstring).

    Load with :meth:`load`; ``backend`` is ``"torch"`` or ``"onnx"``; one model call
    scores at most ``batch_size`` segments; ``fusion`` is the late fusion with openSMILE
    functionals applied to utterance scores, or None; ``extra`` the further members of an
    ensemble of cvs (whose utterance log-probabilities are averaged with this model's).
    """

    def __init__(
        self,
        backend: TorchBackend | OnnxBackend,
        classes: list[str],
        config: FeatureConfig | None,
        aggregate: str,
        model: dict,
        batch_size: int = 64,
        temperature: float | None = None,
        fusion: LinearFusion | None = None,
        extra: list[Member] | None = None,
        normalisers: list[SpeakerNormaliser | None] | None = None,
    ) -> None:
        if aggregate not in ("logprob", "prob"):
            raise CheckpointError(f"unknown aggregation rule {aggregate!r} in the model")
        self._backend = backend
        self.classes = list(classes)
        self.config = config
        self.aggregate = aggregate
        self.model = dict(model)
        self.batch_size = batch_size
        self.temperature = temperature
        self.fusion = fusion
        self._extra = list(extra or [])
        self._normalisers = list(normalisers or [None] * (1 + len(self._extra)))
        self._speaker = Enrolment.empty(1 + len(self._extra))
        self._functionals = None
        if fusion is not None:
            from emovision.data.functionals import Functionals

            self._functionals = Functionals(fusion.feature_set)
            if len(self._functionals.names) != fusion.dimensions:
                raise CheckpointError(
                    f"the fused model has {fusion.dimensions} {fusion.feature_set} functionals, the "
                    f"installed openSMILE computes {len(self._functionals.names)}: refit it with emovision fuse"
                )
            self.model["name"] = (
                f"{self.model['name']} + linear model on {fusion.feature_set} functionals "
                f"(image weight {fusion.weight:g})"
            )

    @property
    def backend(self) -> str:
        return self._backend.name

    @property
    def device(self) -> str:
        return self._backend.device

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: str = "cpu",
        threads: int | None = None,
        batch_size: int = 64,
        calibration: str = "auto",
        fusion: str = "off",
    ) -> Recognizer:
        """The model at ``path``: an ONNX file (``.onnx``), an emovision checkpoint, a finished
        ``emovision cv`` folder (the ensemble of its fold models: mean of log-probabilities), or
        an ``emovision ensemble`` folder (the ensemble of its member cvs, each on its own features).

        ``device``: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``. ``threads``: CPU threads for
        the model (for PyTorch a process-wide setting); default: the library's choice.
        ``calibration``: ``auto`` applies the model's temperature (:mod:`emovision.training.calibration`)
        to utterance and turn probabilities when it has one, ``on`` requires one, ``off`` gives
        the raw probabilities. Decisions are the same either way. ``fusion``: ``off`` (the
        default) gives the image models' scores alone, ``on`` requires the folder's
        ``fusion-model.npz`` and uses it (its temperature replaces the image models'), ``auto`` uses
        it when there is one. Off by default: the fusion needs openSMILE (the ``opensmile`` extra) and
        computes functionals at every prediction, and one fitted on clean recordings alone (``fuse``
        without ``--augment``) degrades in noise; see BENCHMARKS.md for both kinds.
        """
        if batch_size < 1:
            raise EmovisionError("the batch size must be at least 1")
        if calibration not in CALIBRATION_MODES:
            raise EmovisionError(f"--calibration must be one of {', '.join(CALIBRATION_MODES)}")
        if fusion not in FUSION_MODES:
            raise EmovisionError(f"--fusion must be one of {', '.join(FUSION_MODES)}")
        return cls(
            **recognizer_arguments(Path(path), device, threads, calibration, fusion), batch_size=batch_size
        )

    # ----- single recordings ----------------------------------------------------------------
    def predict(
        self,
        source: Source,
        sample_rate: int | None = None,
        *,
        key: str | None = None,
        name: str | None = None,
        keep_features: bool = False,
        max_seconds: float | None = None,
        enrol: bool = False,
    ) -> Prediction:
        """The emotion of one recording: a file path, the bytes of a file, or samples.

        Samples ``(n,)`` or ``(n, channels)`` need their ``sample_rate`` (Hz). ``key`` seeds
        ``lognrevspec`` (default: the file stem, or ``""``); ``name`` is the reported source.
        ``max_seconds`` refuses longer recordings (read from the file header before decoding).
        A speaker-normalised model uses what it knows of the speaker (:meth:`adapt`; nothing: the
        cold mode) and says how much that is (``Prediction.speaker``); with ``enrol`` the recording
        is then added to it, so the next one is scored with it (the enrolled mode, as measured:
        a recording is never normalised by statistics that include itself, except in the cold mode).
        Raises :class:`AudioError` for unusable audio.
        """
        if enrol:
            self._require_adaptable()
        view = self._snapshot()
        prepared = view._prepare(
            source,
            sample_rate=sample_rate,
            key=key,
            name=name,
            keep_features=keep_features,
            max_seconds=max_seconds,
        )
        extra = view._extra_scores([[segments] for segments in prepared.extra])
        log_probs = view._backend.log_probs(prepared.segments, self.batch_size)
        prediction = view._prediction(prepared, log_probs, extra)
        if enrol:
            with self._speaker.lock:
                self._speaker.add(prepared.raw, prepared.functionals, prepared.duration)
        return prediction

    def explain(
        self,
        source: Source,
        sample_rate: int | None = None,
        *,
        name: str | None = None,
        max_seconds: float | None = None,
        target: str | None = None,
        enrol: bool = False,
    ):
        """Where in the spectrogram the decision on one recording came from: an
        :class:`emovision.inference.explain.Explanation` (the attention map of a model with the attention
        head, Grad-CAM otherwise; see :mod:`emovision.inference.explain`) for the predicted class, or for
        ``target``. The prediction is the one :meth:`predict` gives (fusion included; ``enrol`` as
        there), the map is the image model's. Refused for ONNX files (no gradients or attention
        weights in the graph) and ensembles of cvs (each member has features of its own)."""
        import torch

        from emovision.inference.explain import Explanation, method_of, recording_map, segment_saliency

        self.require_explainable()
        if enrol:
            self._require_adaptable()
        if target is not None and target not in self.classes:
            raise EmovisionError(f"the class {target!r} is not one of {', '.join(self.classes)}")
        view = self._snapshot()
        prepared = view._prepare(
            source, sample_rate=sample_rate, name=name, keep_features=True, max_seconds=max_seconds
        )
        log_probs = view._backend.log_probs(prepared.segments, self.batch_size)
        prediction = view._prediction(prepared, log_probs)
        explained = target or prediction.label
        maps = segment_saliency(
            self._backend.model, torch.from_numpy(prepared.segments), self.classes.index(explained)
        )
        if enrol:
            with self._speaker.lock:
                self._speaker.add(prepared.raw, prepared.functionals, prepared.duration)
        config = self._require_config()
        starts = segment_starts(prepared.frames, config)[: maps.shape[0]]
        return Explanation(
            prediction,
            method_of(self._backend.model),
            explained,
            recording_map(maps, starts, prepared.frames),
            prepared.features[0],
            prepared.offset + np.arange(prepared.frames, dtype=np.float32) * config.hop_ms / 1000,
            bin_frequencies(config),
        )

    def require_explainable(self) -> None:
        """Raise :class:`EmovisionError` saying why when this model cannot be explained."""
        self._single("explanations")
        if self.backend != "torch":
            raise EmovisionError(
                "an ONNX model cannot be explained (its graph has neither gradients nor attention "
                "weights): explain with the checkpoint or cv folder it was exported from"
            )

    def _snapshot(self) -> Recognizer:
        """This model with a copy of what it knows of the speaker, taken under the enrolment's lock:
        another thread adding to the same enrolment (the server's speaker keys) cannot change it halfway."""
        with self._speaker.lock:
            return self.with_speaker(self._speaker.copy())

    def predict_turns(
        self,
        source: Source,
        sample_rate: int | None = None,
        *,
        vad: str = "auto",
        vad_options: VadOptions | None = None,
        min_confidence: float = 0.0,
        key: str | None = None,
        name: str | None = None,
        max_seconds: float | None = None,
        progress: Callable[[float, float], None] | None = None,
        normalise: str = "causal",
    ) -> TurnPrediction:
        """The emotion of every speech turn of a recording (a file path, its bytes, or samples).

        ``vad``: the speech detector (``auto``, ``silero``, ``energy``; see :mod:`emovision.data.vad`)
        with ``vad_options``. Each turn's audio is turned into the trained feature and segments
        (a turn shorter than one segment is padded with silence, as short training utterances
        were) and its segments' scores combined by the model's rule. A turn whose top probability
        is below ``min_confidence`` (0…1) is ``"uncertain"``. Raises :class:`AudioError` for
        unusable audio or a recording without speech.

        A file is read in blocks: the detector sees it block by block and each turn is decoded
        again on its own when scored, so memory does not grow with the recording's length
        (``progress(seconds done, seconds in all)`` is called as the detector goes).

        A speaker-normalised model normalises each turn by what it knows of the speaker (:meth:`adapt`)
        plus, with ``normalise="causal"`` (the default, usable live), the turns of this recording
        before it (the first turn: by itself, unless adapted), or with ``"recording"`` all of the
        recording's turns (each turn is then featurised twice), or with ``"turn"`` nothing more.
        """
        if not 0.0 <= min_confidence <= 1.0:
            raise EmovisionError(f"--min-confidence must be between 0 and 1, got {min_confidence:g}")
        if normalise not in TURN_NORMALISATIONS:
            raise EmovisionError(
                f"--normalise must be one of {', '.join(TURN_NORMALISATIONS)}, got {normalise!r}"
            )
        found = self._speech(source, sample_rate, key, name, max_seconds, vad, vad_options, progress)
        view = self._snapshot()
        found.normalise = view._normalise
        if self.speaker_normalised and normalise == "recording":
            for raw, values, seconds in found.raw_turns():
                view._speaker.add(raw, values if values is None else values[None], seconds)
        elif self.speaker_normalised and normalise == "causal":
            found.learn = view._speaker.add
        turns = []
        for spans, pieces, values, extra in found.batches(self.batch_size):
            log_probs = self._backend.log_probs(np.concatenate(pieces), self.batch_size)
            counts = np.array([piece.shape[0] for piece in pieces])
            scores = np.exp(view._utterance(log_probs, counts, values, self._extra_scores(extra)))
            for (start, end), row in zip(spans, scores, strict=True):
                probabilities = {c: float(p) for c, p in zip(self.classes, row, strict=True)}
                emotion = self.classes[int(row.argmax())] if row.max() >= min_confidence else UNCERTAIN
                turns.append(Turn(float(start), float(end), probabilities, emotion))
        return TurnPrediction(found.label, self.classes, found.duration, turns)

    def embed(
        self,
        source: Source,
        sample_rate: int | None = None,
        *,
        turns: bool = False,
        vad: str = "auto",
        vad_options: VadOptions | None = None,
        key: str | None = None,
        name: str | None = None,
    ) -> Embedding:
        """The model's representation of a recording (or, with ``turns``, of each speech turn):
        the vector its classifier receives, averaged over the segments (see
        :meth:`emovision.training.models.SERModel.embed`). For training other classifiers, clustering or
        plotting. Needs a PyTorch model (checkpoint or cv folder), not an ONNX file.
        """
        if not isinstance(self._backend, TorchBackend):
            raise EmovisionError(
                "embeddings need the PyTorch model (checkpoint or cv folder): an ONNX file holds only the class scores"
            )
        self._single("embeddings")
        config = self._require_config()
        if turns:
            found = self._speech(source, sample_rate, key, name, None, vad, vad_options, None)
            found.functionals = None  # embeddings need no functionals
            label, batches = found.label, list(found.batches(self.batch_size))
        else:
            label, samples, key = self._load(source, sample_rate, key, name, None)
            whole = np.array([[0.0, samples.size / config.sample_rate]])
            batches = [(whole, [self._normalise(segment(compute_features(samples, config, key), config), 0)])]
        spans, means = [], []
        for batch_spans, pieces, *_ in batches:
            vectors = self._backend.embeddings(np.concatenate(pieces), self.batch_size)
            bounds = np.cumsum([0] + [piece.shape[0] for piece in pieces])
            means += [vectors[a:b].mean(axis=0) for a, b in pairwise(bounds)]
            spans.append(batch_spans)
        return Embedding(label, np.stack(means).astype(np.float32), np.concatenate(spans))

    def _utterance(
        self,
        log_probs: np.ndarray,
        counts: np.ndarray,
        values: np.ndarray | None,
        extra: list[np.ndarray] | None = None,
    ) -> np.ndarray:
        """Utterance log-probabilities ``(U, K)`` of segment log-probabilities ``(N, K)``, ``counts``
        segments per utterance, averaged with the further ensemble members' utterance scores
        ``extra`` (each ``(U, K)``), fused with the functionals ``values`` ``(U, D)`` of a fused
        model, with the temperature applied (when it is used)."""
        scores = utterance_scores(log_probs, counts, self.aggregate)
        if extra:
            scores = np.mean([scores, *extra], axis=0)
            scores = scores - np.logaddexp.reduce(scores, axis=1, keepdims=True)
        if self.fusion is not None:
            if values is None:
                raise EmovisionError(
                    "this model fuses openSMILE functionals of the audio: precomputed segments "
                    "cannot be scored by it (load it with fusion='off' for the image models alone)"
                )
            scores = self.fusion.fuse(scores, self._normalise_functionals(values))
        return scores if self.temperature is None else apply_temperature(scores, self.temperature)

    def _extra_scores(self, pieces: list[list[np.ndarray]]) -> list[np.ndarray]:
        """Utterance log-probabilities ``(U, K)`` of each further ensemble member, from its segments
        ``pieces[member][utterance]`` ``(n, C, F, T)``."""
        scores = []
        for member, segments in zip(self._extra, pieces, strict=True):
            log_probs = member.backend.log_probs(np.concatenate(segments), self.batch_size)
            counts = np.array([piece.shape[0] for piece in segments])
            scores.append(utterance_scores(log_probs, counts, member.aggregate))
        return scores

    def _single(self, what: str) -> None:
        """Refuse ``what`` for an ensemble of cvs (its members compute features of their own)."""
        if self._extra:
            raise EmovisionError(
                f"{what}: this is an ensemble of cvs whose members compute their own features; "
                "use one of its cv folders"
            )

    def _speech(
        self,
        source: Source,
        sample_rate: int | None,
        key: str | None,
        name: str | None,
        max_seconds: float | None,
        vad: str,
        options: VadOptions | None,
        progress: Callable[[float, float], None] | None,
    ) -> Speech:
        """The speech turns of a recording, and a way to get each turn's segments: a file is
        streamed (see :meth:`predict_turns`), bytes and samples are held in memory."""
        config = self._require_config()
        detector = SpeechDetector(vad, options)
        if isinstance(source, (str, Path)) and Path(source).suffix.lower() in STREAMED_SUFFIXES:
            label = name or str(source)
            frames, rate = audio_info(source)
            duration = frames / rate if rate else 0.0
            if max_seconds is not None and duration > max_seconds:
                raise TooLongError(label, duration, max_seconds)
            for block in stream_audio(source, VAD_RATE):
                detector.feed(block)
                if progress is not None:
                    progress(detector.samples / VAD_RATE, duration)
            key = feature_key(source) if key is None else key
            path = source

            def read(start: float, end: float) -> np.ndarray:
                return read_span(path, start, end, config.sample_rate)

        else:
            label, samples, key = self._load(source, sample_rate, key, name, max_seconds)
            rate = config.sample_rate
            detector.feed(
                samples if rate == VAD_RATE else prepare_audio(samples, rate, VAD_RATE, source=label)
            )
            duration = samples.size / rate

            def read(start: float, end: float) -> np.ndarray:
                return samples[int(start * rate) : int(end * rate)]

        spans = detector.turns()
        if spans.shape[0] == 0:
            raise AudioError(label, "no speech found (every part is below the speech detector's threshold)")
        extra = tuple(member.config for member in self._extra)
        return Speech(label, duration, spans, read, config, key, self._functionals, extra, self._normalise)

    def predict_segments(self, segments: np.ndarray, name: str = "<segments>") -> Prediction:
        """The emotion of precomputed segments ``(N, C, F, T)`` (e.g. a features file's)."""
        self._single("scoring precomputed segments")
        segments = np.ascontiguousarray(segments, dtype=np.float32)
        expected = (self.model["channels"], self.model["height"])
        if segments.ndim != 4 or segments.shape[1:3] != expected or segments.shape[0] == 0:
            raise EmovisionError(
                f"expected segments (N, {expected[0]}, {expected[1]}, T) with N ≥ 1, got {segments.shape}"
            )
        prepared = _Prepared(name, segments, duration=float("nan"), features=None)
        return self._prediction(prepared, self._backend.log_probs(segments, self.batch_size))

    def log_probs(self, segments: np.ndarray) -> np.ndarray:
        """Segment log-probabilities ``(N, K)`` of segments ``(N, C, F, T)`` in dB, ``batch_size`` at a time."""
        self._single("scoring precomputed segments")
        return self._backend.log_probs(np.ascontiguousarray(segments, dtype=np.float32), self.batch_size)

    def features(self, samples: np.ndarray, key: str = "") -> np.ndarray:
        """The trained feature ``(C, F, T)`` in dB of mono samples at ``config.sample_rate``."""
        self._single("features")
        return compute_features(samples, self._require_config(), key)

    # ----- speaker normalisation ----------------------------------------------------------------
    @property
    def speaker_normalised(self) -> bool:
        """Whether what is known of the speaker changes the scores: the model (or a member of the
        ensemble) was trained on speaker-normalised features, or the fusion centres functionals."""
        return (
            self.fusion_speaker_normalised
            or (self.fusion is not None and self.fusion.centre is not None)
            or any(normaliser is not None for normaliser in self._normalisers)
            or (self.config is not None and any(config.speaker_norm for config in self._configs()))
        )

    @property
    def fusion_speaker_normalised(self) -> bool:
        """Whether the fusion's linear model takes speaker-normalised functionals (it then needs
        :meth:`adapt`: one recording has no spread of its own)."""
        return self.fusion is not None and bool(self.fusion.info.get("speaker_norm"))

    @property
    def adapted(self) -> bool:
        """Whether :meth:`adapt` has given the model a speaker's statistics."""
        return self._speaker.recordings > 0

    @property
    def normaliser(self) -> SpeakerNormaliser | None:
        """The speaker normalisation of a model trained with ``--speaker-norm`` (None otherwise)."""
        return self._normalisers[0]

    @property
    def speaker(self) -> Enrolment:
        """What the model knows of the speaker whose recordings it scores (empty: the cold mode)."""
        return self._speaker

    def with_speaker(self, enrolment: Enrolment) -> Recognizer:
        """This model (sharing its weights) scoring with ``enrolment``: one speaker of many."""
        view = copy.copy(self)
        view._speaker = enrolment
        return view

    def new_enrolment(self) -> Enrolment:
        """An empty enrolment for this model's members (see :meth:`with_speaker`)."""
        return Enrolment.empty(1 + len(self._extra))

    def reset(self) -> None:
        """Forget the speaker: later recordings are scored cold until :meth:`adapt` is called again."""
        self._speaker = self.new_enrolment()

    def adapt(self, sources: Iterable[Source]) -> int:
        """Add ``sources`` (recordings of the one speaker whose recordings are predicted next: paths,
        bytes; no labels) to what the model knows of the speaker: every later segment is normalised by
        the statistics of all recordings added so far. Unusable recordings are left out; returns the
        number used. Raises :class:`EmovisionError` for a model without speaker normalisation or
        when no recording is usable."""
        self._require_adaptable()
        used = 0
        for source in sources:
            try:
                prepared = self._prepare(source, normalise=False)
            except AudioError:
                continue
            with self._speaker.lock:
                self._speaker.add(prepared.raw, prepared.functionals, prepared.duration)
            used += 1
        if not used:
            raise EmovisionError("speaker statistics: none of the recordings given could be used")
        return used

    def _require_adaptable(self) -> None:
        if not self.speaker_normalised:
            raise EmovisionError(
                "this model was not trained with speaker normalisation (train --speaker-norm, extract "
                "--speaker-norm): it needs no speaker statistics"
            )

    def _normalise_functionals(self, values: np.ndarray) -> np.ndarray:
        """Functionals ``(U, D)`` as the fusion's linear model was trained on them: centred by what is
        known of the speaker (a centred fusion; cold: each recording by itself), speaker-normalised, or
        as they are."""
        known = self._speaker.functionals
        centre = self.fusion.centre if self.fusion is not None else None
        if centre is not None:
            if known is None:
                return centre.cold(values)
            return centre.centre(values, known.mean.astype(np.float64) * known.count, known.count)
        if not self.fusion_speaker_normalised:
            return values
        if known is None or known.count < 2:
            raise EmovisionError(
                "this fusion's linear model takes speaker-normalised functionals, which one recording "
                "normalises to zero: adapt it to at least two recordings of the speaker first "
                "(predict --same-speaker, Recognizer.adapt) or use --fusion off"
            )
        return speaker_normalise(values, known).astype(np.float64)

    def _configs(self) -> list[FeatureConfig]:
        return [self._require_config(), *(member.config for member in self._extra)]

    def _normalise(self, segments: np.ndarray, member: int) -> np.ndarray:
        """``segments`` of ensemble member ``member`` (0: this model) as the model was trained on them:
        by the enrolled speaker's statistics, else (cold) by the recording's own; unchanged for a
        model without speaker normalisation."""
        normaliser = self._normalisers[member]
        if normaliser is not None:
            known = self._speaker.moments[member]
            return normaliser.apply(segments, known) if known.recordings else normaliser.cold(segments)
        if not self._configs()[member].speaker_norm:
            return segments
        return speaker_normalise(segments, self._speaker.statistics[member])

    # ----- many files ---------------------------------------------------------------------------
    def iter_predict(
        self, sources: Iterable[str | Path], workers: int | None = None
    ) -> Iterator[Prediction | Failure]:
        """Predictions of many files in order; unusable ones come as :class:`Failure`.

        Files are decoded and featurised in ``workers`` threads while the model scores the
        previous batch of files; one model call takes up to :attr:`batch_size` segments.
        """
        config = self._require_config()
        workers = workers or min(4, os.cpu_count() or 1)
        files_per_batch = max(1, self.batch_size // _segments_per_file(config))
        with ThreadPoolExecutor(workers) as pool:
            waiting: list[tuple[str, Future]] = []
            for item in sources:
                waiting.append((str(item), pool.submit(self._prepare, item)))
                if len(waiting) >= 2 * files_per_batch:
                    yield from self._finish(waiting[:files_per_batch])
                    waiting = waiting[files_per_batch:]
            while waiting:
                yield from self._finish(waiting[:files_per_batch])
                waiting = waiting[files_per_batch:]

    def predict_many(self, sources: Iterable[str | Path]) -> list[Prediction]:
        """Predictions of many files; raises :class:`AudioError` for the first unusable one."""
        results = []
        for result in self.iter_predict(sources):
            if isinstance(result, Failure):
                raise AudioError(result.source, result.reason)
            results.append(result)
        return results

    # ----- internals -------------------------------------------------------------------------
    def _require_config(self) -> FeatureConfig:
        if self.config is None:
            raise CheckpointError(
                "this model was trained on a legacy pickle features file: its feature configuration "
                "is unknown, so it cannot compute features from audio. Retrain it on a features "
                "file made by emovision extract"
            )
        return self.config

    def _prepare(
        self,
        source: Source,
        *,
        sample_rate: int | None = None,
        key: str | None = None,
        name: str | None = None,
        keep_features: bool = False,
        max_seconds: float | None = None,
        normalise: bool = True,
    ) -> _Prepared:
        """One recording's segments (speaker-normalised as the model needs, unless ``normalise`` is off)."""
        config = self._require_config()
        label, samples, key = self._load(source, sample_rate, key, name, max_seconds)
        duration = samples.size / config.sample_rate
        feature = compute_features(samples, config, key)
        kept = feature if keep_features else None
        values = None if self._functionals is None else self._functionals(samples, config.sample_rate)[None]
        raw = [segment(feature, config)]
        raw += [segment(compute_features(samples, m.config, key), m.config) for m in self._extra]
        segments = [self._normalise(part, member) for member, part in enumerate(raw)] if normalise else raw
        offset = speech_span(samples, config)[0] / config.sample_rate
        return _Prepared(
            label, segments[0], duration, kept, feature.shape[-1], values, segments[1:], raw, offset
        )

    def _load(
        self,
        source: Source,
        sample_rate: int | None,
        key: str | None,
        name: str | None,
        max_seconds: float | None,
    ) -> tuple[str, np.ndarray, str]:
        """The reported name, the mono samples at the model's rate, and the feature key."""
        config = self._require_config()
        if isinstance(source, np.ndarray):
            label = name or "<samples>"
            if sample_rate is None:
                raise EmovisionError("predicting from samples needs their sample_rate (Hz)")
            samples = prepare_audio(
                source, sample_rate, config.sample_rate, min_samples=config.min_samples, source=label
            )
            key = key or ""
        else:
            label = name or ("<upload>" if isinstance(source, bytes) else str(source))
            if key is None:
                key = feature_key(source if not isinstance(source, bytes) else name or "")
            if max_seconds is not None:
                check_duration(source, label, max_seconds)
            try:
                samples = load_audio(source, config.sample_rate, min_samples=config.min_samples)
            except AudioError as exc:
                raise AudioError(label, BUFFER_REPR.sub("the data", exc.reason)) from None
        duration = samples.size / config.sample_rate
        if max_seconds is not None and duration > max_seconds:
            raise TooLongError(label, duration, max_seconds)
        return label, samples, key

    def _finish(self, waiting: list[tuple[str, Future]]) -> Iterator[Prediction | Failure]:
        prepared: list[_Prepared | Failure] = []
        for source, future in waiting:
            try:
                prepared.append(future.result())
            except AudioError as exc:
                prepared.append(Failure(source, exc.reason))
            except (EmovisionError, MemoryError, ValueError) as exc:
                prepared.append(Failure(source, f"feature extraction failed ({exc})"))
        usable = [item for item in prepared if isinstance(item, _Prepared)]
        if usable:
            segments = np.concatenate([item.segments for item in usable])
            log_probs = self._backend.log_probs(segments, self.batch_size)
            bounds = np.cumsum([0] + [item.segments.shape[0] for item in usable])
            extra = self._extra_scores([[item.extra[m] for item in usable] for m in range(len(self._extra))])
            scored = iter(
                self._prediction(item, log_probs[bounds[i] : bounds[i + 1]], [e[i : i + 1] for e in extra])
                for i, item in enumerate(usable)
            )
        for item in prepared:
            yield item if isinstance(item, Failure) else next(scored)

    def _prediction(
        self, prepared: _Prepared, log_probs: np.ndarray, extra: list[np.ndarray] | None = None
    ) -> Prediction:
        utterance = self._utterance(log_probs, np.array([log_probs.shape[0]]), prepared.functionals, extra)
        probabilities = np.exp(utterance[0])
        if self.config is None:
            times = np.full((log_probs.shape[0], 2), np.nan)
        else:
            times = segment_times(log_probs.shape[0], self.config, prepared.frames) + prepared.offset
        duration = None if np.isnan(prepared.duration) else prepared.duration
        if duration is not None:
            times[:, 1] = np.minimum(times[:, 1], duration)
        return Prediction(
            source=prepared.source,
            classes=self.classes,
            probabilities={name: float(p) for name, p in zip(self.classes, probabilities, strict=True)},
            segment_probabilities=np.exp(log_probs).astype(np.float32),
            times=times,
            duration=duration,
            features=prepared.features,
            speaker=self._speaker_note(),
        )

    def _speaker_note(self) -> dict | None:
        """How a prediction was speaker-normalised (None for a model without speaker normalisation)."""
        if not self.speaker_normalised:
            return None
        known = self._speaker.describe()
        return {"mode": "enrolled" if known["recordings"] else "cold", **known}


def _segments_per_file(config: FeatureConfig) -> int:
    """Segments of a typical 3-second file: sizes the batches of :meth:`Recognizer.iter_predict`."""
    frames = 3000 / config.hop_ms
    return max(1, 1 + int(max(0.0, frames - config.segment_frames) // config.frame_hop))
