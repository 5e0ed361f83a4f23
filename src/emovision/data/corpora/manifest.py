"""Any other corpus: a CSV with the columns ``path,speaker,label`` (optional ``utterance``, ``gender``).

Relative paths are resolved against the CSV's folder. The classes are the sorted distinct
labels, or the comma list given (rows with other labels are left out). Files that do not
exist are listed as skipped.
"""

from __future__ import annotations

import csv
from pathlib import Path

from emovision.data.corpora.base import Corpus, Utterance, require_utterances
from emovision.errors import CorpusError

NAME = "manifest"
REQUIRED_COLUMNS = ("path", "speaker", "label")


def load_corpus(root: str | Path, classes: str | None = None) -> Corpus:
    """Records of the manifest CSV at ``root``."""
    manifest = Path(root)
    if not manifest.is_file():
        raise CorpusError(f"manifest {manifest} does not exist (expected a CSV with path,speaker,label)")
    rows = _read_rows(manifest)
    present = sorted({row["label"] for row in rows})
    if classes:
        names = [name.strip() for name in classes.split(",") if name.strip()]
        unknown = [name for name in names if name not in present]
        if unknown:
            raise CorpusError(f"unknown class {unknown[0]!r}: {manifest} has the labels {', '.join(present)}")
    else:
        names = present
    utterances, skipped, seen = [], [], set()
    for line, row in enumerate(rows, start=2):
        if row["label"] not in names:
            continue
        path = Path(row["path"])
        path = path if path.is_absolute() else manifest.parent / path
        utt = row.get("utterance") or str(Path(row["path"]).with_suffix(""))
        if utt in seen:
            raise CorpusError(f"{manifest}, line {line}: utterance id {utt!r} appears twice")
        seen.add(utt)
        if not path.is_file():
            skipped.append((str(path), "audio file missing"))
            continue
        extra = {"gender": row["gender"].upper()} if row.get("gender") else {}
        utterances.append(Utterance(utt, path, row["speaker"], row["label"], extra))
    corpus = Corpus(NAME, names, utterances, skipped)
    return require_utterances(corpus, manifest, "no row names an existing audio file")


def _read_rows(manifest: Path) -> list[dict]:
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [name.strip() for name in reader.fieldnames or []]
            missing = [name for name in REQUIRED_COLUMNS if name not in columns]
            if missing:
                raise CorpusError(
                    f"{manifest} lacks the column(s) {', '.join(missing)} "
                    f"(header: {', '.join(columns) or 'none'})"
                )
            rows = []
            for line, row in enumerate(reader, start=2):
                row = {key.strip(): (value or "").strip() for key, value in row.items() if key}
                if not all(row.get(name) for name in REQUIRED_COLUMNS):
                    raise CorpusError(f"{manifest}, line {line}: path, speaker and label must be set")
                rows.append(row)
    except UnicodeDecodeError:
        raise CorpusError(f"{manifest} is not a UTF-8 text CSV") from None
    return rows
