"""Finished folds kept on disk as they finish, so that an interrupted ``fuse``, ``ensemble
--functionals`` or ``robustness`` resumes at the first unfinished fold instead of computing every fold
again.

A fold's result is written atomically with the ``identity`` it was computed for (what the results
depend on: input files, fold models, options, the format): a JSON-able dict (a fold fused on its
validation speakers, a fold's robustness metrics) to ``FOLDER/NAME.json``, a
:class:`~emovision.evaluation.cross_fusion.FoldScores` (a fold's scores still to be fused across the
folds) to ``FOLDER/NAME.npz`` — plain arrays and one JSON string, read without pickle. A fold kept for
another identity, or damaged, is computed again; the folder is removed once the report is written.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from emovision import __version__
from emovision.evaluation.cross_fusion import FoldScores
from emovision.evaluation.linear_model import LinearTraining
from emovision.files import atomic_write_bytes

FOLDER_NAME = ".fusion-folds"
FORMAT_VERSION = 1


class FoldCache:
    """The finished folds of one evaluation in ``folder``, valid for ``identity`` (a JSON-able dict)."""

    def __init__(self, folder: Path, identity: dict):
        self.folder = folder
        self.identity = json.loads(json.dumps(identity))

    def get(self, name: str) -> dict | FoldScores | None:
        """Fold ``name``'s result when it finished before for this identity, else None (also for a
        damaged file)."""
        try:
            if (self.folder / f"{name}.json").is_file():
                meta, arrays = json.loads((self.folder / f"{name}.json").read_text(encoding="utf-8")), {}
            elif (self.folder / f"{name}.npz").is_file():
                with np.load(self.folder / f"{name}.npz", allow_pickle=False) as data:
                    arrays = {key: data[key] for key in data.files}
                meta = json.loads(str(arrays.pop("meta")))
            else:
                return None
            return _decode(meta, arrays) if meta.get("identity") == self.identity else None
        except (OSError, ValueError, KeyError, AttributeError, EOFError, zipfile.BadZipFile):
            return None

    def put(self, name: str, result: dict | FoldScores) -> None:
        """Keep fold ``name``'s ``result``."""
        meta, arrays = _encode(result)
        meta["identity"] = self.identity
        if not arrays:
            atomic_write_bytes(self.folder / f"{name}.json", json.dumps(meta).encode())
            return
        buffer = io.BytesIO()
        np.savez(buffer, meta=np.array(json.dumps(meta)), **arrays)
        atomic_write_bytes(self.folder / f"{name}.npz", buffer.getvalue())

    def result(self, name: str, compute: Callable[[], dict | FoldScores]) -> dict | FoldScores:
        """Fold ``name``'s kept result, or ``compute()`` kept."""
        found = self.get(name)
        if found is None:
            found = compute()
            self.put(name, found)
        return found

    def clear(self) -> None:
        """Remove the folder: the fusion it served is written."""
        shutil.rmtree(self.folder, ignore_errors=True)


def fusion_cache(
    out: Path, functionals: Path, features: list[Path], models: str, linear: LinearTraining
) -> FoldCache:
    """The fold cache of a fusion written to ``out``: valid while the ``functionals`` file and the image
    models' ``features`` files (each by path, size and modification time), the fold models (``models``,
    their fingerprint), ``linear`` and this version of emovision are the same."""
    identity = {
        "format": FORMAT_VERSION,
        "emovision": __version__,
        "files": [_stamp(path) for path in (functionals, *features)],
        "models": models,
        "linear": linear.report_fields(),
    }
    return FoldCache(out / FOLDER_NAME, identity)


def _stamp(path: Path) -> list:
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def _encode(result: dict | FoldScores) -> tuple[dict, dict[str, np.ndarray]]:
    """A fold's result as JSON-able ``meta`` and arrays."""
    if isinstance(result, dict):
        return {"kind": "json", "result": result}, {}
    arrays = {"image": result.image, "labels": result.labels}
    views = []
    for i, (c, parts) in enumerate(result.linear.items()):
        modes = []
        for j, (mode, scores, kept) in enumerate(parts):
            arrays[f"scores_{i}_{j}"] = scores
            if kept is not None:
                arrays[f"kept_{i}_{j}"] = kept
            modes.append(mode)
        views.append([c, modes])
    return {"kind": "scores", "name": result.name, "fold": result.fold, "views": views}, arrays


def _decode(meta: dict, data: dict[str, np.ndarray]) -> dict | FoldScores:
    if meta["kind"] == "json":
        return meta["result"]
    linear = {
        c: [(mode, data[f"scores_{i}_{j}"], data.get(f"kept_{i}_{j}")) for j, mode in enumerate(modes)]
        for i, (c, modes) in enumerate(meta["views"])
    }
    return FoldScores(meta["name"], meta["fold"], data["image"], data["labels"], linear)
