"""Resuming a fold's run: ``last.pth``, the state rewritten after every finished epoch.

The resume state is a dict of plain values and tensors: ``epoch`` (epochs finished), ``model``,
``ema`` (``None`` without ``--ema``), ``optimizer`` and ``scheduler`` (``None`` without one) — their
``state_dict`` —, ``generator`` (the state of the generator of batch orders and augmentations),
``draw_generators`` (every rank's speaker-statistics draw generator state), ``torch_rng``,
``cuda_rng`` (``None`` off CUDA), ``history`` (one row per epoch), ``best`` (``{"score", "epoch"}``,
``None`` before the first epoch), ``stale`` (epochs since the best one), ``train_config`` and
``fold``; a run resumes only with the same options and speakers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from emovision.errors import EmovisionError
from emovision.training.checkpoint import load_weights_only
from emovision.training.folds import Fold
from emovision.training.models import SERModel
from emovision.training.options import TrainConfig

LAST_FILE = "last.pth"


@dataclass
class RunPosition:
    """Where a run stands: ``epoch`` epochs finished, one ``history`` row each, the ``best`` of them
    (``{"score", "epoch"}``, ``None`` before the first) and the epochs since it (``stale``)."""

    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    best: dict | None = None
    stale: int = 0

    def record(self, row: dict, score: float) -> bool:
        """Add the finished epoch's history ``row``; whether its selection ``score`` is the best so far."""
        self.history.append(row)
        if self.best is None or score > self.best["score"]:
            self.best = {"score": score, "epoch": self.epoch}
            self.stale = 0
            return True
        self.stale += 1
        return False

    def stopped(self, patience: int | None) -> bool:
        """Whether early stopping ends the run: ``patience`` epochs without a better one."""
        return patience is not None and self.stale >= patience


@dataclass
class Resumable:
    """The objects of a run whose states ``last.pth`` holds, so that a resumed run goes on bit for bit."""

    model: SERModel
    ema: torch.optim.swa_utils.AveragedModel | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau | None
    generator: torch.Generator
    draw_generator: torch.Generator
    device: torch.device


def gather_draw_states(draw_generator: torch.Generator, world: int) -> list[torch.Tensor]:
    """Every rank's speaker-statistics draw generator state, by rank (all ranks must call this)."""
    state = draw_generator.get_state()
    if not (dist.is_available() and dist.is_initialized()):
        return [state]
    states: list = [None] * world
    dist.all_gather_object(states, state)
    return states


def resume_state(
    run: Resumable, position: RunPosition, draw_states: list, config: TrainConfig, fold: Fold
) -> dict:
    """The resume state after ``position.epoch`` epochs: every key the module docstring lists."""
    device = run.device
    return {
        "epoch": position.epoch,
        "model": run.model.state_dict(),
        "ema": run.ema.state_dict() if run.ema is not None else None,
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict() if run.scheduler else None,
        "generator": run.generator.get_state(),
        "draw_generators": draw_states,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "history": position.history,
        "best": position.best,
        "stale": position.stale,
        "train_config": config.to_dict(),
        "fold": fold.to_dict(),
    }


def restore(state: dict, run: Resumable, rank: int) -> RunPosition:
    """Put ``run``'s objects (and the process's random generators) back as ``state`` holds them;
    ``rank`` picks this process's draw generator state. Returns where the run stood."""
    run.model.load_state_dict(state["model"])
    if run.ema is not None:
        run.ema.load_state_dict(state["ema"])
    run.optimizer.load_state_dict(state["optimizer"])
    if run.scheduler and state["scheduler"]:
        run.scheduler.load_state_dict(state["scheduler"])
    run.generator.set_state(state["generator"])
    draw_states = state.get("draw_generators")
    if draw_states:
        run.draw_generator.set_state(draw_states[rank % len(draw_states)])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and run.device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"], run.device)
    return RunPosition(
        epoch=int(state["epoch"]),
        history=list(state["history"]),
        best=dict(state["best"]) if state["best"] else None,
        stale=int(state["stale"]),
    )


def saved_state(out_dir: Path, config: TrainConfig, fold: Fold, resume: bool) -> dict | None:
    """The state in ``out_dir/last.pth`` to continue from (None: start afresh), checked against this
    run: an error when there is one and ``resume`` is off, or it has other options or speakers."""
    last_path = out_dir / LAST_FILE
    if not last_path.exists():
        return None
    if not resume:
        raise EmovisionError(
            f"{out_dir} already holds a training run: pass --resume to continue it, or another --out"
        )
    state = load_weights_only(last_path)
    same_config = TrainConfig.saved_identity(state.get("train_config", {})) == config.identity()
    if not same_config or state.get("fold") != fold.to_dict():
        raise EmovisionError(f"{out_dir} holds a run with other options or speakers: use another --out")
    return state
