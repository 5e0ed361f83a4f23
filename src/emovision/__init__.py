"""emovision: speech emotion recognition with ImageNet image classifiers on spectrograms."""

__version__ = "0.1.0"

_LAZY = {"Recognizer": "emovision.predict", "Prediction": "emovision.results"}


def __getattr__(name: str):
    """``Recognizer`` and ``Prediction``, imported on first use (importing torch only when needed)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'emovision' has no attribute {name!r}")
