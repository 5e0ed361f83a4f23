"""A fusion's finished folds kept on disk as they finish, so that an interrupted ``fuse`` or ``ensemble
--functionals`` resumes at the first unfinished fold instead of refitting every linear model.

Each fold's result (:func:`~emovision.evaluation.cross_fusion.fold_fusion`: a fused fold's dict, or a
:class:`~emovision.evaluation.cross_fusion.FoldScores` still to be fused across the folds) is written
atomically to ``FOLDER/NAME.npz`` — plain arrays and one JSON string, read without pickle. ``identity``
(what the results depend on: the functionals file, the fold models' fingerprint, how the linear model is
trained) is kept in ``FOLDER/identity.json``; a cache of another identity is emptied before use. The
folder is removed once the fusion's report is written.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from emovision.evaluation.cross_fusion import FoldScores
from emovision.evaluation.linear_model import LinearTraining
from emovision.files import atomic_write_bytes

FOLDER_NAME = ".fusion-folds"


class FoldCache:
    """The finished folds of one fusion in ``folder``, valid for ``identity`` (a JSON-able dict)."""

    def __init__(self, folder: Path, identity: dict):
        self.folder = folder
        self.identity = json.loads(json.dumps(identity))
        stamp = folder / "identity.json"
        if folder.is_dir() and (not stamp.is_file() or _read_identity(stamp) != self.identity):
            shutil.rmtree(folder)

    def get(self, name: str) -> dict | FoldScores | None:
        """Fold ``name``'s result when it finished before, else None (also for an unreadable file)."""
        path = self.folder / f"{name}.npz"
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return _decode({key: data[key] for key in data.files})
        except (OSError, ValueError, KeyError):
            return None

    def put(self, name: str, result: dict | FoldScores) -> None:
        """Keep fold ``name``'s ``result``."""
        stamp = self.folder / "identity.json"
        if not stamp.is_file():
            atomic_write_bytes(stamp, json.dumps(self.identity).encode())
        buffer = io.BytesIO()
        np.savez(buffer, **_encode(result))
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


def fusion_cache(out: Path, functionals: Path, models: str, linear: LinearTraining) -> FoldCache:
    """The fold cache of a fusion written to ``out``: valid while the ``functionals`` file (its path, size
    and modification time), the fold models (``models``, their fingerprint) and ``linear`` are the same."""
    stat = functionals.stat()
    identity = {
        "functionals": str(functionals.resolve()),
        "functionals_file": [stat.st_size, stat.st_mtime_ns],
        "models": models,
        "linear": linear.report_fields(),
    }
    return FoldCache(out / FOLDER_NAME, identity)


def _read_identity(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _encode(result: dict | FoldScores) -> dict[str, np.ndarray]:
    """Arrays and a JSON ``meta`` string for a fold's result."""
    if isinstance(result, dict):
        return {"meta": np.array(json.dumps({"kind": "fused", "result": result}))}
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
    meta = {"kind": "scores", "name": result.name, "fold": result.fold, "views": views}
    return arrays | {"meta": np.array(json.dumps(meta))}


def _decode(data: dict[str, np.ndarray]) -> dict | FoldScores:
    meta = json.loads(str(data["meta"]))
    if meta["kind"] == "fused":
        return meta["result"]
    linear = {
        float(c): [(mode, data[f"scores_{i}_{j}"], data.get(f"kept_{i}_{j}")) for j, mode in enumerate(modes)]
        for i, (c, modes) in enumerate(meta["views"])
    }
    return FoldScores(meta["name"], meta["fold"], data["image"], data["labels"], linear)
