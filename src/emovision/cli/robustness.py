"""``emovision robustness``: a cv run under noise and reverberation."""

from __future__ import annotations

import argparse
from pathlib import Path

from emovision.cli.common import Command, console, err_console


def _robustness_arguments(parser: argparse.ArgumentParser) -> None:
    from emovision.data.corpora import LOADERS

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
    parser.add_argument(
        "--fusion",
        action="store_true",
        help="also score the cv's late fusion (emovision fuse first): openSMILE functionals of every "
        "corrupted recording through each fold's linear model",
    )
    parser.add_argument(
        "--enrol",
        type=int,
        default=None,
        help="models normalised in the data pipeline: clean recordings of each test speaker behind the "
        "enrolled mode's statistics (K; default: the K the runs were tested with)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_robustness(args: argparse.Namespace) -> int:
    from emovision.data.corruption import (
        DEFAULT_NOISES,
        MAX_RT60,
        SNR_RANGE,
        CorruptionPlan,
        noise_recordings,
        parse_names,
        parse_numbers,
    )
    from emovision.evaluation.robustness import evaluate_robustness
    from emovision.evaluation.robustness_report import condition_table, fusion_condition_table

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
        fusion=args.fusion,
        enrol=args.enrol,
    )
    console.print(condition_table(report).rich())
    if report.get("fusion"):
        console.print(fusion_condition_table(report).rich())
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


COMMANDS = {
    "robustness": Command(
        _robustness_arguments,
        _run_robustness,
        "accuracy of a cv run's folds under additive noise and reverberation",
    ),
}
