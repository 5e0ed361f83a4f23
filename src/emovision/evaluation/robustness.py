"""Robustness of a finished cross-validation: accuracy under additive noise and reverberation.

For every fold run of a ``cv`` folder, the test speakers' recordings are read again, corrupted
and turned into features with the configuration stored in the fold's checkpoint, and the
fold's best checkpoint is evaluated on them exactly as at training time (segment
log-probabilities, the checkpoint's aggregation rule, WA/UA). Conditions:

``clean``
    The recordings as they are: reproduces each fold's reported test metrics.
``<noise> <snr> dB``
    Additive noise at a signal-to-noise ratio computed over the active speech
    (:func:`acoustics.add_noise_snr`). Noise types: ``white``, ``pink``, ``babble`` (the sum of
    ``babble_talkers`` level-normalised utterances of speakers who are not a test speaker of
    the fold) and ``recorded`` (a random stretch of a random file of ``--noise-dir``).
``reverb <rt60> s``
    Convolution with a synthetic room impulse response of that RT60 (:func:`acoustics.synthetic_rir`).

Speaker-normalised models meet the test speaker as a deployed model would: known from clean
recordings, heard through the noise or the room, and never told the condition. A model normalised in
the data pipeline (``cv --speaker-norm mixed|transductive``) is scored in every mode
(:mod:`emovision.data.speaker_norm`): ``cold``, each corrupted recording by itself (the headline
figures); ``enrolled-K``, the statistics of K of the speaker's other *clean* recordings (the training
run's draws), every remaining recording scored corrupted; ``transductive``, the statistics of all of
the speaker's clean recordings. Features extracted with ``--speaker-norm`` are normalised by the
statistics of the speaker's clean segments, as extraction normalised them; so are speaker-normalised
functionals of the fusion.

Corruption (:mod:`emovision.data.corruption`) happens on the audio at the feature sample rate, before
feature extraction, and depends only on the seed, the utterance id and the condition. Features are computed in worker processes while the
models score the finished utterances; runs of the same fold (``--repeats``) share them.

With ``fusion``, the cv's late fusion (``fusion.json``, from ``emovision fuse``) is scored too: the
openSMILE functionals of every corrupted recording feed each fold's linear model (retrained on
the fold's training speakers' clean functionals, and those of their copies the fusion trained on,
with the fold's ``C``) and are mixed with the
image models' scores (the mean over the fold's runs) with the fold's weight, as ``fuse`` did;
``robustness.json`` gets ``fusion`` (WA/UA of image, linear model and fusion per condition over
the folds) and ``robustness.md`` a table of it.

Output in the cv folder: ``robustness.json`` (per run and condition WA/UA, confusion and the
mean negative log-likelihood of the true class, ``nll`` in nats; per condition the mean ±
standard deviation over runs and the pooled metrics),
``robustness.md`` (a table, clean first) and ``robustness.png`` (UA against SNR per noise
type, and against RT60). While it runs, each finished fold's results are kept in
``robustness.partial/<run>.json``: an interrupted evaluation rerun with the same corpus and
conditions skips those folds, and the folder is removed once the report is written.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from emovision.data.audio import load_audio
from emovision.data.corpora import Utterance, load_corpus
from emovision.data.corruption import (
    CorruptionPlan,
    babble_pool,
    babble_sources,
    corrupt,
    talker_audio,
)
from emovision.data.extract import default_workers
from emovision.data.features import (
    FeatureConfig,
    SpeakerStatistics,
    compute_features,
    feature_key,
    segment,
    speaker_normalise,
)
from emovision.data.functionals import Functionals, require_opensmile
from emovision.data.speaker_norm import (
    ENROL_DRAWS,
    MODES,
    ModeView,
    SpeakerNormaliser,
    mode_view,
    recording_moments,
)
from emovision.data.store import open_info
from emovision.errors import AudioError, EmovisionError
from emovision.evaluation.fold_cache import FoldCache
from emovision.evaluation.functionals_table import FunctionalsTable, functionals_table
from emovision.evaluation.fusion import mix_views
from emovision.evaluation.linear_model import (
    LinearRecipe,
    LinearTraining,
    centred_views,
    fit_linear_pipeline,
    fold_linear_data,
    linear_log_probs,
    metrics_by_mode,
)
from emovision.evaluation.robustness_report import FUSION_PREFIX, build_report, write_report
from emovision.files import read_json
from emovision.inference.runs import FoldRun, finished_runs
from emovision.progress import progress_bar
from emovision.system import ordered_map, resolve_device, worker_pool
from emovision.training.checkpoint import model_from_checkpoint
from emovision.training.metrics import (
    score_utterances,
    segment_log_probs,
    utterance_scores,
)
from emovision.training.modes import runs_mode

# ----- the cv folder --------------------------------------------------------------------------------


def resolve_utterances(
    runs: list[FoldRun], corpus_name: str | None, root: str | Path, classes: str | None = None
) -> tuple[str, dict[str, Utterance], list[str]]:
    """The corpus name, its utterances by id, and the class names, checked against every run.

    ``classes`` is the class selection to load the corpus with (default: the one the features were
    extracted with, as the checkpoints record it — IEMOCAP's preset ``4`` merges exc into hap —
    else the class names as a comma list), and the loader's options are the recorded ones too
    (``improvised_only``). Raises :class:`EmovisionError` for a corpus other than the
    runs', other class names, or a test utterance id the corpus under ``root`` lacks.
    """
    trained = {run.checkpoint.get("corpus") for run in runs}
    class_lists = {tuple(run.checkpoint["classes"]) for run in runs}
    if len(trained) != 1 or len(class_lists) != 1:
        raise EmovisionError("the fold runs disagree on their corpus or classes: not one cross-validation")
    (trained_on,), (names,) = trained, class_lists
    name = corpus_name or trained_on
    if trained_on and name != trained_on:
        raise EmovisionError(f"--corpus {name}: the runs were trained on {trained_on} features")
    selection = runs[0].checkpoint.get("selection") or {}
    options = {k: v for k, v in selection.items() if k not in ("corpus", "root", "classes")}
    if classes is None:
        classes = selection.get("classes") if "classes" in selection else ",".join(names)
    corpus = load_corpus(name, root, classes, **options)
    if list(corpus.classes) != list(names):
        raise EmovisionError(
            f"the corpus classes {', '.join(corpus.classes)} differ from the model's {', '.join(names)}"
        )
    by_id = {u.id: u for u in corpus.utterances}
    for run in runs:
        ids = run.metrics["test_utterance_ids"]
        missing = [uid for uid in ids if uid not in by_id]
        if missing:
            raise EmovisionError(
                f"test utterance {missing[0]} of {run.name} ({len(missing)} of {len(ids)} missing) is not in the "
                f"{name} corpus under {root}: give the --root (and --classes) the features were extracted from"
            )
    return name, by_id, list(names)


# ----- evaluation ---------------------------------------------------------------------------------------


@dataclass
class _Group:
    """Runs that share their test utterances and features (one fold, several seeds)."""

    config: FeatureConfig
    utterance_ids: list[str]
    test_speakers: list[str]
    runs: list[FoldRun] = field(default_factory=list)


@dataclass
class _Fusion:
    """A cv's scored late fusion: the functionals of its features file and each fold's C and weight."""

    feature_set: str
    table: FunctionalsTable
    folds: dict[str, dict]
    speaker_norm: bool
    linear: LinearTraining


@dataclass(frozen=True)
class _Setting:
    """What every group of runs is evaluated with: the corruption plan, the corpus's utterances by id and
    the class names, the feature workers (``pool``: None for one), the models' device and segments per
    model call, the fusion (None: the image models alone) and the enrolled mode's K."""

    plan: CorruptionPlan
    by_id: dict[str, Utterance]
    classes: list[str]
    pool: ProcessPoolExecutor | None
    workers: int
    device: torch.device
    batch_size: int
    fused: _Fusion | None
    enrol: int


def _fusion_identity(fused: _Fusion | None) -> dict | None:
    """What a robustness run's fused results depend on: kept with its partial results."""
    if fused is None:
        return None
    folds = {name: [f["C"], f["weight"]] for name, f in fused.folds.items()}
    identity = {"functionals_file": str(fused.table.path.resolve()), "folds": folds}
    linear = fused.linear
    if linear.centre is not None:
        identity["centre"] = linear.centre.to_dict()
    if linear.scaling != "standard":
        identity["scaling"] = linear.scaling
    return identity | ({"copy_kinds": list(linear.copy_kinds)} if linear.copy_kinds else {})


def _fusion_of(run_dir: Path, classes: list[str], sample_rate: int) -> _Fusion:
    report_path = run_dir / "fusion.json"
    if not report_path.is_file():
        raise EmovisionError(f"--fusion: {run_dir} has no fusion.json: run emovision fuse on it first")
    require_opensmile()
    report = read_json(report_path, "fusion report")
    table_path = Path(report["functionals_file"])
    info = open_info(table_path)
    if info.config.sample_rate != sample_rate:
        raise EmovisionError(
            f"--fusion: {table_path} holds functionals at another sample rate than the models'"
        )
    folds = {f["name"]: f for f in report["folds"]}
    table = functionals_table(table_path, classes)
    copy_kinds = tuple(report.get("copy_kinds", ()))
    table.check_kinds(copy_kinds)
    centre = LinearRecipe(**report["centre"]) if report.get("centre") else None
    scaling = report.get("scaling", "standard")  # fusions from before the option: standardised
    linear = LinearTraining(copy_kinds, centre, scaling)
    return _Fusion(info.functionals, table, folds, info.config.speaker_norm, linear)


def evaluate_robustness(
    run_dir: str | Path,
    root: str | Path,
    plan: CorruptionPlan,
    corpus: str | None = None,
    classes: str | None = None,
    workers: int | None = None,
    device: str = "auto",
    batch_size: int = 256,
    progress: bool = True,
    fusion: bool = False,
    enrol: int | None = None,
) -> dict:
    """Evaluate every fold run of the cv folder ``run_dir`` under every condition of ``plan``
    (and, with ``fusion``, its late fusion: see the module docstring).

    ``root`` is the corpus folder (``corpus`` defaults to the one the runs were trained on);
    ``enrol`` is K of the enrolled mode of models normalised in the data pipeline (default: the K the
    runs were trained and tested with, so that clean audio reproduces their enrolled results);
    ``workers`` processes compute the features (default: all cores), ``device`` runs the
    models. Writes ``robustness.json``, ``robustness.md`` and ``robustness.png`` in
    ``run_dir`` and returns the ``robustness.json`` content.
    """
    run_dir = Path(run_dir)
    record, runs = finished_runs(run_dir)
    corpus_name, by_id, classes_list = resolve_utterances(runs, corpus, root, classes)
    enrol = _checked_options(runs, workers, batch_size, enrol)
    torch_device = torch.device(resolve_device(device, torch.cuda.is_available()))
    groups = _groups_of(runs)
    fused = _fusion_of(run_dir, classes_list, runs[0].feature_config.sample_rate) if fusion else None
    partial = run_dir / "robustness.partial"
    identity = {"plan": plan.to_dict(), "corpus": corpus_name, "root": str(Path(root).resolve()),
                "classes": classes_list, "fusion": _fusion_identity(fused), "enrol": enrol}  # fmt: skip
    workers = workers or default_workers()
    pool = worker_pool(workers) if workers > 1 else None
    try:
        setting = _Setting(plan, by_id, classes_list, pool, workers, torch_device, batch_size, fused, enrol)
        identity["groups"] = [[run.name for run in group.runs] for group in groups]
        results = _evaluate_groups(groups, setting, FoldCache(partial, identity), progress)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    report = build_report(
        record, runs, results, plan.conditions, plan, corpus_name, root, classes_list, enrol
    )
    report["mode"] = runs_mode(runs)
    write_report(report, run_dir)
    shutil.rmtree(partial, ignore_errors=True)
    return report


def _checked_options(runs: list[FoldRun], workers: int | None, batch_size: int, enrol: int | None) -> int:
    """The enrolled mode's K (``enrol``, default: the runs' own); raises :class:`EmovisionError` for
    fewer than one worker, segment per batch or enrolled recording."""
    if workers is not None and workers < 1:
        raise EmovisionError("--workers must be at least 1")
    if batch_size < 1:
        raise EmovisionError("--batch-size must be at least 1")
    if enrol is None:
        enrol = int(runs[0].metrics.get("train_config", {}).get("enrol", 5))
    if enrol < 1:
        raise EmovisionError(f"--enrol must be at least 1 recording, got {enrol}")
    return enrol


def _groups_of(runs: list[FoldRun]) -> list[_Group]:
    """The runs grouped by their test utterances and feature configuration, in the order of their first run."""
    groups: dict[tuple, _Group] = {}
    for run in runs:
        config = run.feature_config
        ids = list(run.metrics["test_utterance_ids"])
        key = (tuple(ids), json.dumps(config.to_dict(), sort_keys=True))
        group = groups.setdefault(key, _Group(config, ids, list(run.metrics["fold"]["test"])))
        group.runs.append(run)
    return list(groups.values())


def _evaluate_groups(
    groups: list[_Group], setting: _Setting, kept: FoldCache, progress: bool
) -> dict[str, dict[str, dict]]:
    """Metrics per run name and condition name of every group (see :func:`_evaluate_group`), each group's
    ``kept`` under its first run's name as it finishes, or read back when an interrupted evaluation of
    the same identity kept it."""
    conditions = setting.plan.conditions
    results: dict[str, dict[str, dict]] = {}
    with progress_bar(progress) as bar:
        total = sum(len(g.utterance_ids) for g in groups)
        task = bar.add_task(f"robustness: {len(conditions)} conditions", total=total)
        for group in groups:
            names = [run.name for run in group.runs]
            finished = kept.get(names[0])
            if finished is None:
                bar.update(task, description=f"{', '.join(names)}: {len(conditions)} conditions")
                finished = _evaluate_group(group, setting, lambda: bar.advance(task))
                kept.put(names[0], finished)
            else:
                bar.advance(task, len(group.utterance_ids))
            results.update(finished)
    return results


def _evaluate_group(
    group: _Group, setting: _Setting, advance: Callable[[], None]
) -> dict[str, dict[str, dict]]:
    """Metrics per run name and condition name for one group of runs (and, with ``setting.fused``, under
    ``fusion/<fold>`` the image, linear and fusion metrics per condition); ``advance`` is called once
    per test utterance whose features are done."""
    jobs = _feature_jobs(group, setting)
    models = _GroupModels.load(group.runs, setting.device)
    features = _collect_features(group, setting, models, jobs, advance)
    speakers = np.array([setting.by_id[uid].speaker for uid in group.utterance_ids])
    labels = np.array(
        [setting.classes.index(setting.by_id[uid].label) for uid in group.utterance_ids], dtype=np.int64
    )
    results, image = _image_results(group, setting, models, features, labels, speakers)
    if setting.fused is not None:
        results |= _group_fusion_results(group, setting, features.values, image, labels, speakers)
    return results


def _feature_jobs(group: _Group, setting: _Setting) -> list[tuple]:
    """One :func:`_features_of_job` job per test utterance of the group, in order: its audio path, id,
    the feature configuration, the plan, the audio paths of its babble talkers and the openSMILE set (or
    None). Raises :class:`EmovisionError` when babble is asked for and no other speaker can talk."""
    plan, by_id, fused = setting.plan, setting.by_id, setting.fused
    pool_ids = babble_pool(by_id, group.test_speakers)
    if "babble" in plan.noises and not pool_ids:
        raise EmovisionError(f"no babble talkers for {group.runs[0].name}: the corpus has no other speaker")
    jobs = []
    for uid in group.utterance_ids:
        talkers = babble_sources(pool_ids, uid, plan) if "babble" in plan.noises else []
        talker_paths = tuple(str(by_id[t].path) for t in talkers)
        feature_set = fused.feature_set if fused else None
        jobs.append((str(by_id[uid].path), uid, group.config, plan, talker_paths, feature_set))
    return jobs


@dataclass
class _GroupModels:
    """A group's fold models on the evaluation device, whether each runs under autocast, and each one's
    speaker normalisation in the data pipeline (None: not normalised there)."""

    models: list[torch.nn.Module]
    autocast: list[bool]
    normalisers: list[SpeakerNormaliser | None]

    @classmethod
    def load(cls, runs: list[FoldRun], device: torch.device) -> _GroupModels:
        """The best checkpoint of every run, in order."""
        models = [model_from_checkpoint(run.checkpoint).to(device) for run in runs]
        autocast = [
            device.type == "cuda" and bool(run.checkpoint.get("train_config", {}).get("amp", True))
            for run in runs
        ]
        normalisers = [SpeakerNormaliser.from_dict(run.checkpoint.get("speaker_norm")) for run in runs]
        return cls(models, autocast, normalisers)


@dataclass
class _GroupFeatures:
    """A group's test utterances under every condition ``c``, in utterance order: ``counts[c]``, the
    segments per utterance; ``held[c]``, each utterance's segments ``(N, C, F, T)`` when they are kept to
    be speaker-normalised; ``values[c]``, each utterance's openSMILE functionals ``(D,)`` with a fusion;
    ``log_probs[r][c]``, model ``r``'s segment log-probabilities ``(N, K)`` of the segments scored as they
    came (features without speaker normalisation)."""

    counts: list[list[int]]
    held: list[list[np.ndarray]]
    values: list[list[np.ndarray]]
    log_probs: list[list[list[np.ndarray]]]


def _collect_features(
    group: _Group,
    setting: _Setting,
    models: _GroupModels,
    jobs: list[tuple],
    advance: Callable[[], None],
) -> _GroupFeatures:
    """Compute every job's features in the worker pool and, unless they are to be speaker-normalised
    (then kept whole), score their segments with every model in batches of at least
    ``setting.batch_size`` segments as the utterances finish."""
    conditions = setting.plan.conditions
    features = _GroupFeatures(
        counts=[[] for _ in conditions],
        held=[[] for _ in conditions],
        values=[[] for _ in conditions],
        log_probs=[[[] for _ in conditions] for _ in group.runs],
    )
    pending: list[tuple[int, np.ndarray]] = []
    keep_all = group.config.speaker_norm or any(n is not None for n in models.normalisers)

    def flush() -> None:
        """Score the pending segments of every condition in one batch per model (features without
        speaker normalisation)."""
        sizes = np.cumsum([segments.shape[0] for _, segments in pending])[:-1]
        batch = torch.from_numpy(np.concatenate([segments for _, segments in pending]))
        for r, model in enumerate(models.models):
            scores = segment_log_probs(model, batch, setting.batch_size, models.autocast[r])
            for (c, _), part in zip(pending, np.split(scores, sizes), strict=True):
                features.log_probs[r][c].append(part)
        pending.clear()

    computed = ordered_map(setting.pool, _features_of_job, jobs, 2 * setting.workers)
    for uid, (outputs, functionals, error) in zip(group.utterance_ids, computed, strict=True):
        if error is not None:
            raise EmovisionError(f"test utterance {uid}: {error}")
        for c, segments in enumerate(outputs):
            features.counts[c].append(segments.shape[0])
            if keep_all:
                features.held[c].append(segments)
            else:
                pending.append((c, segments))
            if functionals is not None:
                features.values[c].append(functionals[c])
        if not keep_all and sum(part.shape[0] for _, part in pending) >= setting.batch_size:
            flush()
        advance()
    if pending:
        flush()
    return features


def _image_results(
    group: _Group,
    setting: _Setting,
    models: _GroupModels,
    features: _GroupFeatures,
    labels: np.ndarray,
    speakers: np.ndarray,
) -> tuple[dict[str, dict[str, dict]], list[list[np.ndarray]]]:
    """Metrics per run name and condition name of the group's image models, and per condition each run's
    utterance scores ``(U, K)`` (a normalised model's: those of its first mode). ``labels`` ``(U,)`` are
    the class indices and ``speakers`` ``(U,)`` the speaker names of the test utterances."""
    conditions, classes = setting.plan.conditions, setting.classes
    results: dict[str, dict[str, dict]] = {}
    image: list[list[np.ndarray]] = [[] for _ in conditions]
    for r, run in enumerate(group.runs):
        aggregate = run.checkpoint.get("aggregate", "logprob")
        modes = _scores_by_mode(group, setting, models, features, r, speakers)
        results[run.name] = {}
        for c, condition in enumerate(conditions):
            if modes:
                first = next(iter(modes))
                scores = modes[first][0][c][1]
                metrics = _pooled(modes[first], c, labels, classes)
            else:
                log_probs = np.concatenate(features.log_probs[r][c])
                scores = utterance_scores(log_probs, np.array(features.counts[c]), aggregate)
                metrics = score_utterances(labels, scores, classes)
            image[c].append(scores)
            metrics["nll"] = float(-scores[np.arange(labels.size), labels].mean())
            if models.normalisers[r] is not None:
                metrics["modes"] = {mode: _pooled(modes[mode], c, labels, classes) for mode in MODES[1:]}
            results[run.name][condition.name] = metrics
    return results, image


def _scores_by_mode(
    group: _Group,
    setting: _Setting,
    models: _GroupModels,
    features: _GroupFeatures,
    run: int,
    speakers: np.ndarray,
) -> dict[str, list[list[tuple[np.ndarray, np.ndarray]]]]:
    """Run ``run``'s scores of the held segments per speaker-normalisation mode, per draw and condition
    (see :func:`_mode_scorer`), every mode's statistics from the clean recordings; empty for a run whose
    features need no speaker normalisation (they were scored as they came)."""
    checkpoint = group.runs[run].checkpoint
    score = _mode_scorer(
        models.models[run],
        features.held,
        features.counts,
        checkpoint.get("aggregate", "logprob"),
        setting.batch_size,
        models.autocast[run],
    )
    normaliser = models.normalisers[run]
    if normaliser is not None:
        views = _clean_views(normaliser, features.held[0], features.counts[0], speakers, setting.enrol)
        return {mode: [score(view) for _, view in drawn] for mode, drawn in views.items()}
    if group.config.speaker_norm:
        return {"transductive": [score(_clean_speaker_view(features.held[0], features.counts[0], speakers))]}
    return {}


def _group_fusion_results(
    group: _Group,
    setting: _Setting,
    values: list[list[np.ndarray]],
    image: list[list[np.ndarray]],
    labels: np.ndarray,
    speakers: np.ndarray,
) -> dict[str, dict[str, dict]]:
    """``{"fusion/<fold>": metrics per condition}`` of the group's fold (see :func:`_fused_results`) from
    each condition's functionals ``values[c]`` (``(D,)`` per utterance) and every run's image scores
    ``image[c]`` (``(U, K)`` each); ``speakers`` ``(U,)`` names each utterance's speaker."""
    fused = setting.fused
    fold = group.runs[0].metrics["fold"]
    if fused.speaker_norm:
        values = _speaker_normalised_functionals(values, speakers)
    names = sorted(set(speakers.tolist()))
    index = np.array([names.index(name) for name in speakers])
    mean_image = [np.mean(scores, axis=0) for scores in image]
    return {
        f"{FUSION_PREFIX}{fold['name']}": _fused_results(
            fused, fold, mean_image, values, labels, setting.plan.conditions, setting.classes, (index, names)
        )
    }


def _speaker_normalised_functionals(values: list[list[np.ndarray]], speakers: np.ndarray) -> list[np.ndarray]:
    """Every condition's functionals ``(U, D)`` normalised by the statistics of their speaker's clean
    functionals (``values[0]``), as extraction with ``--speaker-norm`` normalised them."""
    clean = np.stack(values[0])
    known = {name: SpeakerStatistics.of(clean[speakers == name]) for name in np.unique(speakers)}
    return [
        np.concatenate(
            [speaker_normalise(row[None], known[name]) for row, name in zip(rows, speakers, strict=True)]
        )
        for rows in values
    ]


def _mode_scorer(
    model: torch.nn.Module,
    held: list[list[np.ndarray]],
    counts: list[list[int]],
    aggregate: str,
    batch_size: int,
    autocast: bool,
) -> Callable[[ModeView], list[tuple[np.ndarray, np.ndarray]]]:
    """A function that scores every condition's utterances (``held[c]``: one segment array ``(N, C, F, T)``
    per utterance) normalised as a :class:`ModeView` says: per condition the view's ``scored`` mask
    ``(U,)`` and the utterance scores ``(U, K)``."""

    def score(view: ModeView) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for segments, sizes in zip(held, counts, strict=True):
            sizes = np.array(sizes)
            normalised = view.normalise(np.concatenate(segments), sizes)
            log_probs = segment_log_probs(model, torch.from_numpy(normalised), batch_size, autocast)
            out.append((view.scored, utterance_scores(log_probs, sizes, aggregate)))
        return out

    return score


def _clean_views(
    normaliser: SpeakerNormaliser,
    clean: list[np.ndarray],
    counts: list[int],
    speakers: np.ndarray,
    enrol: int,
) -> dict[str, list[tuple[int, ModeView]]]:
    """Every mode's statistics from the test speakers' *clean* recordings (``clean``: segments per
    utterance, ``speakers`` ``(U,)``), as at training time: the enrolled mode in ``ENROL_DRAWS`` draws of
    ``enrol`` recordings. A speaker enrols once, in quiet, and is then heard through noise or a room."""
    means, squares = recording_moments(np.concatenate(clean), np.array(counts))
    names = sorted(set(speakers.tolist()))
    index = np.array([names.index(name) for name in speakers])
    return {
        mode: [
            (draw, mode_view(normaliser, means, squares, names, index, mode, enrol, draw))
            for draw in range(ENROL_DRAWS if mode == "enrolled" else 1)
        ]
        for mode in MODES
    }


def _clean_speaker_view(clean: list[np.ndarray], counts: list[int], speakers: np.ndarray) -> ModeView:
    """Features extracted with ``--speaker-norm``: every utterance by its speaker's statistics over all of
    the speaker's clean segments, as extraction normalised them."""
    count = len(clean)
    segments = np.concatenate(clean)
    rows = np.repeat(speakers, counts)
    mean = np.empty((count, *segments.shape[1:3], 1), dtype=np.float32)
    std = np.empty_like(mean)
    for name in np.unique(speakers):
        known = SpeakerStatistics.of(segments[rows == name])
        mean[speakers == name], std[speakers == name] = known.mean, known.std
    return ModeView(mean, std, np.ones(count, dtype=bool))


def _pooled(
    draws: list[list[tuple[np.ndarray, np.ndarray]]], condition: int, labels: np.ndarray, classes: list[str]
) -> dict:
    """The metrics of one condition over every draw's scored utterances together, with ``nll``: their
    mean negative log-likelihood of the true class (nats)."""
    parts = [result[condition] for result in draws]
    kept = np.concatenate([labels[mask] for mask, _ in parts])
    scores = np.concatenate([scores[mask] for mask, scores in parts])
    nll = float(-scores[np.arange(kept.size), kept].mean())
    return score_utterances(kept, scores, classes) | {"nll": nll}


def _fused_results(
    fused: _Fusion,
    fold: dict,
    image: list[np.ndarray],
    values: list[list[np.ndarray]],
    labels: np.ndarray,
    conditions: list,
    classes: list[str],
    speakers: tuple[np.ndarray, list[str]],
) -> dict[str, dict]:
    """Per condition the metrics of the image models (mean over the fold's runs, ``image[c]``
    ``(U, K)``), of the fold's linear model on the corrupted functionals ``values[c]`` and of
    their fusion with the fold's weight; a centred linear model also in the enrolled and
    transductive modes (``modes``), its speakers (``speakers``: each utterance's index, the names)
    known from their clean recordings."""
    entry = fused.folds.get(fold["name"])
    if entry is None:
        raise EmovisionError(f"--fusion: fusion.json has no fold {fold['name']!r}: run emovision fuse again")
    x, y, centring = fold_linear_data(fused.table, fold, fused.linear)
    model = fit_linear_pipeline(entry["C"], x, y, fused.linear.scaling)
    clean = np.stack(values[0]).astype(np.float64)
    out = {}
    for c, condition in enumerate(conditions):
        x = np.stack(values[c]).astype(np.float64)
        views = (
            [("cold", 0, x, None)]
            if centring is None
            else centred_views(
                x, speakers[0], speakers[1], centring, fused.linear.centre.enrol, reference=clean
            )
        )
        linear = [(mode, linear_log_probs(model, v, len(classes)), kept) for mode, _, v, kept in views]
        per_mode = {
            "image": metrics_by_mode(labels, [(mode, image[c], kept) for mode, _, kept in linear], classes),
            "linear": metrics_by_mode(labels, linear, classes),
            "fusion": metrics_by_mode(labels, mix_views(image[c], linear, entry["weight"]), classes),
        }
        out[condition.name] = {key: per_mode[key]["cold"] for key in per_mode}
        if centring is not None:
            out[condition.name]["modes"] = {
                mode: {key: per_mode[key][mode] for key in per_mode} for mode in MODES[1:]
            }
    return out


_FUNCTIONALS: dict[str, Functionals] = {}


def _features_of_job(job: tuple) -> tuple[list[np.ndarray] | None, list[np.ndarray] | None, str | None]:
    """Segments ``(N, C, F, T)`` per condition for one utterance and, when the job names an openSMILE
    set, its functionals ``(D,)`` per condition; or ``(None, None, reason)``.

    Runs in a worker process (one openSMILE instance per process); errors come back as text (they
    need not pickle).
    """
    path, key, config, plan, talker_paths, feature_set = job
    try:
        samples = load_audio(path, config.sample_rate, min_samples=config.min_samples)
        talkers = [talker_audio(p, config.sample_rate) for p in talker_paths]
        signals = [signal for _, signal in corrupt(samples, config.sample_rate, key, plan, talkers)]
        segments = [
            segment(compute_features(signal, config, feature_key(path)), config) for signal in signals
        ]
        functionals = None
        if feature_set is not None:
            if feature_set not in _FUNCTIONALS:
                _FUNCTIONALS[feature_set] = Functionals(feature_set)
            functionals = [_FUNCTIONALS[feature_set](signal, config.sample_rate) for signal in signals]
        return segments, functionals, None
    except AudioError as exc:
        return None, None, f"{exc.source}: {exc.reason}"
    except (EmovisionError, ValueError, MemoryError) as exc:
        return None, None, f"feature extraction failed ({exc})"
