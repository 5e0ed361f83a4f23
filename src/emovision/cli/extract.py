"""``emovision extract``: corpus → features file, with augmented copies and functionals."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from emovision.cli.common import Command, console
from emovision.errors import EmovisionError


def add_feature_arguments(parser: argparse.ArgumentParser) -> None:
    """The feature options of ``extract``: every field of :class:`FeatureConfig`."""
    from emovision.data.features import FEATURE_TYPES, SEGMENT_TAILS, FeatureConfig

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
        "--trim-db",
        type=float,
        default=None,
        help="cut each recording's leading and trailing silence: frames more than this many dB below "
        "its loudest (e.g. 40; default: keep everything); prediction cuts the same",
    )
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
    group.add_argument(
        "--speaker-norm",
        action="store_true",
        help="store each speaker's segments (and --functionals) as z-scores of that speaker's own mean "
        "and standard deviation per channel and bin (per functional); a model trained on them is given "
        "a speaker's recordings at predict time: see emovision predict --same-speaker",
    )


def feature_config_from_args(args: argparse.Namespace):
    from dataclasses import fields

    from emovision.data.features import FeatureConfig

    return FeatureConfig(**{f.name: getattr(args, f.name) for f in fields(FeatureConfig)})


def _extract_arguments(parser: argparse.ArgumentParser) -> None:
    from emovision.data.corpora import LOADERS

    parser.add_argument("--config", type=Path, help="a recipe: its [extract] table's options (flags win)")
    parser.add_argument("corpus", choices=list(LOADERS), help="corpus type")
    parser.add_argument("root", type=Path, help="corpus folder (manifest: the CSV file)")
    parser.add_argument("-o", "--output", type=Path, default=Path("features.h5"))
    parser.add_argument(
        "--classes",
        default=None,
        help="class set (iemocap: 4, 4-noexc, all; emodb: 7, 4; ravdess: 8, 4) or a comma list",
    )
    parser.add_argument("--improvised-only", action="store_true", help="iemocap: improvised dialogs only")
    parser.add_argument(
        "--intensity",
        choices=("normal", "strong", "both"),
        default=None,
        help="ravdess: recordings of normal intensity, strong intensity or both (the default)",
    )
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
        help="also store openSMILE functionals per utterance and per augmented copy (ComParE_2016 or "
        "eGeMAPSv02) for fusion",
    )


def _run_extract(args: argparse.Namespace) -> int:
    from emovision.data.corpora import load_corpus
    from emovision.data.extract import extract_corpus

    config = feature_config_from_args(args)
    if args.workers is not None and args.workers < 1:
        raise EmovisionError("--workers must be at least 1")
    options = {"improvised_only": True} if args.improvised_only else {}
    if args.improvised_only and args.corpus != "iemocap":
        raise EmovisionError("--improvised-only applies to iemocap only")
    if args.intensity is not None:
        if args.corpus != "ravdess":
            raise EmovisionError("--intensity applies to ravdess only")
        options["intensity"] = args.intensity
    plan = augment_plan_from_args(args)
    if args.functionals is not None:
        from emovision.data.functionals import check_set

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
    from emovision.data.augment_audio import AugmentPlan
    from emovision.data.corruption import noise_recordings, parse_names, parse_numbers
    from emovision.training.options import parse_augment

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


COMMANDS = {
    "extract": Command(_extract_arguments, _run_extract, "extract spectrogram features from a corpus"),
}
