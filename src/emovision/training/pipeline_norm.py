"""Pipeline speaker normalisation of one fold (``--speaker-norm``, see :mod:`emovision.data.speaker_norm`).

The prior is fitted on the training speakers' clean recordings; training batches are normalised with
per-row statistics drawn from the modes (:class:`TrainingDraws`), validation and test speakers are
evaluated in every mode (:func:`mode_views`), and the model's input normaliser is fitted on the
training segments normalised transductively.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from emovision.data.speaker_norm import (
    ENROL_DRAWS,
    MODES,
    ModeView,
    SpeakerNormaliser,
    TrainingDraws,
    mode_view,
    recording_moments,
)
from emovision.training.dataset import Split
from emovision.training.options import TrainConfig


@dataclass
class PipelineNorm:
    """A fold's speaker normalisation: the fitted prior, the training draws, the evaluation
    ``views`` by role (``val``, ``test``) and the normalised training segments ``fit_on`` ``(N, C, F, T)``
    the input normaliser is fitted on."""

    normaliser: SpeakerNormaliser
    draws: TrainingDraws
    views: dict[str, list[tuple[str, int, ModeView]]]
    fit_on: torch.Tensor


def pipeline_norm(
    config: TrainConfig, train_split: Split, rows: torch.Tensor, evaluated: dict[str, Split | None]
) -> PipelineNorm:
    """The speaker normalisation of a fold trained on ``train_split`` (``rows``: its clean segments,
    then its copies' segments) and evaluated on the ``evaluated`` splits by role (None: no such split)."""
    normaliser, draws = training_draws(config, train_split, rows)
    views = {
        role: mode_views(normaliser, split, config.enrol)
        for role, split in evaluated.items()
        if split is not None
    }
    clean = len(train_split.utterance_ids)  # the draws' first recordings: the clean utterances
    whole = mode_view(
        normaliser,
        draws.means[:clean],
        draws.squares[:clean],
        train_split.speakers,
        train_split.utterance_speakers,
        "transductive",
    )
    fit_on = whole.normalise(train_split.segments, train_split.segments_per_utterance)
    return PipelineNorm(normaliser, draws, views, fit_on)


def training_draws(
    config: TrainConfig, split: Split, rows: torch.Tensor
) -> tuple[SpeakerNormaliser, TrainingDraws]:
    """The prior of the training recordings and the per-batch statistics of every training row
    (``rows`` ``(N, C, F, T)``: ``split``'s clean segments, then its copies' segments)."""
    starts = np.concatenate([[0], np.cumsum(split.segments_per_utterance)[:-1]])
    versions = split.versions or [
        [(int(a), int(n))] for a, n in zip(starts, split.segments_per_utterance, strict=True)
    ]
    order = [(v[0], u) for u, v in enumerate(versions)] + [
        (c, u) for u, v in enumerate(versions) for c in v[1:]
    ]
    row_recording = np.empty(rows.shape[0], dtype=np.int64)
    for recording, ((start, count), _) in enumerate(order):
        row_recording[start : start + count] = recording
    recording_rows = np.concatenate([np.arange(start, start + count) for (start, count), _ in order])
    counts = np.array([count for (_, count), _ in order])
    means, squares = recording_moments(rows[torch.from_numpy(recording_rows)], counts)
    clean = len(versions)
    normaliser = SpeakerNormaliser.fit(
        config.speaker_norm, means[:clean], squares[:clean], config.speaker_prior
    )
    owners = np.array([u for _, u in order])
    draws = TrainingDraws(normaliser, row_recording, means, squares, owners, split.utterance_speakers)
    return normaliser, draws


def mode_views(normaliser: SpeakerNormaliser, split: Split, enrol: int) -> list[tuple[str, int, ModeView]]:
    """``split`` in every mode: (mode, draw, view), the enrolled mode (``enrol`` recordings) in
    ``ENROL_DRAWS`` draws."""
    means, squares = recording_moments(split.segments, split.segments_per_utterance)
    views = []
    for mode in MODES:
        for draw in range(ENROL_DRAWS if mode == "enrolled" else 1):
            view = mode_view(
                normaliser, means, squares, split.speakers, split.utterance_speakers, mode, enrol, draw
            )
            views.append((mode, draw, view))
    return views
