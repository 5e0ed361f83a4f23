"""The late fusion's linear model: a class-balanced logistic regression on scaled openSMILE functionals
(``scaling``: standardised, or mapped through their training quantiles to normal scores), its ``C``
chosen on :data:`C_GRID` (or the grid of its :class:`LinearTraining`), and the views of a split it scores.

A fold's linear model trains on the functionals of the fold's *training* speakers and, with
``copy_kinds``, on those of their waveform-augmented copies of these kinds as well (files made with
``extract --augment … --functionals …``). With ``centre`` (:class:`LinearRecipe`, ``fuse --centre``) it
is trained on *speaker-centred* functionals (:class:`emovision.data.speaker_norm.FunctionalsCentre`),
each training utterance in all three modes (centred by itself, by 1 … 10 of its speaker's other
recordings, by all of them) and each copy in one drawn at random, so that one model serves a recording
alone, a speaker enrolled from a few recordings, and a whole speaker. A split is scored as *views*
``(mode, draw, x (U, D), scored (U,) or None)``: one cold view, or every mode's when centred (the
enrolled mode uses the same draws as the image models' test modes)."""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, replace

import numpy as np

from emovision.data.speaker_norm import ENROL_DRAWS, MAX_TRAIN_ENROL, FunctionalsCentre, enrolment
from emovision.data.store import open_info
from emovision.errors import EmovisionError
from emovision.evaluation.functionals_table import FunctionalsTable
from emovision.inference.fusion_model import DEFAULT_SCALING, FLOOR, SCALINGS
from emovision.training.dataset import matches
from emovision.training.metrics import score_utterances

C_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
QUANTILES = 1000


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


@dataclass(frozen=True)
class LinearTraining:
    """How a fusion's linear model is trained and its ``C`` chosen: the waveform ``copy_kinds`` whose
    functionals it trains on too (None: the kinds the image models trained on, where the functionals file
    holds them; see :meth:`with_copy_kinds`), ``centre`` (the centred model's recipe; None: plain
    functionals), ``scaling`` (:func:`functionals_scaler`) and ``c_grid``, the inverse regularisations it
    chooses among (increasing, checked; ties go to the smaller)."""

    copy_kinds: tuple[str, ...] | None = None
    centre: LinearRecipe | None = None
    scaling: str = DEFAULT_SCALING
    c_grid: tuple[float, ...] = C_GRID

    def __post_init__(self) -> None:
        check_c_grid(self.c_grid)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The settled copy kinds; refused before :meth:`with_copy_kinds` settles them."""
        if self.copy_kinds is None:
            raise EmovisionError("internal: the linear model's copy kinds are not settled (with_copy_kinds)")
        return self.copy_kinds

    def with_copy_kinds(self, table: FunctionalsTable, trained: tuple[str, ...]) -> LinearTraining:
        """This training with its copy kinds settled: those given, or of the image models' ``trained``
        kinds those that ``table`` holds functionals of; checked against ``table`` and ``centre``."""
        kinds = table.available(trained) if self.copy_kinds is None else self.copy_kinds
        table.check_kinds(kinds)
        check_centrable(table, self.centre)
        return replace(self, copy_kinds=kinds)

    def report_fields(self) -> dict:
        """What a fusion report (``fusion.json``) records of it."""
        out = {"copy_kinds": list(self.kinds), "scaling": self.scaling, "c_grid": list(self.c_grid)}
        return out | ({"centre": self.centre.to_dict()} if self.centre is not None else {})


def check_c_grid(c_grid: tuple[float, ...]) -> None:
    """Refuse an empty grid, a value that is not a positive finite number, or one out of order."""
    if not c_grid or not all(np.isfinite(c) and c > 0 for c in c_grid):
        raise EmovisionError(f"the C grid needs positive finite numbers, got {', '.join(map(str, c_grid))}")
    if list(c_grid) != sorted(set(c_grid)):
        raise EmovisionError(f"the C grid's values must increase, got {', '.join(map(str, c_grid))}")


DEFAULT_LINEAR = LinearTraining()


def check_centrable(table: FunctionalsTable, centre: LinearRecipe | None) -> None:
    """Refuse to centre (``centre`` given) the speaker-normalised functionals of ``table``."""
    if centre is not None and open_info(table.path).config.speaker_norm:
        raise EmovisionError(
            f"--centre centres unnormalised functionals, but {table.path} holds speaker-normalised ones "
            "(extract --speaker-norm): extract without it"
        )


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


def fit_linear(
    x_train: np.ndarray,
    y_train: np.ndarray,
    views: list[tuple],
    labels: np.ndarray,
    classes: list[str],
    scaling: str = DEFAULT_SCALING,
    c_grid: tuple[float, ...] = C_GRID,
) -> tuple[object, float, list[tuple]]:
    """The logistic regression (in a scaler pipeline) over ``c_grid`` with the best validation UA
    (averaged over the modes of ``views``: ``(mode, draw, x (U, D), scored (U,) or None)``; ties: the
    smaller ``C``), its ``C`` and its scores of the views, ``(mode, scores (U, K), scored)``."""
    best = None
    for c in c_grid:
        model = fit_linear_pipeline(c, x_train, y_train, scaling)
        scored = score_views(model, views, classes)
        ua = mode_mean_ua(labels, scored, classes)
        if best is None or ua > best[0]:
            best = (ua, c, model, scored)
    return best[2], best[1], best[3]


def fold_linear_data(
    table: FunctionalsTable, fold: dict, linear: LinearTraining
) -> tuple[np.ndarray, np.ndarray, FunctionalsCentre | None]:
    """The training rows ``(N, D)`` and labels of a fold's linear model, trained as ``linear`` says (its
    copy kinds settled), and its centring (None for a plain one): the same for ``fuse`` and for
    ``robustness --fusion``."""
    copy_kinds, centre = linear.kinds, linear.centre
    if centre is None:
        return (*table.training(fold["train"], copy_kinds), None)
    centring = FunctionalsCentre(table.training(fold["train"])[0].mean(axis=0), centre.weight)
    x, y = centred_training(table, fold["train"], copy_kinds, centring, centre.rng(fold["name"]))
    return x, y, centring


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


def split_views(
    table: FunctionalsTable, split, centring: FunctionalsCentre | None, centre: LinearRecipe | None
) -> list[tuple]:
    """The functionals of ``split``'s utterances as the linear model scores them: one cold view
    ``(mode, draw, x (U, D), None)``, or every mode's (:func:`centred_views`) when centred."""
    x = table.lookup(split.utterance_ids)
    if centring is None:
        return [("cold", 0, x, None)]
    return centred_views(x, split.utterance_speakers, split.speakers, centring, centre.enrol)


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


def score_views(model, views: list[tuple], classes: list[str]) -> list[tuple]:
    """The linear ``model``'s scores of views ``(mode, draw, x (U, D), scored)``: ``(mode, scores (U, K),
    scored)``."""
    return [(mode, linear_log_probs(model, x, len(classes)), kept) for mode, _, x, kept in views]


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
