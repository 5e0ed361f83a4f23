"""Model checkpoints: everything needed to use a trained model, loadable with ``weights_only=True``.

A checkpoint (:func:`build_checkpoint`; a fold's ``best.pth``) is a dict of plain values and tensors:

``format``, ``version``
    :data:`FORMAT` and the :data:`VERSION` of the layout (a newer one is refused);
``model``
    what builds the network: ``name``, ``num_classes``, ``channels``, ``height``, ``frames`` (the
    segments' ``(C, F, T)``), ``input_norm``, ``resize`` and ``head`` (``gap`` when absent);
``classes``, ``corpus``, ``selection``
    the class names in output order, the corpus and the class selection of the features;
``feature_config``
    the features' configuration (``None`` when trained on a legacy pickle);
``speaker_norm``
    the pipeline's speaker normaliser (``None`` without one);
``aggregate``, ``temperature``
    the segment-to-utterance rule and the calibration temperature (``None`` without a validation
    speaker, and before the fold finishes);
``state_dict``
    the weights, input normaliser statistics included, on the CPU;
``metrics``
    the fold's metrics (``metrics.json``); while training, ``{"val", "epoch"}`` of the best epoch so far;
``train_config``, ``fold``, ``features_file``, ``versions``
    the training options, the fold's speakers, the features file and the software versions.

An *ensemble* payload (a cv folder used as one model, see
:func:`emovision.inference.runs.load_model_payload`) has the same keys but ``state_dict``, and ``members``:
the list of its models' checkpoints. The state a run resumes from (``last.pth``) is described in
:mod:`emovision.training.resume`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from emovision.errors import CheckpointError
from emovision.files import atomic_write
from emovision.system import software_versions
from emovision.training.dataset import FeatureSource
from emovision.training.models import EnsembleModel, SERModel, build_ser_model
from emovision.training.options import TrainConfig

FORMAT = "emovision-checkpoint"
VERSION = 1


def build_checkpoint(
    config: TrainConfig,
    classes: list[str],
    source: FeatureSource,
    shape: tuple[int, int, int],
    state_dict: dict[str, torch.Tensor],
    metrics: dict,
    fold: dict,
    speaker_norm: dict | None,
) -> dict:
    """The checkpoint of a model trained with ``config`` on ``source``'s segments of ``shape``
    ``(C, F, T)``: every key the module docstring lists, the tensors copied to the CPU."""
    channels, height, frames = shape
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": {
            "name": config.model,
            "num_classes": len(classes),
            "channels": channels,
            "height": height,
            "frames": frames,
            "input_norm": config.input_norm,
            "resize": config.resize,
            "head": config.head,
        },
        "classes": list(classes),
        "corpus": source.corpus,
        "selection": source.selection,
        "feature_config": source.config.to_dict() if source.config else None,
        "speaker_norm": speaker_norm,
        "aggregate": config.aggregate,
        "temperature": (metrics.get("calibration") or {}).get("temperature"),
        "state_dict": {key: value.detach().cpu().clone() for key, value in state_dict.items()},
        "metrics": metrics,
        "train_config": config.to_dict(),
        "fold": fold,
        "features_file": str(source.path),
        "versions": software_versions(),
    }


def save_checkpoint(payload: dict, path: str | Path) -> Path:
    """``torch.save`` written atomically (see :func:`emovision.files.atomic_write`): never a half-written checkpoint."""
    return atomic_write(path, lambda temp: torch.save(payload, temp))


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint read with ``weights_only=True``; :class:`CheckpointError` when it is not one."""
    payload = load_weights_only(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an emovision checkpoint (made by emovision train)")
    if int(payload.get("version", 0)) > VERSION:
        raise CheckpointError(
            f"{path} was written by a newer emovision (checkpoint version {payload['version']})"
        )
    return payload


def load_weights_only(path: str | Path) -> object:
    """Anything saved with ``torch.save`` that loads without running code, else :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path} cannot be loaded safely (weights_only=True): {type(exc).__name__}: {str(exc)[:200]}"
        ) from None


def checkpoint_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of the checkpoint at ``path``, read with ``weights_only=True``."""
    return load_weights_only(path)["state_dict"]


def model_from_checkpoint(payload: dict) -> SERModel | EnsembleModel:
    """The trained model of a checkpoint (or of an ensemble payload), in eval mode on the CPU."""
    if "members" in payload:
        return EnsembleModel([model_from_checkpoint(member) for member in payload["members"]]).eval()
    spec = payload["model"]
    model = build_ser_model(
        spec["name"],
        spec["num_classes"],
        spec["channels"],
        spec["height"],
        input_norm=spec["input_norm"],
        resize=spec["resize"],
        head=spec.get("head", "gap"),
    )
    model.load_state_dict(payload["state_dict"])
    return model.eval()
