"""What a :class:`emovision.inference.predict.Recognizer` knows of one speaker, added to recording by recording.

For models normalised in the data pipeline (``train --speaker-norm``), the moments of every enrolled
recording per ensemble member (:class:`emovision.data.speaker_norm.SpeakerMoments`); for models trained on
features extracted with ``--speaker-norm``, the pooled statistics of the enrolled segments per member
and of the fusion's functionals. ``recordings`` and ``seconds`` (of audio) say how much is behind them.
An enrolment only grows (:meth:`Enrolment.add`); start over with a new one. Its ``lock`` serialises
changes when several threads share it (the server's speaker keys).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from emovision.data.features import SpeakerStatistics
from emovision.data.speaker_norm import SpeakerMoments, recording_moments


@dataclass
class Enrolment:
    """One speaker's enrolled recordings, summarised per ensemble member (see the module docstring)."""

    moments: list[SpeakerMoments]
    statistics: list[SpeakerStatistics | None]
    functionals: SpeakerStatistics | None = None
    recordings: int = 0
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def empty(cls, members: int) -> Enrolment:
        """Nothing known yet, for a model of ``members`` ensemble members."""
        return cls([SpeakerMoments() for _ in range(members)], [None] * members)

    def add(self, segments: list[np.ndarray], functionals: np.ndarray | None, seconds: float) -> None:
        """Add one recording: its unnormalised segments ``(N, C, F, T)`` per member, its functionals
        ``(1, D)`` (or None) and its length in seconds."""
        for member, part in enumerate(segments):
            mean, square = recording_moments(part, np.array([part.shape[0]]))
            self.moments[member].add(mean, square)
            self.statistics[member] = SpeakerStatistics.of(part).merge(self.statistics[member])
        if functionals is not None:
            pooled = SpeakerStatistics.of(np.asarray(functionals, dtype=np.float64))
            self.functionals = pooled.merge(self.functionals)
        self.recordings += 1
        self.seconds += float(seconds)

    def copy(self) -> Enrolment:
        """An independent enrolment holding the same recordings (adding to it leaves this one alone)."""
        moments = [SpeakerMoments(m.total, m.squares, m.recordings) for m in self.moments]
        return Enrolment(moments, list(self.statistics), self.functionals, self.recordings, self.seconds)

    def describe(self) -> dict:
        """The recordings and seconds of audio behind the statistics (JSON-ready)."""
        return {"recordings": self.recordings, "seconds": round(self.seconds, 3)}
