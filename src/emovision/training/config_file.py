"""An experiment as a file: ``--config FILE`` (TOML) for ``train`` and ``cv``, and the resolved
``config.toml`` every run writes, so ``emovision cv --config runs/x/config.toml --out runs/y``
reruns it exactly.

Keys are the command's long option names (``batch-size`` or ``batch_size``) plus the positional
``features``; flags given on the command line win over the file. A *recipe* (``recipes/*.toml``)
is such a file with an ``[extract]`` table: the ``emovision extract`` options its features file is
made with (``train`` and ``cv`` skip it; :func:`read_recipe` reads both).
"""

from __future__ import annotations

import argparse
import math
import tomllib
from pathlib import Path

from emovision.errors import EmovisionError
from emovision.files import atomic_write_bytes

NOT_RECORDED = ("config", "handler", "command", "quiet", "out", "resume", "save_label", "fold", "summarize")


def option_types(parser: argparse.ArgumentParser) -> dict[str, type]:
    """The type each option of ``parser`` takes, by destination (``bool`` for flags)."""
    types = {}
    for action in parser._actions:
        if action.dest in ("help", "config") or action.dest == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
            types[action.dest] = bool
        elif action.type in (int, float):
            types[action.dest] = action.type
        else:
            types[action.dest] = str
    return types


def option_aliases(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Long option names (dashes as underscores) whose destination differs, e.g. ``extract
    --features`` → ``kind``: a config file may use either. Negative flags (``--no-amp``) have none:
    the file names what they store (``amp = false``)."""
    aliases = {}
    for action in parser._actions:
        if isinstance(action, argparse._StoreFalseAction):
            continue
        for name in action.option_strings:
            key = name.lstrip("-").replace("-", "_")
            if name.startswith("--") and key != action.dest:
                aliases[key] = action.dest
    return aliases


def read_config(
    path: Path, types: dict[str, type], table: str | None = None, aliases: dict[str, str] | None = None
) -> dict:
    """The options in the TOML file at ``path``, checked against ``types``: unknown keys and wrong
    types are errors that name the key. ``table``: read that table of the file (a recipe's
    ``extract`` options) instead of its top-level keys. ``aliases``: option names that stand for
    another destination (:func:`option_aliases`)."""
    raw = _load(path)
    extract = raw.pop(EXTRACT_TABLE, {})
    if table == EXTRACT_TABLE:
        if not isinstance(extract, dict):
            raise EmovisionError(f"--config {path}: [{EXTRACT_TABLE}] must be a table")
        raw = extract
    values = {}
    for key, value in raw.items():
        dest = key.replace("-", "_")
        dest = (aliases or {}).get(dest, dest)
        if dest not in types or dest in NOT_RECORDED:
            raise EmovisionError(f"--config {path}: unknown option {key!r}")
        expected = types[dest]
        ok = (
            isinstance(value, bool)
            if expected is bool
            else isinstance(value, int) and not isinstance(value, bool)
            if expected is int
            else isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            if expected is float
            else isinstance(value, str)
        )
        if not ok:
            raise EmovisionError(f"--config {path}: {key} must be {expected.__name__}, got {value!r}")
        values[dest] = value
    return values


EXTRACT_TABLE = "extract"


def read_recipe(path: Path) -> tuple[dict, dict]:
    """A recipe's ``extract`` options (dashes as underscores) and its training options (unchecked:
    :class:`emovision.training.options.TrainConfig` checks them), from the TOML file at ``path``."""
    raw = _load(path)
    extract = raw.pop(EXTRACT_TABLE, {})
    if not isinstance(extract, dict):
        raise EmovisionError(f"--config {path}: [{EXTRACT_TABLE}] must be a table")
    dashes = {key.replace("-", "_"): value for key, value in extract.items()}
    return dashes, {key.replace("-", "_"): value for key, value in raw.items()}


def _load(path: Path) -> dict:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EmovisionError(f"--config {path} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise EmovisionError(f"--config {path} is not a readable TOML file ({exc})") from None


def write_config(path: Path, args: argparse.Namespace, types: dict[str, type]) -> Path:
    """The resolved options of a run (every option but where it ran and how it printed) as TOML."""
    lines = ["# emovision run options: rerun with --config this-file --out NEW_FOLDER"]
    for dest in sorted(types):
        value = getattr(args, dest, None)
        if dest in NOT_RECORDED or value is None:
            continue
        lines.append(f"{dest.replace('_', '-')} = {_toml_value(value)}")
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    return path


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
