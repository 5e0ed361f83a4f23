"""Which speakers train, validate and test: the :class:`Fold`, and the fold rules of ``cv``.

Fold rules:

``iemocap10``
    The original protocol: each of 1F…5M is the test speaker once, the other speaker of the
    same session validates, the remaining eight train.
``iemocap5``
    The original's 5-fold subset: test speakers 1M, 2F, 3F, 4F, 5F, same validation rule.
``pairs``
    Speakers in sorted order taken two at a time (RAVDESS: actors 13+14, 15+16 …, one male and
    one female each): each pair is tested once, the next pair (wrapping around) validates, the
    rest train. The default for RAVDESS (six folds on twelve actors).
``loso``
    Leave one speaker out, for any corpus. The validation speaker is the next speaker after
    the test speaker in sorted order (wrapping around) who has the test speaker's gender;
    where genders are unknown, simply the next speaker.
a file
    A JSON list of ``{"name", "test", "val", "train"?}`` objects, or a CSV with the columns
    ``test,val`` (optional ``train``, ``name``).

Speakers are separated by ``+``, ``,`` or spaces, on the command line and in fold files alike.

``cv --validation train`` (:func:`validation_trains`) moves each fold's validation speakers into its
training speakers: no epoch is selected (the last one is kept, ``--select-by last``) and nothing is
calibrated, and each fold trains on one more speaker (emoDB) or pair (RAVDESS).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, replace
from pathlib import Path

from emovision.errors import EmovisionError
from emovision.training.dataset import FeatureSource


@dataclass
class Fold:
    """Speaker ids of the three sets of one fold."""

    train: list[str]
    val: list[str]
    test: list[str]
    name: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "train": self.train, "val": self.val, "test": self.test}


def make_fold(source: FeatureSource, val: list[str], test: list[str], train: list[str] | None = None) -> Fold:
    """A fold with the given validation/test speakers; training on all the others unless given."""
    for role, names in (("validation", val), ("test", test), ("training", train or [])):
        unknown = [name for name in names if name not in source.speakers]
        if unknown:
            raise EmovisionError(
                f"unknown {role} speaker {unknown[0]!r}: {source.path} has {', '.join(source.speakers)}"
            )
    if not val or not test:
        raise EmovisionError("a fold needs at least one validation and one test speaker")
    if set(val) & set(test):
        raise EmovisionError(
            f"speaker {sorted(set(val) & set(test))[0]!r} is both validation and test speaker"
        )
    train = train or [name for name in source.speakers if name not in val and name not in test]
    if not train:
        raise EmovisionError("no speaker is left for training")
    if set(train) & (set(val) | set(test)):
        raise EmovisionError("a training speaker is also a validation or test speaker")
    return Fold(train, list(val), list(test), name=f"test-{'+'.join(test)}")


def all_speakers_fold(source: FeatureSource) -> Fold:
    """Every speaker trains; no validation or test speaker (a final model for deployment)."""
    return Fold(list(source.speakers), [], [], name="all-speakers")


VALIDATIONS = ("hold-out", "train")


def validation_trains(source: FeatureSource, folds: list[Fold]) -> list[Fold]:
    """``folds`` whose validation speakers train too (no validation speaker), training speakers in
    the order of ``source.speakers``."""
    moved = []
    for fold in folds:
        train = set(fold.train) | set(fold.val)
        moved.append(replace(fold, train=[s for s in source.speakers if s in train], val=[]))
    return moved


FOLD_RULES = ("auto", "iemocap10", "iemocap5", "pairs", "loso")
IEMOCAP_SPEAKERS = [f"{s}{g}" for s in range(1, 6) for g in "FM"]
IEMOCAP5_TEST = ["1M", "2F", "3F", "4F", "5F"]


def make_folds(source: FeatureSource, rule: str = "auto") -> list[Fold]:
    """The folds of ``rule`` (a name of :data:`FOLD_RULES` or a fold file) for ``source``."""
    if rule not in FOLD_RULES:
        return folds_from_file(source, Path(rule))
    if rule == "auto":
        rule = "iemocap10" if set(source.speakers) == set(IEMOCAP_SPEAKERS) else "loso"
        rule = "pairs" if source.corpus == "ravdess" and len(source.speakers) % 2 == 0 else rule
    if rule == "pairs":
        ordered = sorted(source.speakers)
        if len(ordered) < 6 or len(ordered) % 2:
            raise EmovisionError(
                f"pairs folds need an even number of at least six speakers, {source.path} has {len(ordered)}"
            )
        pairs = [ordered[i : i + 2] for i in range(0, len(ordered), 2)]
        return [make_fold(source, pairs[(i + 1) % len(pairs)], pair) for i, pair in enumerate(pairs)]
    if rule in ("iemocap10", "iemocap5"):
        missing = [name for name in IEMOCAP_SPEAKERS if name not in source.speakers]
        if missing:
            raise EmovisionError(
                f"{rule} folds need the IEMOCAP speakers 1F…5M; {source.path} lacks {missing[0]}"
            )
        tests = IEMOCAP_SPEAKERS if rule == "iemocap10" else IEMOCAP5_TEST
        return [make_fold(source, [_session_partner(test)], [test]) for test in tests]
    if len(source.speakers) < 3:
        raise EmovisionError("leave-one-speaker-out needs at least three speakers (train, validation, test)")
    return [make_fold(source, [validation_speaker(source, test)], [test]) for test in source.speakers]


def validation_speaker(source: FeatureSource, test: str) -> str:
    """The next speaker after ``test`` in sorted order with the same gender (any gender if none)."""
    ordered = sorted(source.speakers)
    start = ordered.index(test)
    others = [ordered[(start + step) % len(ordered)] for step in range(1, len(ordered))]
    gender = source.genders.get(test)
    same = [name for name in others if gender and source.genders.get(name) == gender]
    return (same or others)[0]


def folds_from_file(source: FeatureSource, path: Path) -> list[Fold]:
    """Folds from a JSON list or a CSV file (see the module docstring)."""
    if not path.is_file():
        raise EmovisionError(f"--folds {path}: not one of {', '.join(FOLD_RULES)} and no such file")
    text = path.read_text(encoding="utf-8")
    try:
        entries = (
            json.loads(text) if path.suffix.lower() == ".json" else list(csv.DictReader(text.splitlines()))
        )
    except json.JSONDecodeError as exc:
        raise EmovisionError(f"{path} is not valid JSON ({exc})") from None
    folds = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or not entry.get("test") or not entry.get("val"):
            raise EmovisionError(f"{path}: fold {number} needs 'test' and 'val' speakers")
        train = speaker_list(entry.get("train")) or None
        fold = make_fold(source, speaker_list(entry["val"]), speaker_list(entry["test"]), train=train)
        folds.append(replace(fold, name=entry.get("name") or fold.name))
    if not folds:
        raise EmovisionError(f"{path} lists no folds")
    return folds


def _session_partner(speaker: str) -> str:
    return speaker[0] + ("M" if speaker[1] == "F" else "F")


def speaker_list(value) -> list[str]:
    """Speaker ids from a list, or from text separated by ``+``, ``,`` or spaces."""
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [part for part in str(value).replace("+", " ").replace(",", " ").split() if part]
