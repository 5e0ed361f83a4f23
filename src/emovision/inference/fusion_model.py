"""A cv folder's late fusion as a model to deploy: ``fusion-model.npz``.

``emovision fuse CV_DIR`` (and ``cv --fusion``) scores the fusion fold by fold and then writes
this file: the linear model on openSMILE functionals retrained on *every* speaker of the cv (its
``C`` the median of the folds' choices), the image weight ``w`` (median of the folds' weights)
and a temperature (median of the folds', fitted on each validation speaker's fused scores).
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
FORMAT_VERSION = 2  # 2: the optional centring (centre_prior, centre_weight)
FLOOR = 1e-6
_ARRAYS = ("mean", "scale", "coef", "intercept", "columns")


def mix(image: np.ndarray, linear: np.ndarray, weight: float) -> np.ndarray:
    """The late fusion of utterance log-probabilities ``(U, K)``: ``weight·image + (1 − weight)·linear``."""
    return weight * image + (1 - weight) * linear


@dataclass
class LinearFusion:
    """The linear model on functionals (standardise with ``mean``/``scale`` ``(D,)``, then
    multinomial logistic regression ``coef`` ``(k, D)``, ``intercept`` ``(k,)`` over the class
    indices ``columns`` ``(k,)``), with the image weight and the fused scores' temperature."""

    feature_set: str
    sample_rate: int
    classes: list[str]
    weight: float
    temperature: float | None
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    columns: np.ndarray
    info: dict
    centre: FunctionalsCentre | None = None

    @classmethod
    def from_pipeline(cls, pipeline, **fields) -> LinearFusion:
        """From a fitted scikit-learn ``StandardScaler`` + ``LogisticRegression`` pipeline."""
        scaler, logistic = pipeline[0], pipeline[-1]
        return cls(
            mean=scaler.mean_.astype(np.float64),
            scale=scaler.scale_.astype(np.float64),
            coef=logistic.coef_.astype(np.float64),
            intercept=logistic.intercept_.astype(np.float64),
            columns=np.asarray(logistic.classes_, dtype=np.int64),
            **fields,
        )

    @property
    def dimensions(self) -> int:
        return int(self.mean.shape[0])

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
        z = ((np.asarray(x, dtype=np.float64) - self.mean) / self.scale) @ self.coef.T + self.intercept
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
            "info": self.info,
        }
        arrays = {name: getattr(self, name) for name in _ARRAYS}
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
                arrays = {name: data[name] for name in _ARRAYS}
                prior = data["centre_prior"] if "centre_weight" in meta else None
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path} is not a readable fused model ({exc})") from None
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"{path} is not an emovision fused model")
        if int(meta.get("format_version", 0)) > FORMAT_VERSION:
            raise CheckpointError(f"{path} was written by a newer emovision")
        fusion = cls(
            feature_set=meta["feature_set"],
            sample_rate=int(meta["sample_rate"]),
            classes=list(meta["classes"]),
            weight=float(meta["weight"]),
            temperature=meta["temperature"],
            info=dict(meta.get("info", {})),
            centre=None if prior is None else FunctionalsCentre(prior, float(meta["centre_weight"])),
            **arrays,
        )
        k, d = fusion.coef.shape
        columns = fusion.columns
        if (
            fusion.scale.shape != (d,)
            or fusion.mean.shape != (d,)
            or fusion.intercept.shape != (k,)
            or (prior is not None and prior.shape != (d,))
            or columns.shape != ((2,) if k == 1 else (k,))
            or columns.min(initial=0) < 0
            or columns.max(initial=0) >= len(fusion.classes)
        ):
            raise CheckpointError(f"{path} holds arrays of inconsistent shapes")
        return fusion
