"""Speakers of a features file as tensors for training and evaluation.

Reads emovision HDF5 files, or a seed-format pickle when it is explicitly trusted (class
names then are ``class0…``, and the feature configuration is unknown).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from emovision.data.augment_audio import AugmentPlan
from emovision.data.features import FeatureConfig
from emovision.data.store import SpeakerFeatures, is_pickle, load_seed_pickle, load_speakers, open_info
from emovision.errors import FeatureFileError


@dataclass
class FeatureSource:
    """A features file's metadata and a way to read its speakers."""

    path: Path
    corpus: str
    classes: list[str]
    config: FeatureConfig | None
    speakers: list[str]
    genders: dict[str, str]
    _pickle: dict | None = None
    augment: dict | None = None
    functionals: str = ""
    selection: dict | None = None

    @property
    def copy_kinds(self) -> tuple[str, ...]:
        """Kinds of the waveform-augmented copies in the file (``noise:white``, ``reverb`` …)."""
        return AugmentPlan.from_dict(self.augment).kinds if self.augment else ()

    def load(self, speakers: list[str], augmented: bool = False) -> dict[str, SpeakerFeatures]:
        unknown = [name for name in speakers if name not in self.speakers]
        if unknown:
            raise FeatureFileError(
                f"speaker {unknown[0]!r} is not in {self.path}; its speakers are {', '.join(self.speakers)}"
            )
        if self._pickle is None:
            return load_speakers(self.path, speakers, augmented)
        return {name: _from_seed_tuple(name, self._pickle[name]) for name in speakers}


def open_source(path: str | Path, trust_pickle: bool = False) -> FeatureSource:
    """The features file at ``path`` (HDF5, or a trusted legacy pickle)."""
    path = Path(path)
    if is_pickle(path):
        payload = load_seed_pickle(path, trust_pickle)
        labels = np.concatenate([np.asarray(item[1]).ravel() for item in payload.values()])
        classes = [f"class{i}" for i in range(int(labels.max()) + 1)] if labels.size else []
        return FeatureSource(path, "pickle", classes, None, sorted(payload), {}, payload)
    info = open_info(path)
    return FeatureSource(
        path,
        info.corpus,
        info.classes,
        info.config,
        info.speakers,
        info.genders,
        augment=info.augment,
        functionals=info.functionals,
        selection=info.selection,
    )


@dataclass
class Split:
    """Segments ``(N, C, F, T)`` with their labels, and the utterances they belong to.

    A training split may also hold waveform-augmented copies: ``copies`` ``(M, C, F, T)`` with
    ``copy_labels``, and ``versions[u]``, the ``(start, count)`` segment ranges of utterance
    ``u``'s clean version and of its copies in ``cat(segments, copies)``.
    ``utterance_speakers`` ``(U,)`` gives each utterance's index in ``speakers``.
    """

    segments: torch.Tensor
    segment_labels: torch.Tensor
    utterance_labels: np.ndarray
    segments_per_utterance: np.ndarray
    utterance_ids: list[str]
    speakers: list[str]
    utterance_speakers: np.ndarray
    copies: torch.Tensor | None = None
    copy_labels: torch.Tensor | None = None
    versions: list[list[tuple[int, int]]] | None = None

    def __len__(self) -> int:
        return int(self.segments.shape[0])


def matches(kind: str, wanted: tuple[str, ...]) -> bool:
    """Whether a stored copy's ``kind`` (``noise:pink``) is asked for by ``wanted`` (``noise`` or ``noise:pink``)."""
    return kind in wanted or kind.partition(":")[0] in wanted


def missing_kinds(wanted: tuple[str, ...], have: tuple[str, ...]) -> list[str]:
    """Those of the asked-for kinds ``wanted`` that no stored kind in ``have`` matches."""
    return [name for name in wanted if not any(matches(kind, (name,)) for kind in have)]


def load_split(source: FeatureSource, speakers: list[str], copy_kinds: tuple[str, ...] = ()) -> Split:
    """The speakers' data concatenated in the order given (CPU tensors), with the stored
    waveform-augmented copies of ``copy_kinds`` (``noise``, ``noise:pink``, ``reverb`` …)."""
    missing = missing_kinds(copy_kinds, source.copy_kinds)
    if missing:
        have = ", ".join(source.copy_kinds) or "none"
        raise FeatureFileError(
            f"--augment {missing[0]}: {source.path} holds no such augmented copies (it has: {have}); "
            f"write them with emovision extract … --augment {missing[0].partition(':')[0]}"
        )
    data = source.load(speakers, augmented=bool(copy_kinds))
    parts = [data[name] for name in speakers]
    split = Split(
        segments=torch.from_numpy(np.concatenate([p.segments for p in parts]).astype(np.float32, copy=False)),
        segment_labels=torch.from_numpy(np.concatenate([p.segment_labels for p in parts]).astype(np.int64)),
        utterance_labels=np.concatenate([p.utterance_labels for p in parts]).astype(np.int64),
        segments_per_utterance=np.concatenate([p.segments_per_utterance for p in parts]).astype(np.int64),
        utterance_ids=[uid for p in parts for uid in p.utterance_ids],
        speakers=list(speakers),
        utterance_speakers=np.repeat(np.arange(len(parts)), [len(p.utterance_ids) for p in parts]),
    )
    if copy_kinds:
        _attach_copies(split, parts, copy_kinds)
    return split


def _attach_copies(split: Split, parts: list[SpeakerFeatures], copy_kinds: tuple[str, ...]) -> None:
    starts = np.concatenate([[0], np.cumsum(split.segments_per_utterance)])
    versions = [[(int(starts[u]), int(split.segments_per_utterance[u]))] for u in range(len(starts) - 1)]
    pieces, labels = [], []
    offset, utterance_base = len(split), 0
    for part in parts:
        copies = part.augmented
        copy_starts = np.concatenate([[0], np.cumsum(copies.segments_per_utterance)])
        for i, kind in enumerate(copies.kinds):
            if not matches(kind, copy_kinds):
                continue
            lo, hi = int(copy_starts[i]), int(copy_starts[i + 1])
            pieces.append(copies.segments[lo:hi])
            labels.append(copies.segment_labels[lo:hi])
            versions[utterance_base + int(copies.source[i])].append((offset, hi - lo))
            offset += hi - lo
        utterance_base += len(part.utterance_ids)
    shape = (0, *split.segments.shape[1:])
    split.copies = (
        torch.from_numpy(np.concatenate(pieces).astype(np.float32)) if pieces else torch.zeros(shape)
    )
    split.copy_labels = (
        torch.from_numpy(np.concatenate(labels).astype(np.int64))
        if labels
        else torch.zeros(0, dtype=torch.long)
    )
    split.versions = versions


def _from_seed_tuple(speaker: str, item: tuple) -> SpeakerFeatures:
    segments, utterance_labels, segment_labels, per_utterance = (np.asarray(part) for part in item)
    return SpeakerFeatures(
        segments=segments.astype(np.float32, copy=False),
        segment_labels=segment_labels.astype(np.int64).ravel(),
        utterance_labels=utterance_labels.astype(np.int64).ravel(),
        segments_per_utterance=per_utterance.astype(np.int64).ravel(),
        utterance_ids=[f"{speaker}_{i:04d}" for i in range(len(utterance_labels))],
        durations=np.full(len(utterance_labels), np.nan, dtype=np.float32),
    )
