"""How a Recognizer is loaded: the model at a path (checkpoint, ONNX file, cv or ensemble folder) as its
backends, a cv folder's late fusion checked against the fold models beside it, and the calibration
temperature."""

from __future__ import annotations

import json
from pathlib import Path

from emovision.data.features import FeatureConfig
from emovision.data.speaker_norm import SpeakerNormaliser
from emovision.errors import CheckpointError, EmovisionError
from emovision.inference.backends import Member, OnnxBackend, TorchBackend
from emovision.inference.fusion_model import FILE_NAME as FUSION_FILE
from emovision.inference.fusion_model import LinearFusion


def fusion_of(path: Path, mode: str) -> LinearFusion | None:
    """The fused model of the cv folder ``path`` under ``mode`` (see :meth:`Recognizer.load`)."""
    file = path / FUSION_FILE if path.is_dir() else None
    if mode == "off" or file is None or not file.is_file():
        if mode == "on" and path.exists():
            raise EmovisionError(
                f"{path} has no fused model ({FUSION_FILE}): run emovision fuse on a cv folder, or "
                "emovision ensemble … --functionals FILE for an ensemble folder; or use --fusion off"
            )
        return None
    from emovision.data.functionals import require_opensmile

    try:
        require_opensmile()
    except EmovisionError as exc:
        raise EmovisionError(f"{path} fuses openSMILE functionals: {exc} (or use --fusion off)") from None
    return LinearFusion.load(file)


def check_fusion(
    fused: LinearFusion, classes: list[str], config: FeatureConfig | None, path: Path, folders: list[Path]
) -> None:
    """Refuse a fused model that does not belong to the fold models beside it (in ``folders``)."""
    from emovision.inference.runs import fingerprint

    if fused.info.get("fingerprint") != fingerprint(folders):
        raise CheckpointError(
            f"{path / FUSION_FILE} was fitted to other fold models than the ones there now (retrained or "
            "replaced since): fuse again (emovision fuse, or ensemble … --functionals), or use --fusion off"
        )
    if fused.classes != classes:
        raise CheckpointError(
            f"{path / FUSION_FILE} has the classes {fused.classes}, the fold models {classes}: rerun emovision fuse"
        )
    if config is None or config.sample_rate != fused.sample_rate:
        raise CheckpointError(
            f"{path / FUSION_FILE} was fitted on functionals at another sample rate than the fold "
            "models' features: rerun emovision fuse"
        )


def temperature_for(stored: float | None, mode: str, path: Path) -> float | None:
    """The temperature to apply under ``mode`` (see :meth:`Recognizer.load`)."""
    if mode == "on" and stored is None:
        raise EmovisionError(
            f"{path} has no calibration (trained without a validation speaker, or before calibration "
            "existed): retrain it, or use --calibration off"
        )
    return None if mode == "off" else stored


def recognizer_arguments(path: Path, device: str, threads: int | None, calibration: str, fusion: str) -> dict:
    """What :class:`~emovision.inference.predict.Recognizer` is made of for the model at ``path``
    (see :meth:`~emovision.inference.predict.Recognizer.load`): its backend, classes, features,
    aggregation rule, model description, temperature, fusion, further ensemble members and speaker
    normalisers, as keyword arguments."""
    fused = fusion_of(path, fusion)
    if path.suffix.lower() == ".onnx":
        return _onnx_arguments(path, device, threads, calibration)
    return _torch_arguments(path, device, threads, calibration, fused)


def _onnx_arguments(path: Path, device: str, threads: int | None, calibration: str) -> dict:
    """:func:`recognizer_arguments` of an ONNX file: all from its metadata."""
    backend = OnnxBackend(path, device, threads)
    meta = backend.metadata
    config = json.loads(meta["feature_config"])
    stored = float(meta["temperature"]) if meta.get("temperature") else None
    return {
        "backend": backend,
        "classes": json.loads(meta["classes"]),
        "config": FeatureConfig.from_dict(config) if config else None,
        "aggregate": meta["aggregate"],
        "model": json.loads(meta["model"]),
        "temperature": temperature_for(stored, calibration, path),
        "normalisers": [SpeakerNormaliser.from_json(meta.get("speaker_norm"))],
    }


def _torch_arguments(
    path: Path, device: str, threads: int | None, calibration: str, fused: LinearFusion | None
) -> dict:
    """:func:`recognizer_arguments` of a checkpoint, a cv folder or an ensemble folder (its first
    payload the main backend, the others ``extra`` members), ``fused`` checked against them."""
    from emovision.inference.runs import (
        ensemble_members,
        is_ensemble_folder,
        load_ensemble,
        load_model_payload,
    )

    ensemble = is_ensemble_folder(path)
    if ensemble:
        payloads, image_temperature = load_ensemble(path)
    else:
        payloads = [load_model_payload(path)]
        image_temperature = payloads[0].get("temperature")
    payload = payloads[0]
    config = payload.get("feature_config")
    config = FeatureConfig.from_dict(config) if config else None
    if fused is not None:
        folders = ensemble_members(path) if ensemble else [path]
        check_fusion(fused, list(payload["classes"]), config, path, folders)
    model = payload["model"]
    if len(payloads) > 1:
        names = "; ".join(p["model"]["name"] for p in payloads)
        model = {**model, "name": f"ensemble of {len(payloads)} cvs ({names})"}
    extra = [
        Member(
            TorchBackend(p, device, threads),
            FeatureConfig.from_dict(p["feature_config"]),
            p.get("aggregate", "logprob"),
        )
        for p in payloads[1:]
    ]
    stored = fused.temperature if fused is not None else image_temperature
    return {
        "backend": TorchBackend(payload, device, threads),
        "classes": list(payload["classes"]),
        "config": config,
        "aggregate": payload.get("aggregate", "logprob"),
        "model": model,
        "temperature": temperature_for(stored, calibration, path),
        "fusion": fused,
        "extra": extra,
        "normalisers": [SpeakerNormaliser.from_dict(p.get("speaker_norm")) for p in payloads],
    }
