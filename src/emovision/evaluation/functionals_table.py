"""The openSMILE functionals of a features file, by utterance and speaker, and of its waveform copies:
what the fusion's linear model trains on and scores."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emovision.data.store import open_info, read_copy_functionals, read_functionals
from emovision.errors import EmovisionError
from emovision.training.dataset import matches, missing_kinds


@dataclass
class FunctionalsTable:
    """The openSMILE functionals of a features file: ``utterances`` ``{utterance id: (functionals
    (D,), speaker, label)}`` and ``copies`` ``{speaker: (kinds, functionals (A, D), labels (A,))}``
    of its waveform-augmented copies (empty unless made with ``extract --augment --functionals``)."""

    path: Path
    utterances: dict[str, tuple[np.ndarray, str, int]]
    copies: dict[str, tuple[list[str], np.ndarray, np.ndarray]]

    @property
    def copy_kinds(self) -> tuple[str, ...]:
        """The kinds of copies with functionals (``noise:white``, ``reverb`` …), sorted."""
        return tuple(sorted({kind for kinds, _, _ in self.copies.values() for kind in kinds}))

    def lookup(self, ids: list[str]) -> np.ndarray:
        """Functionals ``(U, D)`` of the utterances ``ids``, in that order."""
        missing = [uid for uid in ids if uid not in self.utterances]
        if missing:
            raise EmovisionError(
                f"{self.path} has no functionals for utterance {missing[0]!r} ({len(missing)} missing)"
            )
        return np.stack([self.utterances[uid][0] for uid in ids]).astype(np.float64)

    def training(self, speakers, copy_kinds: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
        """Functionals ``(U + A, D)`` and labels of every utterance of ``speakers`` and of their
        copies of ``copy_kinds`` (``noise`` or ``noise:pink``, ``reverb`` …)."""
        speakers = set(speakers)
        ids = [uid for uid, (_, speaker, _) in self.utterances.items() if speaker in speakers]
        x, y = [self.lookup(ids)], [np.array([self.utterances[uid][2] for uid in ids], dtype=np.int64)]
        for speaker in sorted(speakers & set(self.copies)) if copy_kinds else ():
            kinds, values, labels = self.copies[speaker]
            rows = np.array([matches(kind, copy_kinds) for kind in kinds], dtype=bool)
            x.append(values[rows].astype(np.float64))
            y.append(labels[rows].astype(np.int64))
        return np.concatenate(x), np.concatenate(y)

    def available(self, copy_kinds: tuple[str, ...]) -> tuple[str, ...]:
        """Those of ``copy_kinds`` of which some copy has functionals (the default kinds of a fusion:
        those its image models trained on)."""
        missing = missing_kinds(copy_kinds, self.copy_kinds)
        return tuple(name for name in copy_kinds if name not in missing)

    def check_kinds(self, copy_kinds: tuple[str, ...]) -> None:
        """Refuse kinds of which no copy has functionals."""
        missing = missing_kinds(copy_kinds, self.copy_kinds)
        if missing:
            have = ", ".join(self.copy_kinds) or "none"
            raise EmovisionError(
                f"--augment {missing[0]}: {self.path} holds no functionals of such copies (it has: {have}); "
                f"extract with --augment {missing[0].partition(':')[0]} --functionals …"
            )


def functionals_table(path: Path, classes: list[str]) -> FunctionalsTable:
    """The functionals of the features file at ``path`` (and of its copies), for ``classes``."""
    info = open_info(path)
    if not info.functionals:
        raise EmovisionError(
            f"{path} holds no openSMILE functionals: extract with --functionals ComParE_2016 "
            "(or pass such a file with --functionals)"
        )
    if info.classes != classes:
        raise EmovisionError(f"{path} has the classes {info.classes}, the cv run {classes}")
    utterances = {}
    for speaker, (ids, values, labels) in read_functionals(path).items():
        utterances.update({uid: (v, speaker, int(y)) for uid, v, y in zip(ids, values, labels, strict=True)})
    return FunctionalsTable(path, utterances, read_copy_functionals(path))
