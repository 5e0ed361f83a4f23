"""How a model's input is normalised by what is known of the speaker (an :class:`Enrolment`).

Three kinds of model need the speaker: one normalised in the data pipeline (``train --speaker-norm``:
a :class:`~emovision.data.speaker_norm.SpeakerNormaliser` per ensemble member; cold, each recording by
itself), one trained on features extracted with ``--speaker-norm`` (z-scored by the enrolled
segments' statistics), and a fusion whose linear model takes centred (``fuse --centre``) or
speaker-normalised functionals. Everything else passes through unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emovision.data.features import FeatureConfig, speaker_normalise
from emovision.data.speaker_norm import SpeakerNormaliser
from emovision.errors import EmovisionError
from emovision.inference.enrolment import Enrolment
from emovision.inference.fusion_model import LinearFusion


@dataclass
class SpeakerNormalisation:
    """The speaker normalisation of a model: ``configs`` of its ensemble members (empty for a legacy
    model without a feature configuration), their ``normalisers`` (None: none in the pipeline) and the
    ``fusion`` (or None)."""

    configs: list[FeatureConfig]
    normalisers: list[SpeakerNormaliser | None]
    fusion: LinearFusion | None = None

    @property
    def fusion_normalised(self) -> bool:
        """Whether the fusion's linear model takes speaker-normalised functionals (it then needs an
        enrolment of two recordings at least: one recording has no spread of its own)."""
        return self.fusion is not None and bool(self.fusion.info.get("speaker_norm"))

    @property
    def needs_speaker(self) -> bool:
        """Whether what is known of the speaker changes the scores."""
        return (
            self.fusion_normalised
            or (self.fusion is not None and self.fusion.centre is not None)
            or any(normaliser is not None for normaliser in self.normalisers)
            or any(config.speaker_norm for config in self.configs)
        )

    def segments(self, segments: np.ndarray, member: int, speaker: Enrolment) -> np.ndarray:
        """``segments`` ``(N, C, F, T)`` of ensemble member ``member`` (0: the model itself) as it was
        trained on them: by the enrolled speaker's statistics, else (cold) by the recording's own."""
        normaliser = self.normalisers[member]
        if normaliser is not None:
            known = speaker.moments[member]
            return normaliser.apply(segments, known) if known.recordings else normaliser.cold(segments)
        if not self.configs[member].speaker_norm:
            return segments
        return speaker_normalise(segments, speaker.statistics[member])

    def functionals(self, values: np.ndarray, speaker: Enrolment) -> np.ndarray:
        """Functionals ``(U, D)`` as the fusion's linear model was trained on them: centred by what is
        known of the speaker (cold: each recording by itself), speaker-normalised, or as they are."""
        known = speaker.functionals
        centre = self.fusion.centre if self.fusion is not None else None
        if centre is not None:
            if known is None:
                return centre.cold(values)
            return centre.centre(values, known.mean.astype(np.float64) * known.count, known.count)
        if not self.fusion_normalised:
            return values
        if known is None or known.count < 2:
            raise EmovisionError(
                "this fusion's linear model takes speaker-normalised functionals, which one recording "
                "normalises to zero: adapt it to at least two recordings of the speaker first "
                "(predict --same-speaker, Recognizer.adapt) or use --fusion off"
            )
        return speaker_normalise(values, known).astype(np.float64)

    def note(self, speaker: Enrolment) -> dict | None:
        """How a prediction was speaker-normalised (None for a model that needs no speaker)."""
        if not self.needs_speaker:
            return None
        known = speaker.describe()
        return {"mode": "enrolled" if known["recordings"] else "cold", **known}

    def require_adaptable(self) -> None:
        """Refuse adaptation for a model that needs no speaker statistics."""
        if not self.needs_speaker:
            raise EmovisionError(
                "this model was not trained with speaker normalisation (train --speaker-norm, extract "
                "--speaker-norm): it needs no speaker statistics"
            )
