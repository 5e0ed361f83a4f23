"""Late fusion of a cross-validation's image models with a linear model on openSMILE functionals, fold
by fold.

For every fold, the linear model (:mod:`emovision.evaluation.linear_model`) is trained on the fold's
training speakers (and their copies of ``copy_kinds``: by default the kinds the cv's image models
trained on, so that both sides of the fusion see the same noises and rooms), ``C`` chosen by UA on the
validation speakers (averaged over the modes when centred). Validation and test speakers are always
scored on their clean recordings only. Its utterance log-probabilities and the image model's (the mean
over a fold's repeats, a within-fold ensemble) are mixed as ``w·image + (1 − w)·linear``, with ``w`` in
0, 0.1 … 1 chosen by UA on the validation speaker (ties: the ``w`` nearest 0.5), and the fused
validation scores give the fold's temperature. The test speaker is scored once, with everything fixed,
in every mode of the linear model's views (the image side cold in each). Folds without validation
speakers (``cv --validation train``) choose ``C``, ``w`` and the temperature on the other folds' test
speakers instead (:mod:`emovision.evaluation.cross_fusion`; :mod:`emovision.evaluation.cv_fusion` runs
either; :mod:`emovision.evaluation.fusion_report` writes the result and the fusion to deploy).

Functionals stored speaker-normalised (``extract --speaker-norm``) are used as they are, and the
deployed fusion records it: it is then used only on a speaker's recordings
(:meth:`emovision.inference.predict.Recognizer.adapt`). Image models normalised in the data pipeline
(``train --speaker-norm``) are scored in the cold mode, each recording by itself, so that with
unnormalised functionals the fusion is one a server can give."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from emovision.data.speaker_norm import MODES, SpeakerNormaliser, mode_view, recording_moments
from emovision.errors import EmovisionError
from emovision.evaluation.functionals_table import FunctionalsTable
from emovision.evaluation.linear_model import (
    LinearTraining,
    fit_linear,
    fold_linear_data,
    metrics_by_mode,
    mode_mean_ua,
    score_views,
    split_views,
)
from emovision.inference.fusion_model import mix
from emovision.training.calibration import fit_temperature
from emovision.training.checkpoint import model_from_checkpoint
from emovision.training.metrics import segment_log_probs, utterance_scores

WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))
MODELS = ("image", "linear", "fusion")


def choose_weight(image: np.ndarray, linear: list[tuple], labels: np.ndarray, classes: list[str]) -> float:
    """The image weight of :data:`WEIGHTS` whose fusion of the image scores ``(U, K)`` with the linear
    views ``(mode, scores (U, K), scored)`` has the best UA averaged over the modes (ties: nearest 0.5)."""
    scored = [(mode_mean_ua(labels, mix_views(image, linear, w), classes), -abs(w - 0.5), w) for w in WEIGHTS]
    return max(scored)[2]


def held_out_folds(folds: list[dict], where: Path) -> bool:
    """Whether the fusion chooses each fold's C, image weight and temperature on its validation
    speakers (every fold has some) or on the other folds' test speakers (none has: ``cv --validation
    train``, :mod:`emovision.evaluation.cross_fusion`); a mix of both is refused."""
    held = [bool(fold["val"]) for fold in folds]
    if any(held) and not all(held):
        raise EmovisionError(
            f"{where} has folds with validation speakers and folds without: the fusion chooses its C and "
            "image weight on every fold's validation speakers or on none"
        )
    return all(held)


def fuse_fold(
    name: str,
    fold: dict,
    image: dict,
    val,
    test,
    table: FunctionalsTable,
    classes: list[str],
    linear: LinearTraining,
) -> dict:
    """One fold's fusion: ``image`` holds the image model's utterance log-probabilities ``(U, K)``
    of the ``val`` and ``test`` splits (in their utterance order); the linear model is trained as
    ``linear`` says (copy kinds settled) on the functionals in ``table`` of the fold's training speakers
    (speaker-centred with its ``centre``, and then scored in every mode: ``modes`` of the result)."""
    x_train, y_train, centring = fold_linear_data(table, fold | {"name": name}, linear)
    views = {
        role: split_views(table, split, centring, linear.centre)
        for role, split in (("val", val), ("test", test))
    }
    labels = val.utterance_labels
    model, c, linear_val = fit_linear(
        x_train, y_train, views["val"], labels, classes, linear.scaling, linear.c_grid
    )
    weight = choose_weight(image["val"], linear_val, labels, classes)
    temperature = fit_temperature(mix(image["val"], linear_val[0][1], weight), labels)
    linear_test = score_views(model, views["test"], classes)
    chosen = {"C": c, "weight": weight, "temperature": temperature}
    return fold_result(name, fold, chosen, image["test"], linear_test, test.utterance_labels, classes)


def fold_result(
    name: str,
    fold: dict,
    chosen: dict,
    image: np.ndarray,
    linear: list[tuple],
    labels: np.ndarray,
    classes: list[str],
) -> dict:
    """A fold's fusion result: its ``chosen`` C, image weight and temperature, and the metrics of the
    image scores ``(U, K)``, the linear views ``(mode, scores (U, K), scored)`` and their fusion on its test
    utterances (``labels`` ``(U,)``), cold and, with views of several modes, in each (``modes``)."""
    per_mode = {
        key: metrics_by_mode(labels, parts, classes)
        for key, parts in (
            ("image", [(mode, image, kept) for mode, _, kept in linear]),
            ("linear", linear),
            ("fusion", mix_views(image, linear, chosen["weight"])),
        )
    }
    result = {"name": name, "test": fold["test"], "val": fold["val"], **chosen}
    result |= {key: per_mode[key]["cold"] for key in MODELS}
    if len(per_mode["linear"]) > 1:
        result["modes"] = {mode: {key: per_mode[key][mode] for key in MODELS} for mode in MODES[1:]}
    return result


def mix_views(image: np.ndarray, linear: list[tuple], weight: float) -> list[tuple]:
    """The fusion of the image scores ``(U, K)`` with each view's linear scores."""
    return [(mode, mix(image, scores, weight), kept) for mode, scores, kept in linear]


def mean_image_scores(runs: list, split) -> np.ndarray:
    """The mean over ``runs`` (a fold's repeats) of their utterance log-probabilities ``(U, K)`` of
    ``split``: a within-fold ensemble."""
    return np.mean([_image_scores(run, split) for run in runs], axis=0)


def _image_scores(run, split) -> np.ndarray:
    """A run's utterance log-probabilities of ``split``; a model normalised in the data pipeline scores
    each recording by itself (the cold mode: the fusion is what a served recording gets)."""
    model = model_from_checkpoint(run.checkpoint)
    segments = split.segments
    normaliser = SpeakerNormaliser.from_dict(run.checkpoint.get("speaker_norm"))
    if normaliser is not None:
        means, squares = recording_moments(segments, split.segments_per_utterance)
        view = mode_view(normaliser, means, squares, split.speakers, split.utterance_speakers, "cold")
        segments = view.normalise(segments, split.segments_per_utterance)
    with torch.no_grad():
        log_probs = segment_log_probs(model, segments)
    return utterance_scores(
        log_probs, split.segments_per_utterance, run.checkpoint.get("aggregate", "logprob")
    )
