"""Utterance records and class selection shared by every corpus module.

A corpus module turns a folder (or a CSV) into a :class:`Corpus`: the class names in
label-index order and one :class:`Utterance` per labelled audio file. Files named by the
labels but missing on disk are listed in ``skipped`` with the reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from emovision.data.audio import audio_files
from emovision.errors import CorpusError


@dataclass(frozen=True)
class Utterance:
    """One labelled recording: ``label`` is a class name of the corpus's selected class set."""

    id: str
    path: Path
    speaker: str
    label: str
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def gender(self) -> str | None:
        """``"F"``, ``"M"`` or ``None`` when the corpus does not say."""
        return self.extra.get("gender")


@dataclass
class Corpus:
    """The utterances of one corpus with the class names they are labelled with."""

    name: str
    classes: list[str]
    utterances: list[Utterance]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    selection: dict = field(default_factory=dict)
    """How the utterances were selected: ``corpus``, ``root``, ``classes`` (the preset or list as
    given, ``None`` for the default) and the loader's options (``improvised_only``); stored in the
    features file so that every later reader (robustness, …) selects exactly the same."""

    def label_index(self, label: str) -> int:
        return self.classes.index(label)

    def speakers(self) -> list[str]:
        return sorted({u.speaker for u in self.utterances})

    def speaker_genders(self) -> dict[str, str]:
        return {u.speaker: u.gender for u in self.utterances if u.gender}


def resolve_classes(spec: str | None, presets: dict[str, list[str]], default: str) -> list[str]:
    """Class names for ``spec``: a preset name, or a comma list of class names of the presets.

    Raises :class:`CorpusError` for an empty list, an unknown name or a repeated name.
    """
    if spec is None or spec == "":
        spec = default
    if spec in presets:
        return list(presets[spec])
    known = sorted({name for names in presets.values() for name in names})
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not names:
        raise CorpusError(f"no class names in {spec!r}")
    unknown = [name for name in names if name not in known]
    if unknown:
        raise CorpusError(
            f"unknown class {unknown[0]!r}: use one of the presets "
            f"{', '.join(presets)} or a comma list of {', '.join(known)}"
        )
    if len(set(names)) != len(names):
        raise CorpusError(f"class list {spec!r} names a class twice")
    return names


def require_dir(root: Path, what: str) -> Path:
    """``root`` as a Path, or a :class:`CorpusError` saying it is not a folder."""
    root = Path(root)
    if not root.exists():
        raise CorpusError(f"{what} root {root} does not exist")
    if not root.is_dir():
        raise CorpusError(f"{what} root {root} is not a folder")
    return root


def require_utterances(corpus: Corpus, root: Path, hint: str) -> Corpus:
    """``corpus`` unchanged, or a :class:`CorpusError` when it holds no labelled audio."""
    if not corpus.utterances:
        raise CorpusError(f"no labelled audio found for {corpus.name} under {root}: {hint}")
    return corpus


def named_audio(
    root: Path, pattern: re.Pattern[str], scheme: str
) -> tuple[list[tuple[Path, tuple[str, ...]]], list[tuple[str, str]]]:
    """Every audio file under ``root`` (recursively, sorted; any format the audio reader decodes, see
    :data:`emovision.data.audio.AUDIO_SUFFIXES`) whose stem matches ``pattern``, with its groups; and the
    skipped ones with their reason: a name outside the corpus's naming ``scheme``, or a second file
    of the same recording in another format."""
    found: list[tuple[Path, tuple[str, ...]]] = []
    skipped: list[tuple[str, str]] = []
    first: dict[str, Path] = {}
    for path in audio_files(root):
        match = pattern.match(path.stem)
        if not match:
            skipped.append((str(path), f"name does not follow {scheme}"))
        elif path.stem in first:
            skipped.append((str(path), f"the same recording as {first[path.stem].name}"))
        else:
            first[path.stem] = path
            found.append((path, match.groups()))
    return found, skipped
