"""The two ways a model runs: PyTorch (a checkpoint, a cv folder's fold ensemble) and ONNX Runtime (an
``emovision export`` file, without importing torch). Both score segments ``(N, C, F, T)`` in dB into
log-probabilities ``(N, K)``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emovision.data.features import FeatureConfig
from emovision.errors import CheckpointError
from emovision.system import resolve_device

ONNX_FORMAT = "emovision-onnx"


ONNX_FORMAT_VERSION = 1


INPUT_NAME = "segments"


OUTPUT_NAME = "logits"


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of ``(N, K)`` logits, float32."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    return (shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))).astype(np.float32)


class TorchBackend:
    """A checkpoint's model run by PyTorch."""

    name = "torch"

    def __init__(self, payload: dict, device: str, threads: int | None) -> None:
        import torch

        from emovision.training.checkpoint import model_from_checkpoint

        if threads:
            torch.set_num_threads(threads)
        self.device = resolve_device(device, torch.cuda.is_available())
        try:
            self.model = model_from_checkpoint(payload).to(self.device)
        except (KeyError, RuntimeError) as exc:
            raise CheckpointError(f"the checkpoint's model cannot be rebuilt ({exc})") from None

    def log_probs(self, segments: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Log-probabilities ``(N, K)`` of segments ``(N, C, F, T)``."""
        import torch

        from emovision.training.metrics import segment_log_probs

        return segment_log_probs(self.model, torch.from_numpy(segments), batch_size)

    def embeddings(self, segments: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """The embedding ``(N, D)`` of each segment ``(N, C, F, T)``."""
        import torch

        from emovision.training.metrics import segment_embeddings

        return segment_embeddings(self.model, torch.from_numpy(segments), batch_size)


class OnnxBackend:
    """An ONNX file made by ``emovision export``, run by ONNX Runtime (no torch)."""

    name = "onnx"

    def __init__(self, path: Path, device: str, threads: int | None) -> None:
        from emovision.system import require

        ort = require("onnxruntime", "onnx", "running an ONNX model")

        if not path.is_file():
            raise CheckpointError(f"model {path} does not exist")
        cuda = "CUDAExecutionProvider" in ort.get_available_providers()
        self.device = resolve_device(device, cuda)
        providers = ["CPUExecutionProvider"]
        if self.device.startswith("cuda"):
            index = int(self.device.partition(":")[2] or 0)
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:
            raise CheckpointError(f"{path} is not a readable ONNX model ({str(exc)[:200]})") from None
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        if self.metadata.get("format") != ONNX_FORMAT:
            raise CheckpointError(f"{path} is an ONNX model but not one made by emovision export")
        if int(self.metadata.get("format_version", 0)) > ONNX_FORMAT_VERSION:
            raise CheckpointError(f"{path} was written by a newer emovision")

    def log_probs(self, segments: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Log-probabilities ``(N, K)`` of segments ``(N, C, F, T)``."""
        outputs = [
            self.session.run([OUTPUT_NAME], {INPUT_NAME: segments[start : start + batch_size]})[0]
            for start in range(0, segments.shape[0], batch_size)
        ]
        return log_softmax(np.concatenate(outputs))


@dataclass
class Member:
    """A further member of an ensemble of cvs: its fold ensemble, features and aggregation rule."""

    backend: TorchBackend
    config: FeatureConfig
    aggregate: str
