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
model on the recording's openSMILE functionals, which needs the ``opensmile`` extra (off by default:
openSMILE runs at every prediction, and a fusion fitted on clean recordings alone, ``fuse`` without
``--augment``, degrades in noise);
``segment_probabilities`` stay the image models' (functionals describe a whole recording).

An ``emovision ensemble`` folder is the ensemble of its member cvs' fold ensembles: each member
computes its own features (segment lengths may differ) and the utterance log-probabilities of the
members are averaged, as the ensemble was scored; ``segment_probabilities`` and ``times`` are the
first member's.

A model trained on speaker-normalised features (``extract --speaker-norm``) needs the statistics
of the speaker it listens to: after :meth:`Recognizer.adapt` (several recordings of one speaker,
no labels) every segment is normalised by them; until then each recording (each turn with
``predict_turns``) is normalised by its own, which is less accurate than a speaker's statistics.

The Recognizer is a front: reading and featurising audio is :mod:`emovision.inference.model_input`'s,
the speaker normalisation :mod:`emovision.inference.normalisation`'s, scoring (ensemble, fusion,
calibration) :mod:`emovision.inference.scoring`'s, batches of files :mod:`emovision.inference.batching`'s,
what it knows of a speaker an :class:`~emovision.inference.enrolment.Enrolment`, and loading
:mod:`emovision.inference.loading`'s.

A checkpoint (``.pth``) runs with PyTorch; an ``.onnx`` file made by ``emovision export``
runs with ONNX Runtime alone, without importing torch. This module imports neither at
module level, so ``from emovision import Recognizer`` stays light.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from emovision.data.features import FeatureConfig, compute_features
from emovision.data.speaker_norm import SpeakerNormaliser
from emovision.data.vad import SpeechDetector, VadOptions
from emovision.errors import AudioError, EmovisionError
from emovision.inference.backends import Member, OnnxBackend, TorchBackend
from emovision.inference.batching import iter_batched, segments_per_file
from emovision.inference.embeddings import mean_embeddings
from emovision.inference.fusion_model import LinearFusion
from emovision.inference.loading import recognizer_arguments
from emovision.inference.model_input import AudioRequest, ModelInput, Prepared
from emovision.inference.normalisation import SpeakerNormalisation
from emovision.inference.results import Embedding, Failure, Prediction, TurnPrediction
from emovision.inference.scoring import Scorer, check_aggregate
from emovision.inference.sources import Source
from emovision.inference.speaker import SpeakerAdaptation

CALIBRATION_MODES = ("auto", "on", "off")
TURN_NORMALISATIONS = ("causal", "recording", "turn")
FUSION_MODES = ("auto", "on", "off")


class Recognizer(SpeakerAdaptation):
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
        extra = list(extra or [])
        configs = [] if config is None else [config, *(member.config for member in extra)]
        norm = SpeakerNormalisation(configs, list(normalisers or [None] * (1 + len(extra))), fusion)
        super().__init__(ModelInput(config, [member.config for member in extra]), norm, 1 + len(extra))
        self._backend, self._extra = backend, extra
        self.classes, self.config, self.aggregate, self.model = list(classes), config, aggregate, dict(model)
        self.batch_size, self.temperature, self.fusion = batch_size, temperature, fusion
        check_aggregate(aggregate)
        if fusion is not None:
            self._input.functionals = fusion.extractor()
            self.model["name"] = fusion.fused_name(self.model["name"])

    @property
    def _scorer(self) -> Scorer:
        """The scoring with the model's current ``aggregate``, ``temperature`` and ``batch_size``."""
        settings = (self.aggregate, self._norm, self.config, self.temperature, self._extra, self.batch_size)
        return Scorer(self._backend, self.classes, *settings)

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
        when it has one, ``on`` requires one, ``off`` gives the raw probabilities (same decisions).
        ``fusion``: ``off`` the image models alone, ``on`` requires the folder's ``fusion-model.npz``
        (its temperature replaces the image models'), ``auto`` uses it when there is one (see the
        module docstring)."""
        _check_load_options(batch_size, calibration, fusion)
        return cls(
            **recognizer_arguments(Path(path), device, threads, calibration, fusion), batch_size=batch_size
        )

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
        """The emotion of one recording: a file path, the bytes of a file, or samples (see
        :class:`~emovision.inference.model_input.AudioRequest` for ``sample_rate``, ``key``, ``name``,
        ``max_seconds``). A speaker-normalised model uses what it knows of the speaker (:meth:`adapt`;
        nothing: the cold mode) and says how much that is (``Prediction.speaker``); with ``enrol`` the
        recording is then added to it (the enrolled mode: a recording is never normalised by statistics
        that include itself, except cold). Raises :class:`AudioError` for unusable audio."""
        return self._scored(AudioRequest(source, sample_rate, key, name, max_seconds), keep_features, enrol)[
            0
        ]

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
        :class:`emovision.inference.explain.Explanation` (attention map or Grad-CAM) for the predicted
        class, or for ``target``; the prediction is :meth:`predict`'s, the map the image model's.
        Refused for ONNX files and ensembles of cvs (:meth:`require_explainable`)."""
        from emovision.inference.explain import explain_prepared

        self.require_explainable()
        if target is not None and target not in self.classes:
            raise EmovisionError(f"the class {target!r} is not one of {', '.join(self.classes)}")
        request = AudioRequest(source, sample_rate, None, name, max_seconds)
        prediction, prepared = self._scored(request, True, enrol)
        model = self._backend.model
        return explain_prepared(model, prepared, prediction, self._input.config, self.classes, target)

    def require_explainable(self) -> None:
        """Raise :class:`EmovisionError` saying why when this model cannot be explained."""
        self._single("explanations")
        if self.backend != "torch":
            raise EmovisionError(
                "an ONNX model cannot be explained (its graph has neither gradients nor attention "
                "weights): explain with the checkpoint or cv folder it was exported from"
            )

    def _scored(self, request: AudioRequest, keep_features: bool, enrol: bool) -> tuple[Prediction, Prepared]:
        """One recording's prediction and its prepared segments, scored on a snapshot of what is known
        of the speaker (:meth:`_snapshot`); with ``enrol`` the recording is then added to the enrolment."""
        if enrol:
            self._norm.require_adaptable()
        view = self._snapshot()
        prepared = self._input.prepare(request, keep_features).normalised(view._normalise)
        if enrol:
            self._enrol(prepared)
        return view._scorer.predictions([prepared], view._speaker)[0], prepared

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

        ``vad``: the speech detector (``auto``, ``silero``, ``energy``; :mod:`emovision.data.vad`) with
        ``vad_options``. Each turn becomes the trained feature and segments (a turn shorter than one
        segment padded with silence, as short training utterances were), scored by the model's rule;
        one whose top probability is below ``min_confidence`` (0…1) is ``"uncertain"``. A file is read
        in blocks (``progress(seconds done, seconds in all)``), so memory does not grow with its length.
        :class:`AudioError` for unusable audio or a recording without speech. A speaker-normalised model
        normalises each turn by what it knows of the speaker (:meth:`adapt`) plus, with ``normalise=
        "causal"`` (the default, usable live), the recording's earlier turns, with ``"recording"`` all
        of its turns (each featurised twice), with ``"turn"`` nothing more."""
        _check_turn_options(min_confidence, normalise)
        request = AudioRequest(source, sample_rate, key, name, max_seconds)
        found = self._input.speech(request, SpeechDetector(vad, vad_options), self._normalise, progress)
        view = self._snapshot()
        found.follow_speaker(
            view._normalise, view._speaker.add, normalise if self.speaker_normalised else "turn"
        )
        turns = view._scorer.turns(found, view._speaker, min_confidence)
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
        """The vector the classifier receives (:meth:`emovision.training.models.SERModel.embed`), averaged
        over the segments of a recording or, with ``turns``, of each speech turn: for other classifiers,
        clustering or plotting. Needs a PyTorch model (checkpoint or cv folder), not an ONNX file."""
        if not isinstance(self._backend, TorchBackend):
            raise EmovisionError(
                "embeddings need the PyTorch model (checkpoint or cv folder): an ONNX file holds only the class scores"
            )
        self._single("embeddings")
        request = AudioRequest(source, sample_rate, key, name)
        if turns:
            found = self._input.speech(request, SpeechDetector(vad, vad_options), self._normalise)
            found.functionals = None  # embeddings need no functionals
            label, batches = found.label, found.batches(self.batch_size)
        else:
            label, batches = self._input.whole(request, self._normalise)
        return Embedding(label, *mean_embeddings(self._backend, batches, self.batch_size))

    def _single(self, what: str) -> None:
        """Refuse ``what`` for an ensemble of cvs (its members compute features of their own)."""
        if self._extra:
            raise EmovisionError(
                f"{what}: this is an ensemble of cvs whose members compute their own features; "
                "use one of its cv folders"
            )

    def predict_segments(self, segments: np.ndarray, name: str = "<segments>") -> Prediction:
        """The emotion of precomputed segments ``(N, C, F, T)`` (e.g. a features file's)."""
        self._single("scoring precomputed segments")
        segments = _segments_array(segments, (self.model["channels"], self.model["height"]))
        prepared = Prepared(name, segments, duration=float("nan"), features=None)
        return self._scorer.predictions([prepared], self._speaker)[0]

    def utterance_log_probs(self, segments: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Utterance log-probabilities ``(U, K)`` of precomputed segments ``(N, C, F, T)`` in dB, ``counts``
        per utterance (calibrated, not fused); an ensemble's members must share these features, unnormalised."""
        if self._extra and (any(m.config != self.config for m in self._extra) or self.speaker_normalised):
            self._single("scoring precomputed segments of members with other features or speaker statistics")
        return self._scorer.segment_utterances(segments, counts, self._speaker)

    def features(self, samples: np.ndarray, key: str = "") -> np.ndarray:
        """The trained feature ``(C, F, T)`` in dB of mono samples at ``config.sample_rate``."""
        self._single("features")
        return compute_features(samples, self._input.config, key)

    def iter_predict(
        self, sources: Iterable[str | Path], workers: int | None = None
    ) -> Iterator[Prediction | Failure]:
        """Predictions of many files in order; unusable ones come as :class:`Failure`. Files are decoded
        and featurised in ``workers`` threads while the model scores the previous batch of files."""
        return iter_batched(
            sources,
            lambda source: self._input.prepare(AudioRequest(source)).normalised(self._normalise),
            lambda batch: self._scorer.predictions(batch, self._speaker),
            max(1, self.batch_size // segments_per_file(self._input.config)),
            workers,
        )

    def predict_many(self, sources: Iterable[str | Path]) -> list[Prediction]:
        """Predictions of many files; raises :class:`AudioError` for the first unusable one."""
        results = []
        for result in self.iter_predict(sources):
            if isinstance(result, Failure):
                raise AudioError(result.source, result.reason)
            results.append(result)
        return results


def _check_load_options(batch_size: int, calibration: str, fusion: str) -> None:
    if batch_size < 1:
        raise EmovisionError("the batch size must be at least 1")
    if calibration not in CALIBRATION_MODES:
        raise EmovisionError(f"--calibration must be one of {', '.join(CALIBRATION_MODES)}")
    if fusion not in FUSION_MODES:
        raise EmovisionError(f"--fusion must be one of {', '.join(FUSION_MODES)}")


def _check_turn_options(min_confidence: float, normalise: str) -> None:
    if not 0.0 <= min_confidence <= 1.0:
        raise EmovisionError(f"--min-confidence must be between 0 and 1, got {min_confidence:g}")
    if normalise not in TURN_NORMALISATIONS:
        raise EmovisionError(
            f"--normalise must be one of {', '.join(TURN_NORMALISATIONS)}, got {normalise!r}"
        )


def _segments_array(segments: np.ndarray, expected: tuple[int, int]) -> np.ndarray:
    """Precomputed segments as float32 ``(N, C, F, T)``, refused unless ``(C, F)`` is ``expected``."""
    segments = np.ascontiguousarray(segments, dtype=np.float32)
    if segments.ndim != 4 or segments.shape[1:3] != expected or segments.shape[0] == 0:
        raise EmovisionError(
            f"expected segments (N, {expected[0]}, {expected[1]}, T) with N ≥ 1, got {segments.shape}"
        )
    return segments
