"""Speaker normalisation from the recordings at hand: the three ways a model meets a speaker.

A model trained with ``--speaker-norm transductive|mixed`` reads features extracted *without*
``extract --speaker-norm`` and turns every segment ``(C, F, T)`` into z-scores of the speaker's
statistics per channel and bin, computed in the data pipeline from the recordings available:

``cold``
    the recording alone, no speaker information: what ``serve``, the web page and
    :meth:`emovision.inference.predict.Recognizer.predict` give without enrolment;
``enrolled``
    K of the speaker's *other* recordings (a caller's earlier turns), then every remaining
    recording scored with those statistics (``--enrol K``, 5 by default);
``transductive``
    all of the speaker's recordings at once, unlabelled (the classic speaker-normalised protocol).

Statistics are pooled per recording: every recording contributes the mean and the mean square of
each channel and bin over its segments' frames (``(C, F)``, dB and dB², padding included, as the
model sees them), whatever its length. They are shrunk towards a prior, the mean of the training
speakers' recordings, weighted as ``prior_weight`` recordings: with ``r`` recordings the mean is
``(Σ mᵢ + τ·m₀) / (r + τ)``, and the same for the mean square, so one recording gives mostly the
population's statistics nudged towards its own, and fifty give the speaker's own.

Functionals (the openSMILE vectors of a fusion's linear model) are *centred* instead
(:class:`FunctionalsCentre`): the speaker's mean functionals, from what is known of the speaker and
shrunk towards the training recordings' mean, are subtracted; their spread is left alone, since five
recordings cannot estimate the spread of six thousand functionals (z-scores of five recordings cost
the linear model more than half its UA on emoDB, centring gains).

``mixed`` training draws, for every segment of every batch, one of the three modes with equal
probability (enrolled with 1 … ``MAX_TRAIN_ENROL`` other recordings of the same speaker), so the
network sees at training what it will see in use. ``transductive`` training always uses all of the
speaker's recordings (as ``extract --speaker-norm`` did).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from emovision.errors import CheckpointError

if TYPE_CHECKING:
    import torch

MODES = ("cold", "enrolled", "transductive")


def mode_label(mode: str, k: int) -> str:
    """How a mode is named in tables: ``enrolled-5`` for the enrolled mode with K = 5."""
    return f"enrolled-{k}" if mode == "enrolled" else mode


ENROL_DRAWS = 3
MAX_TRAIN_ENROL = 10
MIN_STD_DB = 1e-3


def recording_moments(segments, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean and the mean square ``(R, C, F)`` of each recording's segments over their frames, from
    segments ``(N, C, F, T)`` (an array or a CPU tensor) of ``R`` recordings holding ``counts`` ``(R,)``
    consecutive segments."""
    values = np.asarray(segments)
    firsts, seconds = [], []
    for start in range(0, values.shape[0], 512):
        chunk = values[start : start + 512].astype(np.float64)
        firsts.append(chunk.mean(axis=3))
        seconds.append((chunk**2).mean(axis=3))
    index = np.repeat(np.arange(len(counts)), counts)
    divisor = np.maximum(np.asarray(counts), 1)[:, None, None]
    out = []
    for parts in (firsts, seconds):
        moment = np.concatenate(parts)
        total = np.zeros((len(counts), *moment.shape[1:]))
        np.add.at(total, index, moment)
        out.append(total / divisor)
    return out[0], out[1]


@dataclass
class SpeakerMoments:
    """What is known of one speaker: the sums of recording means and mean squares ``(C, F)`` over
    ``recordings`` recordings. Adding is incremental."""

    total: np.ndarray | None = None
    squares: np.ndarray | None = None
    recordings: int = 0

    def add(self, mean: np.ndarray, square: np.ndarray) -> None:
        """Add recordings' means and mean squares ``(R, C, F)``."""
        if self.total is None:
            self.total, self.squares = np.zeros(mean.shape[1:]), np.zeros(mean.shape[1:])
        self.total = self.total + mean.sum(axis=0)
        self.squares = self.squares + square.sum(axis=0)
        self.recordings += mean.shape[0]


@dataclass
class SpeakerNormaliser:
    """The prior (the training speakers' mean recording: ``mean``, ``square`` ``(C, F)``) and its
    weight ``prior_weight`` in recordings; ``mode`` is how the model was trained."""

    mode: str
    mean: np.ndarray
    square: np.ndarray
    prior_weight: float

    @classmethod
    def fit(cls, mode: str, means: np.ndarray, squares: np.ndarray, prior_weight: float) -> SpeakerNormaliser:
        """The prior of training recordings' moments ``(R, C, F)``."""
        return cls(mode, means.mean(axis=0), squares.mean(axis=0), float(prior_weight))

    def statistics(self, total: np.ndarray, squares: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation ``(C, F, 1)`` from the sums over ``count`` recordings' moments."""
        weight = self.prior_weight
        mean = (total + weight * self.mean) / (count + weight)
        square = (squares + weight * self.square) / (count + weight)
        std = np.sqrt(np.maximum(square - mean**2, 0.0))
        return mean[..., None].astype(np.float32), np.maximum(std, MIN_STD_DB)[..., None].astype(np.float32)

    def of(self, moments: SpeakerMoments) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation ``(C, F, 1)`` of what is known of a speaker."""
        if moments.total is None:
            return self.statistics(np.zeros_like(self.mean), np.zeros_like(self.square), 0)
        return self.statistics(moments.total, moments.squares, moments.recordings)

    def cold(self, segments: np.ndarray) -> np.ndarray:
        """One recording's segments ``(N, C, F, T)`` normalised by their own statistics (shrunk)."""
        mean, square = recording_moments(segments, np.array([segments.shape[0]]))
        centre, spread = self.statistics(mean[0], square[0], 1)
        return ((segments - centre) / spread).astype(np.float32)

    def apply(self, segments: np.ndarray, moments: SpeakerMoments) -> np.ndarray:
        """Segments ``(N, C, F, T)`` normalised by an enrolled speaker's statistics."""
        centre, spread = self.of(moments)
        return ((segments - centre) / spread).astype(np.float32)

    def to_dict(self) -> dict:
        """Checkpoint form: lists and numbers only (loads with ``weights_only=True``)."""
        return {
            "mode": self.mode,
            "mean": np.asarray(self.mean, dtype=np.float64).tolist(),
            "square": np.asarray(self.square, dtype=np.float64).tolist(),
            "prior_weight": self.prior_weight,
        }

    @classmethod
    def from_dict(cls, values: dict | None) -> SpeakerNormaliser | None:
        if not values:
            return None
        try:
            return cls(
                str(values["mode"]),
                np.asarray(values["mean"], dtype=np.float64),
                np.asarray(values["square"], dtype=np.float64),
                float(values["prior_weight"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"the checkpoint's speaker normalisation is unreadable ({exc})") from None

    def to_json(self) -> str:
        """Text form for an ONNX file's metadata."""
        return json.dumps(
            {
                "mode": self.mode,
                "mean": self.mean.tolist(),
                "square": self.square.tolist(),
                "prior_weight": self.prior_weight,
            }
        )

    @classmethod
    def from_json(cls, text: str | None) -> SpeakerNormaliser | None:
        """The normaliser of :meth:`to_json`'s text (None for none)."""
        if not text or text == "null":
            return None
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"the model's speaker normalisation is unreadable ({exc})") from None

    @classmethod
    def average(cls, normalisers: list[SpeakerNormaliser]) -> SpeakerNormaliser:
        """One normaliser for an ensemble of fold models: their priors averaged."""
        first = normalisers[0]
        return cls(
            first.mode,
            np.mean([n.mean for n in normalisers], axis=0),
            np.mean([n.square for n in normalisers], axis=0),
            first.prior_weight,
        )


@dataclass
class ModeView:
    """A split's utterances in one mode: per-utterance ``mean`` and ``std`` ``(U, C, F, 1)`` and which
    utterances are ``scored`` ``(U,)`` (enrolment recordings are not)."""

    mean: np.ndarray
    std: np.ndarray
    scored: np.ndarray

    def normalise(self, segments: np.ndarray | torch.Tensor, counts: np.ndarray) -> np.ndarray | torch.Tensor:
        """Segments ``(N, C, F, T)`` (an array or a tensor, returned as the same) of utterances holding
        ``counts`` segments, normalised."""
        rows = np.repeat(np.arange(len(counts)), counts)
        if isinstance(segments, np.ndarray):
            return ((segments - self.mean[rows]) / self.std[rows]).astype(np.float32)
        import torch

        return (segments - torch.from_numpy(self.mean[rows])) / torch.from_numpy(self.std[rows])


def enrolment(speaker: str, utterances: int, k: int, draw: int) -> np.ndarray:
    """The indices of the ``k`` enrolment recordings among a speaker's ``utterances`` for ``draw``:
    seeded by the speaker's name and the draw only, so every run and seed meets the same draws."""
    rng = np.random.default_rng([draw, zlib.crc32(speaker.encode())])
    return np.sort(rng.choice(utterances, size=min(k, utterances - 1), replace=False))


def mode_view(
    normaliser: SpeakerNormaliser,
    means: np.ndarray,
    squares: np.ndarray,
    speakers: list[str],
    utterance_speakers: np.ndarray,
    mode: str,
    enrol: int = 5,
    draw: int = 0,
) -> ModeView:
    """Every utterance's statistics in ``mode`` from the recording moments ``(U, C, F)`` of a split whose
    utterance ``u`` belongs to ``speakers[utterance_speakers[u]]``."""
    count = means.shape[0]
    mean = np.empty((count, *means.shape[1:], 1), dtype=np.float32)
    std = np.empty_like(mean)
    scored = np.ones(count, dtype=bool)
    if mode == "cold":
        for u in range(count):
            mean[u], std[u] = normaliser.statistics(means[u], squares[u], 1)
        return ModeView(mean, std, scored)
    for index, name in enumerate(speakers):
        rows = np.flatnonzero(utterance_speakers == index)
        if rows.size == 0:
            continue
        known = rows
        if mode == "enrolled":
            known = rows[enrolment(name, rows.size, enrol, draw)]
            scored[known] = False
        mean[rows], std[rows] = normaliser.statistics(
            means[known].sum(axis=0), squares[known].sum(axis=0), known.size
        )
    return ModeView(mean, std, scored)


@dataclass
class FunctionalsCentre:
    """Speaker centring of functionals ``(U, D)``: ``x − (Σ known + τ·m₀) / (n + τ)`` with ``n`` known
    recordings of the speaker (their functionals summed in ``Σ known``), the training recordings' mean
    ``prior`` ``m₀`` ``(D,)`` and its weight ``weight`` ``τ`` in recordings. With nothing known but the
    recording itself (cold) that is ``τ/(1 + τ)·(x − m₀)``."""

    prior: np.ndarray
    weight: float

    def centre(self, values: np.ndarray, total: np.ndarray, count: int) -> np.ndarray:
        """``values`` ``(U, D)`` centred by a speaker known from ``count`` recordings summing to ``total``."""
        return np.asarray(values, dtype=np.float64) - (total + self.weight * self.prior) / (
            count + self.weight
        )

    def cold(self, values: np.ndarray) -> np.ndarray:
        """Each row of ``values`` ``(U, D)`` centred by itself alone."""
        values = np.asarray(values, dtype=np.float64)
        return values - (values + self.weight * self.prior) / (1 + self.weight)


class TrainingDraws:
    """Per-segment statistics for ``mixed`` or ``transductive`` training, drawn afresh every batch.

    ``row_recording`` ``(N,)`` maps each training row (clean segments, then copies) to a recording
    whose moments are ``means``/``squares`` ``(R, C, F)``; ``recording_utterance`` ``(R,)`` gives the
    clean utterance a recording (or copy) is of, and ``utterance_speakers`` ``(U,)`` its speaker.
    Enrolment and transductive statistics come from the speaker's clean recordings only.
    """

    def __init__(
        self,
        normaliser: SpeakerNormaliser,
        row_recording: np.ndarray,
        means: np.ndarray,
        squares: np.ndarray,
        recording_utterance: np.ndarray,
        utterance_speakers: np.ndarray,
    ) -> None:
        self.normaliser = normaliser
        self.row_recording = row_recording
        self.means, self.squares = means, squares
        self.recording_utterance = recording_utterance
        self.utterance_speakers = utterance_speakers
        self.by_speaker = {
            int(s): np.flatnonzero(utterance_speakers == s) for s in np.unique(utterance_speakers)
        }

    def batch(self, rows: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and standard deviation ``(B, C, F, 1)`` for the training rows ``rows`` ``(B,)``."""
        import torch

        mixed = self.normaliser.mode == "mixed"
        picks = torch.randint(len(MODES), (rows.numel(),), generator=generator).tolist() if mixed else None
        means, stds = [], []
        for i, row in enumerate(rows.tolist()):
            known = self.recordings(row, MODES[picks[i]] if mixed else "transductive", generator)
            mean, std = self.normaliser.statistics(
                self.means[known].sum(axis=0), self.squares[known].sum(axis=0), known.size
            )
            means.append(mean)
            stds.append(std)
        return torch.from_numpy(np.stack(means)), torch.from_numpy(np.stack(stds))

    def recordings(self, row: int, mode: str, generator: torch.Generator) -> np.ndarray:
        """The recordings whose moments normalise training row ``row`` in ``mode``: cold, the row's own
        recording (a copy's own for a copy); enrolled, 1 … ``MAX_TRAIN_ENROL`` of the speaker's other
        clean recordings; transductive, all of the speaker's clean recordings. A speaker with a single
        recording has no other: enrolled then uses that one."""
        import torch

        recording = int(self.row_recording[row])
        if mode == "cold":
            return np.array([recording])
        utterance = int(self.recording_utterance[recording])
        own = self.by_speaker[int(self.utterance_speakers[utterance])]
        others = own[own != utterance]
        if mode == "transductive" or others.size == 0:
            return own
        size = int(torch.randint(1, min(MAX_TRAIN_ENROL, others.size) + 1, (1,), generator=generator))
        return others[torch.randperm(others.size, generator=generator)[:size].numpy()]
