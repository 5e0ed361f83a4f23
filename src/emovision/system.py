"""What this machine offers the process (no torch import)."""

from __future__ import annotations

import os


def available_cores() -> int:
    """CPU cores this process may use: its affinity where the OS reports one (Linux), else the CPU count
    (macOS and Windows have no ``os.sched_getaffinity``)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
