"""``torchrun`` support: a process group around one training run when launched with several processes.

``torchrun --nproc-per-node N -m emovision train ...`` sets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK``; each process then joins a process group (NCCL on GPUs, gloo on CPUs) and
trains on its share of every batch (see :mod:`emovision.training.train`).

Only rank 0 touches the run folder: it reads the state to resume from, decides the best epoch,
early stopping and plateau steps, and writes every file; the other ranks receive its decisions
through :func:`on_rank0`. So ``--out`` needs to exist on the first machine only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch
import torch.distributed as dist

from emovision.errors import EmovisionError

T = TypeVar("T")


@contextmanager
def distributed_session(device: str) -> Iterator[int]:
    """Join the ``torchrun`` process group when there is one; yield this process's rank (0 alone)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield 0
        return
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        yield dist.get_rank()
    finally:
        dist.destroy_process_group()


def on_rank0(work: Callable[[], T]) -> T:
    """``work()`` run on rank 0 only, its result (or its :class:`EmovisionError`) on every rank.

    Without a process group this is just ``work()``. The result travels pickled, so it may hold
    tensors (a checkpoint) as well as numbers and dictionaries.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return work()
    box: list = [None]
    if dist.get_rank() == 0:
        try:
            box = [(True, work())]
        except EmovisionError as exc:
            box = [(False, str(exc))]
    dist.broadcast_object_list(box, src=0)
    done, value = box[0]
    if not done:
        raise EmovisionError(value)
    return value
