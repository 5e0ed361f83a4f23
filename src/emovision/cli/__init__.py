"""The ``emovision`` command line: one sub-command per job, user errors as one readable line.

One module per command group: :mod:`.extract`, :mod:`.training` (train, cv, fuse, ensemble, report, demo),
:mod:`.use` (predict, export, serve, evaluate) and :mod:`.robustness`; :mod:`.common` holds
what they share.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from rich.markup import escape

from emovision.cli.common import err_console
from emovision.cli.extract import _extract_arguments, _run_extract
from emovision.cli.robustness import _robustness_arguments, _run_robustness
from emovision.cli.training import (
    _cv_arguments,
    _demo_arguments,
    _ensemble_arguments,
    _fuse_arguments,
    _report_arguments,
    _run_cv,
    _run_demo,
    _run_ensemble,
    _run_fuse,
    _run_report,
    _run_train,
    _train_arguments,
)
from emovision.cli.use import (
    _embed_arguments,
    _evaluate_arguments,
    _export_arguments,
    _predict_arguments,
    _run_embed,
    _run_evaluate,
    _run_export,
    _run_predict,
    _run_serve,
    _serve_arguments,
)
from emovision.errors import EmovisionError


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``emovision`` script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "config", None) is not None:
            args = _with_config(parser, args, argv)
        return int(args.handler(args) or 0)
    except (EmovisionError, OSError) as exc:
        err_console.print(f"[bold red]error:[/] {escape(_message(exc))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("interrupted: rerun the same command to resume", highlight=False)
        return 130


def _message(exc: Exception) -> str:
    """One line for a user error; a file system refusal (read-only folder, a file where a folder
    should be, a full disk) names the path and the reason."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror.lower()}"
    return " ".join(str(exc).split("\n"))


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
    from emovision.training.config_file import option_types, read_config

    sub = args.parser
    sub.set_defaults(**read_config(args.config, option_types(sub)))
    return parser.parse_args(argv)


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
    "ensemble": (
        _ensemble_arguments,
        _run_ensemble,
        "score several cross-validations on the same folds as one within-fold ensemble",
    ),
    "demo": (_demo_arguments, _run_demo, "the whole pipeline on emoDB: extract, cross-validate, report"),
    "predict": (_predict_arguments, _run_predict, "emotions of audio files, folders and long recordings"),
    "embed": (_embed_arguments, _run_embed, "embeddings of recordings or speech turns for your own models"),
    "export": (_export_arguments, _run_export, "export a checkpoint to ONNX (runs without PyTorch)"),
    "serve": (_serve_arguments, _run_serve, "web page and REST API for a trained model"),
    "robustness": (
        _robustness_arguments,
        _run_robustness,
        "accuracy of a cv run's folds under additive noise and reverberation",
    ),
}
