"""Train one fold: training speakers, a validation speaker (model selection), a test speaker.

The whole training set lives as one tensor on the training device when it fits, so batches
are gathered on the GPU instead of being fed by a Python data loader. Under ``torchrun`` the
same function runs data-parallel (``DistributedDataParallel``), each process taking its share
of every batch (:func:`rank_batches`); rank 0 alone reads and writes the run folder and makes
every decision (best epoch, early stopping, plateau steps), which the other ranks receive
(:func:`emovision.training.distributed.on_rank0`).

Run folder: ``best.pth`` (checkpoint of the best validation epoch, with test metrics),
``last.pth`` (state to resume from), ``metrics.json``, ``curves.png``, ``confusion.png``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from rich.progress import Progress

from emovision import plots
from emovision.data.features import FeatureConfig
from emovision.data.speaker_norm import (
    ENROL_DRAWS,
    MODES,
    ModeView,
    SpeakerNormaliser,
    TrainingDraws,
    mode_view,
    recording_moments,
)
from emovision.data.store import utterance_counts
from emovision.errors import EmovisionError
from emovision.files import atomic_write_bytes, read_json
from emovision.system import resolve_device, software_versions
from emovision.training import augment
from emovision.training.calibration import apply_temperature, fit_temperature, mean_nll, reliability
from emovision.training.checkpoint import build_checkpoint, load_weights_only, save_checkpoint
from emovision.training.dataset import FeatureSource, Split, load_split, open_source
from emovision.training.distributed import on_rank0
from emovision.training.folds import Fold
from emovision.training.metrics import score_utterances, segment_log_probs, utterance_scores
from emovision.training.models import SERModel, build_ser_model, get_spec
from emovision.training.options import TrainConfig


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
        config = self.config
        torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.train_split = load_split(self.source, self.fold.train, config.copy_kinds)
        self.val_split = load_split(self.source, self.fold.val) if self.fold.val else None
        self.test_split = load_split(self.source, self.fold.test) if self.fold.test else None
        for role, split in (
            ("training", self.train_split),
            ("validation", self.val_split),
            ("test", self.test_split),
        ):
            if split is not None and len(split) == 0:
                raise EmovisionError(f"the {role} set ({', '.join(split.speakers)}) has no segments")
        present = torch.unique(self.train_split.segment_labels).numel()
        if present < 2:
            raise EmovisionError("the training set holds fewer than two classes")
        channels, height, _ = self.train_split.segments.shape[1:]
        spec = get_spec(config.model)
        model = build_ser_model(
            config.model,
            len(self.classes),
            channels,
            height,
            pretrained=config.pretrained,
            weights_file=config.weights,
            input_norm=config.input_norm,
            resize=config.resize,
            head=config.head,
        )
        segments, labels = self.train_split.segments, self.train_split.segment_labels
        if self.train_split.copies is not None:
            segments = torch.cat([segments, self.train_split.copies])
            labels = torch.cat([labels, self.train_split.copy_labels])
        self.normaliser, self.draws, self.views = None, None, {}
        fit_on = self.train_split.segments
        if config.speaker_norm != "none":
            self.normaliser, self.draws = self._speaker_draws(segments)
            self.views = {
                role: self._views(split)
                for role, split in (("val", self.val_split), ("test", self.test_split))
                if split is not None
            }
            clean = len(self.train_split.utterance_ids)  # the draws' first recordings: the clean utterances
            split = self.train_split
            whole = mode_view(
                self.normaliser,
                self.draws.means[:clean],
                self.draws.squares[:clean],
                split.speakers,
                split.utterance_speakers,
                "transductive",
            )
            fit_on = whole.normalise(split.segments, split.segments_per_utterance)
        top_db = (self.source.config or FeatureConfig()).top_db
        model.norm.fit(fit_on, top_db, spec.mean, spec.std)
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
        self.optimizer = torch.optim.AdamW(
            parameter_groups(self.model, config.lr, config.backbone_lr_scale),
            lr=config.lr,
            weight_decay=config.weight_decay,
        )
        self.scheduler = make_scheduler(self.optimizer, config)
        self.ema = weight_average(self.model, config.ema) if config.ema else None
        self.scored = self.ema.module if self.ema is not None else self.model
        weights = augment.class_weights(self.train_split.segment_labels, len(self.classes))
        self.class_weights = weights.to(self.device) if config.class_weighted else None
        self.perturbation = self._stability_source(channels)

    def _stability_source(self, channels: int) -> str:
        source = self.config.stability_source
        lognrev = self.source.config is not None and self.source.config.kind == "lognrevspec"
        if source == "channels" and not (lognrev and channels == 3):
            raise EmovisionError(
                "--stability-source channels needs lognrevspec features (clean, noisy, reverberant)"
            )
        if source == "auto":
            return "channels" if lognrev and channels == 3 else "gaussian"
        return source

    def _speaker_draws(self, segments: torch.Tensor) -> tuple[SpeakerNormaliser, TrainingDraws]:
        """The prior of the training recordings and the per-batch statistics of every training row
        (``segments``: clean rows, then the copies' rows)."""
        split = self.train_split
        starts = np.concatenate([[0], np.cumsum(split.segments_per_utterance)[:-1]])
        versions = split.versions or [
            [(int(a), int(n))] for a, n in zip(starts, split.segments_per_utterance, strict=True)
        ]
        order = [(v[0], u) for u, v in enumerate(versions)] + [
            (c, u) for u, v in enumerate(versions) for c in v[1:]
        ]
        row_recording = np.empty(segments.shape[0], dtype=np.int64)
        for recording, ((start, count), _) in enumerate(order):
            row_recording[start : start + count] = recording
        rows = np.concatenate([np.arange(start, start + count) for (start, count), _ in order])
        counts = np.array([count for (_, count), _ in order])
        means, squares = recording_moments(segments[torch.from_numpy(rows)], counts)
        clean = len(versions)
        normaliser = SpeakerNormaliser.fit(
            self.config.speaker_norm, means[:clean], squares[:clean], self.config.speaker_prior
        )
        owners = np.array([u for _, u in order])
        draws = TrainingDraws(normaliser, row_recording, means, squares, owners, split.utterance_speakers)
        return normaliser, draws

    def _views(self, split: Split) -> list[tuple[str, int, ModeView]]:
        """``split`` in every mode: (mode, draw, view), the enrolled mode in ``ENROL_DRAWS`` draws."""
        means, squares = recording_moments(split.segments, split.segments_per_utterance)
        views = []
        for mode in MODES:
            for draw in range(ENROL_DRAWS if mode == "enrolled" else 1):
                view = mode_view(
                    self.normaliser,
                    means,
                    squares,
                    split.speakers,
                    split.utterance_speakers,
                    mode,
                    self.config.enrol,
                    draw,
                )
                views.append((mode, draw, view))
        return views

    # ----- one epoch ------------------------------------------------------------------------
    def train_epoch(self) -> tuple[float, float]:
        """Mean training loss and segments per second of one epoch."""
        config = self.config
        self.network.train()
        if self.train_split.versions is not None:
            pool = augment.pick_versions(self.train_split.versions, config.augment_prob, self.generator)
        else:
            pool = torch.arange(len(self.train_split))
        if config.oversampling:
            pool = pool[augment.oversample_indices(self.train_labels[pool], self.generator)]
        order = pool[torch.randperm(pool.numel(), generator=self.generator)]
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
        config = self.config
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
            loss = augment.mixup_loss(logits, y_a, y_b, lam, self.class_weights)
        else:
            loss = F.cross_entropy(logits, y, weight=self.class_weights)
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
        modes: dict = {}
        for mode, _, view in self.views[role]:
            metrics, loss, scores = self.evaluate(split, view)
            entry = {**metrics, "scored": view.scored.tolist(), "scores": np.round(scores, 6).tolist()}
            if mode == "enrolled":
                modes.setdefault("enrolled", {"k": self.config.enrol, "draws": []})["draws"].append(entry)
            else:
                modes[mode] = entry
                if mode == "cold":
                    served = metrics, loss, scores
        draws = modes["enrolled"]["draws"]
        for key in ("wa", "ua"):
            modes["enrolled"][key] = float(np.mean([d[key] for d in draws]))
        return (*served, modes)

    def selection_ua(self, modes: dict | None, served: dict) -> float:
        """The validation figure epochs are chosen by: the served mode's, the transductive mode's for
        ``--speaker-norm transductive`` (as before), the mean over the three modes for ``mixed``."""
        key = self.config.select_by
        if modes is None:
            return served[key]
        if self.config.speaker_norm == "transductive":
            return modes["transductive"][key]
        return float(np.mean([modes[mode][key] for mode in MODES]))

    # ----- persistence ------------------------------------------------------------------------
    def checkpoint(self, metrics: dict) -> dict:
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

    def draw_states(self) -> list:
        """Every rank's speaker-statistics draw generator state (all ranks must call this)."""
        state = self.draw_generator.get_state()
        if not self.distributed:
            return [state]
        states: list = [None] * self.world
        dist.all_gather_object(states, state)
        return states

    def resume_state(self, draw_states: list | None = None) -> dict:
        state = {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "generator": self.generator.get_state(),
            "draw_generators": draw_states,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "history": self.history,
            "best": self.best,
            "stale": self.stale,
            "train_config": self.config.to_dict(),
            "fold": self.fold.to_dict(),
        }
        return state

    def restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler and state["scheduler"]:
            self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        draws = state.get("draw_generators")
        if draws:
            self.draw_generator.set_state(draws[self.rank % len(draws)])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])
        self.best = dict(state["best"]) if state["best"] else None
        self.stale = int(state["stale"])

    # ----- the loop ----------------------------------------------------------------------------
    def saved_state(self, resume: bool) -> dict | None:
        """The state in ``last.pth`` to continue from (None: start afresh); checked against this run."""
        out, last_path = self.out_dir, self.out_dir / "last.pth"
        if not last_path.exists():
            return None
        if not resume:
            raise EmovisionError(
                f"{out} already holds a training run: pass --resume to continue it, or another --out"
            )
        state = load_weights_only(last_path)
        same_config = (
            TrainConfig.from_dict(state.get("train_config", {})).identity() == self.config.identity()
        )
        if not same_config or state.get("fold") != self.fold.to_dict():
            raise EmovisionError(f"{out} holds a run with other options or speakers: use another --out")
        return state

    def validate(self) -> tuple[dict | None, dict, float]:
        """Validation metrics, the history columns they fill and the selection score of this epoch."""
        if self.val_split is None:
            return None, {}, float(self.epoch)
        val, val_loss, _, modes = self.evaluate_modes(self.val_split, "val")
        columns = {"val_loss": val_loss, "val_wa": val["wa"], "val_ua": val["ua"]}
        if modes is not None:
            columns.update({f"val_ua_{mode}": modes[mode]["ua"] for mode in MODES})
        return val, columns, self.selection_ua(modes, val)

    def run(self, resume: bool) -> dict:
        out = self.out_dir
        last_path, best_path = out / "last.pth", out / "best.pth"
        self.epoch, self.history, self.best, self.stale = 0, [], None, 0
        state = on_rank0(lambda: self.saved_state(resume))
        if state is not None:
            self.restore(state)
        owner = self.rank == 0
        task = None
        if self.progress is not None and owner:
            task = self.progress.add_task(
                self.fold.name or "training", total=self.config.epochs, completed=self.epoch
            )
        while self.epoch < self.config.epochs and not self._stopped():
            self.epoch += 1
            loss, speed = self.train_epoch()
            val, columns, score = on_rank0(self.validate)
            row = {"epoch": self.epoch, "train_loss": loss, **columns}
            row.update(lr=self.optimizer.param_groups[0]["lr"], segments_per_s=speed)
            self.history.append(row)
            if self.best is None or score > self.best["score"]:
                self.best = {"score": score, "epoch": self.epoch}
                self.stale = 0
                if owner:
                    save_checkpoint(self.checkpoint({"val": val, "epoch": self.epoch}), best_path)
            else:
                self.stale += 1
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(score)
            elif self.scheduler is not None:
                self.scheduler.step()
            draw_states = self.draw_states()
            if owner:
                save_checkpoint(self.resume_state(draw_states), last_path)
            if task is not None:
                best = self.best
                scores = (
                    f" val WA {val['wa']:.3f} UA {val['ua']:.3f} "
                    f"best {self.config.select_by.upper()} {best['score']:.3f}@{best['epoch']}"
                    if val is not None
                    else ""
                )
                self.progress.update(
                    task, completed=self.epoch, description=f"{self.fold.name} loss {loss:.3f}{scores}"
                )
        return self.finish(best_path)

    def _stopped(self) -> bool:
        patience = self.config.patience
        return patience is not None and self.stale >= patience

    def finish(self, best_path: Path) -> dict:
        """The test metrics of the best epoch, written by rank 0 and received by every rank."""
        return on_rank0(lambda: self.final_metrics(best_path))

    def calibration(self, val_scores: np.ndarray, test_scores: np.ndarray | None) -> dict:
        """The temperature fitted on the validation utterances, their NLL before and after, and the
        test utterances' expected calibration error before and after (:mod:`emovision.training.calibration`)."""
        val_labels = np.asarray(self.val_split.utterance_labels)
        temperature = fit_temperature(val_scores, val_labels)
        result = {
            "temperature": temperature,
            "val_nll": mean_nll(val_scores, val_labels),
            "val_nll_calibrated": mean_nll(val_scores, val_labels, temperature),
        }
        if test_scores is not None:
            labels = np.asarray(self.test_split.utterance_labels)
            result["test_ece"] = reliability(apply_temperature(test_scores, 1.0), labels)["ece"]
            result["test_ece_calibrated"] = reliability(apply_temperature(test_scores, temperature), labels)[
                "ece"
            ]
        return result

    def final_metrics(self, best_path: Path) -> dict:
        best = load_weights_only(best_path)
        self.scored.load_state_dict(best["state_dict"])
        val, _, val_scores, _ = (
            self.evaluate_modes(self.val_split, "val")
            if self.val_split is not None
            else (None, 0, None, None)
        )
        test, _, test_scores, test_modes = (
            self.evaluate_modes(self.test_split, "test")
            if self.test_split is not None
            else (None, 0, [], None)
        )
        calibration = None
        if val is not None:
            calibration = self.calibration(val_scores, test_scores if test is not None else None)
        metrics = {
            "fold": self.fold.to_dict(),
            "best_epoch": self.best["epoch"],
            "epochs_run": self.epoch,
            "select_by": self.config.select_by,
            "val": val,
            "test": test,
            "test_utterance_ids": self.test_split.utterance_ids if test is not None else [],
            "test_labels": self.test_split.utterance_labels.tolist() if test is not None else [],
            "test_scores": np.round(np.asarray(test_scores, dtype=np.float64), 6).tolist(),
            "test_modes": test_modes,
            "speaker_norm": self.config.speaker_norm if self.normaliser is not None else None,
            "calibration": calibration,
            "history": self.history,
            "classes": list(self.classes),
            "train_config": self.config.to_dict(),
            "device": str(self.device),
            "world_size": self.world,
            "versions": software_versions(),
        }
        save_checkpoint(self.checkpoint(metrics), best_path)
        plots.training_curves(self.history, self.out_dir / "curves.png", title=self.fold.name)
        if test is not None:
            plots.confusion(
                test["confusion"],
                self.classes,
                self.out_dir / "confusion.png",
                title=f"{self.fold.name}: WA {test['wa']:.3f}, UA {test['ua']:.3f}",
            )
        atomic_write_bytes(self.out_dir / "metrics.json", json.dumps(metrics, indent=2).encode())
        return metrics


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
    previous = on_rank0(lambda: _finished_run(out_dir, fold, config, resume))
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


def _finished_run(out_dir: Path, fold: Fold, config: TrainConfig, resume: bool) -> dict | None:
    """The metrics of the finished run in ``out_dir`` that ``resume`` may return, None when there is none
    (``out_dir`` is created: a folder that cannot be is an error before any work)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmovisionError(f"cannot write the run folder {out_dir}: {exc.strerror or exc}") from None
    finished = out_dir / "metrics.json"
    if not finished.exists():
        return None
    previous = read_json(finished, "metrics")
    same_config = TrainConfig.from_dict(previous.get("train_config", {})).identity() == config.identity()
    if resume and same_config and previous.get("fold") == fold.to_dict():
        return previous
    raise EmovisionError(
        f"{out_dir} already holds a finished run"
        + (
            " with other options: use another --out"
            if resume
            else ": use another --out, or --resume to read it"
        )
    )


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
