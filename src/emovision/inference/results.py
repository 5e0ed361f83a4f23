"""What a Recognizer returns: a recording's :class:`Prediction`, its speech turns, its embedding, a
:class:`Failure` for an unusable file, and the emotion-over-time pictures."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TIMELINE_MIN_SEGMENTS = 4


UNCERTAIN = "uncertain"


@dataclass
class Prediction:
    """The emotion of one recording.

    ``probabilities`` maps every class to its utterance-level probability;
    ``segment_probabilities`` ``(N, K)`` holds each segment's class probabilities and
    ``times`` ``(N, 2)`` its start and end in seconds (the end of the last segment is
    clipped to the recording's ``duration``, in seconds; NaN when the model's feature
    configuration is unknown). ``features`` ``(C, F, T)`` is the
    whole recording's spectrogram in dB, kept when asked for. ``speaker`` (speaker-normalised
    models only) says how the recording was normalised: ``mode`` ``cold`` (by itself) or
    ``enrolled``, with the ``recordings`` and ``seconds`` of audio behind the statistics.
    """

    source: str
    classes: list[str]
    probabilities: dict[str, float]
    segment_probabilities: np.ndarray
    times: np.ndarray
    duration: float | None
    features: np.ndarray | None = field(default=None, repr=False)
    speaker: dict | None = None

    @property
    def label(self) -> str:
        """The most probable class."""
        return max(self.probabilities, key=self.probabilities.__getitem__)

    @property
    def confidence(self) -> float:
        """Probability of :attr:`label`."""
        return self.probabilities[self.label]

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most probable classes with their probabilities, most probable first."""
        return sorted(self.probabilities.items(), key=lambda item: -item[1])[:k]

    def to_dict(self) -> dict:
        """JSON-ready: file, emotion, confidence, probabilities, duration (s) and segments."""
        return {
            "file": self.source,
            "emotion": self.label,
            "confidence": self.confidence,
            "probabilities": dict(self.probabilities),
            "duration": self.duration,
            **({"speaker": dict(self.speaker)} if self.speaker is not None else {}),
            "segments": [
                {
                    "start": float(start),
                    "end": float(end),
                    "emotion": self.classes[int(row.argmax())],
                    "probabilities": dict(zip(self.classes, map(float, row), strict=True)),
                }
                for (start, end), row in zip(self.times, self.segment_probabilities, strict=True)
            ],
        }


@dataclass
class Turn:
    """One speech turn: ``start`` and ``end`` in seconds, the class probabilities of its
    segments combined, and ``emotion``: the most probable class, or ``"uncertain"`` when its
    probability is below the ``min_confidence`` it was predicted with."""

    start: float
    end: float
    probabilities: dict[str, float]
    emotion: str

    @property
    def confidence(self) -> float:
        """Probability of the most probable class (also for an uncertain turn)."""
        return max(self.probabilities.values())

    def to_dict(self) -> dict:
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "emotion": self.emotion,
            "confidence": self.confidence,
            "probabilities": dict(self.probabilities),
        }


@dataclass
class TurnPrediction:
    """The speech turns of one recording (``duration`` in seconds), each with its emotion."""

    source: str
    classes: list[str]
    duration: float
    turns: list[Turn]

    def to_dicts(self) -> list[dict]:
        """One JSON-ready row per turn, with the file."""
        return [{"file": self.source, **turn.to_dict()} for turn in self.turns]


@dataclass
class Embedding:
    """Vectors ``(N, D)`` of a recording: one for the whole (``spans`` ``[[0, duration]]``) or one
    per speech turn (``spans`` ``(N, 2)``, start and end in seconds)."""

    source: str
    vectors: np.ndarray
    spans: np.ndarray


@dataclass(frozen=True)
class Failure:
    """A recording that could not be used, with the reason."""

    source: str
    reason: str


def save_timelines(
    predictions: Iterable[Prediction], path: str | Path, min_segments: int = TIMELINE_MIN_SEGMENTS
) -> list[Path]:
    """PNG of the emotion over time for every prediction of at least ``min_segments`` segments.

    One such recording is drawn to ``path``; several to ``<stem>-<file stem>.png`` next to it.
    """
    from emovision import plots

    path = Path(path)
    long = [item for item in predictions if item.segment_probabilities.shape[0] >= min_segments]
    written: list[Path] = []
    for item in long:
        target = path
        if len(long) > 1:
            target = path.with_name(f"{path.stem}-{Path(item.source).stem}{path.suffix or '.png'}")
            counter = 2
            while target in written:
                target = path.with_name(
                    f"{path.stem}-{Path(item.source).stem}-{counter}{path.suffix or '.png'}"
                )
                counter += 1
        title = f"{Path(item.source).name}: {item.label} ({item.confidence:.0%})"
        written.append(plots.timeline(item.times, item.segment_probabilities, item.classes, target, title))
    return written
