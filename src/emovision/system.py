"""What this machine offers the process (no torch import)."""

from __future__ import annotations

import importlib
import multiprocessing
import os
import platform
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import islice
from types import ModuleType

from emovision.errors import EmovisionError


def available_cores() -> int:
    """CPU cores this process may use: its affinity where the OS reports one (Linux), else the CPU count
    (macOS and Windows have no ``os.sched_getaffinity``)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def worker_pool(
    workers: int, initializer: Callable | None = None, initargs: tuple = ()
) -> ProcessPoolExecutor:
    """Processes for feature work (numpy only, never torch or CUDA), forked where the OS can fork.

    Explicitly, not the default start method: a process started by ``spawn`` (a ``cv
    --parallel-folds`` worker, a notebook on macOS, Python ≥ 3.14's default) would otherwise
    start every worker as a fresh interpreter that imports everything again, which on emoDB
    made a two-worker extraction three times slower than one worker.
    """
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    context = multiprocessing.get_context(method)
    return ProcessPoolExecutor(
        workers, mp_context=context, initializer=_start_worker, initargs=(os.getpid(), initializer, initargs)
    )


def exit_with_parent(parent: int) -> None:
    """End this worker process within a second of its parent (pid ``parent``) being gone — killed
    or crashed — so that no orphan goes on computing or writing."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def _start_worker(parent: int, initializer: Callable | None, initargs: tuple) -> None:
    exit_with_parent(parent)
    if initializer is not None:
        initializer(*initargs)


def ordered_map(
    pool: ProcessPoolExecutor | None, function: Callable, items: Iterable, in_flight: int
) -> Iterator:
    """``function(item)`` for every item, computed in ``pool`` (in this process when ``None``) and
    yielded in the items' order, with at most ``in_flight`` items submitted and not yet yielded."""
    if pool is None:
        yield from map(function, items)
        return
    queue = iter(items)
    running: deque[Future] = deque(pool.submit(function, item) for item in islice(queue, max(1, in_flight)))
    while running:
        result = running.popleft().result()
        for item in islice(queue, 1):
            running.append(pool.submit(function, item))
        yield result


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
