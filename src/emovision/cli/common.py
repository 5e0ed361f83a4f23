"""What the command groups share: the consoles, run records, the features argument, and
:class:`Command`, what each group module lists its sub-commands as (``COMMANDS``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from emovision.errors import EmovisionError

console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


@dataclass(frozen=True)
class Command:
    """One sub-command: what adds its arguments to its parser, what runs it (returns the exit status),
    and its one-line help."""

    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    help: str


def record_config(args: argparse.Namespace, folder: Path) -> None:
    from emovision.training.config_file import option_types, write_config

    write_config(folder / "config.toml", args, option_types(args.parser))


def features_given(args: argparse.Namespace) -> Path:
    if args.features is None:
        raise EmovisionError("give the features file (FEATURES, or features = ... in --config)")
    return args.features
