"""Speech turns with their emotions written out: CSV, JSON lines, and WebVTT subtitles.

``write_turns(predictions, path)`` picks the format by the suffix of ``path`` (``.csv``,
``.jsonl``, ``.vtt``). CSV and JSON lines hold every recording's turns in one file (a ``file``
column); WebVTT is one subtitle file per recording (a video player shows the emotion under the
speech), so with several recordings ``<stem>-<recording stem>.vtt`` next to ``path``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from emovision.files import atomic_write_bytes, check_output_path
from emovision.inference.results import TurnPrediction

FORMATS = (".csv", ".jsonl", ".vtt")


def check_turns_path(path: str | Path) -> Path:
    """``path`` if its suffix is a known format and its folder exists (checked before any work)."""
    return check_output_path(path, "--turns-out", FORMATS)


def write_turns(predictions: list[TurnPrediction], path: str | Path) -> list[Path]:
    """The turns of ``predictions`` in the format of ``path``'s suffix; returns the files written."""
    path = check_turns_path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return [atomic_write_bytes(path, turns_csv(predictions).encode())]
    if suffix == ".jsonl":
        lines = [json.dumps(row) for item in predictions for row in item.to_dicts()]
        return [atomic_write_bytes(path, "".join(line + "\n" for line in lines).encode())]
    written: list[Path] = []
    for item in predictions:
        target = path if len(predictions) == 1 else _numbered(path, Path(item.source).stem, written)
        written.append(atomic_write_bytes(target, webvtt(item).encode()))
    return written


def turns_csv(predictions: list[TurnPrediction]) -> str:
    """file, start, end (s), emotion, confidence, then one probability column per class."""
    buffer = io.StringIO()
    classes = predictions[0].classes if predictions else []
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", "start", "end", "emotion", "confidence", *(f"p_{name}" for name in classes)])
    for item in predictions:
        for turn in item.turns:
            probabilities = [f"{turn.probabilities[name]:.4f}" for name in classes]
            writer.writerow(
                [item.source, f"{turn.start:.3f}", f"{turn.end:.3f}", turn.emotion, f"{turn.confidence:.4f}",
                 *probabilities]
            )  # fmt: skip
    return buffer.getvalue()


def webvtt(item: TurnPrediction) -> str:
    """WebVTT subtitles: one cue per turn, ``emotion (confidence %)``."""
    cues = ["WEBVTT", ""]
    for number, turn in enumerate(item.turns, start=1):
        cues += [str(number), f"{_timestamp(turn.start)} --> {_timestamp(turn.end)}"]
        cues += [f"{turn.emotion} ({turn.confidence:.0%})", ""]
    return "\n".join(cues)


def _timestamp(seconds: float) -> str:
    """``HH:MM:SS.mmm`` as WebVTT wants it."""
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    return f"{hours:02d}:{minutes:02d}:{millis // 1000:02d}.{millis % 1000:03d}"


def _numbered(path: Path, stem: str, taken: list[Path]) -> Path:
    """``<path stem>-<stem><suffix>``, with ``-2``, ``-3`` … when that name is taken."""
    target, counter = path.with_name(f"{path.stem}-{stem}{path.suffix}"), 2
    while target in taken:
        target = path.with_name(f"{path.stem}-{stem}-{counter}{path.suffix}")
        counter += 1
    return target
