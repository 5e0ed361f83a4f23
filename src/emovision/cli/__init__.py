"""The ``emovision`` command line: one sub-command per job, user errors as one readable line.

One module per command group: :mod:`.extract`, :mod:`.training` (train, cv, fuse, ensemble, report, demo),
:mod:`.use` (predict, export, serve, evaluate) and :mod:`.robustness`; :mod:`.common` holds
what they share.
"""

from __future__ import annotations

import argparse

from rich.markup import escape

from emovision.cli import extract, robustness, training, use
from emovision.cli.common import Command, err_console
from emovision.errors import EmovisionError


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``emovision`` script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "config", None) is not None:
            args = with_config(parser, args, argv)
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
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.help, description=command.help)
        command.add_arguments(sub)
        sub.set_defaults(handler=command.run, parser=sub)
    return parser


def with_config(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str] | None):
    """``args`` parsed again with the ``--config`` file's options as defaults (flags still win);
    ``extract`` reads the file's ``[extract]`` table, the other commands its top-level keys."""
    from emovision.training.config_file import EXTRACT_TABLE, option_aliases, option_types, read_config

    sub = args.parser
    table = EXTRACT_TABLE if args.command == "extract" else None
    sub.set_defaults(**read_config(args.config, option_types(sub), table, option_aliases(sub)))
    return parser.parse_args(argv)


COMMANDS: dict[str, Command] = {
    **extract.COMMANDS,
    **training.COMMANDS,
    **use.COMMANDS,
    **robustness.COMMANDS,
}
