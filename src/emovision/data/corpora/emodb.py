"""emoDB (Berlin Database of Emotional Speech): labels and speakers from the file names.

``03a01Fa.wav``: speaker ``03``, text ``a01``, emotion letter ``F``, version ``a``.
Speakers 03, 10, 11, 12, 15 are male; 08, 09, 13, 14, 16 female.
"""

from __future__ import annotations

import re
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from emovision.data.corpora.base import (
    Corpus,
    Utterance,
    named_audio,
    require_dir,
    require_utterances,
    resolve_classes,
)
from emovision.errors import CorpusError

NAME = "emodb"
DOWNLOAD_URL = "http://emodb.bilderbar.info/download/download.zip"
EMOTIONS = {
    "W": "anger",
    "L": "boredom",
    "E": "disgust",
    "A": "fear",
    "F": "happiness",
    "T": "sadness",
    "N": "neutral",
}
CLASS_SETS = {
    "7": ["anger", "boredom", "disgust", "fear", "happiness", "sadness", "neutral"],
    "4": ["neutral", "happiness", "sadness", "anger"],
}
DEFAULT_CLASSES = "7"
MALE_SPEAKERS = {"03", "10", "11", "12", "15"}
_NAME_RE = re.compile(r"^(\d\d)([a-z]\d\d)([WLEAFTN])([a-z])$")


def load_corpus(root: str | Path, classes: str | None = None) -> Corpus:
    """Every audio file under ``root`` (searched recursively; WAV, FLAC, OGG, MP3, AIFF …) whose name
    follows emoDB's scheme; other audio files are listed in ``skipped``."""
    root = require_dir(Path(root), "emoDB")
    names = resolve_classes(classes, CLASS_SETS, DEFAULT_CLASSES)
    utterances = []
    found, skipped = named_audio(root, _NAME_RE, "emoDB's scheme (03a01Fa)")
    for path, groups in found:
        speaker, text, letter, version = groups
        label = EMOTIONS[letter]
        if label not in names:
            continue
        gender = "M" if speaker in MALE_SPEAKERS else "F"
        extra = {"gender": gender, "text": text, "version": version}
        utterances.append(Utterance(path.stem, path, speaker, label, extra))
    corpus = Corpus(NAME, names, utterances, skipped)
    return require_utterances(corpus, root, "expected audio files named like 03a01Fa.wav")


def download(cache_dir: str | Path) -> Path:
    """Download and unpack the official emoDB archive into ``cache_dir``; return the wav folder.

    Reuses a finished earlier download. Raises :class:`CorpusError` with instructions when
    there is no network.
    """
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    cache_dir = Path(cache_dir)
    target = cache_dir / "emodb"
    if (target / ".complete").exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    archive = cache_dir / "emodb-download.zip"
    partial = archive.with_suffix(".zip.partial")
    try:
        with urllib.request.urlopen(DOWNLOAD_URL, timeout=30) as response, partial.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn()) as bar:
                task = bar.add_task("downloading emoDB", total=total)
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    bar.advance(task, len(chunk))
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        partial.unlink(missing_ok=True)
        raise CorpusError(
            f"could not download emoDB from {DOWNLOAD_URL} ({exc}). Without network, download "
            "the archive elsewhere, unpack it, and point EMODB_DIR (make demo) or the ROOT "
            "argument at the folder that holds its wav/ files"
        ) from None
    partial.replace(archive)
    unpacked = cache_dir / "emodb.partial"
    shutil.rmtree(unpacked, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(unpacked)
    except zipfile.BadZipFile:
        archive.unlink(missing_ok=True)
        raise CorpusError(f"the download from {DOWNLOAD_URL} is not a zip archive") from None
    shutil.rmtree(target, ignore_errors=True)
    unpacked.replace(target)
    (target / ".complete").touch()
    archive.unlink(missing_ok=True)
    return target
