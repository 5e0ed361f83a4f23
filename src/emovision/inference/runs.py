"""A finished cross-validation folder as data: its record (``cv.json``) and its fold runs.

Read by ``robustness``, ``fuse`` and by :class:`~emovision.inference.predict.Recognizer` when a cv folder
is used as one model (the ensemble of its fold models), or an ``emovision ensemble`` folder as the
ensemble of its members' cv folders.
"""

from __future__ import annotations

import hashlib
import re
import statistics
from dataclasses import dataclass
from pathlib import Path

from emovision.data.features import FeatureConfig
from emovision.data.speaker_norm import SpeakerNormaliser
from emovision.errors import EmovisionError
from emovision.files import read_json
from emovision.training.checkpoint import load_checkpoint
from emovision.training.options import TrainConfig

_RUN_FOLDER = re.compile(r"^fold\d{2,}-")


@dataclass
class FoldRun:
    """One finished fold run of a cross-validation: its folder, ``metrics.json`` and best checkpoint."""

    folder: Path
    metrics: dict
    checkpoint: dict

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def feature_config(self) -> FeatureConfig:
        return FeatureConfig.from_dict(self.checkpoint["feature_config"])

    @property
    def train_config(self) -> TrainConfig:
        """The options the fold model was trained with (``metrics.json``)."""
        return TrainConfig.from_dict(self.metrics.get("train_config", {}))


def finished_runs(run_dir: str | Path) -> tuple[dict, list[FoldRun]]:
    """``cv.json`` and every fold run of the finished cross-validation in ``run_dir``.

    Raises :class:`EmovisionError` when ``run_dir`` is not a cv folder, is unfinished, or a fold
    run lacks its checkpoint, its metrics or the ids of its test utterances.
    """
    run_dir = Path(run_dir)
    record_path = run_dir / "cv.json"
    if not record_path.is_file():
        raise EmovisionError(
            f"{run_dir} is not a cross-validation folder (no cv.json): give the --out of emovision cv"
        )
    if not (run_dir / "summary.json").is_file():
        raise EmovisionError(
            f"{run_dir} holds an unfinished cross-validation (no summary.json): rerun its emovision cv command"
        )
    record = read_json(record_path, "cross-validation record")
    folders = sorted(p for p in run_dir.iterdir() if p.is_dir() and _RUN_FOLDER.match(p.name))
    expected = len(record["folds"]) * int(record.get("repeats", 1))
    if len(folders) != expected:
        raise EmovisionError(f"{run_dir} should hold {expected} fold runs (cv.json), found {len(folders)}")
    runs = []
    for folder in folders:
        metrics_path = folder / "metrics.json"
        if not metrics_path.is_file():
            raise EmovisionError(f"fold run {folder} is unfinished (no metrics.json)")
        metrics = read_json(metrics_path, "metrics")
        if "test_utterance_ids" not in metrics:
            raise EmovisionError(
                f"{metrics_path} lacks test_utterance_ids: retrain with this emovision version"
            )
        checkpoint = load_checkpoint(folder / "best.pth")
        if checkpoint.get("feature_config") is None:
            raise EmovisionError(
                f"{folder / 'best.pth'} was trained on a legacy pickle: its feature configuration is unknown"
            )
        runs.append(FoldRun(folder, metrics, checkpoint))
    return record, runs


def is_cv_folder(path: str | Path) -> bool:
    return Path(path).is_dir() and (Path(path) / "cv.json").is_file()


def load_model_payload(path: str | Path) -> dict:
    """A checkpoint file, or a finished cv folder as one model: the ensemble of all its fold runs.

    The fold models (every fold, every repeat) must share classes, feature configuration,
    aggregation rule and input shape. A fold ensemble is for deployment only: each fold model
    has seen the other folds' test speakers, so it cannot be scored on the cv's folds.
    """
    path = Path(path)
    if not path.is_dir():
        return load_checkpoint(path)
    if is_ensemble_folder(path):
        raise EmovisionError(
            f"{path} is an ensemble of cvs with several feature configurations: it is one model for "
            "predict and serve, not one network; give one of its member cv folders"
        )
    if not is_cv_folder(path):
        raise EmovisionError(f"{path} is a folder but not an emovision cv folder (no cv.json)")
    _, runs = finished_runs(path)
    first = runs[0].checkpoint
    keys = ("classes", "feature_config", "aggregate")
    shape = ("channels", "height", "frames")
    for run in runs[1:]:
        other = run.checkpoint
        if any(other.get(k) != first.get(k) for k in keys) or any(
            other["model"][k] != first["model"][k] for k in shape
        ):
            raise EmovisionError(
                f"{run.folder} differs from {runs[0].folder} in classes, features or input shape: "
                "its models cannot form one ensemble"
            )
    names = sorted({run.checkpoint["model"]["name"] for run in runs})
    return {
        **{k: first[k] for k in ("format", "version", "classes", "corpus", "feature_config", "aggregate")},
        "model": {**first["model"], "name": f"ensemble of {len(runs)} ({', '.join(names)})"},
        "members": [run.checkpoint for run in runs],
        "speaker_norm": _ensemble_speaker_norm([run.checkpoint.get("speaker_norm") for run in runs]),
        "temperature": _ensemble_temperature([run.checkpoint.get("temperature") for run in runs]),
        "versions": first.get("versions", {}),
    }


def _ensemble_speaker_norm(values: list[dict | None]) -> dict | None:
    """One speaker normalisation for the fold models of a cv (their priors averaged), None without.
    Each fold model's prior is the mean recording of its own training speakers; the fold ensemble
    normalises its input once, by the average of those priors (they differ by a speaker or two)."""
    normalisers = [SpeakerNormaliser.from_dict(v) for v in values]
    if all(n is None for n in normalisers):
        return None
    if any(n is None for n in normalisers) or len({(n.mode, n.prior_weight) for n in normalisers}) > 1:
        raise EmovisionError(
            "the cv's fold models differ in speaker normalisation: they cannot form one ensemble"
        )
    return SpeakerNormaliser.average(normalisers).to_dict()


def _ensemble_temperature(temperatures: list[float | None]) -> float | None:
    """The median of the fold models' temperatures, when every one has one (a decision: the
    ensemble's averaged log-probabilities are about as sharp as one member's)."""
    if any(t is None for t in temperatures):
        return None
    return float(statistics.median(temperatures))


def is_ensemble_folder(path: str | Path) -> bool:
    """Whether ``path`` is an ``emovision ensemble`` output folder (a summary with members, no cv.json)."""
    path = Path(path)
    if not path.is_dir() or is_cv_folder(path) or not (path / "summary.json").is_file():
        return False
    return "members" in read_json(path / "summary.json", "ensemble summary")


def ensemble_members(path: str | Path) -> list[Path]:
    """The member cv folders of the ensemble folder ``path``: each at its path relative to
    ``path``, else at the folder as it was given to ``emovision ensemble``."""
    path = Path(path)
    folders = []
    for member in read_json(path / "summary.json", "ensemble summary")["members"]:
        candidates = [path / member["path"]] if "path" in member else []
        candidates.append(Path(member["folder"]))
        found = next((c for c in candidates if is_cv_folder(c)), None)
        if found is None:
            raise EmovisionError(
                f"{path}: its member cv folder {member['folder']} is not there any more "
                "(an ensemble folder uses its members' fold models)"
            )
        folders.append(found)
    return folders


def fingerprint(folders: list[Path]) -> str:
    """A digest of the fold runs (their ``metrics.json``) of the cv folders ``folders``, in order:
    it changes when a fold model is retrained or replaced."""
    digest = hashlib.sha256()
    for folder in folders:
        for run in sorted(p for p in folder.iterdir() if p.is_dir() and _RUN_FOLDER.match(p.name)):
            digest.update(run.name.encode())
            metrics = run / "metrics.json"
            digest.update(metrics.read_bytes() if metrics.is_file() else b"")
    return digest.hexdigest()


def load_ensemble(path: str | Path) -> tuple[list[dict], float | None]:
    """The fold-ensemble payloads (:func:`load_model_payload`) of the member cvs of the ensemble
    folder ``path`` (:func:`ensemble_members`), and its temperature. Members must share classes
    and the audio sample rate (their features may differ otherwise: each computes its own)."""
    path = Path(path)
    summary = read_json(path / "summary.json", "ensemble summary")
    payloads = [load_model_payload(folder) for folder in ensemble_members(path)]
    first = payloads[0]
    for other, member in zip(payloads[1:], summary["members"][1:], strict=True):
        if other["classes"] != first["classes"]:
            raise EmovisionError(f"{path}: member {member['folder']} has other classes than the first")
        if other["feature_config"]["sample_rate"] != first["feature_config"]["sample_rate"]:
            raise EmovisionError(
                f"{path}: member {member['folder']} works at another sample rate than the first; "
                "an ensemble to deploy needs one rate"
            )
    return payloads, summary.get("temperature")
