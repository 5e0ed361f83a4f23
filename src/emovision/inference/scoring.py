"""From segments to predictions: the model's segment scores, the ensemble of cvs, the late fusion with
the functionals and the temperature, as the runs were scored.

Segment log-probabilities ``(N, K)`` are combined per utterance by the model's ``aggregate`` rule,
averaged with the further ensemble members' utterance scores, fused with the linear model on the
recording's functionals (normalised by what is known of the speaker) and calibrated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from emovision.data.features import FeatureConfig, segment_times
from emovision.errors import CheckpointError, EmovisionError
from emovision.inference.backends import Member, OnnxBackend, TorchBackend
from emovision.inference.enrolment import Enrolment
from emovision.inference.model_input import Prepared
from emovision.inference.normalisation import SpeakerNormalisation
from emovision.inference.results import UNCERTAIN, Prediction, Turn
from emovision.inference.sources import Speech
from emovision.training.calibration import apply_temperature
from emovision.training.metrics import utterance_scores


def check_aggregate(rule: str) -> None:
    """Refuse an aggregation rule of segment scores other than ``logprob`` and ``prob``."""
    if rule not in ("logprob", "prob"):
        raise CheckpointError(f"unknown aggregation rule {rule!r} in the model")


@dataclass
class Scorer:
    """Scores of one model: its ``backend`` and ``classes``, the ``aggregate`` rule (``logprob`` or
    ``prob``), the further ensemble members ``extra``, the ``normalisation`` of the speaker (with the
    fusion), the ``temperature`` (or None) and ``batch_size`` segments per model call."""

    backend: TorchBackend | OnnxBackend
    classes: list[str]
    aggregate: str
    normalisation: SpeakerNormalisation
    config: FeatureConfig | None = None
    temperature: float | None = None
    extra: list[Member] = field(default_factory=list)
    batch_size: int = 64

    def __post_init__(self) -> None:
        check_aggregate(self.aggregate)

    def log_probs(self, segments: np.ndarray) -> np.ndarray:
        """Segment log-probabilities ``(N, K)`` of segments ``(N, C, F, T)``."""
        return self.backend.log_probs(segments, self.batch_size)

    def utterance(
        self,
        log_probs: np.ndarray,
        counts: np.ndarray,
        values: np.ndarray | None,
        speaker: Enrolment,
        extra: list[np.ndarray] | None = None,
    ) -> np.ndarray:
        """Utterance log-probabilities ``(U, K)`` of segment log-probabilities ``(N, K)``, ``counts``
        segments per utterance, averaged with the further members' utterance scores ``extra`` (each
        ``(U, K)``), fused with the functionals ``values`` ``(U, D)`` of a fused model, calibrated."""
        scores = utterance_scores(log_probs, counts, self.aggregate)
        if extra:
            scores = np.mean([scores, *extra], axis=0)
            scores = scores - np.logaddexp.reduce(scores, axis=1, keepdims=True)
        fusion = self.normalisation.fusion
        if fusion is not None:
            if values is None:
                raise EmovisionError(
                    "this model fuses openSMILE functionals of the audio: precomputed segments "
                    "cannot be scored by it (load it with fusion='off' for the image models alone)"
                )
            scores = fusion.fuse(scores, self.normalisation.functionals(values, speaker))
        return scores if self.temperature is None else apply_temperature(scores, self.temperature)

    def extra_scores(self, pieces: list[list[np.ndarray]]) -> list[np.ndarray]:
        """Utterance log-probabilities ``(U, K)`` of each further ensemble member, from its segments
        ``pieces[member][utterance]`` ``(n, C, F, T)``."""
        return [
            self._member_scores(member, np.concatenate(segments), np.array([p.shape[0] for p in segments]))
            for member, segments in zip(self.extra, pieces, strict=True)
        ]

    def _member_scores(self, member: Member, segments: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """One further member's utterance log-probabilities ``(U, K)`` of its segments ``(N, C, F, T)``,
        ``counts`` ``(U,)`` per utterance."""
        return utterance_scores(member.backend.log_probs(segments, self.batch_size), counts, member.aggregate)

    def segment_utterances(self, segments: np.ndarray, counts: np.ndarray, speaker: Enrolment) -> np.ndarray:
        """Utterance log-probabilities ``(U, K)`` of precomputed segments ``(N, C, F, T)``, ``counts`` ``(U,)``
        per utterance, every further ensemble member scoring the same segments (no fusion: no audio)."""
        segments = np.ascontiguousarray(segments, dtype=np.float32)
        extra = [self._member_scores(member, segments, counts) for member in self.extra]
        return self.utterance(self.log_probs(segments), counts, None, speaker, extra)

    def predictions(self, batch: list[Prepared], speaker: Enrolment) -> list[Prediction]:
        """The predictions of several recordings, their segments scored in as few model calls as fit."""
        log_probs = self.log_probs(np.concatenate([item.segments for item in batch]))
        bounds = np.cumsum([0] + [item.segments.shape[0] for item in batch])
        extra = self.extra_scores([[item.extra[m] for item in batch] for m in range(len(self.extra))])
        return [
            self.prediction(
                item, log_probs[bounds[i] : bounds[i + 1]], speaker, [e[i : i + 1] for e in extra]
            )
            for i, item in enumerate(batch)
        ]

    def prediction(
        self,
        prepared: Prepared,
        log_probs: np.ndarray,
        speaker: Enrolment,
        extra: list[np.ndarray] | None = None,
    ) -> Prediction:
        """The prediction of one recording from its segment log-probabilities ``(N, K)``."""
        counts = np.array([log_probs.shape[0]])
        probabilities = np.exp(self.utterance(log_probs, counts, prepared.functionals, speaker, extra)[0])
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
            speaker=self.normalisation.note(speaker),
        )

    def turns(self, found: Speech, speaker: Enrolment, min_confidence: float) -> list[Turn]:
        """Every speech turn of ``found`` with its emotion (``"uncertain"`` below ``min_confidence``)."""
        turns = []
        for spans, pieces, values, extra in found.batches(self.batch_size):
            log_probs = self.log_probs(np.concatenate(pieces))
            counts = np.array([piece.shape[0] for piece in pieces])
            scores = np.exp(self.utterance(log_probs, counts, values, speaker, self.extra_scores(extra)))
            for (start, end), row in zip(spans, scores, strict=True):
                probabilities = {c: float(p) for c, p in zip(self.classes, row, strict=True)}
                emotion = self.classes[int(row.argmax())] if row.max() >= min_confidence else UNCERTAIN
                turns.append(Turn(float(start), float(end), probabilities, emotion))
        return turns
