"""Corpus readers: each module's ``load_corpus(root, classes, ...)`` returns a :class:`Corpus`."""

from __future__ import annotations

from pathlib import Path

from emovision.data.corpora import emodb, iemocap, manifest, ravdess
from emovision.data.corpora.base import Corpus, Utterance
from emovision.errors import CorpusError

LOADERS = {
    "iemocap": iemocap.load_corpus,
    "emodb": emodb.load_corpus,
    "ravdess": ravdess.load_corpus,
    "manifest": manifest.load_corpus,
}

__all__ = ["LOADERS", "Corpus", "Utterance", "load_corpus"]


def load_corpus(name: str, root: str | Path, classes: str | None = None, **options) -> Corpus:
    """Records of corpus ``name`` (one of :data:`LOADERS`) under ``root``."""
    if name not in LOADERS:
        raise CorpusError(f"unknown corpus {name!r}: choose one of {', '.join(LOADERS)}")
    corpus = LOADERS[name](root, classes, **options)
    corpus.selection = {"corpus": name, "root": str(root), "classes": classes, **options}
    return corpus
