"""Corpus records → features → features file, in parallel, resumable, with a summary.

The utterances of all speakers stream in order through ``workers`` processes (numpy features,
or decoded audio for the batched torch path on a GPU), and each speaker is written to the
partial file as soon as it is complete, so an interrupted run resumes at the first unfinished
speaker.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emovision.data.audio import load_audio
from emovision.data.augment_audio import AugmentPlan, augmented_copies, babble_talkers
from emovision.data.corpora import Corpus, Utterance
from emovision.data.features import (
    FeatureConfig,
    channel_signals,
    compute_features,
    feature_key,
    segment,
    speaker_normalise,
    speaker_normalise_groups,
)
from emovision.data.functionals import Functionals
from emovision.data.store import AugmentedCopies, FeatureWriter, SpeakerFeatures, write_seed_pickle
from emovision.errors import AudioError, EmovisionError
from emovision.progress import progress_bar
from emovision.system import available_cores, ordered_map, resolve_device, worker_pool


@dataclass
class ExtractSummary:
    """What an extraction produced: counts per speaker and class, and the files left out."""

    path: Path
    classes: list[str]
    utterances: Counter = field(default_factory=Counter)
    copies: Counter = field(default_factory=Counter)
    segments: Counter = field(default_factory=Counter)
    seconds: Counter = field(default_factory=Counter)
    per_class: Counter = field(default_factory=Counter)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)

    def add(self, speaker: str, data: SpeakerFeatures) -> None:
        self.utterances[speaker] += len(data.utterance_ids)
        self.segments[speaker] += int(data.segments.shape[0])
        if data.augmented is not None:
            self.copies[speaker] += len(data.augmented.kinds)
        self.seconds[speaker] += float(data.durations.sum())
        for label in data.utterance_labels:
            self.per_class[speaker, self.classes[int(label)]] += 1
        self.skipped.extend(data.skipped)


def default_workers() -> int:
    """The CPU cores this process may use."""
    return available_cores()


DEVICES = ("cpu", "cuda", "auto", "cpu-torch")
_MAX_BATCH_SECONDS = 20.0


def extract_corpus(
    corpus: Corpus,
    config: FeatureConfig,
    out: str | Path,
    workers: int | None = None,
    strict: bool = False,
    seed_pickle: bool = False,
    progress: bool = True,
    device: str = "cpu",
    batch_size: int = 64,
    augment: AugmentPlan | None = None,
    functionals: str | None = None,
) -> ExtractSummary:
    """Extract every utterance of ``corpus`` into the features file ``out``; return the summary.

    ``device``: ``"cpu"`` computes each utterance with numpy in ``workers`` processes;
    ``"cuda"`` (or ``"cuda:N"``) decodes and resamples audio in the worker processes and
    computes the features with torch on the GPU, ``batch_size`` utterances at a time (fewer
    when long: at most ``batch_size`` × 20 s of padded audio); ``"auto"`` is ``"cuda"`` when a
    GPU is available, else ``"cpu"``; ``"cpu-torch"`` runs the batched torch path on CPU tensors
    (for tests and comparisons). Every device writes the same file, to float32 rounding.
    Unreadable audio is skipped with its reason, or raises :class:`AudioError` when ``strict``.
    ``augment`` adds the waveform-augmented copies of every utterance (see :mod:`augment_audio`);
    ``functionals`` (an openSMILE set) the functionals of every utterance and of each of its
    copies (what the fusion's linear model trains on beside the clean ones: ``fuse --augment``).
    """
    if strict and corpus.skipped:
        path, reason = corpus.skipped[0]
        raise AudioError(path, reason)
    batched_on = torch_device(device)
    workers = workers or default_workers()
    by_speaker = _by_speaker(corpus.utterances)
    plan = augment if augment is not None and augment.augment else None
    recipe = plan.to_dict() if plan else None
    writer = FeatureWriter(out, corpus.name, corpus.classes, config, recipe, functionals, corpus.selection)
    summary = ExtractSummary(Path(out), corpus.classes, skipped=list(corpus.skipped))
    done = writer.done_speakers()
    jobs = [_job(u, by_speaker[s], plan) for s in sorted(by_speaker) if s not in done for u in by_speaker[s]]
    with _workers(workers, config, plan, functionals) as pool:
        try:
            outcomes = _outcomes(pool, jobs, workers, config, batched_on, batch_size)
            _write_speakers(
                writer,
                summary,
                by_speaker,
                done,
                lambda group, step: _extract_speaker(group, corpus, config, outcomes, strict, step, plan),
                progress,
            )
            _refuse_empty(writer, summary)
            path = writer.finish()
        finally:
            writer.close()
    if seed_pickle:
        from emovision.data.store import load_speakers

        write_seed_pickle(path.with_suffix(".pkl"), load_speakers(path))
    return summary


def _by_speaker(utterances: list[Utterance]) -> dict[str, list[Utterance]]:
    """``utterances`` by speaker, each speaker's in corpus order."""
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for utterance in utterances:
        by_speaker[utterance.speaker].append(utterance)
    return by_speaker


@contextmanager
def _workers(
    workers: int, config: FeatureConfig, plan: AugmentPlan | None, functionals: str | None
) -> Iterator[ProcessPoolExecutor | None]:
    """A pool of ``workers`` processes set up for the extraction, shut down on leaving; with one
    worker no pool (``None``): this process is set up to do the work itself."""
    pool = worker_pool(workers, _init_worker, (config, plan, functionals)) if workers > 1 else None
    if pool is None:
        _init_worker(config, plan, functionals)
    try:
        yield pool
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _outcomes(
    pool: ProcessPoolExecutor | None,
    jobs: list[Job],
    workers: int,
    config: FeatureConfig,
    batched_on: str | None,
    batch_size: int,
) -> Iterator[Outcome]:
    """The outcomes of ``jobs`` in order: computed by the workers (numpy), or, with a torch device
    ``batched_on``, the audio decoded by the workers and the features computed in batches there."""
    if batched_on is None:
        return _ordered_map(pool, _extract_chunk, jobs, workers)
    prepared = _ordered_map(pool, _prepare_chunk, jobs, workers)
    return _batched_features(prepared, config, batched_on, batch_size)


def _write_speakers(
    writer: FeatureWriter,
    summary: ExtractSummary,
    by_speaker: dict[str, list[Utterance]],
    done: set[str],
    extract: Callable[[list[Utterance], Callable[[], None]], SpeakerFeatures],
    progress: bool,
) -> None:
    """Every speaker into ``summary``: read back from the partial file when in ``done`` (a resumed
    run), else ``extract(utterances, advance)`` and written."""
    with progress_bar(progress) as bar:
        task = bar.add_task("extracting", total=sum(len(group) for group in by_speaker.values()))
        for speaker in sorted(by_speaker):
            utterances = by_speaker[speaker]
            if speaker in done:
                summary.resumed.append(speaker)
                data = writer.read_speaker(speaker)
                bar.advance(task, len(utterances))
            else:
                bar.update(task, description=f"speaker {speaker}")
                data = extract(utterances, lambda: bar.advance(task))
                writer.write_speaker(speaker, data)
            summary.add(speaker, data)


def _refuse_empty(writer: FeatureWriter, summary: ExtractSummary) -> None:
    """Raise, the partial file removed, when every file was skipped."""
    if sum(summary.utterances.values()):
        return
    writer.close()
    writer.partial.unlink(missing_ok=True)
    first = f" (first: {summary.skipped[0][0]}: {summary.skipped[0][1]})" if summary.skipped else ""
    raise EmovisionError(
        f"no usable recording: all {len(summary.skipped)} files were skipped{first}; nothing written"
    )


def torch_device(device: str) -> str | None:
    """The torch device of the batched path for ``device`` (one of :data:`DEVICES` or ``cuda:N``),
    or ``None`` for the numpy path (``cpu``, and ``auto`` without a GPU)."""
    if device == "cpu":
        return None
    if device == "cpu-torch":
        return "cpu"
    import torch

    chosen = resolve_device(device, torch.cuda.is_available())
    return None if chosen == "cpu" else chosen


Outcome = tuple[list[np.ndarray] | None, float, str | None, list[np.ndarray] | None]
"""([features (C, F, T) of the utterance, then of each augmented copy], seconds of audio, None,
[functionals (D,) of the utterance, then of each copy] or None), or (None, 0.0, why the file was
skipped, None)."""

Job = tuple[str, str, tuple[str, ...]]
"""(audio path, utterance id, babble talkers' paths for augmented copies)."""


def _job(utterance: Utterance, same_speaker: list[Utterance], plan: AugmentPlan | None) -> Job:
    talkers: tuple[str, ...] = ()
    if plan is not None and any(kind == "noise:babble" for kind in plan.kinds):
        pool = [str(u.path) for u in same_speaker if u.id != utterance.id]
        talkers = tuple(babble_talkers(pool, utterance.id, plan))
    return (str(utterance.path), utterance.id, talkers)


def _extract_speaker(
    utterances: list[Utterance],
    corpus: Corpus,
    config: FeatureConfig,
    outcomes: Iterator[Outcome],
    strict: bool,
    advance: Callable[[], None],
    plan: AugmentPlan | None = None,
) -> SpeakerFeatures:
    """The next ``len(utterances)`` outcomes (features, seconds, error) as one speaker's segments."""
    segments, seg_labels, utt_labels, counts, ids, durations, skipped = [], [], [], [], [], [], []
    copies: list[tuple[int, np.ndarray]] = []
    functionals: list[np.ndarray] = []
    copy_functionals: list[np.ndarray] = []
    for utterance in utterances:
        versions, duration, error, values = next(outcomes)
        advance()
        if error is not None:
            if strict:
                raise AudioError(str(utterance.path), error)
            skipped.append((str(utterance.path), error))
            continue
        label = corpus.label_index(utterance.label)
        copies.extend((len(ids), segment(feature, config)) for feature in versions[1:])
        if values is not None:
            functionals.append(values[0])
            copy_functionals.extend(values[1:])
        pieces = segment(versions[0], config)
        segments.append(pieces)
        seg_labels.append(np.full(pieces.shape[0], label, dtype=np.int64))
        utt_labels.append(label)
        counts.append(pieces.shape[0])
        ids.append(utterance.id)
        durations.append(duration)
    empty = np.zeros((0, config.channels, config.height, config.segment_frames), dtype=np.float32)
    augmented = (
        None if plan is None else _augmented_features(plan, copies, utt_labels, copy_functionals, empty)
    )
    values = np.stack(functionals) if functionals else None
    if config.speaker_norm and segments:
        segments = [speaker_normalise(np.concatenate(segments))]
        if augmented is not None:
            _speaker_normalise_copies(augmented)
        if values is not None:
            values = speaker_normalise(values)
    return SpeakerFeatures(
        segments=np.concatenate(segments) if segments else empty,
        segment_labels=np.concatenate(seg_labels) if seg_labels else np.zeros(0, dtype=np.int64),
        utterance_labels=np.array(utt_labels, dtype=np.int64),
        segments_per_utterance=np.array(counts, dtype=np.int64),
        utterance_ids=ids,
        durations=np.array(durations, dtype=np.float32),
        gender=utterances[0].gender or "",
        skipped=tuple(skipped),
        augmented=augmented,
        functionals=values,
    )


def _augmented_features(
    plan: AugmentPlan,
    copies: list[tuple[int, np.ndarray]],
    utterance_labels: list[int],
    copy_functionals: list[np.ndarray],
    empty: np.ndarray,
) -> AugmentedCopies:
    """The augmented copies of one speaker's kept utterances: ``copies`` holds (row of the utterance,
    segments (n, C, F, T)) per copy, each utterance's ``plan.variants`` in turn; ``copy_functionals``
    the functionals (D,) of each copy, or nothing; ``empty`` is (0, C, F, T)."""
    return AugmentedCopies(
        segments=np.concatenate([p for _, p in copies]) if copies else empty,
        segment_labels=np.concatenate(
            [np.full(p.shape[0], utterance_labels[row], dtype=np.int64) for row, p in copies]
        )
        if copies
        else np.zeros(0, dtype=np.int64),
        segments_per_utterance=np.array([p.shape[0] for _, p in copies], dtype=np.int64),
        source=np.array([row for row, _ in copies], dtype=np.int64),
        kinds=list(plan.variants) * len(utterance_labels),
        functionals=np.stack(copy_functionals) if copy_functionals else None,
    )


def _speaker_normalise_copies(augmented: AugmentedCopies) -> None:
    """Normalise the segments (and functionals) of the copies in place, each kind by its own
    statistics, as a channel (a noise, a room) is normalised by the speaker's recordings through it."""
    kinds = np.repeat(np.array(augmented.kinds), augmented.segments_per_utterance)
    augmented.segments = speaker_normalise_groups(augmented.segments, kinds)
    if augmented.functionals is not None:
        augmented.functionals = speaker_normalise_groups(augmented.functionals, np.array(augmented.kinds))


def _ordered_map(
    pool: ProcessPoolExecutor | None, function: Callable[[list], list], jobs: list, workers: int
) -> Iterator:
    """``function`` over chunks of ``jobs`` in the pool, results one by one in job order.

    All speakers go through one stream (no pause between speakers), with at most four chunks per
    worker in flight so that finished results cannot pile up in memory.
    """
    size = max(1, min(8, len(jobs) // (8 * workers)))
    chunks = [jobs[i : i + size] for i in range(0, len(jobs), size)]
    for results in ordered_map(pool, function, chunks, 4 * workers):
        yield from results


def _batched_features(
    prepared: Iterator[tuple], config: FeatureConfig, device: str, batch_size: int
) -> Iterator[Outcome]:
    """Outcomes (features, seconds, error) from outcomes (channel signals, seconds, error), in order,
    the features computed in torch batches on ``device``."""
    from emovision.data.features_torch import features_of_channel_signals

    def finish(batch: list[tuple]) -> Iterator[Outcome]:
        signals = [version for item in batch if item[0] is not None for version in item[0]]
        features = iter(features_of_channel_signals(signals, config, device))
        for versions, seconds, error, values in batch:
            if versions is None:
                yield None, 0.0, error, None
            else:
                yield [next(features) for _ in versions], seconds, None, values

    limit = _MAX_BATCH_SECONDS * config.sample_rate * batch_size
    batch: list[tuple] = []
    longest = 0
    for item in prepared:
        size = max(version[0].size for version in item[0]) * len(item[0]) if item[0] is not None else 0
        if batch and (len(batch) == batch_size or (len(batch) + 1) * max(longest, size) > limit):
            yield from finish(batch)
            batch, longest = [], 0
        batch.append(item)
        longest = max(longest, size)
    yield from finish(batch)


_WORKER_CONFIG: FeatureConfig = FeatureConfig()
_WORKER_PLAN: AugmentPlan | None = None
_WORKER_FUNCTIONALS: Functionals | None = None


def _init_worker(
    config: FeatureConfig, plan: AugmentPlan | None = None, functionals: str | None = None
) -> None:
    global _WORKER_CONFIG, _WORKER_PLAN, _WORKER_FUNCTIONALS
    _WORKER_CONFIG, _WORKER_PLAN = config, plan
    _WORKER_FUNCTIONALS = Functionals(functionals) if functionals else None


def _extract_chunk(jobs: list[Job]) -> list[Outcome]:
    return [_extract_one(job) for job in jobs]


def _prepare_chunk(jobs: list[Job]) -> list[tuple]:
    return [_prepare_one(job) for job in jobs]


def _extract_one(job: Job) -> Outcome:
    """``([features (C, F, T) per version], seconds, None)`` or ``(None, 0, reason)`` for one file."""
    return _guarded(job, lambda samples, config: compute_features(samples, config, feature_key(job[0])))


def _prepare_one(job: Job) -> tuple:
    """``([channel signals [(n,), ...] per version], seconds, None, functionals)`` or
    ``(None, 0, reason, None)``."""
    return _guarded(job, lambda samples, config: channel_signals(samples, config, feature_key(job[0])))


def _guarded(job: Job, make: Callable) -> tuple:
    """``([make(version, config) for the audio of ``job`` and each augmented copy], seconds, None,
    [functionals of each version] or None)``, or ``(None, 0, reason, None)``."""
    config, plan, functionals = _WORKER_CONFIG, _WORKER_PLAN, _WORKER_FUNCTIONALS
    try:
        samples = load_audio(job[0], config.sample_rate, min_samples=config.min_samples)
        versions = [samples]
        if plan is not None:
            versions += augmented_copies(samples, config.sample_rate, job[1], plan, job[2])
        values = [functionals(v, config.sample_rate) for v in versions] if functionals is not None else None
        return [make(v, config) for v in versions], samples.size / config.sample_rate, None, values
    except AudioError as exc:
        return None, 0.0, exc.reason, None
    except (EmovisionError, MemoryError, ValueError) as exc:
        return None, 0.0, f"feature extraction failed ({exc})", None
