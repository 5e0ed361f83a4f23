"""What this machine offers the process (no torch import)."""

from __future__ import annotations

import importlib
import os
import platform
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


def resolve_device(name: str, cuda_available: bool) -> str:
    """The one device rule: ``auto`` is ``cuda`` when a GPU is usable, else ``cpu``; ``cpu``;
    ``cuda`` or ``cuda:N`` only when a GPU is usable (a user error otherwise)."""
    if name == "auto":
        return "cuda" if cuda_available else "cpu"
    if name == "cpu":
        return name
    if name != "cuda" and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise EmovisionError(f"unknown device {name!r}: choose auto, cpu, cuda or cuda:N")
    if not cuda_available:
        raise EmovisionError(f"device {name} was asked for, but no CUDA GPU is usable here (use cpu or auto)")
    return name


def software_versions() -> dict:
    """Versions of emovision, torch, numpy, Python and CUDA, for run records."""
    import numpy as np
    import torch

    import emovision

    return {
        "emovision": emovision.__version__,
        "torch": str(torch.__version__),
        "numpy": str(np.__version__),
        "python": platform.python_version(),
        "cuda": str(torch.version.cuda or ""),
    }
