"""Results tables built once as data, then rendered as Markdown (the report files) or for the terminal.

A :class:`ResultTable` holds column names and rows of cells (text); its first ``labels`` columns name
the row (left-aligned in the terminal, the figures right-aligned) and ``emphasised`` rows (a mean, an
ensemble) are bold in both renderings. :func:`mean_std` and :func:`paired_change` format the figures
every report shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.table import Table


@dataclass
class ResultTable:
    """Columns, rows of cells, an optional title; see the module docstring."""

    columns: list[str]
    title: str = ""
    labels: int = 1
    rows: list[list[str]] = field(default_factory=list)
    emphasised: set[int] = field(default_factory=set)

    def add(self, *cells: object, emphasise: bool = False) -> None:
        """A row (as many cells as columns; ``None`` is an empty cell)."""
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        if emphasise:
            self.emphasised.add(len(self.rows))
        self.rows.append(["" if cell is None else str(cell) for cell in cells])

    def markdown(self) -> list[str]:
        """The table as Markdown lines (header, separator, rows; the title is the caller's heading)."""
        lines = [_markdown_row(self.columns), "|" + "---|" * len(self.columns)]
        for number, row in enumerate(self.rows):
            lines.append(_markdown_row([f"**{c}**" if c and number in self.emphasised else c for c in row]))
        return lines

    def rich(self) -> Table:
        """The table for the terminal."""
        table = Table(title=self.title or None)
        for number, column in enumerate(self.columns):
            table.add_column(column, justify="left" if number < self.labels else "right")
        for number, row in enumerate(self.rows):
            table.add_row(*row, style="bold" if number in self.emphasised else None)
        return table


def _markdown_row(cells: list[str]) -> str:
    return "|" + "".join(f" {cell} |" if cell else " |" for cell in cells)


def mean_std(entry: dict, key: str = "ua") -> str:
    """``0.658 ± 0.078``: the fold mean and standard deviation of ``key`` in a summary."""
    return f"{entry[f'{key}_mean']:.3f} ± {entry[f'{key}_std']:.3f}"


def paired_table(named: list[tuple[str, dict]]) -> ResultTable:
    """Paired differences as a table: one row per ``(name, paired difference)``, its mean ± standard
    error and the folds better."""
    table = ResultTable(["paired ΔUA", "mean ± s.e.", "folds better"])
    for name, p in named:
        table.add(name, f"{p['mean']:+.3f} ± {p['se']:.3f}", f"{p['better']}/{p['folds']}")
    return table


def paired_change(paired: dict | None) -> str:
    """``+0.056 ± 0.027 (5/6)``: a paired difference's mean ± standard error and the folds better."""
    if not paired:
        return ""
    return f"{paired['mean']:+.3f} ± {paired['se']:.3f} ({paired['better']}/{paired['folds']})"
