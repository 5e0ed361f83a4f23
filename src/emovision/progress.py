"""The one progress display of every long job (extract, train, cv, robustness, predict)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def progress_bar(
    enabled: bool = True, *, console: Console | None = None, transient: bool = False
) -> Progress:
    """A rich progress display: description, bar, done/total, elapsed and remaining time.

    ``enabled=False`` (``--quiet``) keeps the same object but draws nothing; ``console`` picks the
    stream (stderr where stdout carries results); ``transient`` clears the bars when done.
    """
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=transient,
    )
