"""The features file: HDF5 with one group per speaker, written atomically and resumably.

Layout (format ``emovision-features``, version :data:`FORMAT_VERSION`)::

    /                      attrs: format, format_version, corpus, classes (JSON list),
                                  feature_config (JSON), complete, created
    /<speaker>/segments    (N, C, F, T) float32 spectrogram segments (dB)
    /<speaker>/segment_labels          (N,) int64 class index per segment
    /<speaker>/utterance_labels        (U,) int64 class index per utterance
    /<speaker>/segments_per_utterance  (U,) int64
    /<speaker>/utterance_ids           (U,) UTF-8 strings
    /<speaker>/durations               (U,) float32 seconds of audio
               attrs: gender ("F", "M" or ""), skipped (JSON list of [file, reason]), complete
    /<speaker>/augmented/              only in files made with ``extract --augment``:
               segments, segment_labels, segments_per_utterance   as above, for the copies
               source  (A,) int64 row of the clean utterance each copy is made from
               kinds   (A,) UTF-8 augmentation kind of each copy (``noise:white``, ``reverb`` …)
               functionals  (A, D) float32 the copies' openSMILE functionals (with ``--functionals``)
    /<speaker>/functionals  (U, D) float32 openSMILE functionals (files made with ``--functionals``)
    / attrs also: augment (JSON of the :class:`~emovision.data.augment_audio.AugmentPlan`, or ""),
                  functionals (the openSMILE set's name, or ""),
                  selection (JSON: corpus, root, classes preset, loader options)

A file is written as ``<name>.partial`` and renamed when every speaker is in it; an
interrupted run resumes from the speakers already complete in the partial file.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from emovision.data.features import FeatureConfig
from emovision.errors import FeatureFileError
from emovision.files import atomic_write_bytes

FORMAT = "emovision-features"
FORMAT_VERSION = 1
_ARRAYS = ("segments", "segment_labels", "utterance_labels", "segments_per_utterance", "durations")


@dataclass
class AugmentedCopies:
    """Waveform-augmented copies of a speaker's utterances; copy ``i`` is of utterance ``source[i]``."""

    segments: np.ndarray
    segment_labels: np.ndarray
    segments_per_utterance: np.ndarray
    source: np.ndarray
    kinds: list[str]
    functionals: np.ndarray | None = None


_COPY_ARRAYS = ("segments", "segment_labels", "segments_per_utterance", "source")


@dataclass
class SpeakerFeatures:
    """All features of one speaker; row ``i`` of ``utterance_*`` owns ``segments_per_utterance[i]`` segments."""

    segments: np.ndarray
    segment_labels: np.ndarray
    utterance_labels: np.ndarray
    segments_per_utterance: np.ndarray
    utterance_ids: list[str]
    durations: np.ndarray
    gender: str = ""
    skipped: tuple = ()
    augmented: AugmentedCopies | None = None
    functionals: np.ndarray | None = None

    def as_seed_tuple(self) -> tuple:
        """``(segments, utterance_labels, segment_labels, segments_per_utterance)`` as the original."""
        return (self.segments, self.utterance_labels, self.segment_labels, self.segments_per_utterance)


@dataclass(frozen=True)
class FeatureFileInfo:
    """What a features file holds, without its arrays."""

    path: Path
    corpus: str
    classes: list[str]
    config: FeatureConfig
    speakers: list[str]
    genders: dict[str, str]
    augment: dict | None = None
    functionals: str = ""
    selection: dict | None = None


class FeatureWriter:
    """Writes a features file speaker by speaker into ``<path>.partial``; :meth:`finish` renames it.

    ``meta`` (corpus, classes, feature configuration) identifies the job: a partial file of
    the same job is resumed, one of another job is started over.
    """

    def __init__(
        self,
        path: str | Path,
        corpus: str,
        classes: list[str],
        config: FeatureConfig,
        augment: dict | None = None,
        functionals: str | None = None,
        selection: dict | None = None,
    ):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        attrs = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "corpus": corpus,
            "classes": json.dumps(classes),
            "feature_config": json.dumps(config.to_dict(), sort_keys=True),
            "augment": json.dumps(augment, sort_keys=True) if augment else "",
            "functionals": functionals or "",
            "selection": json.dumps(selection or {}, sort_keys=True),
        }
        self._file = self._open_partial(attrs)

    def _open_partial(self, attrs: dict) -> h5py.File:
        if self.partial.exists():
            try:
                handle = h5py.File(self.partial, "a")
                if all(handle.attrs.get(key) == value for key, value in attrs.items()):
                    for name in [n for n in handle if not handle[n].attrs.get("complete")]:
                        del handle[name]
                    return handle
                handle.close()
            except OSError:
                pass
            self.partial.unlink()
        handle = h5py.File(self.partial, "w")
        handle.attrs.update(attrs)
        handle.attrs["complete"] = False
        return handle

    def done_speakers(self) -> set[str]:
        """Speakers already complete in the partial file (from an interrupted run)."""
        return set(self._file)

    def read_speaker(self, speaker: str) -> SpeakerFeatures:
        return _read_group(self._file[speaker])

    def write_speaker(self, speaker: str, data: SpeakerFeatures) -> None:
        group = self._file.create_group(speaker)
        for name in _ARRAYS:
            group.create_dataset(name, data=getattr(data, name))
        group.create_dataset(
            "utterance_ids", data=np.array(data.utterance_ids, dtype=object), dtype=h5py.string_dtype()
        )
        if data.functionals is not None:
            group.create_dataset("functionals", data=data.functionals)
        if data.augmented is not None:
            copies = group.create_group("augmented")
            for name in _COPY_ARRAYS:
                copies.create_dataset(name, data=getattr(data.augmented, name))
            copies.create_dataset(
                "kinds", data=np.array(data.augmented.kinds, dtype=object), dtype=h5py.string_dtype()
            )
            if data.augmented.functionals is not None:
                copies.create_dataset("functionals", data=data.augmented.functionals)
        group.attrs["gender"] = data.gender or ""
        group.attrs["skipped"] = json.dumps([list(item) for item in data.skipped])
        group.attrs["complete"] = True
        self._file.flush()

    def finish(self) -> Path:
        """Mark the file complete and move it to its final name."""
        self._file.attrs["complete"] = True
        self._file.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self._file.close()
        os.replace(self.partial, self.path)
        return self.path

    def close(self) -> None:
        """Close without finishing: the partial file stays for a later resume."""
        if self._file.id.valid:
            self._file.close()


def open_info(path: str | Path) -> FeatureFileInfo:
    """Metadata of a complete emovision features file; :class:`FeatureFileError` otherwise."""
    path = Path(path)
    with _open(path) as handle:
        return _info(path, handle)


def load_speakers(
    path: str | Path, speakers: list[str] | None = None, augmented: bool = False
) -> dict[str, SpeakerFeatures]:
    """Arrays of the given speakers (all when ``None``), in the order asked; with ``augmented``
    their waveform-augmented copies too (training speakers only)."""
    path = Path(path)
    with _open(path) as handle:
        names = list(handle) if speakers is None else speakers
        missing = [name for name in names if name not in handle]
        if missing:
            raise FeatureFileError(f"{path} has no speaker {missing[0]!r} (it has {', '.join(handle)})")
        return {name: _read_group(handle[name], augmented) for name in names}


def utterance_counts(path: str | Path) -> dict[str, int]:
    """``{speaker: number of utterances}`` of a features file (nothing else is read)."""
    with _open(Path(path)) as handle:
        return {name: int(group["utterance_ids"].shape[0]) for name, group in handle.items()}


def read_functionals(path: str | Path) -> dict[str, tuple[list[str], np.ndarray, np.ndarray]]:
    """``{speaker: (utterance ids, functionals (U, D), utterance labels (U,))}`` of a file made with
    ``extract --functionals`` (the spectrograms are not read)."""
    path = Path(path)
    with _open(path) as handle:
        if not all("functionals" in handle[name] for name in handle):
            raise FeatureFileError(f"{path} holds no openSMILE functionals (extract with --functionals)")
        return {
            name: (_strings(g["utterance_ids"]), g["functionals"][()], g["utterance_labels"][()])
            for name, g in handle.items()
        }


def read_copy_functionals(path: str | Path) -> dict[str, tuple[list[str], np.ndarray, np.ndarray]]:
    """``{speaker: (kinds, functionals (A, D), labels (A,))}`` of the waveform-augmented copies of
    every speaker whose copies have functionals (files made with ``extract --augment …
    --functionals …``); the label of a copy is its source utterance's."""
    path = Path(path)
    with _open(path) as handle:
        out = {}
        for name, group in handle.items():
            node = group.get("augmented")
            if node is None or "functionals" not in node:
                continue
            labels = group["utterance_labels"][()][node["source"][()]]
            out[name] = (_strings(node["kinds"]), node["functionals"][()], labels)
        return out


def read_features(path: str | Path, trust_pickle: bool = False) -> dict[str, tuple]:
    """The original structure ``{speaker: (segments, utterance_labels, segment_labels, segments_per_utterance)}``.

    Reads an emovision HDF5 file, or a legacy pickle when ``trust_pickle`` is set
    (unpickling runs code from the file: only for files you made yourself).
    """
    path = Path(path)
    if is_pickle(path):
        return load_seed_pickle(path, trust_pickle)
    return {name: data.as_seed_tuple() for name, data in load_speakers(path).items()}


def write_seed_pickle(path: str | Path, speakers: dict[str, SpeakerFeatures]) -> Path:
    """Write the original pickle layout atomically (for the original scripts)."""
    path = Path(path)
    payload = {name: data.as_seed_tuple() for name, data in speakers.items()}
    atomic_write_bytes(path, pickle.dumps(payload, protocol=4))
    return path


def load_seed_pickle(path: str | Path, trust_pickle: bool) -> dict[str, tuple]:
    """The dictionary of a seed-format pickle; refuses unless ``trust_pickle`` is set."""
    path = Path(path)
    if not trust_pickle:
        raise FeatureFileError(
            f"{path} is a pickle file: loading it can run arbitrary code. Pass --trust-pickle "
            "only if you made it yourself, or convert it with emovision extract"
        )
    try:
        with path.open("rb") as handle:
            payload = pickle.load(handle)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as exc:
        raise FeatureFileError(f"{path} is not a readable pickle ({exc})") from None
    if not isinstance(payload, dict) or not all(
        isinstance(v, tuple) and len(v) == 4 for v in payload.values()
    ):
        raise FeatureFileError(f"{path} is not a features pickle {{speaker: (segments, labels, ...)}}")
    return payload


def is_pickle(path: Path) -> bool:
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        head = handle.read(2)
    return len(head) == 2 and head[0] == 0x80 and head[1] <= 5


def _open(path: Path) -> h5py.File:
    if not path.exists():
        partial = path.with_name(path.name + ".partial")
        hint = f" (an unfinished extraction left {partial}: rerun it to finish)" if partial.exists() else ""
        raise FeatureFileError(f"features file {path} does not exist{hint}")
    if is_pickle(path):
        raise FeatureFileError(
            f"{path} is a pickle, not an emovision features file: pass --trust-pickle to read it"
        )
    try:
        handle = h5py.File(path, "r")
    except OSError:
        raise FeatureFileError(f"{path} is not an HDF5 features file (made by emovision extract)") from None
    if handle.attrs.get("format") != FORMAT:
        handle.close()
        raise FeatureFileError(f"{path} is an HDF5 file but not an emovision features file")
    if int(handle.attrs.get("format_version", 0)) > FORMAT_VERSION:
        handle.close()
        raise FeatureFileError(
            f"{path} was written by a newer emovision (format {handle.attrs['format_version']})"
        )
    if not handle.attrs.get("complete"):
        handle.close()
        raise FeatureFileError(f"{path} is incomplete")
    return handle


def _info(path: Path, handle: h5py.File) -> FeatureFileInfo:
    config = FeatureConfig.from_dict(json.loads(handle.attrs["feature_config"]))
    speakers = list(handle)
    genders = {name: str(handle[name].attrs.get("gender", "")) for name in speakers}
    classes = json.loads(handle.attrs["classes"])
    augment = json.loads(handle.attrs.get("augment", "") or "null")
    functionals = str(handle.attrs.get("functionals", ""))
    selection = json.loads(handle.attrs.get("selection", "") or "{}") or None
    return FeatureFileInfo(
        path, str(handle.attrs["corpus"]), classes, config, speakers, genders, augment, functionals, selection
    )


def _read_group(group: h5py.Group, augmented: bool = False) -> SpeakerFeatures:
    arrays = {name: group[name][()] for name in _ARRAYS}
    skipped = tuple(tuple(item) for item in json.loads(group.attrs.get("skipped", "[]")))
    copies = None
    if augmented and "augmented" in group:
        node = group["augmented"]
        copies = AugmentedCopies(
            kinds=_strings(node["kinds"]),
            functionals=node["functionals"][()] if "functionals" in node else None,
            **{n: node[n][()] for n in _COPY_ARRAYS},
        )
    return SpeakerFeatures(
        utterance_ids=_strings(group["utterance_ids"]),
        gender=str(group.attrs.get("gender", "")),
        skipped=skipped,
        augmented=copies,
        functionals=group["functionals"][()] if "functionals" in group else None,
        **arrays,
    )


def _strings(dataset: h5py.Dataset) -> list[str]:
    return [item.decode("utf-8") if isinstance(item, bytes) else str(item) for item in dataset[()]]
