"""A cv folder's late fusion as a model to deploy: ``fusion-model.npz``.

``emovision fuse CV_DIR`` (and ``cv --fusion``) scores the fusion fold by fold and then writes
this file: the linear model on openSMILE functionals retrained on *every* speaker of the cv (its
``C`` the median of the folds' choices), the image weight ``w`` (median of the folds' weights)
and a temperature (median of the folds', fitted on each validation speaker's fused scores, or, for
``cv --validation train``, on the other folds' test speakers').
:class:`~emovision.inference.predict.Recognizer` loads it beside the fold ensemble, so ``predict``,
``serve`` and the Python API give the fused utterance probabilities
``softmax((w·image + (1 − w)·linear) / T)``, where ``image`` is the fold ensemble's utterance
log-probabilities and ``linear`` the linear model's on the recording's functionals. A linear model
trained on speaker-centred functionals (``fuse --centre``) carries its centring
(:class:`~emovision.data.speaker_norm.FunctionalsCentre`: the training recordings' mean and its
weight): a recording is centred by itself when nothing is known of the speaker, and by the speaker's
enrolled recordings when there are some.

Plain arrays in an ``.npz`` (read with ``allow_pickle=False``): nothing in the file can run code.
Like the fold ensemble it is for deployment only: it has seen every speaker, so it cannot be
scored on the cv's folds (``fusion.json`` holds the honest per-fold figures). The weight and
temperature were validated per fold with that fold's model and are applied to the mean of all
fold models (smoother scores): close to, not exactly, what was scored. ``info["fingerprint"]``
(:func:`~emovision.inference.runs.fingerprint`) names the fold runs it was fitted with.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from emovision.data.speaker_norm import FunctionalsCentre
from emovision.errors import CheckpointError
from emovision.files import atomic_write_bytes

if TYPE_CHECKING:
    from emovision.data.functionals import Functionals

FILE_NAME = "fusion-model.npz"
FORMAT = "emovision-fusion"
FORMAT_VERSION = 3  # 2: the optional centring (centre_prior, centre_weight); 3: quantile scaling
FLOOR = 1e-6
_ARRAYS = ("coef", "intercept", "columns")
SCALING_ARRAYS = {"standard": ("mean", "scale"), "quantile": ("quantiles", "references")}
SCALINGS = tuple(SCALING_ARRAYS)
DEFAULT_SCALING = "standard"
BOUNDS = 1e-7  # quantile scaling: the uniform scores kept away from 0 and 1, as scikit-learn does


def mix(image: np.ndarray, linear: np.ndarray, weight: float) -> np.ndarray:
    """The late fusion of utterance log-probabilities ``(U, K)``: ``weight·image + (1 − weight)·linear``."""
    return weight * image + (1 - weight) * linear


def quantile_normal(x: np.ndarray, quantiles: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Functionals ``(U, D)`` mapped through each column's training quantiles ``(Q, D)`` (ascending, at
    the levels ``references`` ``(Q,)`` in [0, 1]) to standard normal scores, as scikit-learn's
    ``QuantileTransformer(output_distribution="normal")`` maps them: interpolated from the last
    quantile at or below and from the first at or above, averaged (ties), values at or beyond the
    extremes to ±5.2. One recording at a time, all columns at once."""
    from scipy.special import ndtri

    x = np.asarray(x, dtype=np.float64)
    columns = np.arange(quantiles.shape[1])
    last = quantiles.shape[0] - 1
    out = np.empty_like(x)
    for u, row in enumerate(x):
        up = np.clip((quantiles <= row).sum(axis=0) - 1, 0, last - 1)  # q[up] <= x < q[up + 1]
        down = np.clip((quantiles < row).sum(axis=0), 1, last)  # q[down - 1] < x <= q[down]
        out[u] = 0.5 * (
            _between(row, quantiles, references, up, columns)
            + _between(row, quantiles, references, down - 1, columns)
        )
        out[u, row + BOUNDS > quantiles[-1]] = 1.0
        out[u, row - BOUNDS < quantiles[0]] = 0.0
    return np.clip(ndtri(out), ndtri(BOUNDS - np.spacing(1)), ndtri(1 - (BOUNDS - np.spacing(1))))


def _between(
    row: np.ndarray, quantiles: np.ndarray, references: np.ndarray, low: np.ndarray, columns
) -> np.ndarray:
    """The levels of ``row`` ``(D,)`` interpolated between the quantiles ``low`` and ``low + 1`` of
    each column, held to the levels of those two (a tie of the two quantiles gives the upper)."""
    q0, q1 = quantiles[low, columns], quantiles[low + 1, columns]
    r0, r1 = references[low], references[low + 1]
    gap = q1 - q0
    with np.errstate(divide="ignore", invalid="ignore"):
        level = np.where(gap > 0, r0 + (row - q0) * (r1 - r0) / gap, r1)
    return np.clip(level, r0, r1)


@dataclass
class LinearFusion:
    """The linear model on functionals (scaled by ``scaling``: ``standard``, ``(x − mean) / scale``
    with ``mean``/``scale`` ``(D,)``, or ``quantile``, :func:`quantile_normal` with ``quantiles``
    ``(Q, D)`` at ``references`` ``(Q,)``; then multinomial logistic regression ``coef`` ``(k, D)``,
    ``intercept`` ``(k,)`` over the class indices ``columns`` ``(k,)``), with the image weight and
    the fused scores' temperature."""

    feature_set: str
    sample_rate: int
    classes: list[str]
    weight: float
    temperature: float | None
    coef: np.ndarray
    intercept: np.ndarray
    columns: np.ndarray
    info: dict
    centre: FunctionalsCentre | None = None
    scaling: str = "standard"
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    quantiles: np.ndarray | None = None
    references: np.ndarray | None = None

    @classmethod
    def from_pipeline(cls, pipeline, **fields) -> LinearFusion:
        """From a fitted scikit-learn pipeline: a ``StandardScaler`` or a normal-output
        ``QuantileTransformer``, then a ``LogisticRegression``."""
        scaler, logistic = pipeline[0], pipeline[-1]
        if hasattr(scaler, "quantiles_"):
            scaling = {
                "scaling": "quantile",
                "quantiles": scaler.quantiles_.astype(np.float64),
                "references": scaler.references_.astype(np.float64),
            }
        else:
            scaling = {"mean": scaler.mean_.astype(np.float64), "scale": scaler.scale_.astype(np.float64)}
        return cls(
            coef=logistic.coef_.astype(np.float64),
            intercept=logistic.intercept_.astype(np.float64),
            columns=np.asarray(logistic.classes_, dtype=np.int64),
            **scaling,
            **fields,
        )

    @property
    def dimensions(self) -> int:
        return int(self.coef.shape[1])

    def scaled(self, x: np.ndarray) -> np.ndarray:
        """Functionals ``(U, D)`` scaled as the logistic regression was trained on them."""
        if self.scaling == "quantile":
            return quantile_normal(x, self.quantiles, self.references)
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.scale

    def fused_name(self, image_model: str) -> str:
        """The name of ``image_model`` fused with this linear model."""
        return (
            f"{image_model} + linear model on {self.feature_set} functionals (image weight {self.weight:g})"
        )

    def extractor(self) -> Functionals:
        """The openSMILE functionals this model was fitted on, as a callable ``(samples, rate) → (D,)``
        (needs the ``opensmile`` extra); :class:`CheckpointError` when the installed openSMILE computes
        another number of them."""
        from emovision.data.functionals import Functionals

        functionals = Functionals(self.feature_set)
        if len(functionals.names) != self.dimensions:
            raise CheckpointError(
                f"the fused model has {self.dimensions} {self.feature_set} functionals, the "
                f"installed openSMILE computes {len(functionals.names)}: refit it with emovision fuse"
            )
        return functionals

    def linear_log_probs(self, x: np.ndarray) -> np.ndarray:
        """``(U, K)`` log-probabilities of functionals ``(U, D)``, floored at log(1e-6) (classes
        absent from training get the floor), as the fold-wise fusion scores them."""
        z = self.scaled(x) @ self.coef.T + self.intercept
        if z.shape[1] == 1:
            z = np.concatenate([np.zeros_like(z), z], axis=1)
        z -= z.max(axis=1, keepdims=True)
        probabilities = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        out = np.full((z.shape[0], len(self.classes)), np.log(FLOOR))
        out[:, self.columns] = np.log(np.clip(probabilities, FLOOR, None))
        return out

    def fuse(self, image: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Fused utterance log-scores ``(U, K)``, renormalised, from the image model's utterance
        log-probabilities ``(U, K)`` and the functionals ``(U, D)`` (no temperature applied)."""
        mixed = mix(np.asarray(image, dtype=np.float64), self.linear_log_probs(x), self.weight)
        return mixed - np.logaddexp.reduce(mixed, axis=1, keepdims=True)

    def describe(self) -> dict:
        """JSON-ready summary (no arrays)."""
        return {
            "functionals": self.feature_set,
            "dimensions": self.dimensions,
            "weight": self.weight,
            "temperature": self.temperature,
            "scaling": self.scaling,
            **({"centre_weight": self.centre.weight} if self.centre is not None else {}),
            **self.info,
        }

    def save(self, path: str | Path) -> Path:
        """Write atomically to ``path``."""
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "feature_set": self.feature_set,
            "sample_rate": self.sample_rate,
            "classes": self.classes,
            "weight": self.weight,
            "temperature": self.temperature,
            "scaling": self.scaling,
            "info": self.info,
        }
        arrays = {name: getattr(self, name) for name in _ARRAYS + SCALING_ARRAYS[self.scaling]}
        if self.centre is not None:
            meta["centre_weight"] = self.centre.weight
            arrays["centre_prior"] = np.asarray(self.centre.prior, dtype=np.float64)
        buffer = io.BytesIO()
        np.savez(buffer, meta=np.array(json.dumps(meta)), **arrays)
        return atomic_write_bytes(Path(path), buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> LinearFusion:
        """Read a file written by :meth:`save`; a damaged or foreign file is a :class:`CheckpointError`."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                scaling = meta.get("scaling", "standard")
                arrays = {name: data[name] for name in _ARRAYS + SCALING_ARRAYS.get(scaling, ())}
                prior = data["centre_prior"] if "centre_weight" in meta else None
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path} is not a readable fused model ({exc})") from None
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"{path} is not an emovision fused model")
        if int(meta.get("format_version", 0)) > FORMAT_VERSION or scaling not in SCALING_ARRAYS:
            raise CheckpointError(f"{path} was written by a newer emovision")
        fusion = cls(
            feature_set=meta["feature_set"],
            sample_rate=int(meta["sample_rate"]),
            classes=list(meta["classes"]),
            weight=float(meta["weight"]),
            temperature=meta["temperature"],
            info=dict(meta.get("info", {})),
            centre=None if prior is None else FunctionalsCentre(prior, float(meta["centre_weight"])),
            scaling=scaling,
            **arrays,
        )
        k, d = fusion.coef.shape
        columns = fusion.columns
        if (
            not _scaling_fits(fusion, d)
            or fusion.intercept.shape != (k,)
            or (prior is not None and prior.shape != (d,))
            or columns.shape != ((2,) if k == 1 else (k,))
            or columns.min(initial=0) < 0
            or columns.max(initial=0) >= len(fusion.classes)
        ):
            raise CheckpointError(f"{path} holds arrays of inconsistent shapes")
        return fusion


def _scaling_fits(fusion: LinearFusion, dimensions: int) -> bool:
    """Whether the scaling arrays of ``fusion`` have the shapes of ``dimensions`` functionals."""
    if fusion.scaling == "quantile":
        q = fusion.references.shape
        return len(q) == 1 and q[0] >= 2 and fusion.quantiles.shape == (q[0], dimensions)
    return fusion.mean.shape == (dimensions,) and fusion.scale.shape == (dimensions,)
