"""What a model knows of the speaker it listens to, and how it learns more: the speaker half of
:class:`~emovision.inference.predict.Recognizer`.

:class:`SpeakerAdaptation` holds the model's input (:class:`~emovision.inference.model_input.ModelInput`),
its :class:`~emovision.inference.normalisation.SpeakerNormalisation` and the current
:class:`~emovision.inference.enrolment.Enrolment`; :meth:`SpeakerAdaptation.adapt` adds recordings
to it, :meth:`SpeakerAdaptation.reset` forgets it, :meth:`SpeakerAdaptation.with_speaker` gives a view
of the same model on another speaker (the server's speaker keys: one enrolment per key).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Self

import numpy as np

from emovision.data.speaker_norm import SpeakerNormaliser
from emovision.errors import AudioError, EmovisionError
from emovision.inference.enrolment import Enrolment
from emovision.inference.model_input import AudioRequest, ModelInput, Prepared
from emovision.inference.normalisation import SpeakerNormalisation
from emovision.inference.sources import Source


class SpeakerAdaptation:
    """The speaker statistics of a model of ``members`` ensemble members reading its audio with
    ``model_input`` and normalising it with ``normalisation``; nothing known at first (the cold mode)."""

    def __init__(self, model_input: ModelInput, normalisation: SpeakerNormalisation, members: int) -> None:
        self._input = model_input
        self._norm = normalisation
        self._members = members
        self._speaker = Enrolment.empty(members)

    @property
    def speaker_normalised(self) -> bool:
        """Whether what is known of the speaker changes the scores (a model or member trained on
        speaker-normalised features, or a fusion on centred or normalised functionals)."""
        return self._norm.needs_speaker

    @property
    def fusion_speaker_normalised(self) -> bool:
        """Whether the fusion's linear model takes speaker-normalised functionals (it then needs
        :meth:`adapt`: one recording has no spread of its own)."""
        return self._norm.fusion_normalised

    @property
    def adapted(self) -> bool:
        """Whether :meth:`adapt` has given the model a speaker's statistics."""
        return self._speaker.recordings > 0

    @property
    def normaliser(self) -> SpeakerNormaliser | None:
        """The speaker normalisation of a model trained with ``--speaker-norm`` (None otherwise)."""
        return self._norm.normalisers[0]

    @property
    def speaker(self) -> Enrolment:
        """What the model knows of the speaker whose recordings it scores (empty: the cold mode)."""
        return self._speaker

    def with_speaker(self, enrolment: Enrolment) -> Self:
        """This model (sharing its weights) scoring with ``enrolment``: one speaker of many."""
        view = copy.copy(self)
        view._speaker = enrolment
        return view

    def new_enrolment(self) -> Enrolment:
        """An empty enrolment for this model's members (see :meth:`with_speaker`)."""
        return Enrolment.empty(self._members)

    def reset(self) -> None:
        """Forget the speaker: later recordings are scored cold until :meth:`adapt` is called again."""
        self._speaker = self.new_enrolment()

    def adapt(self, sources: Iterable[Source]) -> int:
        """Add ``sources`` (recordings of the one speaker predicted next: paths, bytes; no labels) to what
        the model knows of the speaker; later segments are normalised by all recordings added so far.
        Unusable recordings are left out; returns the number used. Raises :class:`EmovisionError` for a
        model without speaker normalisation or when no recording is usable."""
        self._norm.require_adaptable()
        used = 0
        for source in sources:
            try:
                self._enrol(self._input.prepare(AudioRequest(source)))
            except AudioError:
                continue
            used += 1
        if not used:
            raise EmovisionError("speaker statistics: none of the recordings given could be used")
        return used

    def _normalise(self, segments: np.ndarray, member: int) -> np.ndarray:
        """``segments`` ``(N, C, F, T)`` of member ``member`` normalised by what is known of the speaker."""
        return self._norm.segments(segments, member, self._speaker)

    def _snapshot(self) -> Self:
        """This model on a copy of its enrolment, taken under the enrolment's lock: another thread adding
        to the same enrolment (the server's speaker keys) cannot change it halfway."""
        with self._speaker.lock:
            return self.with_speaker(self._speaker.copy())

    def _enrol(self, prepared: Prepared) -> None:
        """Add one prepared recording (its unnormalised segments) to the enrolment."""
        with self._speaker.lock:
            self._speaker.add(prepared.raw, prepared.functionals, prepared.duration)
