"""``emovision fuse``: the late fusion of a finished cv folder, fold by fold.

Folds with validation speakers choose their linear model's ``C``, image weight and temperature there
(:func:`~emovision.evaluation.fusion.fuse_fold`); folds whose validation speakers trained (``cv
--validation train``) choose them on the other folds' test speakers
(:mod:`emovision.evaluation.cross_fusion`). The image side of a fold is the mean of its repeats' scores.
Each fold's result is kept as it finishes (:mod:`emovision.evaluation.fold_cache`): an interrupted fusion
resumes.
"""

from __future__ import annotations

from collections import defaultdict
from functools import partial
from pathlib import Path

from emovision.data.store import open_info
from emovision.evaluation.cross_fusion import FoldScores, fold_fusion, fuse_across_folds
from emovision.evaluation.fold_cache import fusion_cache
from emovision.evaluation.functionals_table import FunctionalsTable, functionals_table
from emovision.evaluation.fusion import held_out_folds, mean_image_scores
from emovision.evaluation.fusion_report import write_fused
from emovision.evaluation.linear_model import DEFAULT_LINEAR, LinearTraining
from emovision.inference.runs import fingerprint, finished_runs
from emovision.progress import progress_bar
from emovision.training.dataset import load_split, open_source
from emovision.training.modes import runs_mode


def fuse_cv(
    run_dir: str | Path,
    functionals: str | Path | None = None,
    progress: bool = True,
    linear: LinearTraining = DEFAULT_LINEAR,
) -> dict:
    """Fuse every fold of the finished cv in ``run_dir``; ``functionals``: a features file with
    openSMILE functionals of the same utterances (default: the cv's own features file); ``linear``: how
    the linear model is trained (:class:`~emovision.evaluation.linear_model.LinearTraining`; its copy
    kinds by default those the cv's image models trained on, as far as the file holds their
    functionals)."""
    run_dir = Path(run_dir)
    record, runs = finished_runs(run_dir)
    held_out = held_out_folds(record["folds"], run_dir)
    source = open_source(record["features_file"])
    table = functionals_table(Path(functionals) if functionals else source.path, source.classes)
    linear = linear.with_copy_kinds(table, runs[0].train_config.copy_kinds)
    groups: dict[str, list] = defaultdict(list)
    for run in runs:
        groups[run.metrics["fold"]["name"]].append(run)
    models = fingerprint([run_dir])
    cache = fusion_cache(run_dir, table.path, [source.path], models, linear)
    folds = []
    with progress_bar(progress) as bar:
        task = bar.add_task("fusion", total=len(groups))
        for name, members in groups.items():
            folds.append(cache.result(name, partial(_fold, name, members, source, table, linear)))
            bar.advance(task)
    if not held_out:
        folds = fuse_across_folds(folds, source.classes)
    for fold in folds:
        fold["runs"] = len(groups[fold["name"]])
    speakers = {s for key in ("train", "val", "test") for s in record["folds"][0][key]}
    mode = "transductive" if open_info(table.path).config.speaker_norm else runs_mode(runs)
    report = write_fused(folds, source.classes, run_dir, table, speakers, models, mode, linear)
    cache.clear()
    return report


def _fold(
    name: str, members: list, source, table: FunctionalsTable, linear: LinearTraining
) -> dict | FoldScores:
    """:func:`~emovision.evaluation.cross_fusion.fold_fusion` of a fold, its image side the mean of its
    repeats ``members``."""
    fold = members[0].metrics["fold"]
    splits = {role: load_split(source, fold[role]) for role in ("val", "test") if fold[role]}
    image = {role: mean_image_scores(members, split) for role, split in splits.items()}
    return fold_fusion(name, fold, image, splits, table, source.classes, linear)
