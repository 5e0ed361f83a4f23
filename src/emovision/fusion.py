"""Late fusion: a cross-validation's image models with a linear model on openSMILE functionals.

For every fold, a standardised, class-balanced logistic regression is trained on the
functionals of the fold's *training* speakers (``C`` chosen by UA on the validation speaker).
Its utterance log-probabilities and the image model's (the mean over a fold's repeats, a
within-fold ensemble) are mixed as ``w·image + (1 − w)·linear``, with ``w`` in 0, 0.1 … 1 chosen
by UA on the validation speaker (ties: the ``w`` nearest 0.5). The test speaker is scored once,
with everything fixed. The cv folder gets ``fusion.json`` and ``fusion.md``: WA/UA per fold and
pooled for the image model, the linear model and the fusion, with paired differences; and
``fusion-model.npz``, the fusion to deploy (:mod:`emovision.fusion_model`): the linear model
retrained on every speaker, with the folds' median ``C``, weight and temperature (the fused
validation scores' temperature, fitted per fold). Functionals stored speaker-normalised
(``extract --speaker-norm``) are used as they are, and the deployed fusion records it: it is then
used only on a speaker's recordings (:meth:`emovision.predict.Recognizer.adapt`).
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from emovision.calibration import fit_temperature
from emovision.checkpoint import model_from_checkpoint
from emovision.dataset import load_split, open_source
from emovision.errors import EmovisionError
from emovision.evaluate import (
    fold_summary,
    paired_difference,
    score_utterances,
    segment_log_probs,
    utterance_scores,
)
from emovision.files import atomic_write_bytes
from emovision.fusion_model import FILE_NAME, FLOOR, LinearFusion, mix
from emovision.progress import progress_bar
from emovision.runs import fingerprint, finished_runs
from emovision.store import open_info, read_functionals

C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))
MODELS = ("image", "linear", "fusion")


def fuse_cv(run_dir: str | Path, functionals: str | Path | None = None, progress: bool = True) -> dict:
    """Fuse every fold of the finished cv in ``run_dir``; ``functionals``: a features file with
    openSMILE functionals of the same utterances (default: the cv's own features file)."""
    run_dir = Path(run_dir)
    record, runs = finished_runs(run_dir)
    source = open_source(record["features_file"])
    table_path = Path(functionals) if functionals else source.path
    table = functionals_by_id(table_path, source.classes)
    groups: dict[str, list] = defaultdict(list)
    for run in runs:
        groups[run.metrics["fold"]["name"]].append(run)
    folds = []
    with progress_bar(progress) as bar:
        task = bar.add_task("fusion", total=len(groups))
        for name, members in groups.items():
            folds.append(_fuse_fold(name, members, source, table, table_path))
            bar.advance(task)
    speakers = {s for key in ("train", "val", "test") for s in record["folds"][0][key]}
    return write_fused(folds, source.classes, run_dir, table, table_path, speakers, fingerprint([run_dir]))


def write_fused(
    folds: list[dict],
    classes: list[str],
    out: Path,
    table: dict,
    table_path: Path,
    speakers: set[str],
    models: str,
) -> dict:
    """The fusion report of the fused ``folds`` and the fusion to deploy (trained on the
    functionals in ``table`` of every one of ``speakers``; ``models``: the
    :func:`~emovision.runs.fingerprint` of the fold models it goes with), written to ``out``:
    ``fusion.json``, ``fusion.md`` and ``fusion-model.npz``. Returns the report."""
    deployed = deploy_fusion(folds, table, table_path, speakers, classes)
    deployed.info["fingerprint"] = models
    deployed.save(out / FILE_NAME)
    report = fusion_report(folds, classes, out, table_path) | {"deployed": deployed.describe()}
    return write_fusion(report, out)


def deploy_fusion(
    folds: list[dict], table: dict, table_path: Path, speakers: set[str], classes: list[str]
) -> LinearFusion:
    """The fusion to deploy: the linear model trained on the functionals of every utterance of
    ``speakers`` with the folds' median ``C`` (the lower middle one, a value of :data:`C_GRID`),
    the folds' median image weight and median fused temperature."""
    x, y = training_functionals(table, speakers, table_path)
    c = statistics.median_low(f["C"] for f in folds)
    pipeline = linear_pipeline(c).fit(x, y)
    info = open_info(table_path)
    return LinearFusion.from_pipeline(
        pipeline,
        feature_set=info.functionals,
        sample_rate=info.config.sample_rate,
        classes=list(classes),
        weight=round(float(statistics.median(f["weight"] for f in folds)), 2),
        temperature=float(statistics.median(f["temperature"] for f in folds)),
        info={
            "C": c,
            "speakers": len(speakers),
            "utterances": len(y),
            "folds": len(folds),
            "speaker_norm": bool(info.config.speaker_norm),
        },
    )


def write_fusion(report: dict, out: Path) -> dict:
    """``fusion.json`` and ``fusion.md`` of ``report`` in ``out``; returns ``report``."""
    atomic_write_bytes(out / "fusion.json", json.dumps(report, indent=2).encode())
    atomic_write_bytes(out / "fusion.md", fusion_markdown(report).encode())
    return report


def fit_linear(
    x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, classes: list[str]
):
    """The logistic regression (in a scaler pipeline) with the best validation UA over :data:`C_GRID`."""
    best = None
    for c in C_GRID:
        model = linear_pipeline(c).fit(x_train, y_train)
        ua = score_utterances(y_val, linear_log_probs(model, x_val, len(classes)), classes)["ua"]
        if best is None or ua > best[0]:
            best = (ua, c, model)
    return best[2], best[1]


def linear_pipeline(c: float):
    """An unfitted standardiser + class-balanced logistic regression of inverse regularisation ``c``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=3000))


def training_functionals(table: dict, speakers, table_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Functionals ``(U, D)`` and labels ``(U,)`` of every utterance in ``table`` of ``speakers``."""
    ids = [uid for uid, (_, speaker, _) in table.items() if speaker in speakers]
    return _lookup(table, ids, table_path), np.array([table[uid][2] for uid in ids])


def linear_log_probs(model, x: np.ndarray, num_classes: int) -> np.ndarray:
    """``(U, K)`` log-probabilities; classes absent from training get log(1e-6)."""
    out = np.full((x.shape[0], num_classes), np.log(FLOOR))
    out[:, model.classes_] = np.log(np.clip(model.predict_proba(x), FLOOR, None))
    return out


def choose_weight(image: np.ndarray, linear: np.ndarray, labels: np.ndarray, classes: list[str]) -> float:
    """The image weight of :data:`WEIGHTS` with the best UA of the fused scores (ties: nearest 0.5)."""
    scored = [
        (score_utterances(labels, mix(image, linear, w), classes)["ua"], -abs(w - 0.5), w) for w in WEIGHTS
    ]
    return max(scored)[2]


def _fuse_fold(name: str, members: list, source, table: dict, table_path: Path) -> dict:
    fold = members[0].metrics["fold"]
    val = load_split(source, fold["val"])
    test = load_split(source, fold["test"])
    image = {"val": mean_image_scores(members, val), "test": mean_image_scores(members, test)}
    return fuse_fold(name, fold, image, val, test, table, table_path, source.classes) | {"runs": len(members)}


def fuse_fold(
    name: str, fold: dict, image: dict, val, test, table: dict, table_path: Path, classes: list[str]
) -> dict:
    """One fold's fusion: ``image`` holds the image model's utterance log-probabilities ``(U, K)``
    of the ``val`` and ``test`` splits (in their utterance order); the linear model is trained on
    the functionals in ``table`` of the fold's training speakers."""
    x_train, y_train = training_functionals(table, fold["train"], table_path)
    x_val, x_test = (
        _lookup(table, val.utterance_ids, table_path),
        _lookup(table, test.utterance_ids, table_path),
    )
    model, c = fit_linear(x_train, y_train, x_val, val.utterance_labels, classes)
    linear = {
        "val": linear_log_probs(model, x_val, len(classes)),
        "test": linear_log_probs(model, x_test, len(classes)),
    }
    weight = choose_weight(image["val"], linear["val"], val.utterance_labels, classes)
    temperature = fit_temperature(mix(image["val"], linear["val"], weight), val.utterance_labels)
    fused = mix(image["test"], linear["test"], weight)
    scores = {"image": image["test"], "linear": linear["test"], "fusion": fused}
    return {
        "name": name,
        "test": fold["test"],
        "val": fold["val"],
        "C": c,
        "weight": weight,
        "temperature": temperature,
        **{key: score_utterances(test.utterance_labels, value, classes) for key, value in scores.items()},
    }


def mean_image_scores(runs: list, split) -> np.ndarray:
    """The mean over ``runs`` (a fold's repeats) of their utterance log-probabilities ``(U, K)`` of
    ``split``: a within-fold ensemble."""
    return np.mean([_image_scores(run, split) for run in runs], axis=0)


def _image_scores(run, split) -> np.ndarray:
    model = model_from_checkpoint(run.checkpoint)
    with torch.no_grad():
        log_probs = segment_log_probs(model, split.segments)
    return utterance_scores(
        log_probs, split.segments_per_utterance, run.checkpoint.get("aggregate", "logprob")
    )


def functionals_by_id(path: Path, classes: list[str]) -> dict[str, tuple[np.ndarray, str, int]]:
    """``{utterance id: (functionals (D,), speaker, label)}`` of the features file at ``path``."""
    info = open_info(path)
    if not info.functionals:
        raise EmovisionError(
            f"{path} holds no openSMILE functionals: extract with --functionals ComParE_2016 "
            "(or pass such a file with --functionals)"
        )
    if info.classes != classes:
        raise EmovisionError(f"{path} has the classes {info.classes}, the cv run {classes}")
    table = {}
    for speaker, (ids, values, labels) in read_functionals(path).items():
        table.update({uid: (v, speaker, int(y)) for uid, v, y in zip(ids, values, labels, strict=True)})
    return table


def _lookup(table: dict[str, tuple], ids: list[str], path: Path) -> np.ndarray:
    missing = [uid for uid in ids if uid not in table]
    if missing:
        raise EmovisionError(
            f"{path} has no functionals for utterance {missing[0]!r} ({len(missing)} missing)"
        )
    return np.stack([table[uid][0] for uid in ids]).astype(np.float64)


def fusion_report(folds: list[dict], classes: list[str], run_dir: Path, table_path: Path) -> dict:
    summary = {key: fold_summary([f[key] for f in folds], classes) for key in MODELS}
    paired = {
        f"{a} - {b}": paired_difference(np.array([f[a]["ua"] - f[b]["ua"] for f in folds]))
        for a, b in (("fusion", "image"), ("fusion", "linear"), ("image", "linear"))
    }
    return {
        "cv": str(run_dir),
        "functionals_file": str(table_path),
        "classes": classes,
        "folds": folds,
        "summary": summary,
        "paired_ua": paired,
    }


def fusion_markdown(report: dict) -> str:
    """The fusion report as Markdown: per-fold UA, summary rows, paired ΔUA."""
    lines = [
        f"# Late fusion: {report['cv']}",
        "",
        f"Functionals: `{report['functionals_file']}`; image weight and C chosen on the validation speaker.",
        "",
        "| fold | test | image UA | linear UA | fusion UA | weight | C |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in report["folds"]:
        lines.append(
            f"| {f['name']} | {'+'.join(f['test'])} | {f['image']['ua']:.3f} | {f['linear']['ua']:.3f} "
            f"| {f['fusion']['ua']:.3f} | {f['weight']:.1f} | {f['C']:g} |"
        )
    lines += ["", "| model | WA | UA | pooled WA | pooled UA |", "|---|---|---|---|---|"]
    for key, s in report["summary"].items():
        lines.append(
            f"| {key} | {s['wa_mean']:.3f} ± {s['wa_std']:.3f} | {s['ua_mean']:.3f} ± {s['ua_std']:.3f} "
            f"| {s['pooled']['wa']:.3f} | {s['pooled']['ua']:.3f} |"
        )
    lines += ["", "| paired ΔUA | mean ± s.e. | folds better |", "|---|---|---|"]
    for key, p in report["paired_ua"].items():
        lines.append(f"| {key} | {p['mean']:+.3f} ± {p['se']:.3f} | {p['better']}/{p['folds']} |")
    deployed = report.get("deployed")
    if deployed:
        lines += [
            "",
            f"To deploy: `{FILE_NAME}`, the linear model on {deployed['functionals']} retrained on all "
            f"{deployed['utterances']} utterances of the {deployed['speakers']} speakers (C {deployed['C']:g}), "
            f"image weight {deployed['weight']:g}, temperature {deployed['temperature']:.2f} (medians over the "
            "folds); predict and serve use it with the fold ensemble under --fusion on.",
        ]
    return "\n".join(lines) + "\n"
