"""Many files through one model: decoded and featurised in threads while the model scores the
previous batch, results in the order of the files, unusable files as :class:`Failure`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from emovision.data.features import FeatureConfig
from emovision.errors import AudioError, EmovisionError
from emovision.inference.model_input import Prepared
from emovision.inference.results import Failure, Prediction

Prepare = Callable[[str | Path], Prepared]
Score = Callable[[list[Prepared]], list[Prediction]]


def segments_per_file(config: FeatureConfig) -> int:
    """Segments of a typical 3-second file: sizes the batches of files."""
    frames = 3000 / config.hop_ms
    return max(1, 1 + int(max(0.0, frames - config.segment_frames) // config.frame_hop))


def iter_batched(
    sources: Iterable[str | Path],
    prepare: Prepare,
    score: Score,
    files_per_batch: int,
    workers: int | None = None,
) -> Iterator[Prediction | Failure]:
    """``score`` of ``prepare`` of every source, in order, ``files_per_batch`` files per call of
    ``score``; ``workers`` threads prepare (default: up to 4) while the previous batch is scored."""
    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        waiting: list[tuple[str, Future]] = []
        for item in sources:
            waiting.append((str(item), pool.submit(prepare, item)))
            if len(waiting) >= 2 * files_per_batch:
                yield from _finish(waiting[:files_per_batch], score)
                waiting = waiting[files_per_batch:]
        while waiting:
            yield from _finish(waiting[:files_per_batch], score)
            waiting = waiting[files_per_batch:]


def _finish(waiting: list[tuple[str, Future]], score: Score) -> Iterator[Prediction | Failure]:
    prepared: list[Prepared | Failure] = []
    for source, future in waiting:
        try:
            prepared.append(future.result())
        except AudioError as exc:
            prepared.append(Failure(source, exc.reason))
        except (EmovisionError, MemoryError, ValueError) as exc:
            prepared.append(Failure(source, f"feature extraction failed ({exc})"))
    usable = [item for item in prepared if isinstance(item, Prepared)]
    scored = iter(score(usable) if usable else [])
    for item in prepared:
        yield item if isinstance(item, Failure) else next(scored)
