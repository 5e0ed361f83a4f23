"""Speaker-independent cross-validation: folds, runs, resume, parallel folds, summaries.

Fold rules are in :mod:`emovision.training.folds`.

The folder of a cross-validation holds ``cv.json`` (its options), one training run folder per
fold (and seed, with ``--repeats``), and, when all are done, ``summary.json``,
``summary.md`` and ``confusion.png``.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

from emovision import plots
from emovision.errors import EmovisionError
from emovision.files import atomic_write_bytes, read_json
from emovision.progress import progress_bar
from emovision.system import available_cores, exit_with_parent, software_versions
from emovision.tables import ResultTable, mean_std
from emovision.training.calibration import VALIDATION_SPEAKERS, pooled_calibration
from emovision.training.cross_calibration import calibrate_across_folds
from emovision.training.dataset import FeatureSource, open_source
from emovision.training.folds import VALIDATIONS, Fold, make_folds, validation_trains
from emovision.training.metrics import fold_summary, score_utterances
from emovision.training.modes import mode_summary, modes_markdown
from emovision.training.options import TrainConfig, run_options
from emovision.training.train import check_enrolment, check_source, train_fold


def run_cv(
    features: str | Path,
    config: TrainConfig,
    out_dir: str | Path,
    folds: str = "auto",
    repeats: int = 1,
    parallel: int = 1,
    progress: bool = True,
    trust_pickle: bool = False,
    only: str | None = None,
    validation: str = "hold-out",
) -> dict:
    """Train every fold (× ``repeats`` seeds) and write the summary; return it.

    Finished folds are skipped and an interrupted fold continues, so rerunning the same
    command resumes. ``parallel`` folds run at once in separate processes, one GPU each
    when there are GPUs. ``only`` (a fold's 1-based index or name) trains that fold alone, for
    one job per fold on a cluster: the summary is written once every fold is finished, and
    until then the returned summary lists the ``missing`` runs. Each fold run is locked while it
    trains, so processes sharing the folder never train the same fold twice. ``validation``: :func:`cv_folds`.
    """
    out_dir = Path(out_dir)
    source = open_source(features, trust_pickle)
    check_source(source, config)
    fold_list = cv_folds(source, folds, validation, config)
    check_enrolment(source, fold_list, config)
    if repeats < 1 or parallel < 1:
        raise EmovisionError("--repeats and --parallel-folds must be at least 1")
    every, runs = _cv_runs(fold_list, config, repeats, only)
    _claim_folder(out_dir, source, config, fold_list, repeats, folds)
    with progress_bar(progress) as display:
        overall = display.add_task(f"cross-validation: {len(runs)} runs", total=len(runs))
        if parallel == 1:
            results = []
            for fold, run_config, name in runs:
                with fold_lock(out_dir / name):
                    results.append(
                        train_fold(source, fold, run_config, out_dir / name, resume=True, progress=display)
                    )
                display.advance(overall)
        else:
            results = _run_parallel(source, runs, out_dir, parallel, display, overall)
    calibrated = calibrate_across_folds([out_dir / name for _, _, name in every])
    if only is not None:
        return summarize_folder(out_dir)
    summary = summarize(calibrated or results, source.classes, config, source, repeats)
    write_summary(summary, out_dir, source.classes)
    return summary


def _cv_runs(
    folds: list[Fold], config: TrainConfig, repeats: int, only: str | None
) -> tuple[list[tuple[Fold, TrainConfig, str]], list[tuple[Fold, TrainConfig, str]]]:
    """Every run of the cv as (fold, its options, run folder name), and the runs ``only`` selects (every
    run without it; an error when it names no fold)."""
    runs = [
        (
            fold,
            replace(config, seed=config.seed + r),
            _run_name(i, fold, config.seed + r if repeats > 1 else None),
        )
        for i, fold in enumerate(folds, start=1)
        for r in range(repeats)
    ]
    if only is None:
        return runs, runs
    chosen = [run for run in runs if _is_fold(only, run[0], folds)]
    if not chosen:
        names = ", ".join(f.name for f in folds)
        raise EmovisionError(f"--fold {only} names no fold: give 1…{len(folds)} or one of {names}")
    return runs, chosen


def cv_folds(source, rule: str, validation: str, config: TrainConfig) -> list[Fold]:
    """The folds of ``rule``; with ``validation="train"`` each fold's validation speakers train too
    (:func:`emovision.training.folds.validation_trains`; needs ``--select-by last``)."""
    check_validation(validation, config)
    folds = make_folds(source, rule)
    return validation_trains(source, folds) if validation == "train" else folds


def check_validation(validation: str, config: TrainConfig) -> None:
    """Refuse an unknown ``--validation`` and ``train`` with a selection that needs a validation speaker."""
    if validation not in VALIDATIONS:
        raise EmovisionError(f"--validation must be one of {', '.join(VALIDATIONS)}, got {validation!r}")
    if validation == "train" and config.select_by != "last":
        raise EmovisionError(
            "--validation train leaves no speaker to choose an epoch by: add --select-by last"
        )


def summarize_folder(out_dir: str | Path) -> dict:
    """The summary of a cv folder from the fold runs finished so far (``cv.json`` says which exist).

    When every run is finished, ``summary.json``, ``summary.md`` and ``confusion.png`` are written;
    otherwise nothing is, and the returned summary names the ``missing`` runs.
    """
    out_dir = Path(out_dir)
    record_path = out_dir / "cv.json"
    if not record_path.is_file():
        raise EmovisionError(f"{out_dir} is not a cross-validation folder (no cv.json)")
    try:
        record = read_json(record_path, "cross-validation record")
        source = open_source(record["features_file"])
        folds = [Fold(f["train"], f["val"], f["test"], f["name"]) for f in record["folds"]]
        config = TrainConfig.from_dict(record["train_config"])
        repeats = int(record.get("repeats", 1))
    except (ValueError, KeyError, TypeError) as exc:
        raise EmovisionError(f"{record_path} is not a readable cv record ({exc})") from None
    results, missing = [], []
    for i, fold in enumerate(folds, start=1):
        for r in range(repeats):
            name = _run_name(i, fold, config.seed + r if repeats > 1 else None)
            metrics = out_dir / name / "metrics.json"
            if metrics.is_file():
                results.append(read_json(metrics, "metrics"))
            else:
                missing.append(name)
    if not results:
        raise EmovisionError(f"{out_dir}: no fold is finished yet (missing: {', '.join(missing)})")
    summary = summarize(results, source.classes, config, source, repeats)
    if missing:
        summary["missing"] = missing
    else:
        write_summary(summary, out_dir, source.classes)
    return summary


def _is_fold(wanted: str, fold: Fold, folds: list[Fold]) -> bool:
    return wanted == fold.name or (
        wanted.isdigit() and 1 <= int(wanted) <= len(folds) and folds[int(wanted) - 1] is fold
    )


@contextmanager
def fold_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir/.lock`` while a fold trains; another process's live lock is an error.

    The lock holds ``host pid``; a lock left by a process of this host that is gone is taken over.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / ".lock"
    me = f"{socket.gethostname()} {os.getpid()}"
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                host, _, pid = lock.read_text().partition(" ")
            except OSError:
                continue
            if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
                lock.unlink(missing_ok=True)
                continue
            raise EmovisionError(
                f"{run_dir.name} is being trained by another process ({host} pid {pid}); "
                f"if that process is gone, delete {lock}"
            ) from None
    try:
        os.write(fd, me.encode())
        os.close(fd)
        yield
    finally:
        lock.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def summarize(
    results: list[dict], classes: list[str], config: TrainConfig, source: FeatureSource, repeats: int
) -> dict:
    """Per-fold WA/UA, mean ± standard deviation over runs, and pooled metrics over all test utterances."""
    return {
        "features_file": str(source.path),
        "corpus": source.corpus,
        "classes": classes,
        "folds": [
            {
                "name": r["fold"]["name"],
                "test": r["fold"]["test"],
                "val": r["fold"]["val"],
                "seed": r["train_config"]["seed"],
                "wa": r["test"]["wa"],
                "ua": r["test"]["ua"],
                "val_ua": r["val"]["ua"] if r["val"] else None,
                "best_epoch": r["best_epoch"],
                "utterances": r["test"]["utterances"],
            }
            for r in results
        ],
        **fold_summary([r["test"] for r in results], classes),
        "ensemble": within_fold_ensemble(results, classes) if repeats > 1 else None,
        "mode": headline_mode(results, source),
        "modes": mode_summary(results, classes),
        "calibration": pooled_calibration(results),
        "repeats": repeats,
        "train_config": config.to_dict(),
        "feature_config": source.config.to_dict() if source.config else None,
        "versions": software_versions(),
    }


def headline_mode(results: list[dict], source: FeatureSource) -> str:
    """Which evaluation mode the per-fold and pooled figures are: ``cold`` for pipeline-normalised
    models (the modes table has the others), ``transductive`` for features extracted with
    ``--speaker-norm``, ``any`` for a model that uses no speaker information (the modes coincide)."""
    if results and all(r.get("test_modes") for r in results):
        return "cold"
    if source.config is not None and source.config.speaker_norm:
        return "transductive"
    return "any"


MODE_NOTES = {
    "cold": "each recording scored alone, no speaker information (what serve and Recognizer.predict give)",
    "transductive": "each test speaker normalised by all of its recordings (extract --speaker-norm); "
    "cold and enrolled accuracy need features extracted without it and train --speaker-norm",
    "any": "no speaker normalisation: cold, enrolled and transductive coincide",
}


def within_fold_ensemble(results: list[dict], classes: list[str]) -> dict | None:
    """Each fold's repeats as one model (mean of their test utterance log-probabilities): WA/UA per
    fold, mean ± std and pooled; ``None`` when a run did not record its test scores."""
    if not all(r.get("test_scores") and r.get("test_labels") for r in results):
        return None
    by_fold: dict[str, list[dict]] = {}
    for r in results:
        by_fold.setdefault(r["fold"]["name"], []).append(r)
    folds, scored = [], []
    for name, runs in by_fold.items():
        labels = np.asarray(runs[0]["test_labels"])
        scores = np.mean([np.asarray(r["test_scores"]) for r in runs], axis=0)
        metrics = score_utterances(labels, scores, classes)
        folds.append({"name": name, "runs": len(runs), "wa": metrics["wa"], "ua": metrics["ua"]})
        scored.append(metrics)
    return {"folds": folds, **fold_summary(scored, classes)}


def write_summary(summary: dict, out_dir: Path, classes: list[str], markdown: str | None = None) -> None:
    """``summary.json``, ``summary.md`` (``markdown``, by default a cv's) and the pooled
    ``confusion.png`` in ``out_dir``."""
    atomic_write_bytes(out_dir / "summary.json", json.dumps(summary, indent=2).encode())
    atomic_write_bytes(out_dir / "summary.md", (markdown or summary_markdown(summary)).encode())
    pooled = summary["pooled"]
    plots.confusion(
        pooled["confusion"],
        classes,
        out_dir / "confusion.png",
        title=f"pooled over folds: WA {pooled['wa']:.3f}, UA {pooled['ua']:.3f}",
    )
    calibration = summary.get("calibration")
    if calibration:
        plots.reliability_diagram(
            calibration["bins"],
            calibration["bins_calibrated"],
            out_dir / "reliability.png",
            title=f"test ECE {calibration['ece']:.3f} → {calibration['ece_calibrated']:.3f}",
        )


def fold_table(summary: dict) -> ResultTable:
    """A cv summary's folds, their mean ± std and the pooled figures, as one table."""
    table = ResultTable(
        ["fold", "test", "validation", "seed", "best epoch", "utterances", "WA", "UA"],
        title=f"cross-validation of {summary['train_config']['model']}: {len(summary['folds'])} runs",
        labels=3,
    )
    for f in summary["folds"]:
        table.add(
            f["name"], "+".join(f["test"]), "+".join(f["val"]) or "—", f["seed"], f["best_epoch"],
            f["utterances"], f"{f['wa']:.3f}", f"{f['ua']:.3f}",
        )  # fmt: skip
    pooled = summary["pooled"]
    table.add("mean ± std", "", "", "", "", "", mean_std(summary, "wa"), mean_std(summary), emphasise=True)
    table.add("pooled", "", "", "", "", pooled["utterances"], f"{pooled['wa']:.3f}", f"{pooled['ua']:.3f}")
    return table


def summary_options(summary: dict) -> list[str]:
    """A cv summary's run labels (:func:`run_options`), and whether its validation speakers trained."""
    options = run_options(summary["train_config"])
    if summary["folds"] and all(fold.get("val") == [] for fold in summary["folds"]):
        options.append("validation speakers train")
    return options


def summary_markdown(summary: dict) -> str:
    config = summary["train_config"]
    options = summary_options(summary)
    lines = [
        f"# Cross-validation: {config['model']}" + (f" ({', '.join(options)})" if options else ""),
        "",
        f"Features: `{summary['features_file']}` ({summary['corpus']}, {len(summary['classes'])} classes)  ",
        f"Epochs {config['epochs']}, batch {config['batch_size']}, lr {config['lr']}, seed {config['seed']}"
        + (f", {summary['repeats']} seeds per fold" if summary["repeats"] > 1 else ""),
        "",
        f"Mode of the fold table: **{summary.get('mode', 'any')}** ({MODE_NOTES[summary.get('mode', 'any')]})",
        "",
        *([*modes_markdown(summary["modes"]), ""] if summary.get("modes") else []),
        *fold_table(summary).markdown(),
    ]
    lines += [
        "",
        *(
            [
                f"Within-fold ensemble of the {summary['repeats']} seeds: UA "
                f"{summary['ensemble']['ua_mean']:.3f} ± {summary['ensemble']['ua_std']:.3f}, pooled UA "
                f"{summary['ensemble']['pooled']['ua']:.3f}, pooled WA {summary['ensemble']['pooled']['wa']:.3f}",
                "",
            ]
            if summary.get("ensemble")
            else []
        ),
        *(
            [
                f"Calibration (temperature fitted on "
                f"{summary['calibration'].get('fitted_on', VALIDATION_SPEAKERS)}, median "
                f"{summary['calibration']['temperature_median']:.2f}): expected calibration error of the "
                f"test utterances {summary['calibration']['ece']:.3f} → {summary['calibration']['ece_calibrated']:.3f} "
                "(reliability.png)",
                "",
            ]
            if summary.get("calibration")
            else []
        ),
        "Per-class recall (pooled): "
        + ", ".join(
            f"{name} {value:.3f}" for name, value in summary["pooled"]["recall"].items() if value is not None
        ),
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in summary["versions"].items() if v),
        "",
    ]
    return "\n".join(lines)


def _claim_folder(
    out_dir: Path, source, config: TrainConfig, folds: list[Fold], repeats: int, rule: str
) -> None:
    """Write ``cv.json``, or check that an existing one describes the same job."""
    record = {
        "features_file": str(Path(source.path).resolve()),
        "train_config": config.identity(),
        "folds": [fold.to_dict() for fold in folds],
        "fold_rule": rule,
        "repeats": repeats,
    }
    path = out_dir / "cv.json"
    if not path.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        temp = out_dir / f".cv.json.{os.getpid()}.tmp"
        atomic_write_bytes(temp, json.dumps(record, indent=2).encode())
        try:
            os.link(temp, path)  # written once: a second process finds it and compares
        except FileExistsError:
            pass
        except OSError:  # a filesystem without hard links
            if not path.exists():
                os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)
    previous = _with_current_options(read_json(path, "cross-validation record"))
    if previous != record:
        raise EmovisionError(
            f"{out_dir} holds a cross-validation with other options ({_differences(previous, record)}): "
            "use another --out"
        )


def _differences(saved: object, wanted: dict) -> str:
    """What differs between a saved ``cv.json`` record and this job's, named for a person: the
    training options as ``--name saved → wanted``, else the record's other keys."""
    if not isinstance(saved, dict):
        return "an unreadable record"
    before, after = saved.get("train_config"), wanted["train_config"]
    if isinstance(before, dict) and before != after:
        changed = sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))
        return ", ".join(f"--{key.replace('_', '-')} {before.get(key)} → {after.get(key)}" for key in changed)
    return ", ".join(sorted(key.replace("_", " ") for key in wanted if saved.get(key) != wanted[key]))


def _with_current_options(record: object) -> object:
    """A saved ``cv.json`` record with its training options as this version reads them
    (:meth:`TrainConfig.saved_identity`); a record that does not parse is returned as it is."""
    if not isinstance(record, dict) or not isinstance(record.get("train_config"), dict):
        return record
    try:
        options = TrainConfig.saved_identity(record["train_config"])
    except (EmovisionError, TypeError, ValueError):
        return record
    return record | {"train_config": options}


def _run_name(index: int, fold: Fold, seed: int | None) -> str:
    name = f"fold{index:02d}-{fold.name}"
    return f"{name}-seed{seed}" if seed is not None else name


class _QueueProgress:
    """Stands in for a rich Progress inside a worker process: forwards calls to the parent."""

    def __init__(self, channel, run: str) -> None:
        self.channel, self.run = channel, run

    def add_task(self, description: str, total: float | None = None, completed: float = 0) -> str:
        self.channel.put(
            (self.run, "add", {"description": description, "total": total, "completed": completed})
        )
        return self.run

    def update(self, task: str, **changes) -> None:
        self.channel.put((self.run, "update", changes))


_CHANNEL = None


def _init_fold_worker(parent: int, channel) -> None:
    """In a fold worker: keep the progress channel, and end this process when the cv process that
    started it is gone (killed or interrupted), so that no orphan goes on training and writing
    into the cv folder."""
    global _CHANNEL
    _CHANNEL = channel
    exit_with_parent(parent)


def _worker_train(
    features: str, trust_pickle: bool, fold: Fold, config: TrainConfig, out_dir: str, threads: int
) -> dict:
    torch.set_num_threads(threads)
    source = open_source(features, trust_pickle)
    with fold_lock(Path(out_dir)):
        return train_fold(
            source, fold, config, out_dir, resume=True, progress=_QueueProgress(_CHANNEL, out_dir)
        )


def _run_parallel(source, runs, out_dir: Path, parallel: int, display: Progress, overall) -> list[dict]:
    """Run folds in ``parallel`` spawned processes; GPUs are dealt out round-robin."""
    gpus = torch.cuda.device_count()
    threads = max(1, available_cores() // parallel)
    context = get_context("spawn")
    channel = context.Queue()
    tasks: dict[str, object] = {}
    stop = threading.Event()

    def relay() -> None:
        while not stop.is_set() or not channel.empty():
            try:
                run, action, values = channel.get(timeout=0.2)
            except queue.Empty:
                continue
            if action == "add":
                tasks[run] = display.add_task(**values)
            else:
                display.update(tasks[run], **values)

    listener = threading.Thread(target=relay, daemon=True)
    listener.start()
    try:
        with ProcessPoolExecutor(
            parallel, mp_context=context, initializer=_init_fold_worker, initargs=(os.getpid(), channel)
        ) as pool:
            futures = []
            for number, (fold, config, name) in enumerate(runs):
                if gpus and config.device in ("auto", "cuda"):
                    config = replace(config, device=f"cuda:{number % gpus}")
                job = (str(source.path), source.corpus == "pickle", fold, config, str(out_dir / name))
                futures.append(pool.submit(_worker_train, *job, threads))
            results = []
            for future in futures:
                results.append(future.result())
                display.advance(overall)
    finally:
        stop.set()
        listener.join()
        channel.close()
    return results
