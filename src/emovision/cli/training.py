"""``train``, ``cv``, ``fuse``, ``ensemble``, ``report`` and ``demo``: training runs and their summaries."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

from rich.table import Table

from emovision.cli.common import Command, console, features_given, record_config
from emovision.errors import EmovisionError, check_options

if TYPE_CHECKING:
    from emovision.evaluation.linear_model import LinearTraining


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """Every field of :class:`TrainConfig` as an option (the package's own names)."""
    from emovision.training.options import TrainConfig

    defaults = SimpleNamespace(**TrainConfig.defaults())
    group = parser.add_argument_group("model and training")
    for add_arguments in (
        _optimisation_arguments,
        _network_arguments,
        _regularisation_arguments,
        _augmentation_arguments,
        _selection_arguments,
        _speaker_arguments,
    ):
        add_arguments(group, defaults)
    group.add_argument("--trust-pickle", action="store_true", help="allow a legacy pickle features file")


def _optimisation_arguments(group: argparse._ArgumentGroup, defaults: SimpleNamespace) -> None:
    """The backbone, the optimiser and its learning-rate schedule, the seed and the device."""
    from emovision.training.options import MODEL_NAMES, SCHEDULES

    group.add_argument("--model", default=defaults.model, help=f"backbone: {', '.join(MODEL_NAMES)}")
    group.add_argument("--epochs", type=int, default=defaults.epochs)
    group.add_argument("--batch-size", type=int, default=defaults.batch_size)
    group.add_argument("--lr", type=float, default=defaults.lr, help="AdamW learning rate")
    group.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    group.add_argument(
        "--schedule", choices=SCHEDULES, default=defaults.schedule, help="learning-rate schedule"
    )
    group.add_argument(
        "--warmup-epochs",
        type=int,
        default=defaults.warmup_epochs,
        help="raise the learning rate linearly over the first N epochs (from lr/(N+1)), then the schedule",
    )
    group.add_argument(
        "--backbone-lr-scale",
        type=float,
        default=defaults.backbone_lr_scale,
        help="learning rate of every layer but the new classifier, as a fraction of --lr "
        "(e.g. 0.1: pretrained layers move ten times slower)",
    )
    group.add_argument(
        "--ema",
        type=float,
        default=defaults.ema,
        help="evaluate, select and save an exponential moving average of the weights, updated every "
        "optimiser step with this decay (e.g. 0.99); 0: off",
    )
    group.add_argument("--seed", type=int, default=defaults.seed)
    group.add_argument("--device", default=defaults.device, help="auto, cpu, cuda or cuda:N")


def _network_arguments(group: argparse._ArgumentGroup, defaults: SimpleNamespace) -> None:
    """The network's starting weights, input normalisation, head and input size (pixels)."""
    from emovision.training.options import HEADS, INPUT_NORMS

    group.add_argument("--pretrained", action="store_true", help="start from ImageNet weights")
    group.add_argument("--weights", default=None, help="local ImageNet state dict (implies --pretrained)")
    group.add_argument("--input-norm", choices=INPUT_NORMS, default=defaults.input_norm)
    group.add_argument(
        "--head",
        choices=HEADS,
        default=defaults.head,
        help="how the last feature map becomes logits: the backbone's global average pooling (gap) "
        "or learned attention over time and frequency (Zhang et al. 2018)",
    )
    group.add_argument(
        "--resize", type=int, default=None, help="resize segments to N×N (the original used 256)"
    )


def _regularisation_arguments(group: argparse._ArgumentGroup, defaults: SimpleNamespace) -> None:
    """Mixup, stability training and the oversampling of minority classes."""
    from emovision.training.options import STABILITY_SOURCES

    group.add_argument("--mixup", action="store_true")
    group.add_argument("--mixup-alpha", type=float, default=defaults.mixup_alpha)
    group.add_argument(
        "--label-smoothing",
        type=float,
        default=defaults.label_smoothing,
        help="train towards (1 − ε)·one-hot + ε/K instead of the one-hot label (0: off)",
    )
    group.add_argument("--stability", action="store_true", help="stability training (Zheng et al. 2016)")
    group.add_argument(
        "--stability-alpha", type=float, default=defaults.stability_alpha, help="weight of the KL term"
    )
    group.add_argument(
        "--stability-noise",
        type=float,
        default=defaults.stability_noise,
        help="Gaussian σ in normalised units",
    )
    group.add_argument("--stability-source", choices=STABILITY_SOURCES, default=defaults.stability_source)
    group.add_argument("--oversampling", action="store_true", help="random oversampling of minority classes")


def _augmentation_arguments(group: argparse._ArgumentGroup, defaults: SimpleNamespace) -> None:
    """The augmentations: specaugment's masks (bins, frames) and the waveform copies from extract."""
    group.add_argument(
        "--augment",
        default=defaults.augment,
        help="comma list: specaugment (masks in the batch), warp (each segment stretched along frequency, "
        "--warp-max), and noise, noise:TYPE, reverb, speed, gain (the copies written by extract --augment, "
        "training speakers only)",
    )
    group.add_argument(
        "--warp-max",
        type=float,
        default=defaults.warp_max,
        help="warp: each segment's frequencies scaled by a factor drawn from 1 ± this (vocal tract length "
        "perturbation)",
    )
    group.add_argument(
        "--augment-prob",
        type=float,
        default=defaults.augment_prob,
        help="chance per epoch that a training utterance is replaced by one of its augmented copies",
    )
    group.add_argument(
        "--freq-masks", type=int, default=defaults.freq_masks, help="specaugment: bands per segment"
    )
    group.add_argument(
        "--freq-mask-width", type=int, default=defaults.freq_mask_width, help="most bins per band"
    )
    group.add_argument(
        "--time-masks", type=int, default=defaults.time_masks, help="specaugment: spans per segment"
    )
    group.add_argument(
        "--time-mask-width", type=int, default=defaults.time_mask_width, help="most frames per span"
    )


def _selection_arguments(group: argparse._ArgumentGroup, defaults: SimpleNamespace) -> None:
    """The loss's class weights, model selection, early stopping and evaluation."""
    from emovision.training.options import AGGREGATES, SELECTIONS

    group.add_argument("--class-weighted", action="store_true", help="class-weighted cross-entropy")
    group.add_argument(
        "--select-by",
        choices=SELECTIONS,
        default=defaults.select_by,
        help="the epoch kept: the best validation UA or WA, or the last epoch (the validation speakers "
        "then only report and calibrate)",
    )
    group.add_argument(
        "--patience", type=int, default=None, help="early stopping after N epochs without gain"
    )
    group.add_argument(
        "--aggregate", choices=AGGREGATES, default=defaults.aggregate, help="segment → utterance rule"
    )
    group.add_argument("--no-amp", dest="amp", action="store_false", help="no bf16 autocast on GPU")
    group.add_argument("--eval-batch-size", type=int, default=defaults.eval_batch_size)


def _speaker_arguments(group: argparse._ArgumentGroup, defaults: SimpleNamespace) -> None:
    """Speaker normalisation in the data pipeline and its modes."""
    from emovision.training.options import SPEAKER_NORMS

    group.add_argument(
        "--speaker-norm",
        choices=SPEAKER_NORMS,
        default=defaults.speaker_norm,
        help="normalise by speaker statistics in the data pipeline (features extracted without "
        "--speaker-norm): transductive (all of a speaker's recordings), mixed (each segment by the "
        "recording alone, a few other recordings or all of them, drawn at random: good in every mode)",
    )
    group.add_argument(
        "--speaker-prior",
        type=float,
        default=defaults.speaker_prior,
        help="weight of the training speakers' statistics, in recordings, shrinking a speaker's own",
    )
    group.add_argument(
        "--enrol",
        type=int,
        default=defaults.enrol,
        help="recordings of the test speaker whose statistics the enrolled mode uses (K)",
    )


def training_config_from_args(args: argparse.Namespace):
    from dataclasses import fields

    from emovision.training.options import TrainConfig

    return TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})


def _final_config(args: argparse.Namespace):
    """The cv run's training options, its folds' median best epoch, and the options given explicitly."""
    import statistics
    from dataclasses import fields, replace

    from emovision.files import read_json
    from emovision.training.options import TrainConfig

    summary_path = args.epochs_from / "summary.json"
    if not summary_path.is_file():
        raise EmovisionError(f"--epochs-from {args.epochs_from}: not a finished cv folder (no summary.json)")
    try:
        summary = read_json(summary_path, "cross-validation summary")
        epochs = round(float(statistics.median(f["best_epoch"] for f in summary["folds"])))
        recipe = TrainConfig.from_dict(summary["train_config"]).to_dict()
    except (ValueError, KeyError, TypeError) as exc:
        raise EmovisionError(f"{summary_path} is not a readable cv summary ({exc})") from None
    defaults = TrainConfig.defaults()
    given = {
        f.name: getattr(args, f.name)
        for f in fields(TrainConfig)
        if getattr(args, f.name) != defaults[f.name]
    }
    config = TrainConfig.from_dict({**recipe, **given})
    return replace(config, epochs=given.get("epochs", epochs), patience=None)


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("features", type=Path, nargs="?", help="features file from emovision extract")
    parser.add_argument("--config", type=Path, default=None, help="options from a TOML file (flags win)")
    parser.add_argument("--val-speaker", default=None, help="validation speaker id(s), separated by , or +")
    parser.add_argument("--test-speaker", default=None, help="test speaker id(s), separated by , or +")
    parser.add_argument(
        "--all-speakers",
        action="store_true",
        help="a final model trained on every speaker for a fixed number of epochs (no validation, no test)",
    )
    parser.add_argument(
        "--epochs-from",
        type=Path,
        default=None,
        metavar="CV_DIR",
        help="with --all-speakers: the cv run's recipe and the median of its folds' best epochs "
        "(options given on the command line win)",
    )
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    parser.add_argument("--save-label", default=None, help="also write LABEL.pth (as the original)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_training_arguments(parser)


def _run_train(args: argparse.Namespace) -> int:
    from emovision.progress import progress_bar
    from emovision.training.dataset import open_source
    from emovision.training.distributed import distributed_session
    from emovision.training.folds import all_speakers_fold, make_fold, speaker_list
    from emovision.training.train import train_fold

    if args.all_speakers:
        if args.val_speaker or args.test_speaker:
            raise EmovisionError(
                "--all-speakers trains on every speaker: drop --val-speaker and --test-speaker"
            )
        config = _final_config(args) if args.epochs_from else training_config_from_args(args)
    else:
        if args.epochs_from:
            raise EmovisionError("--epochs-from applies to --all-speakers")
        if not args.val_speaker or not args.test_speaker:
            raise EmovisionError("train needs --val-speaker and --test-speaker (or --all-speakers)")
        config = training_config_from_args(args)
    if args.save_label and not Path(args.save_label).parent.is_dir():
        raise EmovisionError(
            f"--save-label {args.save_label}: the folder {Path(args.save_label).parent} does not exist"
        )
    source = open_source(features_given(args), args.trust_pickle)
    if args.all_speakers:
        fold = all_speakers_fold(source)
    else:
        fold = make_fold(source, speaker_list(args.val_speaker), speaker_list(args.test_speaker))
    with (
        distributed_session(config.device) as rank,
        progress_bar(not args.quiet and rank == 0) as progress,
    ):
        metrics = train_fold(source, fold, config, args.out, resume=args.resume, progress=progress)
    if rank != 0:
        return 0
    record_config(args, args.out)
    if args.save_label:
        import shutil

        shutil.copyfile(args.out / "best.pth", f"{args.save_label}.pth")
    print_fold_metrics(metrics, args.out)
    return 0


def _cv_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("features", type=Path, nargs="?", help="features file from emovision extract")
    parser.add_argument("--config", type=Path, default=None, help="options from a TOML file (flags win)")
    parser.add_argument("--out", type=Path, required=True, help="folder of the cross-validation")
    parser.add_argument(
        "--folds",
        default="auto",
        help="auto, iemocap10, iemocap5, pairs, loso (auto: iemocap10 for IEMOCAP, pairs for RAVDESS, else loso) "
        "or a JSON/CSV fold file",
    )
    parser.add_argument(
        "--validation",
        default="hold-out",
        choices=("hold-out", "train"),
        help="hold-out: each fold's validation speakers choose the epoch and calibrate (default); train: they "
        "train too, one more speaker per fold, the last epoch kept (needs --select-by last), each fold calibrated "
        "on the other folds' test speakers",
    )
    parser.add_argument("--repeats", type=int, default=1, help="rerun every fold with N seeds")
    parser.add_argument("--parallel-folds", type=int, default=1, help="folds at once (one GPU each)")
    parser.add_argument(
        "--fold",
        default=None,
        help="train only this fold (1-based index or name), e.g. one job of a Slurm array; the summary "
        "is written when the last fold finishes",
    )
    parser.add_argument(
        "--summarize",
        action="store_true",
        help="train nothing: summarize the folds of --out finished so far and name the missing ones",
    )
    parser.add_argument(
        "--fusion",
        action="store_true",
        help="then late-fuse each fold with a linear model on the openSMILE functionals in FEATURES "
        "(extract --functionals), as emovision fuse does (with --validation train, C and the image weight "
        "are chosen on the other folds' test speakers)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    add_training_arguments(parser)


def _run_cv(args: argparse.Namespace) -> int:
    from emovision.training.cv import run_cv, summarize_folder

    if args.summarize:
        summary = summarize_folder(args.out)
        print_cv_summary(summary, args.out)
        return 0
    config = training_config_from_args(args)
    features_given(args)
    if args.fusion:
        from emovision.data.store import open_info

        if not open_info(args.features).functionals:
            raise EmovisionError(
                f"--fusion: {args.features} holds no openSMILE functionals "
                "(extract with --functionals ComParE_2016)"
            )
    summary = run_cv(
        args.features,
        config,
        args.out,
        folds=args.folds,
        repeats=args.repeats,
        parallel=args.parallel_folds,
        progress=not args.quiet,
        trust_pickle=args.trust_pickle,
        only=args.fold,
        validation=args.validation,
    )
    record_config(args, args.out)
    print_cv_summary(summary, args.out)
    if args.fusion and not summary.get("missing"):
        from emovision.evaluation.cv_fusion import fuse_cv

        print_fusion(fuse_cv(args.out, progress=not args.quiet), args.out)
    return 0


def _fuse_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, help="a finished emovision cv folder")
    _functionals_arguments(
        parser, "features file with openSMILE functionals of the same utterances (default: the cv's own)"
    )
    parser.add_argument(
        "--augment",
        default=None,
        help="comma list of waveform copies (noise, noise:TYPE, reverb, speed, gain) whose functionals the "
        "linear model also trains on, training speakers only; 'none' for clean speech only (default: the "
        "kinds the cv's image models trained on, where the functionals file holds them)",
    )
    _linear_model_arguments(parser)


def _linear_model_arguments(parser: argparse.ArgumentParser) -> None:
    """How the fusion's linear model is trained (``--centre`` and its options, ``--scaling``, ``--c-grid``),
    as ``fuse`` and ``ensemble`` take them."""
    from emovision.evaluation.linear_model import C_GRID
    from emovision.inference.fusion_model import DEFAULT_SCALING, SCALINGS

    parser.add_argument(
        "--centre",
        action="store_true",
        help="train the linear model on speaker-centred functionals in every mode (a recording alone, a "
        "few enrolled recordings, the whole speaker) and score it in each; the deployed fusion then "
        "centres a recording by itself, or by a speaker's enrolled recordings",
    )
    parser.add_argument(
        "--centre-weight",
        type=float,
        default=3.0,
        help="--centre: how many recordings the training speakers' mean weighs as (τ, default 3)",
    )
    parser.add_argument(
        "--enrol", type=int, default=5, help="--centre: recordings behind the enrolled mode (K, default 5)"
    )
    parser.add_argument("--seed", type=int, default=0, help="--centre: seed of the training draws")
    parser.add_argument(
        "--scaling",
        choices=SCALINGS,
        default=DEFAULT_SCALING,
        help="how the linear model scales each functional: 'standard' (z-score over the training rows) or "
        f"'quantile' (through its training quantiles to a normal score; robust to outliers); default {DEFAULT_SCALING}",
    )
    parser.add_argument(
        "--c-grid",
        default=None,
        help="comma list of the linear model's inverse regularisations C to choose among, increasing "
        f"(default {','.join(f'{c:g}' for c in C_GRID)})",
    )


def _c_grid(text: str | None) -> tuple[float, ...]:
    """``--c-grid``: increasing positive numbers, comma-separated (None: the default grid)."""
    from emovision.evaluation.linear_model import C_GRID, check_c_grid

    if text is None:
        return C_GRID
    try:
        grid = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise EmovisionError(f"--c-grid: not a comma list of numbers: {text!r}") from None
    try:
        check_c_grid(grid)
    except EmovisionError as error:
        raise EmovisionError(f"--c-grid: {error}") from None
    return grid


def _functionals_arguments(parser: argparse.ArgumentParser, help_text: str) -> None:
    """``--functionals FILE`` (late fusion) and ``--quiet``, as ``fuse`` and ``ensemble`` take them."""
    parser.add_argument("--functionals", type=Path, default=None, help=help_text)
    parser.add_argument("--quiet", action="store_true", help="no progress display")


def _run_fuse(args: argparse.Namespace) -> int:
    from emovision.evaluation.cv_fusion import fuse_cv

    copy_kinds = None if args.augment is None else fusion_copy_kinds(args.augment)
    print_fusion(
        fuse_cv(args.run, args.functionals, not args.quiet, _linear_training(args, copy_kinds)), args.run
    )
    return 0


def _linear_training(args: argparse.Namespace, copy_kinds: tuple[str, ...] | None = None) -> LinearTraining:
    """How the linear model is trained: ``--centre`` (and its options, checked), ``--scaling``, ``--c-grid``
    and the waveform ``copy_kinds`` it trains on too (None: the image models' kinds)."""
    from emovision.evaluation.linear_model import LinearRecipe, LinearTraining

    check_options(
        [
            (
                math.isfinite(args.centre_weight) and args.centre_weight > 0,
                "--centre-weight must be a positive number of recordings",
            ),
            (args.enrol >= 1, f"--enrol must be at least 1 recording, got {args.enrol}"),
        ]
    )
    centre = LinearRecipe(args.centre_weight, args.enrol, args.seed) if args.centre else None
    return LinearTraining(copy_kinds, centre, args.scaling, _c_grid(args.c_grid))


def fusion_copy_kinds(text: str) -> tuple[str, ...]:
    """``fuse --augment``: waveform kinds, checked; ``none`` for none."""
    from emovision.training.options import BATCH_AUGMENTS, parse_augment

    if text.strip() == "none":
        return ()
    names = parse_augment(text)
    batch = [name for name in names if name in BATCH_AUGMENTS]
    if batch or not names:
        raise EmovisionError(
            f"fuse --augment: {batch[0] if batch else repr(text)} is not a kind of waveform copy: give noise, "
            "noise:TYPE, reverb, speed or gain (or none)"
        )
    return names


def _ensemble_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs", type=Path, nargs="+", help="two or more finished emovision cv folders on the same folds"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the ensemble's summary")
    _functionals_arguments(
        parser, "features file with openSMILE functionals: also fuse the ensemble with a linear model on them"
    )
    _linear_model_arguments(parser)


def _run_ensemble(args: argparse.Namespace) -> int:
    from emovision.evaluation.ensemble import ensemble_cvs, ensemble_member_table
    from emovision.evaluation.linear_model import DEFAULT_LINEAR

    linear = _linear_training(args)
    if linear != DEFAULT_LINEAR and args.functionals is None:
        raise EmovisionError(
            "--centre, --scaling and --c-grid shape the fusion's linear model: give --functionals too"
        )
    summary = ensemble_cvs(args.runs, args.out, args.functionals, not args.quiet, linear)
    console.print(ensemble_member_table(summary).rich())
    if "fusion" in summary:
        print_fusion(summary["fusion"], args.out)
    console.print(
        f"report: {args.out / 'summary.md'}, {args.out / 'summary.json'}, {args.out / 'confusion.png'}",
        markup=False,
        soft_wrap=True,
    )
    return 0


def print_fusion(report: dict, out: Path) -> None:
    from emovision.evaluation.fusion_report import fusion_model_table, fusion_modes_table

    console.print(fusion_model_table(report).rich())
    modes = fusion_modes_table(report)
    if modes is not None:
        console.print(modes.rich())
    for key, p in report["paired_ua"].items():
        console.print(
            f"ΔUA {key}: {p['mean']:+.3f} ± {p['se']:.3f}, better on {p['better']}/{p['folds']} folds"
        )
    console.print(
        f"written: {out / 'fusion.json'}, {out / 'fusion.md'}", highlight=False, markup=False, soft_wrap=True
    )


def print_cv_summary(summary: dict, out: Path) -> None:
    from emovision.training.cv import fold_table

    console.print(fold_table(summary).rich())
    print_modes(summary)
    if summary.get("missing"):
        console.print(
            f"{len(summary['missing'])} run(s) not finished yet: {', '.join(summary['missing'])}; the summary "
            "files are written when the last one finishes (or by cv --summarize then)",
            markup=False,
            soft_wrap=True,
        )
        return
    console.print(
        f"report: {out / 'summary.md'}, {out / 'summary.json'}, {out / 'confusion.png'}",
        markup=False,
        soft_wrap=True,
    )


def print_modes(summary: dict) -> None:
    """What the table's figures mean (the evaluation mode) and, when recorded, the three modes."""
    from emovision.training.cv import MODE_NOTES
    from emovision.training.modes import modes_table

    mode = summary.get("mode", "any")
    console.print(f"mode of the table: {mode} ({MODE_NOTES[mode]})", markup=False, soft_wrap=True)
    modes = summary.get("modes")
    if not modes:
        return
    console.print(modes_table(modes).rich())


REPORT_PARTS = ("runs", "fusion", "robustness", "fusion-robustness")


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", type=Path, nargs="+", help="cv or train run folders")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table instead")
    parser.add_argument(
        "--only",
        type=_report_parts,
        default=REPORT_PARTS,
        help="comma list of the tables to print: runs (accuracy, modes, paired differences), fusion, "
        "robustness (the image models'), fusion-robustness (default: all that the runs hold)",
    )


def _report_parts(text: str) -> tuple[str, ...]:
    """``--only``: a comma list of :data:`REPORT_PARTS`, in the order given."""
    parts = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [part for part in parts if part not in REPORT_PARTS]
    if unknown or not parts:
        raise argparse.ArgumentTypeError(
            f"unknown table {unknown[0] if unknown else text!r}: choose from {', '.join(REPORT_PARTS)}"
        )
    return parts


ReportTable = tuple[str, list, tuple[str, ...]]


def _run_tables(runs: list[Path], shared: str) -> tuple[ReportTable, ...]:
    """The report's tables of the runs themselves: what each is, its UA per mode, paired deltas."""
    from emovision.evaluation import report

    rows, modes = report.compare_runs(runs)
    return (
        ("", rows, ("run", "corpus", "model", "features", "options")),
        ("pooled UA by evaluation mode (cold: a recording alone; enrolled-5; transductive)", modes, ("run",)),
        (
            f"paired ΔUA from the first run of the same folds {shared}",
            report.paired_deltas(runs),
            ("run", "from"),
        ),
    )


def _report_tables(runs: list[Path], only: list[str]) -> list[ReportTable]:
    """The report's tables of the parts in ``only``, in order, empty ones left out; a part's
    tables are built only when it is asked for."""
    from emovision.evaluation import report

    shared = "(test speakers; mean ± s.e. over shared folds, folds better)"
    parts = {
        "runs": lambda: _run_tables(runs, shared),
        "fusion": lambda: (
            (
                "late fusion: UA (mean ± std over folds)",
                report.fusion_rows(runs),
                ("run", "linear model trained on"),
            ),
            (
                f"late fusion: paired ΔUA from the first fused run of the same folds {shared}",
                report.fusion_deltas(runs),
                ("run", "from"),
            ),
        ),
        "robustness": lambda: (
            (
                "robustness: UA (mean ± std over folds) per condition",
                report.robustness_rows(runs),
                ("condition",),
            ),
            (
                "robustness: paired ΔUA from the first run of the same folds (mean ± s.e. over shared folds, folds improved)",
                report.robustness_deltas(runs),
                ("condition",),
            ),
        ),
        "fusion-robustness": lambda: (
            (
                "robustness of the late fusion: fusion UA (mean ± std over folds)",
                report.robustness_fusion_rows(runs),
                ("condition",),
            ),
        ),
    }
    return [table for part in only for table in parts[part]() if table[1]]


def _run_report(args: argparse.Namespace) -> int:
    from emovision.evaluation.report import rows_table

    tables = _report_tables(args.runs, args.only)
    if args.markdown:
        for number, (title, table_rows, _) in enumerate(tables):
            if title:
                lead = "\n" if number else ""
                console.print(f"{lead}{title[0].upper()}{title[1:]}\n", highlight=False, markup=False)
            markdown = "\n".join(rows_table(table_rows).markdown())
            console.print(markdown, highlight=False, markup=False, soft_wrap=True)
        return 0
    for title, table_rows, left in tables:
        console.print(rows_table(table_rows, title or "comparison", len(left)).rich())
    return 0


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--emodb-dir", type=Path, default=None, help="emoDB folder (default: $EMODB_DIR, else download)"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="where features and runs go")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument(
        "--recipe",
        type=Path,
        default=None,
        help="a recipe file instead of recipes/demo-cpu.toml (demo-gpu.toml with a CUDA GPU)",
    )


def _run_demo(args: argparse.Namespace) -> int:
    from emovision.training.demo import run_demo

    summary = run_demo(args.emodb_dir, args.out, args.device, say=console.print, recipe=args.recipe)
    print_cv_summary(summary, args.out / f"cv-{summary['train_config']['model']}")
    return 0


def print_fold_metrics(metrics: dict, out: Path) -> None:
    from emovision.data.speaker_norm import MODES, mode_label

    test, val = metrics["test"], metrics["val"]
    if test is None:
        console.print(
            f"final model on all speakers: {metrics['epochs_run']} epochs; run folder: {out} (best.pth)",
            highlight=False,
        )
        return
    table = Table(
        title=f"{metrics['fold']['name']}: best epoch {metrics['best_epoch']} of {metrics['epochs_run']}"
    )
    table.add_column("set")
    table.add_column("speakers")
    table.add_column("utterances", justify="right")
    table.add_column("WA", justify="right")
    table.add_column("UA", justify="right")
    for role, result in (("validation", val), ("test", test)):
        speakers = ", ".join(metrics["fold"]["val" if role == "validation" else "test"])
        table.add_row(role, speakers, str(result["utterances"]), f"{result['wa']:.3f}", f"{result['ua']:.3f}")
    console.print(table)
    modes = metrics.get("test_modes")
    if modes:
        k = modes["enrolled"]["k"]
        figures = ", ".join(f"{mode_label(name, k)} {modes[name]['ua']:.3f}" for name in MODES)
        console.print(f"test UA by mode: {figures} (the table: cold, a recording alone)", highlight=False)
    recalls = ", ".join(f"{k} {v:.2f}" for k, v in test["recall"].items() if v is not None)
    console.print(f"test recall per class: {recalls}")
    console.print(
        f"run folder: {out} (best.pth, metrics.json, curves.png, confusion.png)", markup=False, soft_wrap=True
    )


COMMANDS = {
    "train": Command(_train_arguments, _run_train, "train one fold (validation and test speakers held out)"),
    "cv": Command(_cv_arguments, _run_cv, "speaker-independent cross-validation with a summary report"),
    "report": Command(_report_arguments, _run_report, "compare the results of several runs"),
    "fuse": Command(
        _fuse_arguments, _run_fuse, "late fusion of a cv run with a linear model on openSMILE functionals"
    ),
    "ensemble": Command(
        _ensemble_arguments,
        _run_ensemble,
        "score several cross-validations on the same folds as one within-fold ensemble",
    ),
    "demo": Command(
        _demo_arguments, _run_demo, "the whole pipeline on emoDB: extract, cross-validate, report"
    ),
}
