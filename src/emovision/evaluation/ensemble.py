"""Within-fold ensembles of finished cross-validations: several cv runs on the same folds (other
seeds, backbones or segment lengths) scored as one model per fold.

For every fold, each member's best model (the mean over its repeats, when it has several) scores
the fold's validation and test speakers on the member's own features file; the ensemble's
utterance scores are the mean of the members' utterance log-probabilities ``(U, K)``. Every member
of a fold was trained on that fold's training speakers only, so, unlike the fold ensemble of one
cv folder (for deployment), this ensemble is scored honestly on the cv's folds. With functionals
it is also late-fused with a linear model on openSMILE functionals, exactly as ``emovision fuse``
does (its linear model also trained on the copies of the kinds every member trained on, where the
functionals file holds them). The output folder gets ``summary.json`` (the shape of a cv summary, so ``emovision report``
compares it), ``summary.md``, ``confusion.png`` and, fused, ``fusion.json`` / ``fusion.md``.

The folder is also a model to deploy: :class:`~emovision.inference.predict.Recognizer` (``predict``,
``serve``) loads the fold ensembles of its member cvs (found by their path relative to the
ensemble folder, else as given) and averages their utterance log-probabilities, with the
temperature fitted on each fold's validation speaker (median over folds; when the members trained
their validation speakers, ``cv --validation train``, each fold's is fitted on the other folds' test
speakers, as :mod:`emovision.training.cross_calibration` does, and a fusion chooses its C and image
weight there too, :mod:`emovision.evaluation.cross_fusion`) and, fused, the ``fusion-model.npz`` that
``fuse`` would write.
"""

from __future__ import annotations

import os
import shutil
import statistics
from collections import defaultdict
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from emovision.data.store import open_info
from emovision.errors import EmovisionError
from emovision.evaluation.cross_fusion import fold_fusion, fuse_across_folds
from emovision.evaluation.fold_cache import FOLDER_NAME as CACHE_FOLDER
from emovision.evaluation.fold_cache import fusion_cache
from emovision.evaluation.functionals_table import FunctionalsTable, functionals_table
from emovision.evaluation.fusion import held_out_folds, mean_image_scores
from emovision.evaluation.fusion_report import write_fused
from emovision.evaluation.linear_model import DEFAULT_LINEAR, LinearTraining
from emovision.inference.fusion_model import FILE_NAME as FUSION_FILE
from emovision.inference.runs import FoldRun, fingerprint, finished_runs
from emovision.progress import progress_bar
from emovision.system import software_versions
from emovision.tables import ResultTable, mean_std, paired_change, paired_table
from emovision.training.calibration import cross_fitted_temperatures, fit_temperature
from emovision.training.cv import write_summary
from emovision.training.dataset import FeatureSource, Split, load_split, open_source
from emovision.training.metrics import fold_summary, paired_difference, score_utterances
from emovision.training.modes import runs_mode


@dataclass
class Member:
    """One cross-validation of the ensemble: its folder, features and fold runs by fold name."""

    folder: Path
    source: FeatureSource
    folds: dict[str, list[FoldRun]]

    @property
    def model(self) -> str:
        return next(iter(self.folds.values()))[0].metrics["train_config"]["model"]

    @property
    def copy_kinds(self) -> tuple[str, ...]:
        """The waveform copies the member's models trained on."""
        return next(iter(self.folds.values()))[0].train_config.copy_kinds


def ensemble_cvs(
    run_dirs: list[str | Path],
    out: str | Path,
    functionals: str | Path | None = None,
    progress: bool = True,
    linear: LinearTraining = DEFAULT_LINEAR,
) -> dict:
    """Score the within-fold ensemble of the finished cvs in ``run_dirs`` into ``out``; with
    ``functionals`` (a features file with openSMILE functionals) fuse it too, its linear model trained
    as ``fuse`` trains it (:func:`~emovision.evaluation.cv_fusion.fuse_cv`), as ``linear`` says (copy
    kinds by default those every member trained on). Returns the summary."""
    out = Path(out)
    _check_out(run_dirs, out)
    members = [_member(Path(d)) for d in run_dirs]
    folds = _common_folds(members)
    held_out = held_out_folds(list(folds.values()), members[0].folder) if functionals else True
    classes = members[0].source.classes
    table, linear = _functionals(members, functionals, linear)
    models = fingerprint([m.folder for m in members])
    features = [m.source.path for m in members]
    cache = fusion_cache(out, table.path, features, models, linear) if table is not None else None
    scored, fused, tests = [], [], []
    with progress_bar(progress) as bar:
        task = bar.add_task("ensemble", total=len(folds))
        for name, fold in folds.items():
            splits, image = _fold_scores(members, name, fold)
            scored.append(_fold_result(name, fold, image, splits, classes))
            tests.append(
                (
                    set(fold["test"]),
                    np.mean([s["test"] for s in image], axis=0),
                    splits["test"].utterance_labels,
                )
            )
            if table is not None:
                mean = {role: np.mean([s[role] for s in image], axis=0) for role in splits}
                fuse = partial(fold_fusion, name, fold, mean, splits, table, classes, linear)
                fused.append(cache.result(name, fuse))
            bar.advance(task)
    if fused and not held_out:
        fused = fuse_across_folds(fused, classes)
    if scored[0]["temperature"] is None:
        for fold, temperature in zip(scored, cross_fitted_temperatures(tests), strict=True):
            fold["temperature"] = temperature
    summary = _summary(members, scored, classes, out)
    out.mkdir(parents=True, exist_ok=True)
    write_summary(summary, out, classes, ensemble_markdown(summary))
    if fused:
        speakers = {s for fold in folds.values() for key in ("train", "val", "test") for s in fold[key]}
        mode = "transductive" if open_info(table.path).config.speaker_norm else summary["mode"]
        summary["fusion"] = write_fused(fused, classes, out, table, speakers, models, mode, linear)
        cache.clear()
    else:
        for name in (FUSION_FILE, "fusion.json", "fusion.md"):
            (out / name).unlink(missing_ok=True)  # an earlier fused run's files would no longer match
        shutil.rmtree(out / CACHE_FOLDER, ignore_errors=True)
    return summary


def _check_out(run_dirs: list[str | Path], out: Path) -> None:
    """Refuse fewer than two members, an output folder that is one of them, or a file."""
    if len(run_dirs) < 2:
        raise EmovisionError("an ensemble needs at least two cross-validation folders")
    if any(Path(d).resolve() == out.resolve() for d in run_dirs):
        raise EmovisionError(f"--out {out} is one of the members: give a folder of its own")
    if out.exists() and not out.is_dir():
        raise EmovisionError(f"--out {out} is a file, not a folder")


def _functionals(
    members: list[Member], functionals: str | Path | None, linear: LinearTraining
) -> tuple[FunctionalsTable | None, LinearTraining]:
    """The functionals to fuse with (None: no fusion) and ``linear`` with its copy kinds settled (by
    default the kinds every member trained on of which they hold functionals)."""
    if functionals is None:
        return None, linear
    table = functionals_table(Path(functionals), members[0].source.classes)
    shared = [k for k in members[0].copy_kinds if all(k in m.copy_kinds for m in members[1:])]
    return table, linear.with_copy_kinds(table, tuple(shared))


def _member(folder: Path) -> Member:
    record, runs = finished_runs(folder)
    source = open_source(record["features_file"])
    folds: dict[str, list[FoldRun]] = defaultdict(list)
    for run in runs:
        folds[run.metrics["fold"]["name"]].append(run)
    return Member(folder, source, dict(folds))


def _common_folds(members: list[Member]) -> dict[str, dict]:
    """The folds every member holds, identical in test, validation and training speakers."""
    first = members[0]
    for other in members[1:]:
        if other.source.classes != first.source.classes:
            raise EmovisionError(
                f"{other.folder} has the classes {other.source.classes}, {first.folder} "
                f"{first.source.classes}: they cannot form one ensemble"
            )
        if other.source.corpus != first.source.corpus:
            raise EmovisionError(f"{other.folder} and {first.folder} were trained on different corpora")
        mine = {n: _speakers(r[0].metrics["fold"]) for n, r in first.folds.items()}
        theirs = {n: _speakers(r[0].metrics["fold"]) for n, r in other.folds.items()}
        if mine != theirs:
            raise EmovisionError(
                f"{other.folder} and {first.folder} were not cross-validated on the same folds "
                "(test, validation and training speakers): run them with the same --folds"
            )
    return {name: runs[0].metrics["fold"] for name, runs in first.folds.items()}


def _speakers(fold: dict) -> tuple:
    return tuple(tuple(sorted(fold[role])) for role in ("test", "val", "train"))


def _fold_scores(members: list[Member], name: str, fold: dict) -> tuple[dict[str, Split], list[dict]]:
    """The first member's validation and test splits, and every member's utterance
    log-probabilities ``{"val": (U, K), "test": (U, K)}`` on them (same utterances, same order)."""
    splits: dict[str, Split] = {}
    image = []
    for member in members:
        scores = {}
        for role in ("val", "test") if fold["val"] else ("test",):
            split = load_split(member.source, fold[role])
            reference = splits.setdefault(role, split)
            if split.utterance_ids != reference.utterance_ids:
                raise EmovisionError(
                    f"{member.folder} and {members[0].folder} hold different {role} utterances in fold "
                    f"{name}: their features files were extracted from different recordings"
                )
            scores[role] = mean_image_scores(member.folds[name], split)
        image.append(scores)
    return splits, image


def _fold_result(
    name: str, fold: dict, image: list[dict], splits: dict[str, Split], classes: list[str]
) -> dict:
    labels = splits["test"].utterance_labels
    ensemble = score_utterances(labels, np.mean([s["test"] for s in image], axis=0), classes)
    held_out = "val" in splits
    val = np.mean([s["val"] for s in image], axis=0) if held_out else None
    return {
        "name": name,
        "test": fold["test"],
        "val": fold["val"],
        "temperature": fit_temperature(val, splits["val"].utterance_labels) if held_out else None,
        **ensemble,
        "members_ua": [score_utterances(labels, s["test"], classes)["ua"] for s in image],
    }


def _summary(members: list[Member], folds: list[dict], classes: list[str], out: Path) -> dict:
    member_ua = np.array([f["members_ua"] for f in folds])
    return {
        "members": [
            {
                "folder": str(m.folder),
                "path": os.path.relpath(m.folder.resolve(), out.resolve()),
                "model": m.model,
                "features_file": str(m.source.path),
            }
            for m in members
        ],
        "temperature": (
            float(statistics.median(f["temperature"] for f in folds))
            if all(f["temperature"] is not None for f in folds)
            else None
        ),
        "mode": runs_mode([run for m in members for runs in m.folds.values() for run in runs]),
        "corpus": members[0].source.corpus,
        "classes": classes,
        "folds": folds,
        **fold_summary(folds, classes),
        "members_ua_mean": member_ua.mean(axis=0).tolist(),
        "paired_ua": [
            paired_difference(np.array([f["ua"] for f in folds]) - member_ua[:, i])
            for i in range(len(members))
        ],
        "versions": software_versions(),
    }


def ensemble_fold_table(summary: dict) -> ResultTable:
    """UA per fold of every member and WA/UA of the ensemble, then the means and the pooled figures."""
    members = range(1, len(summary["members"]) + 1)
    table = ResultTable(
        ["fold", "test", *(f"UA {i}" for i in members), "ensemble WA", "ensemble UA"], labels=2
    )
    for f in summary["folds"]:
        table.add(
            f["name"],
            "+".join(f["test"]),
            *(f"{ua:.3f}" for ua in f["members_ua"]),
            f"{f['wa']:.3f}",
            f"{f['ua']:.3f}",
        )
    means = (f"{ua:.3f}" for ua in summary["members_ua_mean"])
    table.add("mean", None, *means, mean_std(summary, "wa"), mean_std(summary), emphasise=True)
    pooled = summary["pooled"]
    table.add("pooled", None, *(None for _ in members), f"{pooled['wa']:.3f}", f"{pooled['ua']:.3f}")
    return table


def ensemble_member_table(summary: dict) -> ResultTable:
    """Every member's mean UA and the ensemble's paired gain over it, then the ensemble's figures."""
    table = ResultTable(
        ["run", "UA mean", "ensemble − run (ΔUA, folds better)"],
        title=f"within-fold ensemble of {len(summary['members'])} cross-validations (test speakers)",
    )
    for member, ua, p in zip(
        summary["members"], summary["members_ua_mean"], summary["paired_ua"], strict=True
    ):
        table.add(member["folder"], f"{ua:.3f}", paired_change(p))
    pooled = summary["pooled"]
    ensemble = f"pooled UA {pooled['ua']:.3f}, WA {pooled['wa']:.3f}"
    table.add("ensemble", mean_std(summary), ensemble, emphasise=True)
    return table


def ensemble_markdown(summary: dict) -> str:
    """The ensemble's summary as Markdown: its members, UA per fold (members and ensemble), means."""
    members = summary["members"]
    lines = [
        f"# Within-fold ensemble of {len(members)} cross-validations",
        "",
        f"Mode: {summary.get('mode', 'any')} (cold: each test recording scored by itself; transductive: "
        "each test speaker normalised by all of its recordings; any: no speaker information used).",
        "",
        *(
            f"{i + 1}. `{m['folder']}`: {m['model']}, features `{m['features_file']}`"
            for i, m in enumerate(members)
        ),
        "",
        *ensemble_fold_table(summary).markdown(),
        "",
        *paired_table([(f"ensemble - {i + 1}", p) for i, p in enumerate(summary["paired_ua"])]).markdown(),
        "",
    ]
    return "\n".join(lines)
