"""Embeddings: the vectors a model's classifier receives, averaged per recording or turn
(:func:`mean_embeddings`), and written for other tools: ``.npy`` with a CSV index, or one Parquet table.

``.npy``: the vectors ``(N, D)`` float32, and next to it ``<stem>.csv`` with one row per vector
(``file``, ``start``, ``end`` in seconds), in the same order. ``.parquet`` (needs pyarrow: the
``parquet`` extra): columns ``file``, ``start``, ``end`` and ``embedding`` (a list of D floats).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path

import numpy as np

from emovision.files import atomic_write, atomic_write_bytes, check_output_path
from emovision.inference.backends import TorchBackend
from emovision.inference.results import Embedding
from emovision.system import require

FORMATS = (".npy", ".parquet")


def mean_embeddings(
    backend: TorchBackend, batches: Iterable[tuple], batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """The mean embedding ``(U, D)`` float32 of every utterance and their spans ``(U, 2)`` (s), from
    batches ``(spans (n, 2), segments (n_i, C, F, T) per utterance, …)``."""
    spans, means = [], []
    for batch_spans, pieces, *_ in batches:
        vectors = backend.embeddings(np.concatenate(pieces), batch_size)
        bounds = np.cumsum([0] + [piece.shape[0] for piece in pieces])
        means += [vectors[a:b].mean(axis=0) for a, b in pairwise(bounds)]
        spans.append(batch_spans)
    return np.stack(means).astype(np.float32), np.concatenate(spans)


def check_embeddings_path(path: str | Path) -> Path:
    """``path`` if its suffix is a known format, its folder exists and (Parquet) pyarrow is there."""
    path = check_output_path(path, "-o", FORMATS)
    if path.suffix.lower() == ".parquet":
        require("pyarrow", "parquet", "writing Parquet")
    return path


def write_embeddings(items: list[Embedding], path: str | Path) -> list[Path]:
    """Every item's vectors in the format of ``path``'s suffix; returns the files written."""
    path = check_embeddings_path(path)
    rows = [(item.source, float(start), float(end)) for item in items for start, end in item.spans]
    vectors = np.concatenate([item.vectors for item in items]).astype(np.float32)
    if path.suffix.lower() == ".parquet":
        pyarrow = require("pyarrow", "parquet", "writing Parquet")
        import pyarrow.parquet as parquet

        table = pyarrow.table(
            {
                "file": [row[0] for row in rows],
                "start": [row[1] for row in rows],
                "end": [row[2] for row in rows],
                "embedding": pyarrow.FixedSizeListArray.from_arrays(vectors.ravel(), vectors.shape[1]),
            }
        )
        return [atomic_write(path, lambda temp: parquet.write_table(table, temp), suffix=".parquet")]
    index = io.StringIO()
    writer = csv.writer(index, lineterminator="\n")
    writer.writerow(["file", "start", "end"])
    writer.writerows([file, f"{start:.3f}", f"{end:.3f}"] for file, start, end in rows)
    written = atomic_write(path, lambda temp: np.save(temp, vectors), suffix=".npy")
    return [written, atomic_write_bytes(path.with_suffix(".csv"), index.getvalue().encode())]
