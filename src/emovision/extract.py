"""Corpus records → features → features file, in parallel, resumable, with a summary.

Speakers are extracted one after another (utterances in parallel across ``workers``
processes) and each is written to the partial file as soon as it is complete, so an
interrupted run resumes at the first unfinished speaker.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from emovision.audio import load_audio
from emovision.corpora import Corpus, Utterance
from emovision.errors import AudioError, EmovisionError
from emovision.features import FeatureConfig, compute_features, segment
from emovision.store import FeatureWriter, SpeakerFeatures, write_seed_pickle


@dataclass
class ExtractSummary:
    """What an extraction produced: counts per speaker and class, and the files left out."""

    path: Path
    classes: list[str]
    utterances: Counter = field(default_factory=Counter)
    segments: Counter = field(default_factory=Counter)
    seconds: Counter = field(default_factory=Counter)
    per_class: Counter = field(default_factory=Counter)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)

    def add(self, speaker: str, data: SpeakerFeatures) -> None:
        self.utterances[speaker] += len(data.utterance_ids)
        self.segments[speaker] += int(data.segments.shape[0])
        self.seconds[speaker] += float(data.durations.sum())
        for label in data.utterance_labels:
            self.per_class[speaker, self.classes[int(label)]] += 1
        self.skipped.extend(data.skipped)


def default_workers() -> int:
    """The CPU cores this process may use."""
    return len(os.sched_getaffinity(0))


def extract_corpus(
    corpus: Corpus,
    config: FeatureConfig,
    out: str | Path,
    workers: int | None = None,
    strict: bool = False,
    seed_pickle: bool = False,
    progress: bool = True,
) -> ExtractSummary:
    """Extract every utterance of ``corpus`` into the features file ``out``; return the summary.

    Unreadable audio is skipped with its reason, or raises :class:`AudioError` when ``strict``.
    """
    if strict and corpus.skipped:
        path, reason = corpus.skipped[0]
        raise AudioError(path, reason)
    workers = workers or default_workers()
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for utterance in corpus.utterances:
        by_speaker[utterance.speaker].append(utterance)
    writer = FeatureWriter(out, corpus.name, corpus.classes, config)
    summary = ExtractSummary(Path(out), corpus.classes, skipped=list(corpus.skipped))
    pool = ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(config,)) if workers > 1 else None
    if pool is None:
        _init_worker(config)
    try:
        with _progress_bar(progress) as bar:
            task = bar.add_task("extracting", total=len(corpus.utterances))
            done = writer.done_speakers()
            for speaker in sorted(by_speaker):
                utterances = by_speaker[speaker]
                if speaker in done:
                    summary.resumed.append(speaker)
                    data = writer.read_speaker(speaker)
                    bar.advance(task, len(utterances))
                else:
                    bar.update(task, description=f"speaker {speaker}")
                    data = _extract_speaker(
                        utterances, corpus, config, pool, strict, lambda: bar.advance(task)
                    )
                    writer.write_speaker(speaker, data)
                summary.add(speaker, data)
        path = writer.finish()
    finally:
        writer.close()
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if seed_pickle:
        from emovision.store import load_speakers

        write_seed_pickle(path.with_suffix(".pkl"), load_speakers(path))
    return summary


def _extract_speaker(
    utterances: list[Utterance],
    corpus: Corpus,
    config: FeatureConfig,
    pool: ProcessPoolExecutor | None,
    strict: bool,
    advance,
) -> SpeakerFeatures:
    jobs = [(str(u.path), u.id) for u in utterances]
    results = pool.map(_extract_one, jobs, chunksize=4) if pool else map(_extract_one, jobs)
    segments, seg_labels, utt_labels, counts, ids, durations, skipped = [], [], [], [], [], [], []
    for utterance, (feature, duration, error) in zip(utterances, results, strict=True):
        advance()
        if error is not None:
            if strict:
                raise AudioError(str(utterance.path), error)
            skipped.append((str(utterance.path), error))
            continue
        label = corpus.label_index(utterance.label)
        segments.append(feature)
        seg_labels.append(np.full(feature.shape[0], label, dtype=np.int64))
        utt_labels.append(label)
        counts.append(feature.shape[0])
        ids.append(utterance.id)
        durations.append(duration)
    empty = np.zeros((0, config.channels, config.height, config.segment_frames), dtype=np.float32)
    return SpeakerFeatures(
        segments=np.concatenate(segments) if segments else empty,
        segment_labels=np.concatenate(seg_labels) if seg_labels else np.zeros(0, dtype=np.int64),
        utterance_labels=np.array(utt_labels, dtype=np.int64),
        segments_per_utterance=np.array(counts, dtype=np.int64),
        utterance_ids=ids,
        durations=np.array(durations, dtype=np.float32),
        gender=utterances[0].gender or "",
        skipped=tuple(skipped),
    )


_WORKER_CONFIG: FeatureConfig = FeatureConfig()


def _init_worker(config: FeatureConfig) -> None:
    global _WORKER_CONFIG
    _WORKER_CONFIG = config


def _extract_one(job: tuple[str, str]) -> tuple[np.ndarray | None, float, str | None]:
    """``(segments (N, C, F, T), seconds, None)`` or ``(None, 0, reason)`` for one file."""
    path, key = job
    config = _WORKER_CONFIG
    try:
        samples = load_audio(path, config.sample_rate, min_samples=config.min_samples)
        return (
            segment(compute_features(samples, config, key), config),
            samples.size / config.sample_rate,
            None,
        )
    except AudioError as exc:
        return None, 0.0, exc.reason
    except (EmovisionError, MemoryError, ValueError) as exc:
        return None, 0.0, f"feature extraction failed ({exc})"


def _progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )
