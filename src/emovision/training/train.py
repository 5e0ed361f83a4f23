"""Train one fold: training speakers, a validation speaker (model selection), a test speaker.

The whole training set lives as one tensor on the training device when it fits, so batches
are gathered on the GPU instead of being fed by a Python data loader. Under ``torchrun`` the
same function runs data-parallel (``DistributedDataParallel``), each process taking its share
of every batch (:func:`rank_batches`); rank 0 alone reads and writes the run folder and makes
every decision (best epoch, early stopping, plateau steps), which the other ranks receive
(:func:`emovision.training.distributed.on_rank0`).

Run folder: ``best.pth`` (checkpoint of the best validation epoch, with test metrics, see
:mod:`emovision.training.checkpoint`), ``last.pth`` (state to resume from, see
:mod:`emovision.training.resume`), ``metrics.json``, ``curves.png``, ``confusion.png`` (see
:mod:`emovision.training.fold_outputs`).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from rich.progress import Progress, TaskID

from emovision.data.features import FeatureConfig, bin_frequencies
from emovision.data.speaker_norm import MODES, ModeView
from emovision.data.store import utterance_counts
from emovision.errors import EmovisionError
from emovision.system import resolve_device
from emovision.training import augment
from emovision.training.checkpoint import build_checkpoint, checkpoint_weights, save_checkpoint
from emovision.training.dataset import FeatureSource, Split, load_split, open_source
from emovision.training.distributed import on_rank0
from emovision.training.fold_outputs import SplitScores, finished_metrics, fold_metrics, write_fold_outputs
from emovision.training.folds import Fold
from emovision.training.metrics import score_utterances, segment_log_probs, utterance_scores
from emovision.training.models import SERModel, build_ser_model, get_spec
from emovision.training.options import TrainConfig
from emovision.training.pipeline_norm import pipeline_norm
from emovision.training.resume import (
    LAST_FILE,
    Resumable,
    RunPosition,
    gather_draw_states,
    restore,
    resume_state,
    saved_state,
)

BEST_FILE = "best.pth"


class Trainer:
    """One fold's training run (see :func:`train_fold`)."""

    def __init__(
        self, source: FeatureSource, fold: Fold, config: TrainConfig, out_dir: Path, progress: Progress | None
    ):
        self.source, self.fold, self.config, self.out_dir = source, fold, config, out_dir
        self.progress = progress
        self.device = torch.device(resolve_device(config.device, torch.cuda.is_available()))
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        if self.distributed and self.device.type == "cuda":
            self.device = torch.device("cuda", torch.cuda.current_device())
        if config.batch_size < 2 * self.world:
            raise EmovisionError(f"--batch-size must be at least 2 per process ({2 * self.world})")
        self.autocast = config.amp and self.device.type == "cuda"
        self.classes = source.classes

    # ----- set-up -------------------------------------------------------------------------
    def prepare(self) -> None:
        """Load the fold's splits; build the model with its input normaliser fitted, the optimiser,
        the learning-rate schedule, the weight average and the random generators."""
        config = self.config
        torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.train_split, self.val_split, self.test_split = load_fold_splits(self.source, self.fold, config)
        channels, height, _ = self.train_split.segments.shape[1:]
        model = untrained_model(config, len(self.classes), channels, height)
        segments, labels = training_rows(self.train_split)
        fit_on = self._speaker_normalisation(segments)
        spec = get_spec(config.model)
        model.norm.fit(fit_on, (self.source.config or FeatureConfig()).top_db, spec.mean, spec.std)
        _check_input_size(model, self.train_split.segments[:2], config.model)
        self.model = model.to(self.device).to(memory_format=torch.channels_last)
        self.network = self.model
        if self.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.network = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.draw_generator = torch.Generator().manual_seed(config.seed * 1000 + self.rank)
        self.train_labels = labels
        self.train_x = _resident(segments, self.device)
        self.train_y = labels.to(self.train_x.device)
        self.optimizer, self.scheduler, self.ema = optimisation(self.model, config)
        self.scored = self.ema.module if self.ema is not None else self.model
        objects = self.model, self.ema, self.optimizer, self.scheduler, self.generator, self.draw_generator
        self.resumable = Resumable(*objects, self.device)
        weights = augment.class_weights(self.train_split.segment_labels, len(self.classes))
        self.class_weights = weights.to(self.device) if config.class_weighted else None
        self.perturbation = stability_source(config, self.source, channels)
        self.frequencies = warp_frequencies(config, self.source, height)

    def _speaker_normalisation(self, segments: torch.Tensor) -> torch.Tensor:
        """Set up pipeline speaker normalisation (none without ``--speaker-norm``) for the training rows
        ``segments`` ``(N, C, F, T)``; the training segments the input normaliser is fitted on."""
        self.normaliser, self.draws, self.views = None, None, {}
        if self.config.speaker_norm == "none":
            return self.train_split.segments
        evaluated = {"val": self.val_split, "test": self.test_split}
        norm = pipeline_norm(self.config, self.train_split, segments, evaluated)
        self.normaliser, self.draws, self.views = norm.normaliser, norm.draws, norm.views
        return norm.fit_on

    # ----- one epoch ------------------------------------------------------------------------
    def train_epoch(self) -> tuple[float, float]:
        """Mean training loss and segments per second of one epoch."""
        config = self.config
        self.network.train()
        order = epoch_order(self.train_split, self.train_labels, config, self.generator)
        total, seen = 0.0, 0
        start = time.perf_counter()
        for share, weight in rank_batches(order, config.batch_size, self.world, self.rank):
            index = share.to(self.train_x.device)
            x = self.train_x[index].to(self.device, non_blocking=True)
            y = self.train_y[index].to(self.device, non_blocking=True)
            if self.draws is not None:
                mean, std = self.draws.batch(share, self.draw_generator)
                x = (x - mean.to(x.device)) / std.to(x.device)
            x = x.contiguous(memory_format=torch.channels_last)
            loss = self._loss(x, y)
            self.optimizer.zero_grad(set_to_none=True)
            (loss * weight).backward()
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            total += float(loss.detach()) * x.shape[0]
            seen += x.shape[0]
        if self.distributed:
            sums = torch.tensor([total, float(seen)], dtype=torch.float64, device=self.device)
            dist.all_reduce(sums)
            total, seen = float(sums[0]), int(sums[1])
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elapsed = time.perf_counter() - start
        return total / max(seen, 1), seen / max(elapsed, 1e-9)

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss of a batch ``x`` ``(B, C, F, T)`` with labels ``y`` ``(B,)``, augmented
        as the options say (frequency warping, SpecAugment, mixup, stability training, label smoothing)."""
        config = self.config
        if self.frequencies is not None:
            x = augment.frequency_warp(x, self.frequencies, self.generator, config.warp_max)
        if "specaugment" in config.augmentations:
            x = augment.spec_augment(
                x,
                self.model.norm.mean,
                self.generator,
                config.freq_masks,
                config.freq_mask_width,
                config.time_masks,
                config.time_mask_width,
            )
        if config.mixup:
            x, y_a, y_b, lam = augment.mixup(x, y, config.mixup_alpha, self.generator)
        perturbed = None
        if config.stability:
            if self.perturbation == "channels":
                perturbed = augment.channel_perturbation(x, self.generator)
            else:
                perturbed = augment.gaussian_perturbation(x, config.stability_noise * self.model.norm.std)
            x = torch.cat([x, perturbed])
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            logits = self.network(x).float()
        if perturbed is not None:
            logits, perturbed_logits = logits.chunk(2)
        if config.mixup:
            loss = augment.mixup_loss(logits, y_a, y_b, lam, self.class_weights, config.label_smoothing)
        else:
            loss = F.cross_entropy(
                logits, y, weight=self.class_weights, label_smoothing=config.label_smoothing
            )
        if perturbed is not None:
            loss = loss + config.stability_alpha * augment.stability_kl(logits, perturbed_logits)
        return loss

    # ----- evaluation -------------------------------------------------------------------------
    def evaluate(self, split: Split, view: ModeView | None = None) -> tuple[dict, float, np.ndarray]:
        """Utterance-level metrics, the segment-level cross-entropy and the utterance scores ``(U, K)``
        of ``split`` (speaker-normalised as ``view`` says; its enrolment recordings are not scored)."""
        segments = split.segments
        if view is not None:
            segments = view.normalise(segments, split.segments_per_utterance)
        log_probs = segment_log_probs(self.scored, segments, self.config.eval_batch_size, self.autocast)
        loss = float(F.nll_loss(torch.from_numpy(log_probs), split.segment_labels))
        scores = utterance_scores(log_probs, split.segments_per_utterance, self.config.aggregate)
        kept = view.scored if view is not None else slice(None)
        return score_utterances(split.utterance_labels[kept], scores[kept], self.classes), loss, scores

    def evaluate_modes(self, split: Split, role: str) -> tuple[dict, float, np.ndarray, dict | None]:
        """Metrics, loss and scores of the served mode (cold, or the only one of a model without
        pipeline normalisation), and every mode's metrics and scores (None without pipeline normalisation)."""
        if self.normaliser is None:
            metrics, loss, scores = self.evaluate(split)
            return metrics, loss, scores, None
        results = [(mode, view, *self.evaluate(split, view)) for mode, _, view in self.views[role]]
        return mode_metrics(results, self.config.enrol)

    def validate(self) -> tuple[dict | None, dict, float]:
        """Validation metrics, the history columns they fill and the selection score of this epoch."""
        if self.val_split is None:
            return None, {}, float(self.position.epoch)
        val, val_loss, _, modes = self.evaluate_modes(self.val_split, "val")
        columns = {"val_loss": val_loss, "val_wa": val["wa"], "val_ua": val["ua"]}
        if modes is not None:
            columns.update({f"val_ua_{mode}": modes[mode]["ua"] for mode in MODES})
        return val, columns, selection_score(self.config, modes, val, self.position.epoch)

    # ----- the loop ----------------------------------------------------------------------------
    def run(self, resume: bool) -> dict:
        """Train (after the last finished epoch of ``last.pth`` with ``resume``) until the last epoch
        or early stopping; the test metrics of the best epoch."""
        self.position = RunPosition()
        state = on_rank0(lambda: saved_state(self.out_dir, self.config, self.fold, resume))
        if state is not None:
            self.position = restore(state, self.resumable, self.rank)
        task = self._progress_task()
        while self.position.epoch < self.config.epochs and not self.position.stopped(self.config.patience):
            self.position.epoch += 1
            loss, speed = self.train_epoch()
            val, columns, score = on_rank0(self.validate)
            row = {"epoch": self.position.epoch, "train_loss": loss, **columns}
            row.update(lr=self.optimizer.param_groups[0]["lr"], segments_per_s=speed)
            self._end_epoch(row, val, score)
            if task is not None:
                best, select_by = self.position.best, self.config.select_by
                summary = epoch_summary(self.fold.name, loss, val, best, select_by)
                self.progress.update(task, completed=self.position.epoch, description=summary)
        return self.finish(self.out_dir / BEST_FILE)

    def _progress_task(self) -> TaskID | None:
        """The progress bar of this run (rank 0 only, None without progress display)."""
        if self.progress is None or self.rank != 0:
            return None
        return self.progress.add_task(
            self.fold.name or "training", total=self.config.epochs, completed=self.position.epoch
        )

    def _end_epoch(self, row: dict, val: dict | None, score: float) -> None:
        """Record the finished epoch (history ``row``, selection ``score``): save it to ``best.pth`` when
        it is the best so far, step the learning-rate schedule, save the resume state to ``last.pth``."""
        owner = self.rank == 0
        if self.position.record(row, score) and owner:
            best = self.checkpoint({"val": val, "epoch": self.position.epoch})
            save_checkpoint(best, self.out_dir / BEST_FILE)
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(score)
        elif self.scheduler is not None:
            self.scheduler.step()
        draw_states = gather_draw_states(self.draw_generator, self.world)
        if owner:
            state = resume_state(self.resumable, self.position, draw_states, self.config, self.fold)
            save_checkpoint(state, self.out_dir / LAST_FILE)

    # ----- the result ----------------------------------------------------------------------------
    def checkpoint(self, metrics: dict) -> dict:
        """The checkpoint of the evaluated weights with ``metrics`` (see :mod:`emovision.training.checkpoint`)."""
        return build_checkpoint(
            self.config,
            list(self.classes),
            self.source,
            tuple(int(n) for n in self.train_split.segments.shape[1:]),
            self.scored.state_dict(),
            metrics,
            self.fold.to_dict(),
            self.normaliser.to_dict() if self.normaliser is not None else None,
        )

    def finish(self, best_path: Path) -> dict:
        """The test metrics of the best epoch, written by rank 0 and received by every rank."""
        return on_rank0(lambda: self.final_metrics(best_path))

    def final_metrics(self, best_path: Path) -> dict:
        """Evaluate the best epoch's weights, store the fold's metrics in ``best_path`` and write its report."""
        self.scored.load_state_dict(checkpoint_weights(best_path))
        val = self._best_scores(self.val_split, "val")
        test = self._best_scores(self.test_split, "test")
        metrics = fold_metrics(
            self.fold, self.config, self.position, val, test, self.classes, self.device, self.world
        )
        save_checkpoint(self.checkpoint(metrics), best_path)
        write_fold_outputs(self.out_dir, self.fold.name, metrics, self.classes)
        return metrics

    def _best_scores(self, split: Split | None, role: str) -> SplitScores | None:
        """The loaded weights' results on ``split`` (the ``val`` or ``test`` ``role``; None: no such split)."""
        if split is None:
            return None
        metrics, _, scores, modes = self.evaluate_modes(split, role)
        return SplitScores(split, metrics, scores, modes)


def train_fold(
    features: str | Path | FeatureSource,
    fold: Fold,
    config: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: Progress | None = None,
    trust_pickle: bool = False,
) -> dict:
    """Train ``fold`` and return its metrics (also written to ``out_dir/metrics.json``).

    With ``resume``, a finished run with the same options returns its metrics without
    training again, and an interrupted one continues after its last finished epoch.
    """
    out_dir = Path(out_dir)
    source = features if isinstance(features, FeatureSource) else open_source(features, trust_pickle)
    check_source(source, config)
    check_enrolment(source, [fold], config)
    previous = on_rank0(lambda: finished_metrics(out_dir, fold, config, resume))
    if previous is not None:
        return previous
    trainer = Trainer(source, fold, config, out_dir, progress)
    trainer.prepare()
    return trainer.run(resume)


def check_source(source: FeatureSource, config: TrainConfig) -> None:
    """Refuse options that make no sense for the features in ``source``: ``--input-norm imagenet``
    maps a dB range to [0, 1] and means nothing for speaker-normalised z-scores."""
    if config.input_norm == "imagenet" and config.speaker_norm != "none":
        raise EmovisionError(
            f"--input-norm imagenet maps dB to [0, 1], but --speaker-norm {config.speaker_norm} "
            "gives z-scores: use --input-norm bin"
        )
    if config.speaker_norm != "none" and (source.config is None or source.config.speaker_norm):
        raise EmovisionError(
            f"--speaker-norm {config.speaker_norm} normalises in the data pipeline: it needs features "
            f"extracted without --speaker-norm ({source.path} is already normalised or has no feature "
            "configuration)"
        )
    if config.input_norm == "imagenet" and source.config is not None and source.config.speaker_norm:
        raise EmovisionError(
            f"--input-norm imagenet maps dB to [0, 1], but {source.path} holds speaker-normalised "
            "z-scores (extract --speaker-norm): use --input-norm bin"
        )


def check_enrolment(source: FeatureSource, folds: list[Fold], config: TrainConfig) -> None:
    """Refuse ``--enrol K`` (pipeline speaker normalisation) when a validation or test speaker has no
    more than K recordings: the enrolled mode would leave nothing of theirs to score."""
    if config.speaker_norm == "none":
        return
    counts = utterance_counts(source.path)
    for name in sorted({s for fold in folds for s in (*fold.val, *fold.test)}):
        if counts.get(name, 0) <= config.enrol:
            raise EmovisionError(
                f"--enrol {config.enrol}: speaker {name} has {counts.get(name, 0)} recordings, so at most "
                f"{max(counts.get(name, 0) - 1, 0)} can enrol and leave one to score"
            )


def load_fold_splits(
    source: FeatureSource, fold: Fold, config: TrainConfig
) -> tuple[Split, Split | None, Split | None]:
    """``fold``'s training (with the copies ``config`` asks for), validation and test splits (None: no such
    speaker); none may be empty, and the training set must hold two classes."""
    train_split = load_split(source, fold.train, config.copy_kinds)
    val_split = load_split(source, fold.val) if fold.val else None
    test_split = load_split(source, fold.test) if fold.test else None
    for role, split in (("training", train_split), ("validation", val_split), ("test", test_split)):
        if split is not None and len(split) == 0:
            raise EmovisionError(f"the {role} set ({', '.join(split.speakers)}) has no segments")
    if torch.unique(train_split.segment_labels).numel() < 2:
        raise EmovisionError("the training set holds fewer than two classes")
    return train_split, val_split, test_split


def training_rows(split: Split) -> tuple[torch.Tensor, torch.Tensor]:
    """Every training row ``(N, C, F, T)`` and its label ``(N,)``: ``split``'s clean segments, then its copies'."""
    if split.copies is None:
        return split.segments, split.segment_labels
    return torch.cat([split.segments, split.copies]), torch.cat([split.segment_labels, split.copy_labels])


def untrained_model(config: TrainConfig, num_classes: int, channels: int, height: int) -> SERModel:
    """The model ``config`` asks for, untrained (or pretrained), for segments of ``channels × height``
    (mel bands) × frames."""
    return build_ser_model(
        config.model,
        num_classes,
        channels,
        height,
        pretrained=config.pretrained,
        weights_file=config.weights,
        input_norm=config.input_norm,
        resize=config.resize,
        head=config.head,
    )


def optimisation(
    model: SERModel, config: TrainConfig
) -> tuple[
    torch.optim.Optimizer,
    torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau | None,
    torch.optim.swa_utils.AveragedModel | None,
]:
    """AdamW over ``model``'s parameter groups, its learning-rate schedule and the weight average
    (None without ``--ema``)."""
    optimizer = torch.optim.AdamW(
        parameter_groups(model, config.lr, config.backbone_lr_scale),
        lr=config.lr,
        weight_decay=config.weight_decay,
    )
    scheduler = make_scheduler(optimizer, config)
    ema = weight_average(model, config.ema) if config.ema else None
    return optimizer, scheduler, ema


def mode_metrics(
    results: list[tuple[str, ModeView, dict, float, np.ndarray]], enrol: int
) -> tuple[dict, float, np.ndarray, dict]:
    """The served (cold) mode's metrics, loss and utterance scores ``(U, K)``, and every mode's metrics
    and scores, from ``results``: (mode, view, metrics, loss, scores) of every view of a split, the
    enrolled mode (``enrol`` recordings) in several draws, averaged."""
    modes: dict = {}
    for mode, view, metrics, loss, scores in results:
        entry = {**metrics, "scored": view.scored.tolist(), "scores": np.round(scores, 6).tolist()}
        if mode == "enrolled":
            modes.setdefault("enrolled", {"k": enrol, "draws": []})["draws"].append(entry)
        else:
            modes[mode] = entry
            if mode == "cold":
                served = metrics, loss, scores
    draws = modes["enrolled"]["draws"]
    for key in ("wa", "ua"):
        modes["enrolled"][key] = float(np.mean([d[key] for d in draws]))
    return (*served, modes)


def epoch_summary(fold_name: str, loss: float, val: dict | None, best: dict, select_by: str) -> str:
    """The progress line of an epoch: training ``loss``, validation WA and UA, the ``best`` epoch so far."""
    kept = (
        "last epoch"
        if select_by == "last"
        else f"best {select_by.upper()} {best['score']:.3f}@{best['epoch']}"
    )
    scores = f" val WA {val['wa']:.3f} UA {val['ua']:.3f} {kept}" if val is not None else ""
    return f"{fold_name} loss {loss:.3f}{scores}"


def stability_source(config: TrainConfig, source: FeatureSource, channels: int) -> str:
    """The perturbation of stability training: ``--stability-source``, ``auto`` resolved (the
    clean/noisy/reverberant channels of lognrevspec features, else Gaussian noise)."""
    lognrev = source.config is not None and source.config.kind == "lognrevspec"
    if config.stability_source == "channels" and not (lognrev and channels == 3):
        raise EmovisionError(
            "--stability-source channels needs lognrevspec features (clean, noisy, reverberant)"
        )
    if config.stability_source == "auto":
        return "channels" if lognrev and channels == 3 else "gaussian"
    return config.stability_source


def warp_frequencies(config: TrainConfig, source: FeatureSource, height: int) -> torch.Tensor | None:
    """The centre frequency (Hz) of each of the ``height`` feature rows ``(F,)`` that ``--augment warp``
    stretches; None without it. Refused for features without their configuration (the original's pickles)."""
    if "warp" not in config.augmentations:
        return None
    if source.config is None:
        raise EmovisionError("--augment warp needs a features file that records its feature configuration")
    frequencies = bin_frequencies(source.config)
    if len(frequencies) != height:
        raise EmovisionError(
            f"--augment warp: the features have {height} rows, their configuration {len(frequencies)}"
        )
    return torch.from_numpy(frequencies)


def epoch_order(
    split: Split, labels: torch.Tensor, config: TrainConfig, generator: torch.Generator
) -> torch.Tensor:
    """The training rows of an epoch in the order they are seen: one version of every utterance (clean
    or a copy, ``--augment-prob``) with copies, oversampled to balanced classes with ``--oversampling``;
    ``labels`` are the labels of every training row."""
    if split.versions is not None:
        pool = augment.pick_versions(split.versions, config.augment_prob, generator)
    else:
        pool = torch.arange(len(split))
    if config.oversampling:
        pool = pool[augment.oversample_indices(labels[pool], generator)]
    return pool[torch.randperm(pool.numel(), generator=generator)]


def selection_score(config: TrainConfig, modes: dict | None, served: dict, epoch: int) -> float:
    """The validation figure (``--select-by``) epochs are chosen by: the served mode's, the transductive
    mode's for ``--speaker-norm transductive`` (as before), the mean over the three modes for ``mixed``;
    for ``last`` the ``epoch`` itself, so that every epoch is the best so far."""
    key = config.select_by
    if key == "last":
        return float(epoch)
    if modes is None:
        return served[key]
    if config.speaker_norm == "transductive":
        return modes["transductive"][key]
    return float(np.mean([modes[mode][key] for mode in MODES]))


def rank_batches(
    order: torch.Tensor, batch_size: int, world: int = 1, rank: int = 0
) -> list[tuple[torch.Tensor, float]]:
    """This rank's share of every batch of an epoch and the loss weight that makes the shares add up.

    ``order`` holds the epoch's sample indices; batches hold ``batch_size`` of them (the global
    batch), and a last batch too small to give every rank two samples joins the one before, so
    every sample is used exactly once and no share is empty. A batch is split into ``world``
    shares whose sizes differ by at most one; the weight ``world × share / batch`` turns the
    average of the ranks' mean losses (what DDP's gradient averaging computes) into the batch mean.
    """
    n = order.numel()
    if n < 2 * world:
        raise EmovisionError(f"the training set holds {n} segments: fewer than two per process")
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] < 2 * world:
        starts.pop()
    stops = [*starts[1:], n]
    shares = []
    for start, stop in zip(starts, stops, strict=True):
        share = order[start:stop].tensor_split(world)[rank]
        shares.append((share, world * share.numel() / (stop - start)))
    return shares


def weight_average(model: SERModel, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """An exponential moving average of ``model``'s weights and buffers (batch-norm statistics
    included): after every optimiser step ``average ← decay · average + (1 − decay) · weights``,
    starting from the weights after the first step. ``average.module`` is what the run evaluates,
    selects and saves; its horizon is about ``1 / (1 − decay)`` steps."""
    swa = torch.optim.swa_utils
    return swa.AveragedModel(model, multi_avg_fn=swa.get_ema_multi_avg_fn(decay), use_buffers=True)


def _resident(segments: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``segments`` on ``device`` when they take at most half its free memory, else pinned on the CPU."""
    if device.type != "cuda":
        return segments
    free, _ = torch.cuda.mem_get_info(device)
    if segments.numel() * segments.element_size() <= free // 2:
        return segments.to(device)
    return segments.pin_memory()


def parameter_groups(model: SERModel, lr: float, backbone_scale: float) -> list[dict]:
    """AdamW parameter groups: the new classifier at ``lr`` first (the logged rate), every other
    layer at ``lr × backbone_scale``; one group when the scale is 1 or the model does not say
    where its classifier is."""
    if backbone_scale == 1.0 or not model.classifier:
        return [{"params": list(model.parameters())}]
    head = model.head_parameters()
    ids = {id(p) for p in head}
    body = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": head, "lr": lr}, {"params": body, "lr": lr * backbone_scale}]


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig):
    """The per-epoch learning-rate schedule: ``--warmup-epochs`` of linear warm-up (from
    lr/(N+1) to lr), then constant, cosine over the remaining epochs, or on plateau."""
    lr_scheduler = torch.optim.lr_scheduler
    warmup = config.warmup_epochs
    if config.schedule == "plateau":
        return lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", patience=5)
    main = (
        lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs - warmup)
        if config.schedule == "cosine"
        else None
    )
    if not warmup:
        return main
    warm = lr_scheduler.LinearLR(optimizer, start_factor=1 / (warmup + 1), total_iters=warmup)
    return warm if main is None else lr_scheduler.SequentialLR(optimizer, [warm, main], milestones=[warmup])


def _check_input_size(model: SERModel, sample: torch.Tensor, name: str) -> None:
    try:
        with torch.no_grad():
            model.eval()(sample)
    except RuntimeError as exc:
        height, frames = sample.shape[2:]
        raise EmovisionError(
            f"segments of {height}×{frames} are too small for {name} ({str(exc).splitlines()[0]}); "
            "use more mel bands or frames, or --resize 224"
        ) from None
    finally:
        model.train()
