"""Speakers of a features file as tensors for training and evaluation.

Reads emovision HDF5 files, or a seed-format pickle when it is explicitly trusted (class
names then are ``class0…``, and the feature configuration is unknown).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from emovision.errors import FeatureFileError
from emovision.features import FeatureConfig
from emovision.store import SpeakerFeatures, is_pickle, load_seed_pickle, load_speakers, open_info


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

    def load(self, speakers: list[str]) -> dict[str, SpeakerFeatures]:
        unknown = [name for name in speakers if name not in self.speakers]
        if unknown:
            raise FeatureFileError(
                f"speaker {unknown[0]!r} is not in {self.path}; its speakers are {', '.join(self.speakers)}"
            )
        if self._pickle is None:
            return load_speakers(self.path, speakers)
        return {name: _from_seed_tuple(name, self._pickle[name]) for name in speakers}

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, F, T)`` of one segment."""
        first = self.load(self.speakers[:1])[self.speakers[0]]
        return tuple(first.segments.shape[1:])


def open_source(path: str | Path, trust_pickle: bool = False) -> FeatureSource:
    """The features file at ``path`` (HDF5, or a trusted legacy pickle)."""
    path = Path(path)
    if is_pickle(path):
        payload = load_seed_pickle(path, trust_pickle)
        labels = np.concatenate([np.asarray(item[1]).ravel() for item in payload.values()])
        classes = [f"class{i}" for i in range(int(labels.max()) + 1)] if labels.size else []
        return FeatureSource(path, "pickle", classes, None, sorted(payload), {}, payload)
    info = open_info(path)
    return FeatureSource(path, info.corpus, info.classes, info.config, info.speakers, info.genders)


@dataclass
class Split:
    """Segments ``(N, C, F, T)`` with their labels, and the utterances they belong to."""

    segments: torch.Tensor
    segment_labels: torch.Tensor
    utterance_labels: np.ndarray
    segments_per_utterance: np.ndarray
    utterance_ids: list[str]
    speakers: list[str]

    def __len__(self) -> int:
        return int(self.segments.shape[0])


def load_split(source: FeatureSource, speakers: list[str]) -> Split:
    """The speakers' data concatenated in the order given (CPU tensors)."""
    data = source.load(speakers)
    parts = [data[name] for name in speakers]
    return Split(
        segments=torch.from_numpy(np.concatenate([p.segments for p in parts]).astype(np.float32, copy=False)),
        segment_labels=torch.from_numpy(np.concatenate([p.segment_labels for p in parts]).astype(np.int64)),
        utterance_labels=np.concatenate([p.utterance_labels for p in parts]).astype(np.int64),
        segments_per_utterance=np.concatenate([p.segments_per_utterance for p in parts]).astype(np.int64),
        utterance_ids=[uid for p in parts for uid in p.utterance_ids],
        speakers=list(speakers),
    )


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
