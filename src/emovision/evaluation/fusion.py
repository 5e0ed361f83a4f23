"""Late fusion: a cross-validation's image models with a linear model on openSMILE functionals.

With ``centre`` (``fuse --centre``) the linear model is trained on *speaker-centred* functionals
(:class:`emovision.data.speaker_norm.FunctionalsCentre`), each training utterance in all three modes
(centred by itself, by 1 … 10 of its speaker's other recordings, by all of them) and each copy in
one drawn at random, so that one model serves a recording alone, a speaker enrolled from a few
recordings, and a whole speaker; ``C`` and the image weight are then chosen by the validation UA
averaged over the three modes, and the test speaker is scored in each (``modes`` of a fold and of the
report; the enrolled mode uses the same draws as the image models' test modes). The image side is
scored cold in every mode.

For every fold, a class-balanced logistic regression on scaled functionals (``scaling``:
standardised, or mapped through their training quantiles to normal scores) is trained on the
functionals of the fold's *training* speakers (``C`` chosen by UA on the validation speaker) and,
with ``copy_kinds``, on those of their waveform-augmented copies of these kinds as well (files
made with ``extract --augment … --functionals …``): by default the kinds the cv's image models
trained on, so that both sides of the fusion see the same noises and rooms. Validation and test
speakers are always scored on their clean recordings only.
Its utterance log-probabilities and the image model's (the mean over a fold's repeats, a
within-fold ensemble) are mixed as ``w·image + (1 − w)·linear``, with ``w`` in 0, 0.1 … 1 chosen
by UA on the validation speaker (ties: the ``w`` nearest 0.5). The test speaker is scored once,
with everything fixed. Folds without validation speakers (``cv --validation train``) choose ``C``,
``w`` and the temperature on the other folds' test speakers instead
(:mod:`emovision.evaluation.cross_fusion`; :mod:`emovision.evaluation.cv_fusion` runs either).
The cv folder gets ``fusion.json`` and ``fusion.md``: WA/UA per fold and pooled for the image model,
the linear model and the fusion, with paired differences; and ``fusion-model.npz``, the fusion to
deploy (:mod:`emovision.inference.fusion_model`): the linear model retrained on every speaker, with
the folds' median ``C``, weight and temperature (the fused validation scores' temperature, fitted
per fold). Functionals stored speaker-normalised
(``extract --speaker-norm``) are used as they are, and the deployed fusion records it: it is then
used only on a speaker's recordings (:meth:`emovision.inference.predict.Recognizer.adapt`). Image models
normalised in the data pipeline (``train --speaker-norm``) are scored in the cold mode, each
recording by itself, so that with unnormalised functionals the fusion is one a server can give.
"""

from __future__ import annotations

import json
import statistics
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from emovision.data.speaker_norm import (
    ENROL_DRAWS,
    MAX_TRAIN_ENROL,
    MODES,
    FunctionalsCentre,
    SpeakerNormaliser,
    enrolment,
    mode_label,
    mode_view,
    recording_moments,
)
from emovision.data.store import open_info, read_copy_functionals, read_functionals
from emovision.errors import EmovisionError
from emovision.files import atomic_write_bytes
from emovision.inference.fusion_model import DEFAULT_SCALING, FILE_NAME, FLOOR, SCALINGS, LinearFusion, mix
from emovision.tables import ResultTable, mean_std, paired_table
from emovision.training.calibration import VALIDATION_SPEAKERS, fit_temperature
from emovision.training.checkpoint import model_from_checkpoint
from emovision.training.dataset import matches, missing_kinds
from emovision.training.metrics import (
    fold_summary,
    paired_difference,
    score_utterances,
    segment_log_probs,
    utterance_scores,
)

C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
QUANTILES = 1000
WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))
MODELS = ("image", "linear", "fusion")


@dataclass
class FunctionalsTable:
    """The openSMILE functionals of a features file: ``utterances`` ``{utterance id: (functionals
    (D,), speaker, label)}`` and ``copies`` ``{speaker: (kinds, functionals (A, D), labels (A,))}``
    of its waveform-augmented copies (empty unless made with ``extract --augment --functionals``)."""

    path: Path
    utterances: dict[str, tuple[np.ndarray, str, int]]
    copies: dict[str, tuple[list[str], np.ndarray, np.ndarray]]

    @property
    def copy_kinds(self) -> tuple[str, ...]:
        """The kinds of copies with functionals (``noise:white``, ``reverb`` …), sorted."""
        return tuple(sorted({kind for kinds, _, _ in self.copies.values() for kind in kinds}))

    def lookup(self, ids: list[str]) -> np.ndarray:
        """Functionals ``(U, D)`` of the utterances ``ids``, in that order."""
        missing = [uid for uid in ids if uid not in self.utterances]
        if missing:
            raise EmovisionError(
                f"{self.path} has no functionals for utterance {missing[0]!r} ({len(missing)} missing)"
            )
        return np.stack([self.utterances[uid][0] for uid in ids]).astype(np.float64)

    def training(self, speakers, copy_kinds: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
        """Functionals ``(U + A, D)`` and labels of every utterance of ``speakers`` and of their
        copies of ``copy_kinds`` (``noise`` or ``noise:pink``, ``reverb`` …)."""
        speakers = set(speakers)
        ids = [uid for uid, (_, speaker, _) in self.utterances.items() if speaker in speakers]
        x, y = [self.lookup(ids)], [np.array([self.utterances[uid][2] for uid in ids], dtype=np.int64)]
        for speaker in sorted(speakers & set(self.copies)) if copy_kinds else ():
            kinds, values, labels = self.copies[speaker]
            rows = np.array([matches(kind, copy_kinds) for kind in kinds], dtype=bool)
            x.append(values[rows].astype(np.float64))
            y.append(labels[rows].astype(np.int64))
        return np.concatenate(x), np.concatenate(y)

    def available(self, copy_kinds: tuple[str, ...]) -> tuple[str, ...]:
        """Those of ``copy_kinds`` of which some copy has functionals (the default kinds of a fusion:
        those its image models trained on)."""
        missing = missing_kinds(copy_kinds, self.copy_kinds)
        return tuple(name for name in copy_kinds if name not in missing)

    def check_kinds(self, copy_kinds: tuple[str, ...]) -> None:
        """Refuse kinds of which no copy has functionals."""
        missing = missing_kinds(copy_kinds, self.copy_kinds)
        if missing:
            have = ", ".join(self.copy_kinds) or "none"
            raise EmovisionError(
                f"--augment {missing[0]}: {self.path} holds no functionals of such copies (it has: {have}); "
                f"extract with --augment {missing[0].partition(':')[0]} --functionals …"
            )


def check_centrable(table: FunctionalsTable, centre: LinearRecipe | None) -> None:
    """Refuse to centre (``centre`` given) the speaker-normalised functionals of ``table``."""
    if centre is not None and open_info(table.path).config.speaker_norm:
        raise EmovisionError(
            f"--centre centres unnormalised functionals, but {table.path} holds speaker-normalised ones "
            "(extract --speaker-norm): extract without it"
        )


def write_fused(
    folds: list[dict],
    classes: list[str],
    out: Path,
    table: FunctionalsTable,
    speakers: set[str],
    models: str,
    copy_kinds: tuple[str, ...] = (),
    mode: str = "any",
    centre: LinearRecipe | None = None,
    scaling: str = DEFAULT_SCALING,
) -> dict:
    """The fusion report of the fused ``folds`` and the fusion to deploy (trained on the
    functionals in ``table`` of every one of ``speakers`` and of their copies of ``copy_kinds``;
    ``models``: the :func:`~emovision.inference.runs.fingerprint` of the fold models it goes with), written
    to ``out``: ``fusion.json``, ``fusion.md`` and ``fusion-model.npz``; ``mode``: how the test
    speakers were scored (:func:`emovision.training.modes.runs_mode`; transductive when the functionals are
    speaker-normalised). Returns the report."""
    deployed = deploy_fusion(folds, table, speakers, classes, copy_kinds, centre, scaling)
    deployed.info["fingerprint"] = models
    deployed.save(out / FILE_NAME)
    report = fusion_report(folds, classes, out, table.path, copy_kinds) | {
        "fitted_on": folds[0].get("fitted_on", VALIDATION_SPEAKERS),
        "deployed": deployed.describe(),
        "mode": "cold" if centre is not None else mode,
        "scaling": scaling,
        **({"centre": centre.to_dict()} if centre is not None else {}),
    }
    return write_fusion(report, out)


def deploy_fusion(
    folds: list[dict],
    table: FunctionalsTable,
    speakers: set[str],
    classes: list[str],
    copy_kinds: tuple[str, ...] = (),
    centre: LinearRecipe | None = None,
    scaling: str = DEFAULT_SCALING,
) -> LinearFusion:
    """The fusion to deploy: the linear model trained on the functionals of every utterance of
    ``speakers`` (and of their copies of ``copy_kinds``; speaker-centred with ``centre``) with the
    folds' median ``C`` (the lower middle one, a value of :data:`C_GRID`), the folds' median image
    weight and median fused temperature."""
    x, y = table.training(speakers, copy_kinds)
    clean = sum(speaker in speakers for _, speaker, _ in table.utterances.values())
    copies = len(y) - clean
    centring = None
    if centre is not None:
        centring = FunctionalsCentre(table.training(speakers)[0].mean(axis=0), centre.weight)
        x, y = centred_training(table, speakers, copy_kinds, centring, centre.rng("deployed"))
    c = statistics.median_low(f["C"] for f in folds)
    pipeline = fit_linear_pipeline(c, x, y, scaling)
    info = open_info(table.path)
    return LinearFusion.from_pipeline(
        pipeline,
        feature_set=info.functionals,
        sample_rate=info.config.sample_rate,
        classes=list(classes),
        weight=round(float(statistics.median(f["weight"] for f in folds)), 2),
        temperature=float(statistics.median(f["temperature"] for f in folds)),
        centre=centring,
        info={
            "C": c,
            "speakers": len(speakers),
            "utterances": clean,
            "copies": copies,
            "folds": len(folds),
            "speaker_norm": bool(info.config.speaker_norm),
            "copy_kinds": list(copy_kinds),
        },
    )


def write_fusion(report: dict, out: Path) -> dict:
    """``fusion.json`` and ``fusion.md`` of ``report`` in ``out``; returns ``report``."""
    atomic_write_bytes(out / "fusion.json", json.dumps(report, indent=2).encode())
    atomic_write_bytes(out / "fusion.md", fusion_markdown(report).encode())
    return report


def fit_linear(
    x_train: np.ndarray,
    y_train: np.ndarray,
    views: list[tuple],
    labels: np.ndarray,
    classes: list[str],
    scaling: str = DEFAULT_SCALING,
) -> tuple[object, float, list[tuple]]:
    """The logistic regression (in a scaler pipeline) over :data:`C_GRID` with the best validation UA
    (averaged over the modes of ``views``: ``(mode, draw, x (U, D), scored (U,) or None)``), its ``C``
    and its scores of the views, ``(mode, scores (U, K), scored)``."""
    best = None
    for c in C_GRID:
        model = fit_linear_pipeline(c, x_train, y_train, scaling)
        scored = score_views(model, views, classes)
        ua = mode_mean_ua(labels, scored, classes)
        if best is None or ua > best[0]:
            best = (ua, c, model, scored)
    return best[2], best[1], best[3]


def functionals_scaler(scaling: str, rows: int):
    """An unfitted scaler of functionals: ``standard`` standardises each one; ``quantile`` maps it
    through its training quantiles (:data:`QUANTILES` levels, or one per training row when ``rows``,
    the number it is fitted on, is fewer) to a standard normal score, so a heavy tail or a recording
    far outside the training range (noise, another microphone) moves a score by at most about 5."""
    from sklearn.preprocessing import QuantileTransformer, StandardScaler

    if scaling not in SCALINGS:
        raise EmovisionError(f"unknown scaling {scaling!r}: {' or '.join(SCALINGS)}")
    if scaling == "quantile":
        return QuantileTransformer(
            n_quantiles=min(QUANTILES, rows), output_distribution="normal", random_state=0
        )
    return StandardScaler()


def fit_linear_pipeline(c: float, x: np.ndarray, y: np.ndarray, scaling: str = DEFAULT_SCALING):
    """A :func:`functionals_scaler` + class-balanced logistic regression of inverse regularisation
    ``c``, fitted on functionals ``x`` ``(U, D)`` and labels ``y`` ``(U,)``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(
        functionals_scaler(scaling, len(x)), LogisticRegression(C=c, class_weight="balanced", max_iter=3000)
    ).fit(x, y)


def linear_log_probs(model, x: np.ndarray, num_classes: int) -> np.ndarray:
    """``(U, K)`` log-probabilities; classes absent from training get log(1e-6)."""
    out = np.full((x.shape[0], num_classes), np.log(FLOOR))
    out[:, model.classes_] = np.log(np.clip(model.predict_proba(x), FLOOR, None))
    return out


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
    copy_kinds: tuple[str, ...] = (),
    centre: LinearRecipe | None = None,
    scaling: str = DEFAULT_SCALING,
) -> dict:
    """One fold's fusion: ``image`` holds the image model's utterance log-probabilities ``(U, K)``
    of the ``val`` and ``test`` splits (in their utterance order); the linear model is trained on
    the functionals in ``table`` of the fold's training speakers and their copies of ``copy_kinds``
    (speaker-centred with ``centre``, and then scored in every mode: ``modes`` of the result)."""
    x_train, y_train, centring = fold_linear_data(table, fold | {"name": name}, copy_kinds, centre)
    views = {
        role: split_views(table, split, centring, centre) for role, split in (("val", val), ("test", test))
    }
    labels = val.utterance_labels
    model, c, linear_val = fit_linear(x_train, y_train, views["val"], labels, classes, scaling)
    weight = choose_weight(image["val"], linear_val, labels, classes)
    temperature = fit_temperature(mix(image["val"], linear_val[0][1], weight), labels)
    linear_test = score_views(model, views["test"], classes)
    chosen = {"C": c, "weight": weight, "temperature": temperature}
    return fold_result(name, fold, chosen, image["test"], linear_test, test.utterance_labels, classes)


def split_views(
    table: FunctionalsTable, split, centring: FunctionalsCentre | None, centre: LinearRecipe | None
) -> list[tuple]:
    """The functionals of ``split``'s utterances as the linear model scores them: one cold view
    ``(mode, draw, x (U, D), None)``, or every mode's (:func:`centred_views`) when centred."""
    x = table.lookup(split.utterance_ids)
    if centring is None:
        return [("cold", 0, x, None)]
    return centred_views(x, split.utterance_speakers, split.speakers, centring, centre.enrol)


def score_views(model, views: list[tuple], classes: list[str]) -> list[tuple]:
    """The linear ``model``'s scores of views ``(mode, draw, x (U, D), scored)``: ``(mode, scores (U, K),
    scored)``."""
    return [(mode, linear_log_probs(model, x, len(classes)), kept) for mode, _, x, kept in views]


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


def metrics_by_mode(labels: np.ndarray, parts: list[tuple], classes: list[str]) -> dict[str, dict]:
    """Metrics per mode of views ``(mode, scores (U, K), scored (U,) or None)``: a mode's draws pooled."""
    out = {}
    for mode in dict.fromkeys(mode for mode, _, _ in parts):
        drawn = [
            (scores, np.ones(len(labels), bool) if kept is None else kept)
            for m, scores, kept in parts
            if m == mode
        ]
        out[mode] = score_utterances(
            np.concatenate([labels[kept] for _, kept in drawn]),
            np.concatenate([scores[kept] for scores, kept in drawn]),
            classes,
        )
    return out


def mode_mean_ua(labels: np.ndarray, parts: list[tuple], classes: list[str]) -> float:
    """The UA averaged over the modes of views ``(mode, scores, scored)``: what validation selects by."""
    return float(np.mean([m["ua"] for m in metrics_by_mode(labels, parts, classes).values()]))


@dataclass(frozen=True)
class LinearRecipe:
    """How a centred linear model is trained and scored: the prior's ``weight`` τ (recordings),
    ``enrol`` K of the enrolled mode, and the ``seed`` of the training draws."""

    weight: float = 3.0
    enrol: int = 5
    seed: int = 0

    def rng(self, name: str) -> np.random.Generator:
        """The draws of one fold (or of the deployed model), by the seed and the fold's name."""
        return np.random.default_rng([self.seed, zlib.crc32(name.encode())])

    def to_dict(self) -> dict:
        return asdict(self)


def centred_training(
    table: FunctionalsTable,
    speakers,
    copy_kinds: tuple[str, ...],
    centre: FunctionalsCentre,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Training rows of a centred linear model: every clean utterance of ``speakers`` three times,
    centred by itself (cold), by 1 … ``MAX_TRAIN_ENROL`` of its speaker's other clean recordings
    (enrolled) and by all of them (transductive), and every copy of ``copy_kinds`` once, in one of
    these modes drawn at random (enrolled and transductive from the speaker's clean recordings)."""
    rows, labels = [], []
    for speaker in sorted(set(speakers)):
        ids = [uid for uid, (_, owner, _) in table.utterances.items() if owner == speaker]
        clean = table.lookup(ids)
        y = np.array([table.utterances[uid][2] for uid in ids], dtype=np.int64)
        total = clean.sum(axis=0)
        for u in range(len(ids)):
            others = np.delete(np.arange(len(ids)), u)
            rows += [centre.cold(clean[u : u + 1]), _enrolled(clean, others, clean[u : u + 1], centre, rng)]
            rows.append(centre.centre(clean[u : u + 1], total, len(ids)))
            labels += [y[u]] * 3
        if copy_kinds and speaker in table.copies:
            kinds, values, copy_labels = table.copies[speaker]
            for kind, value, label in zip(kinds, values, copy_labels, strict=True):
                if not matches(kind, copy_kinds):
                    continue
                value = value[None].astype(np.float64)
                mode = int(rng.integers(3))
                everyone = np.arange(len(ids))
                rows.append(
                    centre.cold(value)
                    if mode == 0
                    else _enrolled(clean, everyone, value, centre, rng)
                    if mode == 1
                    else centre.centre(value, total, len(ids))
                )
                labels.append(int(label))
    return np.concatenate(rows), np.array(labels, dtype=np.int64)


def _enrolled(
    clean: np.ndarray,
    candidates: np.ndarray,
    value: np.ndarray,
    centre: FunctionalsCentre,
    rng: np.random.Generator,
) -> np.ndarray:
    """``value`` ``(1, D)`` centred by 1 … ``MAX_TRAIN_ENROL`` recordings drawn from ``clean[candidates]``
    (the value itself, cold, when there are none)."""
    if candidates.size == 0:
        return centre.cold(value)
    size = int(rng.integers(1, min(MAX_TRAIN_ENROL, candidates.size) + 1))
    known = clean[rng.choice(candidates, size=size, replace=False)]
    return centre.centre(value, known.sum(axis=0), size)


def centred_views(
    x: np.ndarray,
    utterance_speakers: np.ndarray,
    speakers: list[str],
    centre: FunctionalsCentre,
    enrol: int,
    reference: np.ndarray | None = None,
) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
    """Functionals ``x`` ``(U, D)`` of a split (utterance ``u`` by ``speakers[utterance_speakers[u]]``) in
    every mode: ``(mode, draw, centred (U, D), scored (U,))``: cold, the enrolled mode's
    ``ENROL_DRAWS`` draws of ``enrol`` recordings per speaker (the same draws as the image models' test
    modes; the enrolment recordings not scored) and transductive. The speakers' statistics come from
    ``reference`` ``(U, D)`` (the clean recordings of corrupted ``x``; default ``x``)."""
    reference = x if reference is None else reference
    everyone = np.ones(len(x), dtype=bool)
    views = [("cold", 0, centre.cold(x), everyone)]
    groups = [(name, np.flatnonzero(utterance_speakers == index)) for index, name in enumerate(speakers)]
    for draw in range(ENROL_DRAWS):
        centred, scored = np.empty_like(x), everyone.copy()
        for name, rows in groups:
            known = rows[enrolment(name, rows.size, enrol, draw)]
            scored[known] = False
            centred[rows] = centre.centre(x[rows], reference[known].sum(axis=0), known.size)
        views.append(("enrolled", draw, centred, scored))
    centred = np.empty_like(x)
    for _, rows in groups:
        centred[rows] = centre.centre(x[rows], reference[rows].sum(axis=0), rows.size)
    views.append(("transductive", 0, centred, everyone))
    return views


def fold_linear_data(
    table: FunctionalsTable, fold: dict, copy_kinds: tuple[str, ...], centre: LinearRecipe | None
) -> tuple[np.ndarray, np.ndarray, FunctionalsCentre | None]:
    """The training rows ``(N, D)`` and labels of a fold's linear model, and its centring (None for a
    plain one): the same for ``fuse`` and for ``robustness --fusion``."""
    if centre is None:
        return (*table.training(fold["train"], copy_kinds), None)
    centring = FunctionalsCentre(table.training(fold["train"])[0].mean(axis=0), centre.weight)
    x, y = centred_training(table, fold["train"], copy_kinds, centring, centre.rng(fold["name"]))
    return x, y, centring


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


def functionals_table(path: Path, classes: list[str]) -> FunctionalsTable:
    """The functionals of the features file at ``path`` (and of its copies), for ``classes``."""
    info = open_info(path)
    if not info.functionals:
        raise EmovisionError(
            f"{path} holds no openSMILE functionals: extract with --functionals ComParE_2016 "
            "(or pass such a file with --functionals)"
        )
    if info.classes != classes:
        raise EmovisionError(f"{path} has the classes {info.classes}, the cv run {classes}")
    utterances = {}
    for speaker, (ids, values, labels) in read_functionals(path).items():
        utterances.update({uid: (v, speaker, int(y)) for uid, v, y in zip(ids, values, labels, strict=True)})
    return FunctionalsTable(path, utterances, read_copy_functionals(path))


def fusion_report(
    folds: list[dict], classes: list[str], run_dir: Path, table_path: Path, copy_kinds: tuple[str, ...] = ()
) -> dict:
    summary = {key: fold_summary([f[key] for f in folds], classes) for key in MODELS}
    modes = {
        mode: {key: fold_summary([f["modes"][mode][key] for f in folds], classes) for key in MODELS}
        for mode in MODES[1:]
        if folds and all("modes" in f for f in folds)
    }
    paired = {
        f"{a} - {b}": paired_difference(np.array([f[a]["ua"] - f[b]["ua"] for f in folds]))
        for a, b in (("fusion", "image"), ("fusion", "linear"), ("image", "linear"))
    }
    return {
        "cv": str(run_dir),
        "functionals_file": str(table_path),
        "copy_kinds": list(copy_kinds),
        "classes": classes,
        "folds": folds,
        "summary": summary,
        "paired_ua": paired,
        **({"modes": modes} if modes else {}),
    }


def fusion_fold_table(report: dict) -> ResultTable:
    """Per fold: the image, linear and fused UA, and the weight and C chosen for it."""
    table = ResultTable(["fold", "test", "image UA", "linear UA", "fusion UA", "weight", "C"], labels=2)
    for f in report["folds"]:
        table.add(
            f["name"], "+".join(f["test"]), f"{f['image']['ua']:.3f}", f"{f['linear']['ua']:.3f}",
            f"{f['fusion']['ua']:.3f}", f"{f['weight']:.1f}", f"{f['C']:g}",
        )  # fmt: skip
    return table


def fusion_model_table(report: dict) -> ResultTable:
    """The image model, the linear model and their fusion over the folds."""
    table = ResultTable(
        ["model", "WA", "UA", "pooled WA", "pooled UA"],
        title="late fusion with openSMILE functionals (test speakers)",
    )
    for key, s in report["summary"].items():
        table.add(key, mean_std(s, "wa"), mean_std(s), f"{s['pooled']['wa']:.3f}", f"{s['pooled']['ua']:.3f}")
    return table


def fusion_modes_table(report: dict) -> ResultTable | None:
    """A centred fusion's pooled UA per model in every mode (cold, enrolled-K, transductive), or None."""
    if "modes" not in report:
        return None
    k = report.get("centre", {}).get("enrol", 5)
    names = ["cold", *(mode_label(mode, k) for mode in report["modes"])]
    table = ResultTable(
        ["model", *(f"{name} UA" for name in names), *(f"{name} pooled UA" for name in names)],
        title="late fusion in every mode (the linear model on speaker-centred functionals)",
    )
    for key in MODELS:
        rows = [report["summary"][key], *(report["modes"][mode][key] for mode in report["modes"])]
        table.add(key, *(mean_std(r) for r in rows), *(f"{r['pooled']['ua']:.3f}" for r in rows))
    return table


def fusion_markdown(report: dict) -> str:
    """The fusion report as Markdown: per-fold UA, summary rows, paired ΔUA."""
    lines = [
        f"# Late fusion: {report['cv']}",
        "",
        f"Functionals: `{report['functionals_file']}`{_copies_note(report.get('copy_kinds'))}; folds' image "
        f"weights, C and temperatures chosen on {report.get('fitted_on', VALIDATION_SPEAKERS)}.  ",
        f"Mode: {report.get('mode', 'any')} (cold: each test recording scored by itself, as a server "
        "gives it; transductive: each test speaker normalised by all of its recordings).",
        "",
        *fusion_fold_table(report).markdown(),
        "",
        *fusion_model_table(report).markdown(),
        "",
        *paired_table(list(report["paired_ua"].items())).markdown(),
    ]
    modes = fusion_modes_table(report)
    if modes is not None:
        centre = report["centre"]
        lines += [
            "",
            f"The linear model trained on speaker-centred functionals (prior weight {centre['weight']:g} "
            f"recordings, draw seed {centre['seed']}): each test recording centred by itself (cold), by "
            f"{centre['enrol']} of the speaker's other recordings ({ENROL_DRAWS} draws) or by all of them; the "
            "image models are scored cold in every mode.",
            "",
            *modes.markdown(),
        ]
    deployed = report.get("deployed")
    if deployed:
        lines += [
            "",
            f"To deploy: `{FILE_NAME}`, the linear model on {deployed['functionals']} retrained on all "
            f"{deployed['utterances']} utterances of the {deployed['speakers']} speakers"
            f"{_deployed_copies(deployed)} (C {deployed['C']:g}), "
            f"image weight {deployed['weight']:g}, temperature {deployed['temperature']:.2f} (medians over the "
            "folds); predict and serve use it with the fold ensemble under --fusion on.",
        ]
    return "\n".join(lines) + "\n"


def _copies_note(kinds: list[str] | None) -> str:
    if not kinds:
        return ""
    return f", the linear model also trained on the training speakers' {', '.join(kinds)} copies"


def _deployed_copies(deployed: dict) -> str:
    if not deployed.get("copies"):
        return ""
    return f" and their {deployed['copies']} {', '.join(deployed['copy_kinds'])} copies"
