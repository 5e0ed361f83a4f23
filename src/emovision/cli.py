"""The ``emovision`` command line: one sub-command per job, user errors as one readable line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from emovision.errors import EmovisionError

console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``emovision`` script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "config", None) is not None:
            args = _with_config(parser, args, argv)
        return int(args.handler(args) or 0)
    except EmovisionError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted: rerun the same command to resume", highlight=False)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emovision",
        description="Speech emotion recognition with ImageNet image classifiers on spectrograms.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add_arguments, handler, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        add_arguments(sub)
        sub.set_defaults(handler=handler, parser=sub)
    return parser


def _with_config(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str] | None):
    """``args`` parsed again with the ``--config`` file's options as defaults (flags still win)."""
    from emovision.config_file import option_types, read_config

    sub = args.parser
    sub.set_defaults(**read_config(args.config, option_types(sub)))
    return parser.parse_args(argv)


def _record_config(args: argparse.Namespace, folder: Path) -> None:
    from emovision.config_file import option_types, write_config

    write_config(folder / "config.toml", args, option_types(args.parser))


def _features_given(args: argparse.Namespace) -> Path:
    if args.features is None:
        raise EmovisionError("give the features file (FEATURES, or features = ... in --config)")
    return args.features


def add_feature_arguments(parser: argparse.ArgumentParser) -> None:
    """The feature options of ``extract``: every field of :class:`FeatureConfig`."""
    from emovision.features import FEATURE_TYPES, SEGMENT_TAILS, FeatureConfig

    defaults = FeatureConfig()
    group = parser.add_argument_group("features")
    group.add_argument("--features", dest="kind", choices=FEATURE_TYPES, default=defaults.kind)
    group.add_argument("--sample-rate", type=int, default=defaults.sample_rate, help="Hz")
    group.add_argument("--window-ms", type=float, default=defaults.window_ms)
    group.add_argument("--hop-ms", type=float, default=defaults.hop_ms)
    group.add_argument("--n-fft", type=int, default=defaults.n_fft)
    group.add_argument("--preemphasis", type=float, default=defaults.preemphasis)
    group.add_argument("--top-db", type=float, default=defaults.top_db, help="dB floor below the maximum")
    group.add_argument(
        "--max-freq", type=float, default=defaults.max_freq, help="logspec: highest frequency, Hz"
    )
    group.add_argument("--n-mels", type=int, default=defaults.n_mels)
    group.add_argument("--delta-width", type=int, default=defaults.delta_width)
    group.add_argument("--noise-std", type=float, default=defaults.noise_std, help="lognrevspec noise level")
    group.add_argument(
        "--noise-snr", type=float, default=None, help="lognrevspec: noise at this SNR (dB) instead"
    )
    group.add_argument("--rt60", type=float, default=defaults.rt60, help="lognrevspec reverberation time, s")
    group.add_argument(
        "--seed", type=int, default=defaults.seed, help="seed of the lognrevspec noise and room"
    )
    group.add_argument(
        "--segment-frames", type=int, default=defaults.segment_frames, help="T, frames per segment"
    )
    group.add_argument(
        "--segment-hop", type=int, default=None, help="frames between segment starts (default: T, no overlap)"
    )
    group.add_argument(
        "--segment-tail",
        choices=SEGMENT_TAILS,
        default=defaults.segment_tail,
        help="last partial segment: pad it (original), shift it back to end at the last frame, or trim: "
        "shift it when it holds at least half a segment of new frames, else drop those frames",
    )


def feature_config_from_args(args: argparse.Namespace):
    from dataclasses import fields

    from emovision.features import FeatureConfig

    return FeatureConfig(**{f.name: getattr(args, f.name) for f in fields(FeatureConfig)})


def _extract_arguments(parser: argparse.ArgumentParser) -> None:
    from emovision.corpora import LOADERS

    parser.add_argument("corpus", choices=list(LOADERS), help="corpus type")
    parser.add_argument("root", type=Path, help="corpus folder (manifest: the CSV file)")
    parser.add_argument("-o", "--output", type=Path, default=Path("features.h5"))
    parser.add_argument(
        "--classes",
        default=None,
        help="class set (iemocap: 4, 4-noexc, all; emodb: 7, 4; ravdess: 8, 4) or a comma list",
    )
    parser.add_argument("--improvised-only", action="store_true", help="iemocap: improvised dialogs only")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda", "auto"],
        default="cpu",
        help="cpu: numpy in the worker processes; cuda: audio decoded in the workers, features "
        "batched on the GPU (same numbers); auto: cuda when available",
    )
    parser.add_argument("--strict", action="store_true", help="abort on the first unreadable file")
    parser.add_argument(
        "--format",
        choices=["h5", "seed-pickle"],
        default="h5",
        help="seed-pickle: also write the original pickle layout next to the HDF5 file",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_feature_arguments(parser)
    group = parser.add_argument_group("waveform augmentation (copies that only training speakers use)")
    group.add_argument(
        "--augment",
        default="",
        help="comma list of noise, reverb, speed, gain: copies to write per utterance",
    )
    group.add_argument("--augment-copies", type=int, default=1, help="copies per kind (and noise type)")
    group.add_argument("--augment-noises", default="white,pink,babble", help="noise types of 'noise'")
    group.add_argument("--augment-snr", default="0,20", help="LOW,HIGH: uniform SNR range in dB")
    group.add_argument("--augment-rt60", default="0.2,1.0", help="LOW,HIGH: uniform RT60 range in s")
    group.add_argument(
        "--augment-noise-dir", type=Path, default=None, help="recorded noises (type 'recorded')"
    )
    group.add_argument("--augment-seed", type=int, default=0)
    parser.add_argument(
        "--functionals",
        default=None,
        help="also store openSMILE functionals per utterance (ComParE_2016 or eGeMAPSv02) for fusion",
    )


def _run_extract(args: argparse.Namespace) -> int:
    from emovision.corpora import load_corpus
    from emovision.extract import extract_corpus

    config = feature_config_from_args(args)
    if args.workers is not None and args.workers < 1:
        raise EmovisionError("--workers must be at least 1")
    options = {"improvised_only": True} if args.improvised_only else {}
    if args.improvised_only and args.corpus != "iemocap":
        raise EmovisionError("--improvised-only applies to iemocap only")
    plan = augment_plan_from_args(args)
    if args.functionals is not None:
        from emovision.functionals import check_set

        check_set(args.functionals)
    corpus = load_corpus(args.corpus, args.root, args.classes, **options)
    summary = extract_corpus(
        corpus,
        config,
        args.output,
        workers=args.workers,
        strict=args.strict,
        seed_pickle=args.format == "seed-pickle",
        device=args.device,
        progress=not args.quiet,
        augment=plan,
        functionals=args.functionals,
    )
    print_extract_summary(summary, config)
    return 0


def augment_plan_from_args(args: argparse.Namespace):
    """The :class:`AugmentPlan` of ``extract``'s options (checked before any work), or ``None``."""
    from emovision.augment_audio import AugmentPlan
    from emovision.options import parse_augment
    from emovision.robustness import noise_recordings, parse_names, parse_numbers

    names = parse_augment(args.augment)
    if "specaugment" in names:
        raise EmovisionError("--augment specaugment is applied in training: pass it to train or cv")
    typed = [name for name in names if ":" in name]
    if typed:
        raise EmovisionError(f"extract --augment {typed[0]}: choose noise types with --augment-noises")
    noises = parse_names(args.augment_noises)
    if args.augment_noise_dir is not None and "recorded" not in noises:
        noises = (*noises, "recorded")
    if not names:
        return None
    snr = parse_numbers(args.augment_snr, "--augment-snr")
    rt60 = parse_numbers(args.augment_rt60, "--augment-rt60", positive=True)
    if len(snr) != 2 or len(rt60) != 2:
        raise EmovisionError("--augment-snr and --augment-rt60 take two numbers: LOW,HIGH")
    files = noise_recordings(args.augment_noise_dir) if args.augment_noise_dir else ()
    return AugmentPlan(
        augment=names,
        copies=args.augment_copies,
        noises=noises,
        snr=snr,
        rt60=rt60,
        noise_files=files,
        seed=args.augment_seed,
    )


def print_extract_summary(summary, config) -> None:
    """Utterances, segments and seconds per speaker and class, then the skipped files."""
    table = Table(
        title=f"{summary.path}  ({config.kind}, {config.channels}×{config.height}×{config.segment_frames})"
    )
    table.add_column("speaker")
    copies = ("augmented copies",) if summary.copies else ()
    for column in ("utterances", "segments", "seconds", *copies, *summary.classes):
        table.add_column(column, justify="right")
    speakers = sorted(summary.utterances)
    for speaker in speakers:
        table.add_row(
            speaker,
            str(summary.utterances[speaker]),
            str(summary.segments[speaker]),
            f"{summary.seconds[speaker]:.1f}",
            *([str(summary.copies[speaker])] if copies else []),
            *(str(summary.per_class[speaker, name]) for name in summary.classes),
        )
    table.add_row(
        "all",
        str(sum(summary.utterances.values())),
        str(sum(summary.segments.values())),
        f"{sum(summary.seconds.values()):.1f}",
        *([str(sum(summary.copies.values()))] if copies else []),
        *(str(sum(summary.per_class[s, name] for s in speakers)) for name in summary.classes),
        style="bold",
    )
    console.print(table)
    if summary.resumed:
        console.print(f"resumed: speakers {', '.join(summary.resumed)} were already extracted")
    if summary.skipped:
        console.print(f"[yellow]skipped {len(summary.skipped)} file(s):[/]")
        for path, reason in summary.skipped[:20]:
            console.print(f"  {path}: {reason}", highlight=False, markup=False, soft_wrap=True)
        if len(summary.skipped) > 20:
            console.print(f"  … and {len(summary.skipped) - 20} more")
    else:
        console.print("skipped: none")


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """Every field of :class:`TrainConfig` as an option (the package's own names)."""
    from types import SimpleNamespace

    from emovision.options import (
        AGGREGATES,
        INPUT_NORMS,
        MODEL_NAMES,
        SCHEDULES,
        STABILITY_SOURCES,
        TrainConfig,
    )

    d = SimpleNamespace(**TrainConfig.defaults())
    group = parser.add_argument_group("model and training")
    group.add_argument("--model", default=d.model, help=f"backbone: {', '.join(MODEL_NAMES)}")
    group.add_argument("--epochs", type=int, default=d.epochs)
    group.add_argument("--batch-size", type=int, default=d.batch_size)
    group.add_argument("--lr", type=float, default=d.lr, help="AdamW learning rate")
    group.add_argument("--weight-decay", type=float, default=d.weight_decay)
    group.add_argument("--schedule", choices=SCHEDULES, default=d.schedule, help="learning-rate schedule")
    group.add_argument("--seed", type=int, default=d.seed)
    group.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N")
    group.add_argument("--pretrained", action="store_true", help="start from ImageNet weights")
    group.add_argument("--weights", default=None, help="local ImageNet state dict (implies --pretrained)")
    group.add_argument("--input-norm", choices=INPUT_NORMS, default=d.input_norm)
    group.add_argument(
        "--resize", type=int, default=None, help="resize segments to N×N (the original used 256)"
    )
    group.add_argument("--mixup", action="store_true")
    group.add_argument("--mixup-alpha", type=float, default=d.mixup_alpha)
    group.add_argument("--stability", action="store_true", help="stability training (Zheng et al. 2016)")
    group.add_argument(
        "--stability-alpha", type=float, default=d.stability_alpha, help="weight of the KL term"
    )
    group.add_argument(
        "--stability-noise", type=float, default=d.stability_noise, help="Gaussian σ in normalised units"
    )
    group.add_argument("--stability-source", choices=STABILITY_SOURCES, default=d.stability_source)
    group.add_argument("--oversampling", action="store_true", help="random oversampling of minority classes")
    group.add_argument(
        "--augment",
        default=d.augment,
        help="comma list: specaugment (masks in the batch), and noise, noise:TYPE, reverb, speed, gain "
        "(the copies written by extract --augment, training speakers only)",
    )
    group.add_argument(
        "--augment-prob",
        type=float,
        default=d.augment_prob,
        help="chance per epoch that a training utterance is replaced by one of its augmented copies",
    )
    group.add_argument("--freq-masks", type=int, default=d.freq_masks, help="specaugment: bands per segment")
    group.add_argument("--freq-mask-width", type=int, default=d.freq_mask_width, help="most bins per band")
    group.add_argument("--time-masks", type=int, default=d.time_masks, help="specaugment: spans per segment")
    group.add_argument("--time-mask-width", type=int, default=d.time_mask_width, help="most frames per span")
    group.add_argument("--class-weighted", action="store_true", help="class-weighted cross-entropy")
    group.add_argument("--select-by", choices=["ua", "wa"], default=d.select_by)
    group.add_argument(
        "--patience", type=int, default=None, help="early stopping after N epochs without gain"
    )
    group.add_argument(
        "--aggregate", choices=AGGREGATES, default=d.aggregate, help="segment → utterance rule"
    )
    group.add_argument("--no-amp", dest="amp", action="store_false", help="no bf16 autocast on GPU")
    group.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size)
    group.add_argument("--trust-pickle", action="store_true", help="allow a legacy pickle features file")


def training_config_from_args(args: argparse.Namespace):
    from dataclasses import fields

    from emovision.options import TrainConfig

    return TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})


def _final_config(args: argparse.Namespace):
    """The cv run's training options, its folds' median best epoch, and the options given explicitly."""
    import json
    import statistics
    from dataclasses import fields, replace

    from emovision.options import TrainConfig

    summary_path = args.epochs_from / "summary.json"
    if not summary_path.is_file():
        raise EmovisionError(f"--epochs-from {args.epochs_from}: not a finished cv folder (no summary.json)")
    try:
        summary = json.loads(summary_path.read_text())
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
    from emovision.dataset import open_source
    from emovision.distributed import distributed_session
    from emovision.folds import all_speakers_fold, make_fold, speaker_list
    from emovision.progress import progress_bar
    from emovision.train import train_fold

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
    source = open_source(_features_given(args), args.trust_pickle)
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
    _record_config(args, args.out)
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
        help="auto, iemocap10, iemocap5, loso (auto: iemocap10 for IEMOCAP, else loso) or a JSON/CSV fold file",
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
        "(extract --functionals), as emovision fuse does",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    add_training_arguments(parser)


def _run_cv(args: argparse.Namespace) -> int:
    from emovision.cv import run_cv, summarize_folder

    if args.summarize:
        summary = summarize_folder(args.out)
        print_cv_summary(summary, args.out)
        return 0
    config = training_config_from_args(args)
    _features_given(args)
    if args.fusion:
        from emovision.store import open_info

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
    )
    _record_config(args, args.out)
    print_cv_summary(summary, args.out)
    if args.fusion and not summary.get("missing"):
        from emovision.fusion import fuse_cv

        print_fusion(fuse_cv(args.out, progress=not args.quiet), args.out)
    return 0


def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", type=Path, help="checkpoint (.pth), ONNX file (.onnx) or cv folder (ensemble)"
    )
    parser.add_argument("features", type=Path, help="features file of another corpus (the model's features)")
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for summary.json, summary.md, confusion.png"
    )
    parser.add_argument(
        "--map",
        default=None,
        help="FILE_CLASS=MODEL_CLASS,… where the class names differ (e.g. happy=happiness)",
    )


def _run_evaluate(args: argparse.Namespace) -> int:
    from emovision.transfer import evaluate_on, parse_map

    summary = evaluate_on(args.model, args.features, args.out, parse_map(args.map))
    dropped = sum(summary["dropped"].values())
    console.print(
        f"{args.model} on {args.features}: WA {summary['wa']:.3f}, UA {summary['ua']:.3f} over "
        f"{summary['utterances']} utterances ({dropped} of classes the model does not know dropped); "
        f"{args.out / 'summary.md'}",
        markup=False,
        soft_wrap=True,
    )
    return 0


def _fuse_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, help="a finished emovision cv folder")
    parser.add_argument(
        "--functionals",
        type=Path,
        default=None,
        help="features file with openSMILE functionals of the same utterances (default: the cv's own)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress display")


def _run_fuse(args: argparse.Namespace) -> int:
    from emovision.fusion import fuse_cv

    print_fusion(fuse_cv(args.run, args.functionals, progress=not args.quiet), args.run)
    return 0


def print_fusion(report: dict, out: Path) -> None:
    table = Table(title="late fusion with openSMILE functionals (test speakers)")
    for column in ("model", "WA", "UA", "pooled WA", "pooled UA"):
        table.add_column(column, justify="right" if column != "model" else "left")
    for key, s in report["summary"].items():
        table.add_row(
            key,
            f"{s['wa_mean']:.3f} ± {s['wa_std']:.3f}",
            f"{s['ua_mean']:.3f} ± {s['ua_std']:.3f}",
            f"{s['pooled']['wa']:.3f}",
            f"{s['pooled']['ua']:.3f}",
        )
    console.print(table)
    for key, p in report["paired_ua"].items():
        console.print(
            f"ΔUA {key}: {p['mean']:+.3f} ± {p['se']:.3f}, better on {p['better']}/{p['folds']} folds"
        )
    console.print(
        f"written: {out / 'fusion.json'}, {out / 'fusion.md'}", highlight=False, markup=False, soft_wrap=True
    )


def print_cv_summary(summary: dict, out: Path) -> None:
    table = Table(
        title=f"cross-validation of {summary['train_config']['model']}: {len(summary['folds'])} runs"
    )
    for column in ("fold", "test", "validation", "seed", "best epoch", "WA", "UA"):
        table.add_column(column, justify="left" if column in ("fold", "test", "validation") else "right")
    for fold in summary["folds"]:
        table.add_row(
            fold["name"],
            "+".join(fold["test"]),
            "+".join(fold["val"]),
            str(fold["seed"]),
            str(fold["best_epoch"]),
            f"{fold['wa']:.3f}",
            f"{fold['ua']:.3f}",
        )
    table.add_row(
        "mean ± std", "", "", "", "", f"{summary['wa_mean']:.3f} ± {summary['wa_std']:.3f}",
        f"{summary['ua_mean']:.3f} ± {summary['ua_std']:.3f}", style="bold",
    )  # fmt: skip
    pooled = summary["pooled"]
    table.add_row("pooled", "", "", "", "", f"{pooled['wa']:.3f}", f"{pooled['ua']:.3f}")
    console.print(table)
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


def _report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", type=Path, nargs="+", help="cv or train run folders")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table instead")


def _run_report(args: argparse.Namespace) -> int:
    from emovision.report import (
        compare_runs,
        markdown_table,
        paired_deltas,
        robustness_deltas,
        robustness_rows,
    )

    rows = compare_runs(args.runs)
    clean = paired_deltas(args.runs)
    robustness = robustness_rows(args.runs)
    deltas = robustness_deltas(args.runs)
    base = list(robustness[0])[1] if robustness else ""
    paired = f"robustness: paired ΔUA from {base} (mean ± s.e. over shared folds, folds improved)"
    tables = (
        ("comparison", rows, ("run", "model", "features", "options")),
        (
            f"paired ΔUA from {args.runs[0]} (test speakers; mean ± s.e. over shared folds, folds better)",
            clean,
            ("run",),
        ),
        ("robustness: UA (mean ± std over folds) per condition", robustness, ("condition",)),
        (paired, deltas, ("condition",)),
    )
    if args.markdown:
        for number, (title, table_rows, _) in enumerate(tables):
            if table_rows:
                if number:
                    console.print(f"\n{title[0].upper()}{title[1:]}\n", highlight=False, markup=False)
                console.print(markdown_table(table_rows), highlight=False, markup=False, soft_wrap=True)
        return 0
    for title, table_rows, left in tables:
        if not table_rows:
            continue
        table = Table(title=title)
        for column in table_rows[0]:
            table.add_column(column, justify="left" if column in left else "right")
        for row in table_rows:
            table.add_row(*(str(value) for value in row.values()))
        console.print(table)
    return 0


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--emodb-dir", type=Path, default=None, help="emoDB folder (default: $EMODB_DIR, else download)"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="where features and runs go")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")


def _run_demo(args: argparse.Namespace) -> int:
    from emovision.demo import run_demo

    summary = run_demo(args.emodb_dir, args.out, args.device, say=console.print)
    print_cv_summary(summary, args.out / f"cv-{summary['train_config']['model']}")
    return 0


Handler = Callable


def print_fold_metrics(metrics: dict, out: Path) -> None:
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
    recalls = ", ".join(f"{k} {v:.2f}" for k, v in test["recall"].items() if v is not None)
    console.print(f"test recall per class: {recalls}")
    console.print(
        f"run folder: {out} (best.pth, metrics.json, curves.png, confusion.png)", markup=False, soft_wrap=True
    )


def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", type=Path, help="trained model: checkpoint (.pth), ONNX file (.onnx) or cv folder (ensemble)"
    )
    parser.add_argument(
        "paths", type=Path, nargs="+", metavar="PATH", help="audio files or folders (searched recursively)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    parser.add_argument(
        "--timeline",
        type=Path,
        default=None,
        metavar="PNG",
        help="draw the emotion over time of recordings of 4 segments or more (several: PNG-<file>.png)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--batch-size", type=int, default=64, help="segments per model call")
    parser.add_argument("--workers", type=int, default=None, help="threads decoding audio (default: up to 4)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_predict(args: argparse.Namespace) -> int:
    """Exit status 0: every file predicted; 1: some failed (listed on stderr); 2: none could be used."""
    import json

    from emovision.predict import Failure, Recognizer, find_audio, save_timelines
    from emovision.progress import progress_bar

    if args.workers is not None and args.workers < 1:
        raise EmovisionError("--workers must be at least 1")
    recognizer = Recognizer.load(args.model, device=args.device, batch_size=args.batch_size)
    files, failures = find_audio(args.paths)
    predictions = []
    with progress_bar(not args.quiet and bool(files), console=err_console, transient=True) as bar:
        task = bar.add_task("predicting", total=len(files))
        for result in recognizer.iter_predict(files, workers=args.workers):
            bar.advance(task)
            if isinstance(result, Failure):
                failures.append(result)
                continue
            predictions.append(result)
            if args.json:
                sys.stdout.write(json.dumps(result.to_dict()) + "\n")
                sys.stdout.flush()
    if predictions and not args.json:
        table = Table(title=f"{args.model.name}: {len(predictions)} recording(s)")
        for column in ("file", "emotion", "confidence", "top 3"):
            table.add_column(column, justify="right" if column == "confidence" else "left")
        for item in predictions:
            top = ", ".join(f"{name} {p:.2f}" for name, p in item.top(3))
            table.add_row(item.source, item.label, f"{item.confidence:.2f}", top)
        console.print(table, highlight=False)
    for failure in failures:
        err_console.print(
            f"[yellow]skipped[/] {escape(f'{failure.source}: {failure.reason}')}",
            highlight=False,
            soft_wrap=True,
        )
    if args.timeline and predictions:
        written = save_timelines(predictions, args.timeline)
        for path in written:
            err_console.print(f"timeline: {path}", highlight=False, markup=False, soft_wrap=True)
        if not written:
            err_console.print("timeline: no recording is 4 segments or longer", highlight=False)
    if not predictions:
        raise EmovisionError(f"no recording could be used ({len(failures)} failed)")
    if failures:
        err_console.print(f"{len(predictions)} predicted, {len(failures)} failed", highlight=False)
        return 1
    return 0


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        type=Path,
        help="checkpoint (.pth) made by emovision train, or a cv folder (its fold ensemble)",
    )
    parser.add_argument(
        "-o", "--output", type=Path, default=None, help="ONNX file to write (default: MODEL with .onnx)"
    )
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")


def _run_export(args: argparse.Namespace) -> int:
    from emovision.onnx_export import export_onnx

    output = args.output or args.model.with_suffix(".onnx")
    if output.suffix.lower() != ".onnx":
        raise EmovisionError(f"the output {output} must end in .onnx (that is how models are recognised)")
    result = export_onnx(args.model, output, args.opset)
    axis = "dynamic" if result.dynamic_time else f"fixed at {result.frames} frames"
    console.print(
        f"wrote {result.path} ({result.size_bytes / 1e6:.1f} MB): batch axis dynamic, time axis {axis}; "
        f"ONNX Runtime matches PyTorch within {result.max_difference:.1e}",
        highlight=False,
    )
    return 0


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    from emovision import serve

    parser.add_argument(
        "model", type=Path, help="trained model: checkpoint (.pth), ONNX file (.onnx) or cv folder (ensemble)"
    )
    parser.add_argument(
        "--host", default=serve.DEFAULT_HOST, help="interface to listen on (default: this machine only)"
    )
    parser.add_argument("--port", type=int, default=serve.DEFAULT_PORT)
    parser.add_argument(
        "--max-upload-mb", type=float, default=serve.DEFAULT_MAX_UPLOAD_MB, help="largest audio file, MB"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=serve.DEFAULT_MAX_SECONDS, help="longest recording, seconds"
    )
    parser.add_argument(
        "--concurrency", type=int, default=serve.DEFAULT_CONCURRENCY, help="predictions at once"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")


def _run_serve(args: argparse.Namespace) -> int:
    from emovision.serve import serve

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(
            f"[yellow]warning:[/] listening on {args.host}: other machines can reach this server",
            highlight=False,
        )
    serve(
        args.model,
        host=args.host,
        port=args.port,
        max_upload_mb=args.max_upload_mb,
        max_seconds=args.max_seconds,
        concurrency=args.concurrency,
        device=args.device,
    )
    return 0


def _robustness_arguments(parser: argparse.ArgumentParser) -> None:
    from emovision.corpora import LOADERS

    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="folder of a finished emovision cv run")
    parser.add_argument("--root", type=Path, required=True, help="corpus folder (manifest: the CSV file)")
    parser.add_argument(
        "--corpus", choices=list(LOADERS), default=None, help="corpus type (default: the runs' corpus)"
    )
    parser.add_argument(
        "--classes", default=None, help="class set to load (default: the model's classes as a comma list)"
    )
    parser.add_argument("--snr", default="30,20,10,5,0", help="SNRs in dB over the active speech")
    parser.add_argument(
        "--noise",
        default=None,
        help="noise types: white, pink, babble, recorded (default: white,pink,babble)",
    )
    parser.add_argument("--rt60", default="0.3,0.6,0.9", help="reverberation times in s ('' for none)")
    parser.add_argument(
        "--noise-dir", type=Path, default=None, help="wav/flac/ogg noise recordings (noise type 'recorded')"
    )
    parser.add_argument("--babble-talkers", type=int, default=5, help="utterances summed into one babble")
    parser.add_argument("--seed", type=int, default=0, help="seed of every noise, babble and room")
    parser.add_argument("--workers", type=int, default=None, help="feature processes (default: all cores)")
    parser.add_argument("--device", default="auto", help="models on auto, cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int, default=256, help="segments per model call")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_robustness(args: argparse.Namespace) -> int:
    from emovision.robustness import (
        DEFAULT_NOISES,
        MAX_RT60,
        SNR_RANGE,
        CorruptionPlan,
        evaluate_robustness,
        noise_recordings,
        parse_names,
        parse_numbers,
    )

    noises = parse_names(args.noise) if args.noise is not None else DEFAULT_NOISES
    files = noise_recordings(args.noise_dir) if args.noise_dir else ()
    if files and "recorded" not in noises:
        noises = (*noises, "recorded")
    plan = CorruptionPlan(
        snrs=parse_numbers(args.snr, "--snr", lower=SNR_RANGE[0], upper=SNR_RANGE[1]),
        noises=noises,
        rt60s=parse_numbers(args.rt60, "--rt60", positive=True, upper=MAX_RT60),
        seed=args.seed,
        babble_talkers=args.babble_talkers,
        noise_files=files,
    )
    report = evaluate_robustness(
        args.run_dir,
        args.root,
        plan,
        corpus=args.corpus,
        classes=args.classes,
        workers=args.workers,
        device=args.device,
        batch_size=args.batch_size,
        progress=not args.quiet,
    )
    table = Table(title=f"robustness of {args.run_dir}: {len(report['folds'])} fold runs")
    for column in ("condition", "WA", "UA", "ΔUA", "pooled UA"):
        table.add_column(column, justify="left" if column == "condition" else "right")
    clean = report["conditions"][0]["ua_mean"]
    for c in report["conditions"]:
        table.add_row(
            c["name"],
            f"{c['wa_mean']:.3f} ± {c['wa_std']:.3f}",
            f"{c['ua_mean']:.3f} ± {c['ua_std']:.3f}",
            "" if c["name"] == "clean" else f"{c['ua_mean'] - clean:+.3f}",
            f"{c['pooled']['ua']:.3f}",
        )
    console.print(table)
    mismatched = [f["run"] for f in report["folds"] if not f["clean_matches_reported"]]
    if mismatched:
        err_console.print(
            f"[yellow]warning:[/] clean differs from the reported test metrics of {', '.join(mismatched)} "
            "(other audio, corpus root or device than at training time)",
            highlight=False,
        )
    out = args.run_dir
    console.print(
        f"report: {out / 'robustness.md'}, {out / 'robustness.json'}, {out / 'robustness.png'}",
        markup=False,
        soft_wrap=True,
    )
    return 0


Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Handler, str]] = {
    "extract": (_extract_arguments, _run_extract, "extract spectrogram features from a corpus"),
    "train": (_train_arguments, _run_train, "train one fold (validation and test speakers held out)"),
    "cv": (_cv_arguments, _run_cv, "speaker-independent cross-validation with a summary report"),
    "report": (_report_arguments, _run_report, "compare the results of several runs"),
    "evaluate": (_evaluate_arguments, _run_evaluate, "score a trained model on another corpus's features"),
    "fuse": (
        _fuse_arguments,
        _run_fuse,
        "late fusion of a cv run with a linear model on openSMILE functionals",
    ),
    "demo": (_demo_arguments, _run_demo, "the whole pipeline on emoDB: extract, cross-validate, report"),
    "predict": (_predict_arguments, _run_predict, "emotions of audio files, folders and long recordings"),
    "export": (_export_arguments, _run_export, "export a checkpoint to ONNX (runs without PyTorch)"),
    "serve": (_serve_arguments, _run_serve, "web page and REST API for a trained model"),
    "robustness": (
        _robustness_arguments,
        _run_robustness,
        "accuracy of a cv run's folds under additive noise and reverberation",
    ),
}


if __name__ == "__main__":
    sys.exit(main())
