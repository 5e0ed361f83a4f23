"""Export a checkpoint's model to ONNX, self-contained for :class:`emovision.Recognizer`.

The exported graph is the whole :class:`~emovision.training.models.SERModel`: raw dB segments
``segments`` ``(batch, C, F, frames)`` float32 in, class logits ``logits`` ``(batch, K)``
out; the input normalisation (and resize, when trained with one) is inside. The batch
axis is always dynamic. The time axis is dynamic too: every registered backbone ends in
global or adaptive pooling, and ``--resize`` interpolates to a fixed size, so any
``frames`` large enough for the backbone's strides gives a valid output. Should the
exporter fail to trace a dynamic time axis for some model, it is exported with the
trained ``frames`` fixed (the length :class:`Recognizer` always feeds).

``metadata_props`` carry what prediction needs: ``format``, ``format_version``,
``classes`` (JSON list), ``feature_config`` (JSON, ``null`` for a legacy-pickle model),
``aggregate``, ``temperature`` (empty without calibration), ``model`` (JSON spec), ``frames`` and ``dynamic_time``.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import emovision
from emovision.data.features import FeatureConfig
from emovision.data.speaker_norm import SpeakerNormaliser
from emovision.errors import EmovisionError
from emovision.files import atomic_write_bytes
from emovision.inference.backends import INPUT_NAME, ONNX_FORMAT, ONNX_FORMAT_VERSION, OUTPUT_NAME
from emovision.inference.runs import load_model_payload
from emovision.system import require
from emovision.training.checkpoint import model_from_checkpoint

TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_onnx` wrote and how closely ONNX Runtime matched PyTorch."""

    path: Path
    dynamic_time: bool
    frames: int
    max_difference: float
    size_bytes: int


def export_onnx(checkpoint: str | Path, out: str | Path, opset: int | None = None) -> ExportResult:
    """Export ``checkpoint``'s model (or a cv folder's fold ensemble, as one graph) to ``out`` and
    verify it with ONNX Runtime.

    The ONNX logits must equal PyTorch's within :data:`TOLERANCE` on a batch of trained
    length and on a longer one (when the time axis is dynamic); otherwise nothing is written
    and :class:`EmovisionError` says by how much they differ.
    """
    for module in ("onnx", "onnxscript", "onnxruntime"):
        require(module, "onnx", "emovision export")
    payload = load_model_payload(checkpoint)
    model = model_from_checkpoint(payload)
    spec = payload["model"]
    frames = int(spec["frames"])
    example = _example_segments(2, spec["channels"], spec["height"], frames, payload)
    try:
        program = _export(model, example, dynamic_time=True, opset=opset)
        dynamic_time = True
    except Exception:
        try:
            program = _export(model, example, dynamic_time=False, opset=opset)
        except Exception as exc:
            raise EmovisionError(
                f"torch.onnx.export cannot convert {spec['name']}: {type(exc).__name__}: {str(exc)[:300]}"
            ) from None
        dynamic_time = False
    proto = program.model_proto
    metadata = {
        "format": ONNX_FORMAT,
        "format_version": str(ONNX_FORMAT_VERSION),
        "classes": json.dumps(list(payload["classes"])),
        "feature_config": json.dumps(payload.get("feature_config")),
        "aggregate": payload.get("aggregate", "logprob"),
        "temperature": "" if payload.get("temperature") is None else repr(float(payload["temperature"])),
        "model": json.dumps(spec),
        "frames": str(frames),
        "dynamic_time": json.dumps(dynamic_time),
        "emovision_version": emovision.__version__,
        "speaker_norm": _speaker_norm_json(payload.get("speaker_norm")),
    }
    del proto.metadata_props[:]
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "emovision"
    proto.doc_string = (
        f"{spec['name']} speech emotion model: raw dB segments {INPUT_NAME} (batch, {spec['channels']}, "
        f"{spec['height']}, frames) -> {OUTPUT_NAME} (batch, {len(payload['classes'])})"
    )
    data = proto.SerializeToString()
    lengths = [frames, 2 * frames + 7] if dynamic_time else [frames]
    difference = max(_max_difference(model, data, length, payload) for length in lengths)
    if not difference <= TOLERANCE:
        raise EmovisionError(
            f"the ONNX model differs from PyTorch by {difference:.2e} (more than {TOLERANCE:g}): not written"
        )
    out = Path(out)
    atomic_write_bytes(out, data)
    return ExportResult(out, dynamic_time, frames, difference, len(data))


def _export(model: torch.nn.Module, example: torch.Tensor, dynamic_time: bool, opset: int | None):
    axes: dict[int, torch.export.Dim] = {0: torch.export.Dim("batch")}
    if dynamic_time:
        axes[3] = torch.export.Dim("frames")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.onnx.export(
            model,
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={"x": axes},
            opset_version=opset,
            dynamo=True,
            external_data=False,
            verbose=False,
        )


def _example_segments(batch: int, channels: int, height: int, frames: int, payload: dict) -> torch.Tensor:
    """Deterministic dB-like segments ``(batch, C, F, frames)`` in ``[-top_db, 0]``."""
    top_db = float((payload.get("feature_config") or {}).get("top_db", FeatureConfig().top_db))
    rng = np.random.default_rng(0)
    values = -top_db * rng.random((batch, channels, height, frames), dtype=np.float32)
    return torch.from_numpy(values)


def _max_difference(model: torch.nn.Module, data: bytes, frames: int, payload: dict) -> float:
    import onnxruntime as ort

    spec = payload["model"]
    segments = _example_segments(3, spec["channels"], spec["height"], frames, payload)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(segments).numpy()
    actual = session.run([OUTPUT_NAME], {INPUT_NAME: segments.numpy()})[0]
    return float(np.abs(actual - expected).max())


def _speaker_norm_json(values: dict | None) -> str:
    """The model's speaker normalisation (``train --speaker-norm``) as metadata text, ``null`` for none."""
    normaliser = SpeakerNormaliser.from_dict(values)
    return "null" if normaliser is None else normaliser.to_json()
