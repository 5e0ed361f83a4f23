"""emovision: speech emotion recognition with ImageNet image classifiers on spectrograms."""

__version__ = "0.1.0"
__all__ = ["Prediction", "Recognizer", "__version__"]

_LAZY = {"Recognizer": "emovision.inference.predict", "Prediction": "emovision.inference.results"}


def __getattr__(name: str):
    """``Recognizer`` and ``Prediction``, imported on first use (importing torch only when needed)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'emovision' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
