"""The options of a training run, importable without torch (the command line builds from them).

:class:`TrainConfig` is stored in checkpoints and compared when a run is resumed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from emovision.data.acoustics import NOISE_TYPES
from emovision.data.augment_audio import WAVE_AUGMENTS
from emovision.errors import EmovisionError, check_options

MODEL_NAMES = (
    "alexnet",
    "alexnet_gap",
    "resnet18",
    "resnet50",
    "efficientnet_b0",
    "mobilenet_v3_large",
    "convnext_tiny",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
)
SCHEDULES = ("none", "cosine", "plateau")
STABILITY_SOURCES = ("auto", "gaussian", "channels")
INPUT_NORMS = ("bin", "imagenet")
HEADS = ("gap", "attention")
AGGREGATES = ("logprob", "prob")
SELECTIONS = ("ua", "wa", "last")
BATCH_AUGMENTS = ("specaugment", "warp")
SPEAKER_NORMS = ("none", "transductive", "mixed")


@dataclass
class TrainConfig:
    """Every training option (see ``emovision train --help`` for their meaning)."""

    model: str = "alexnet_gap"
    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    schedule: str = "none"
    warmup_epochs: int = 0
    backbone_lr_scale: float = 1.0
    ema: float = 0.0
    seed: int = 111
    device: str = "auto"
    pretrained: bool = False
    weights: str | None = None
    input_norm: str = "bin"
    resize: int | None = None
    head: str = "gap"
    mixup: bool = False
    mixup_alpha: float = 0.4
    label_smoothing: float = 0.0
    stability: bool = False
    stability_alpha: float = 0.1
    stability_noise: float = 0.1
    stability_source: str = "auto"
    oversampling: bool = False
    augment: str = ""
    augment_prob: float = 0.5
    freq_masks: int = 2
    freq_mask_width: int = 8
    time_masks: int = 2
    time_mask_width: int = 12
    warp_max: float = 0.1
    class_weighted: bool = False
    select_by: str = "ua"
    patience: int | None = None
    aggregate: str = "logprob"
    amp: bool = True
    eval_batch_size: int = 256
    speaker_norm: str = "none"
    speaker_prior: float = 1.0
    enrol: int = 5

    def __post_init__(self) -> None:
        checks = [
            (
                self.model in MODEL_NAMES,
                f"unknown model {self.model!r}: choose one of {', '.join(MODEL_NAMES)}",
            ),
            (self.epochs >= 1, "--epochs must be at least 1"),
            (self.batch_size >= 2, "--batch-size must be at least 2"),
            (self.lr > 0, "--lr must be positive"),
            (self.schedule in SCHEDULES, f"--schedule must be one of {', '.join(SCHEDULES)}"),
            (0 <= self.warmup_epochs < self.epochs, "--warmup-epochs must be between 0 and --epochs − 1"),
            (
                self.warmup_epochs == 0 or self.schedule != "plateau",
                "--warmup-epochs works with --schedule none or cosine, not plateau",
            ),
            (0 < self.backbone_lr_scale <= 10, "--backbone-lr-scale must be above 0 and at most 10"),
            (self.ema == 0 or 0.5 <= self.ema < 1, "--ema must be 0 (off) or a decay in [0.5, 1)"),
            (
                self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:"),
                "--device: auto, cpu or cuda",
            ),
            (self.input_norm in INPUT_NORMS, f"--input-norm must be one of {', '.join(INPUT_NORMS)}"),
            (self.head in HEADS, f"--head must be one of {', '.join(HEADS)}"),
            (self.select_by in SELECTIONS, f"--select-by must be one of {', '.join(SELECTIONS)}"),
            (
                self.select_by != "last" or (self.patience is None and self.schedule != "plateau"),
                "--select-by last keeps the last epoch: early stopping (--patience) and --schedule plateau "
                "need a validation figure to follow (--select-by ua or wa)",
            ),
            (self.aggregate in AGGREGATES, f"--aggregate must be one of {', '.join(AGGREGATES)}"),
            (
                self.stability_source in STABILITY_SOURCES,
                f"--stability-source: {', '.join(STABILITY_SOURCES)}",
            ),
            (self.mixup_alpha > 0, "--mixup-alpha must be positive"),
            (0.0 <= self.label_smoothing < 1.0, "--label-smoothing must be in [0, 1)"),
            (0.0 < self.warp_max < 0.5, "--warp-max must be above 0 and below 0.5"),
            (
                self.speaker_norm in SPEAKER_NORMS,
                f"--speaker-norm must be one of {', '.join(SPEAKER_NORMS)}",
            ),
            (
                0 < self.speaker_prior <= 1000,
                "--speaker-prior must be above 0 and at most 1000 recordings (a small value: almost none)",
            ),
            (self.enrol >= 1, f"--enrol must be at least 1 recording, got {self.enrol}"),
            (self.resize is None or self.resize >= 32, "--resize must be at least 32"),
            (self.patience is None or self.patience >= 1, "--patience must be at least 1"),
            (0.0 <= self.augment_prob <= 1.0, "--augment-prob must be between 0 and 1"),
            (min(self.freq_masks, self.time_masks) >= 0, "--freq-masks and --time-masks must be ≥ 0"),
            (
                min(self.freq_mask_width, self.time_mask_width) >= 1,
                "--freq-mask-width and --time-mask-width must be at least 1",
            ),
        ]
        check_options(checks)
        self.augment = ",".join(parse_augment(self.augment))

    @property
    def augmentations(self) -> tuple[str, ...]:
        """The ``--augment`` names: ``specaugment`` and ``warp`` (in the batch) and waveform kinds (stored copies)."""
        return parse_augment(self.augment)

    @property
    def copy_kinds(self) -> tuple[str, ...]:
        """The waveform augmentations whose stored copies this run trains on (``noise``, ``noise:pink`` …)."""
        return tuple(name for name in self.augmentations if name not in BATCH_AUGMENTS)

    def to_dict(self) -> dict:
        return asdict(self)

    def identity(self) -> dict:
        """The options that define a run's results (not where it runs): compared on resume."""
        values = self.to_dict()
        values.pop("device")
        values.pop("eval_batch_size")
        return values

    @classmethod
    def saved_identity(cls, values: dict) -> dict:
        """The :meth:`identity` of options a run saved, as this version reads them: options added since
        the run was written take their defaults, so an older run or cv folder still resumes."""
        return cls.from_dict(values).identity()

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})

    @classmethod
    def defaults(cls) -> dict:
        """Default value of every field, without validating (for building the command line)."""
        return {f.name: f.default for f in fields(cls)}


def parse_augment(text: str) -> tuple[str, ...]:
    """``--augment`` as names, checked: ``specaugment``, ``warp``, ``noise`` (every noise type) or
    ``noise:TYPE`` (one of :data:`NOISE_TYPES`), ``reverb``, ``speed``, ``gain``."""
    names = []
    for name in (part.strip() for part in text.split(",")):
        if not name:
            continue
        kind, _, noise = name.partition(":")
        valid = name in BATCH_AUGMENTS or (kind in WAVE_AUGMENTS and (not noise or kind == "noise"))
        if not valid or (noise and noise not in NOISE_TYPES):
            choices = ", ".join([*BATCH_AUGMENTS, *WAVE_AUGMENTS, "noise:" + "|".join(NOISE_TYPES)])
            raise EmovisionError(f"--augment: unknown augmentation {name!r}: choose from {choices}")
        if name in names:
            raise EmovisionError(f"--augment lists {name!r} twice")
        names.append(name)
    return tuple(names)


def run_options(config: dict) -> list[str]:
    """What a run did beyond plain training, as short labels (``pretrained``, ``augment specaugment+noise`` …),
    from its recorded training options; empty for a plain run."""
    labels = [
        name.replace("_", "-")
        for name in ("pretrained", "mixup", "stability", "oversampling", "class_weighted")
        if config.get(name)
    ]
    if config.get("weights"):
        labels.append("weights file")
    if config.get("augment"):
        labels.append("augment " + config["augment"].replace(",", "+"))
    if config.get("label_smoothing"):
        labels.append(f"label smoothing {config['label_smoothing']:g}")
    if "warp" in config.get("augment", "").split(",") and config.get("warp_max", 0.1) != 0.1:
        labels.append(f"warp ±{config['warp_max']:g}")
    if config.get("warmup_epochs"):
        labels.append(f"warm-up {config['warmup_epochs']}")
    if config.get("backbone_lr_scale", 1.0) != 1.0:
        labels.append(f"backbone lr × {config['backbone_lr_scale']:g}")
    if config.get("ema"):
        labels.append(f"EMA {config['ema']:g}")
    if config.get("head", "gap") != "gap":
        labels.append(f"{config['head']} head")
    if config.get("select_by") == "last":
        labels.append("last epoch")
    if config.get("speaker_norm", "none") != "none":
        labels.append(f"speaker-norm {config['speaker_norm']} (prior {config.get('speaker_prior', 1.0):g})")
    return labels
