"""Files written atomically: a reader sees the old file or the whole new one, never a half-written one.
And the JSON state files (``metrics.json``, ``cv.json``, ``summary.json`` …) read back with one
clear error when they are missing or damaged.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from emovision.errors import EmovisionError


def atomic_write(path: str | Path, write: Callable[[Path], object], suffix: str = ".tmp") -> Path:
    """``write(temporary)`` in ``path``'s folder, flushed to disk, then renamed over ``path``.

    ``suffix`` is the temporary file's ending (a library may choose the format by it). On any
    error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    temp = Path(name)
    try:
        os.chmod(temp, 0o666 & ~_umask())  # mkstemp makes 0600; a written file gets the usual mode
        write(temp)
        with temp.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path


def check_writable_folder(folder: str | Path, option: str) -> Path:
    """``folder`` created if needed and proven writable (a file made and removed), else an
    :class:`EmovisionError` naming ``option``: checked before any work starts."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise EmovisionError(f"{option} {folder}: cannot write there ({exc.strerror or exc})") from None
    return folder


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """``data`` written to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda temp: temp.write_bytes(data))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_json(path: str | Path, what: str) -> dict:
    """The JSON object in ``path`` (``what`` names the file in errors: "metrics", "cross-validation" …).

    A missing file, one that is not UTF-8 JSON, or JSON that is not an object raises
    :class:`EmovisionError` naming the file.
    """
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EmovisionError(f"{path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise EmovisionError(
            f"{path} is not a readable {what} file ({type(exc).__name__}: {str(exc)[:120]}); "
            "remove it and rerun the command that writes it"
        ) from None
    if not isinstance(value, dict):
        raise EmovisionError(f"{path} is not a {what} file: it holds a JSON {type(value).__name__}")
    return value


def check_output_path(path: str | Path, option: str, suffixes: tuple[str, ...]) -> Path:
    """``path`` for ``option`` if its suffix is one of ``suffixes`` and its folder exists; an
    :class:`EmovisionError` otherwise (checked before any work)."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise EmovisionError(f"{option} {path}: the suffix must be one of {', '.join(suffixes)}")
    if not path.parent.is_dir():
        raise EmovisionError(f"{option} {path}: the folder {path.parent} does not exist")
    return path
