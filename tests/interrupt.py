"""Real interruptions: a child Python process that kills itself with SIGKILL at a chosen point.

The point is a call of some function (the n-th call, before or after it runs), so the kill is
as abrupt as a power cut or the out-of-memory killer — no ``finally``, no flush — yet lands at
the same place every time. The child imports this module (its folder is put on ``PYTHONPATH``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def kill_at(
    owner: object, name: str, call: int, after: bool = False, when: Callable[..., bool] | None = None
) -> None:
    """Replace ``owner.name`` so that its ``call``-th call (counting only calls for which
    ``when(*args)`` holds) SIGKILLs the process, before the real call or, with ``after``, once it
    has returned."""
    real = getattr(owner, name)
    seen = [0]

    def wrapper(*args, **kwargs):
        counted = when is None or when(*args, **kwargs)
        seen[0] += counted
        if counted and seen[0] == call and not after:
            os.kill(os.getpid(), signal.SIGKILL)
        result = real(*args, **kwargs)
        if counted and seen[0] == call and after:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, name, wrapper)


def run_child(code: str, *args: str, killed: bool) -> subprocess.CompletedProcess:
    """Run ``code`` (with ``sys.argv[1:] == args``) in a fresh interpreter on one thread; require
    that it died of SIGKILL (``killed``) or exited 0."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])
        ),
    }
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300
    )  # a worker outliving its killed parent would hold the pipes open: a timeout here
    expected = -signal.SIGKILL if killed else 0
    assert result.returncode == expected, result.stderr[-2000:]
    return result
