"""openSMILE functionals: one fixed-length vector per utterance, for the late-fusion linear model.

``emovision extract … --functionals ComParE_2016`` (6373 values) or ``eGeMAPSv02`` (88) stores
them beside the spectrograms; ``emovision fuse`` (or ``cv --fusion``) trains a linear model on
them. openSMILE is an optional extra: ``pip install 'emovision[opensmile]'``.
"""

from __future__ import annotations

import threading
from types import ModuleType

import numpy as np

from emovision.errors import EmovisionError
from emovision.system import require

FUNCTIONAL_SETS = ("ComParE_2016", "eGeMAPSv02")


def require_opensmile() -> ModuleType:
    """The ``opensmile`` module, or an error that says how to install it."""
    return require("opensmile", "opensmile", "openSMILE functionals")


def check_set(name: str) -> str:
    """``name`` when it is a known functional set and openSMILE is installed."""
    if name not in FUNCTIONAL_SETS:
        raise EmovisionError(
            f"--functionals: unknown set {name!r}: choose one of {', '.join(FUNCTIONAL_SETS)}"
        )
    require_opensmile()
    return name


class Functionals:
    """Computes the functionals of one feature set (one openSMILE instance, reused; calls from
    several threads take turns)."""

    def __init__(self, feature_set: str) -> None:
        opensmile = require_opensmile()
        self.feature_set = feature_set
        self._smile = opensmile.Smile(
            feature_set=getattr(opensmile.FeatureSet, feature_set),
            feature_level=opensmile.FeatureLevel.Functionals,
        )
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return list(self._smile.feature_names)

    def __call__(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        """``(D,)`` float32 functionals of mono ``samples`` at ``sample_rate`` Hz (NaN → 0)."""
        with self._lock:
            values = self._smile.process_signal(samples, sample_rate).to_numpy()[0]
        return np.nan_to_num(values.astype(np.float32))
