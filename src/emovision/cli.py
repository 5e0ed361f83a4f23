"""The ``emovision`` command line: one sub-command per job, user errors as one readable line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from emovision.errors import EmovisionError

console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``emovision`` script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except EmovisionError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
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
        sub.set_defaults(handler=handler)
    return parser


def add_feature_arguments(parser: argparse.ArgumentParser) -> None:
    """The feature options of ``extract``: every field of :class:`FeatureConfig`."""
    from emovision.features import FEATURE_TYPES, FeatureConfig

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
    parser.add_argument("--strict", action="store_true", help="abort on the first unreadable file")
    parser.add_argument(
        "--format",
        choices=["h5", "seed-pickle"],
        default="h5",
        help="seed-pickle: also write the original pickle layout next to the HDF5 file",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_feature_arguments(parser)


def _run_extract(args: argparse.Namespace) -> int:
    from emovision.corpora import load_corpus
    from emovision.extract import extract_corpus

    config = feature_config_from_args(args)
    if args.workers is not None and args.workers < 1:
        raise EmovisionError("--workers must be at least 1")
    options = {"improvised_only": True} if args.improvised_only else {}
    if args.improvised_only and args.corpus != "iemocap":
        raise EmovisionError("--improvised-only applies to iemocap only")
    corpus = load_corpus(args.corpus, args.root, args.classes, **options)
    summary = extract_corpus(
        corpus,
        config,
        args.output,
        workers=args.workers,
        strict=args.strict,
        seed_pickle=args.format == "seed-pickle",
        progress=not args.quiet,
    )
    print_extract_summary(summary, config)
    return 0


def print_extract_summary(summary, config) -> None:
    """Utterances, segments and seconds per speaker and class, then the skipped files."""
    table = Table(
        title=f"{summary.path}  ({config.kind}, {config.channels}×{config.height}×{config.segment_frames})"
    )
    table.add_column("speaker")
    for column in ("utterances", "segments", "seconds", *summary.classes):
        table.add_column(column, justify="right")
    speakers = sorted(summary.utterances)
    for speaker in speakers:
        table.add_row(
            speaker,
            str(summary.utterances[speaker]),
            str(summary.segments[speaker]),
            f"{summary.seconds[speaker]:.1f}",
            *(str(summary.per_class[speaker, name]) for name in summary.classes),
        )
    table.add_row(
        "all",
        str(sum(summary.utterances.values())),
        str(sum(summary.segments.values())),
        f"{sum(summary.seconds.values()):.1f}",
        *(str(sum(summary.per_class[s, name] for s in speakers)) for name in summary.classes),
        style="bold",
    )
    console.print(table)
    if summary.resumed:
        console.print(f"resumed: speakers {', '.join(summary.resumed)} were already extracted")
    if summary.skipped:
        console.print(f"[yellow]skipped {len(summary.skipped)} file(s):[/]")
        for path, reason in summary.skipped[:20]:
            console.print(f"  {path}: {reason}", highlight=False)
        if len(summary.skipped) > 20:
            console.print(f"  … and {len(summary.skipped) - 20} more")
    else:
        console.print("skipped: none")


Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Handler, str]] = {
    "extract": (_extract_arguments, _run_extract, "extract spectrogram features from a corpus"),
}


if __name__ == "__main__":
    sys.exit(main())
