"""``torchrun`` support: a process group around one training run when launched with several processes.

``torchrun --nproc-per-node N -m emovision train ...`` sets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK``; each process then joins a process group (NCCL on GPUs, gloo on CPUs) and
trains on its share of every batch (see :mod:`emovision.train`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist


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
