"""What this machine offers the process (no torch import)."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from emovision.errors import EmovisionError


def available_cores() -> int:
    """CPU cores this process may use: its affinity where the OS reports one (Linux), else the CPU count
    (macOS and Windows have no ``os.sched_getaffinity``)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """``module`` imported, or a user error naming the optional extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise EmovisionError(
            f"{purpose} needs {module.split('.')[0]}: pip install 'emovision[{extra}]'"
        ) from None
