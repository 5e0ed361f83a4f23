"""Saliency maps: which time-frequency regions of the spectrogram a decision came from.

A model with the attention head (``--head attention``) shows its own attention weights; any other
PyTorch model gets Grad-CAM (Selvaraju et al. 2017): a feature map's channels weighted by the mean
gradient of the explained class's logit, summed and rectified. The feature map is that of the last
backbone block at 1/8 of the input's resolution (for 64 × 200 inputs 8 × 25), not the last one
(2 × 7): chosen by the deletion test below, where its salient frames change more decisions than the
last map's (BENCHMARKS.md). Either
map is upsampled bilinearly to the segment's bins and frames ``(F, T)`` and scaled to a maximum of 1; the segments' maps are then laid back on
the recording's frames (averaged where segments overlap; frames no segment covers, such as a
trimmed tail, weigh 0). An ensemble (a cv folder) averages its members' maps. ONNX files cannot be
explained: the exported graph has neither gradients nor the attention weights.

:func:`deletion_flips` is the sanity check that would fail if the maps were noise: hiding the most
salient frames should change more decisions than hiding as many random frames.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from emovision.data.features import FeatureConfig, bin_frequencies, segment_starts
from emovision.errors import EmovisionError
from emovision.files import atomic_write
from emovision.inference.model_input import Prepared
from emovision.inference.results import Prediction
from emovision.training.metrics import utterance_scores
from emovision.training.models import EnsembleModel, SERModel

METHODS = ("attention", "grad-cam")


def method_of(model: SERModel | EnsembleModel) -> str:
    """``attention`` for a model (every member of an ensemble) with the attention head, else ``grad-cam``."""
    members = list(model.members) if isinstance(model, EnsembleModel) else [model]
    return "attention" if all(m.attention is not None for m in members) else "grad-cam"


def segment_saliency(
    model: SERModel | EnsembleModel, segments: torch.Tensor, target: int, batch_size: int = 32
) -> np.ndarray:
    """The saliency ``(N, F, T)`` in [0, 1] of segments ``(N, C, F, T)`` (what the model takes) for
    class ``target``: each segment's map scaled to a maximum of 1 (all 0 where the map is flat)."""
    members = list(model.members) if isinstance(model, EnsembleModel) else [model]
    maps = np.mean([_member_saliency(m, segments, target, batch_size) for m in members], axis=0)
    return _scaled(torch.from_numpy(maps)).numpy()


# Grad-CAM reads the last block whose output is at least 1/CAM_STRIDE of the input's height.
CAM_STRIDE = 8


def _member_saliency(model: SERModel, segments: torch.Tensor, target: int, batch_size: int) -> np.ndarray:
    device = next(model.parameters()).device
    out = []
    for start in range(0, segments.shape[0], batch_size):
        x = segments[start : start + batch_size].to(device, torch.float32)
        if model.attention is not None:
            with torch.no_grad():
                coarse = model.attention.weights(model.feature_map(x).float())
        else:
            coarse = grad_cam(model, x, target, cam_stage(model, x))
        fine = F.interpolate(coarse[:, None], size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0]
        out.append(_scaled(fine.cpu()))
    return torch.cat(out).numpy()


_STAGES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def cam_stage(model: SERModel, x: torch.Tensor) -> nn.Module:
    """The last of the model's :meth:`~emovision.training.models.SERModel.stages` whose output ``(B, D, F', T')``
    keeps ``F' ≥ F / CAM_STRIDE`` for inputs like ``x`` ``(B, C, F, T)`` (the first stage when none
    does); found once per model and input shape."""
    known = _STAGES.setdefault(model, {})
    if x.shape[1:] not in known:
        known[x.shape[1:]] = _find_cam_stage(model, x)
    return known[x.shape[1:]]


def _find_cam_stage(model: SERModel, x: torch.Tensor) -> nn.Module:
    heights: list[int] = []
    stages = model.stages()
    handles = [
        stage.register_forward_hook(lambda module, inputs, output: heights.append(output.shape[-2]))
        for stage in stages
    ]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for handle in handles:
            handle.remove()
    kept = [i for i, height in enumerate(heights) if height * CAM_STRIDE >= x.shape[-2]]
    return stages[kept[-1] if kept else 0]


def grad_cam(model: SERModel, x: torch.Tensor, target: int, stage: nn.Module) -> torch.Tensor:
    """Grad-CAM ``(B, F', T')`` of class ``target`` for segments ``x`` ``(B, C, F, T)`` on the output of
    ``stage`` ``(B, D, F', T')``: only the layers after ``stage`` are differentiated."""
    captured: list[torch.Tensor] = []
    handle = stage.register_forward_hook(lambda module, inputs, output: captured.append(output))
    try:
        with torch.enable_grad():
            logits = model(x).float()
            (gradient,) = torch.autograd.grad(logits[:, target].sum(), captured[0])
    finally:
        handle.remove()
    activation = captured[0].detach().float()
    weights = gradient.float().mean(dim=(2, 3), keepdim=True)
    return torch.relu((weights * activation).sum(dim=1))


def _scaled(maps: torch.Tensor) -> torch.Tensor:
    peak = maps.flatten(1).amax(dim=1).clamp(min=1e-12).view(-1, *([1] * (maps.ndim - 1)))
    return (maps / peak).float()


def recording_map(maps: np.ndarray, starts: np.ndarray, frames: int) -> np.ndarray:
    """The segments' maps ``(N, F, T_seg)`` placed at their first frames ``starts`` ``(N,)`` on a
    recording of ``frames`` frames: ``(F, frames)``, averaged where segments overlap, 0 where none
    covers a frame; padding past the recording's end is dropped."""
    height, size = maps.shape[1], maps.shape[2]
    total = np.zeros((height, frames), dtype=np.float64)
    cover = np.zeros(frames, dtype=np.float64)
    for piece, start in zip(maps, starts, strict=True):
        end = min(int(start) + size, frames)
        total[:, int(start) : end] += piece[:, : end - int(start)]
        cover[int(start) : end] += 1
    return (total / np.maximum(cover, 1)).astype(np.float32)


def frame_weights(saliency: np.ndarray) -> np.ndarray:
    """Per-frame weight ``(T,)`` of a map ``(F, T)``: summed over frequency, normalised to sum to 1
    (all 0 for an all-zero map)."""
    weights = saliency.sum(axis=0).astype(np.float64)
    total = weights.sum()
    return (weights / total if total > 0 else weights).astype(np.float32)


@dataclass
class Explanation:
    """Where one recording's decision came from.

    ``saliency`` ``(F, T)`` in [0, 1] over ``spectrogram`` ``(F, T)`` (the model's first input channel,
    dB); ``times`` ``(T,)`` the frames' starts (s); ``frequencies`` ``(F,)`` the bins' centres (Hz);
    ``method`` one of :data:`METHODS`; ``explained`` the class the map is for; ``prediction`` the
    recording's :class:`emovision.inference.results.Prediction` (with its emotion over time).
    """

    prediction: Prediction
    method: str
    explained: str
    saliency: np.ndarray
    spectrogram: np.ndarray
    times: np.ndarray
    frequencies: np.ndarray

    @property
    def frame_weights(self) -> np.ndarray:
        """Per-frame weight ``(T,)``, summed over frequency and normalised to sum to 1."""
        return frame_weights(self.saliency)

    def to_dict(self, full_map: bool = False) -> dict:
        """The method, the explained class, the frame hop (s) and the per-frame weights; with
        ``full_map`` also the map ``(F, T)`` (rounded to 3 decimals) and the bins' frequencies."""
        hop = float(self.times[1] - self.times[0]) if self.times.size > 1 else 0.0
        out = {
            "method": self.method,
            "explained": self.explained,
            "frame_seconds": round(hop, 6),
            "frame_weights": [round(float(w), 6) for w in self.frame_weights],
        }
        if full_map:
            out["map"] = np.round(self.saliency, 3).tolist()
            out["frequencies"] = [round(float(f), 1) for f in self.frequencies]
        return out


def explain_prepared(
    model: SERModel | EnsembleModel,
    prepared: Prepared,
    prediction: Prediction,
    config: FeatureConfig,
    classes: list[str],
    target: str | None = None,
) -> Explanation:
    """The explanation of ``prediction`` (the prediction of ``prepared``, its features kept) for
    ``target``, by default the predicted class: the map laid on the recording's frames, whose times
    count from the start of the file."""
    explained = target or prediction.label
    maps = segment_saliency(model, torch.from_numpy(prepared.segments), classes.index(explained))
    starts = segment_starts(prepared.frames, config)[: maps.shape[0]]
    return Explanation(
        prediction,
        method_of(model),
        explained,
        recording_map(maps, starts, prepared.frames),
        prepared.features[0],
        prepared.offset + np.arange(prepared.frames, dtype=np.float32) * config.hop_ms / 1000,
        bin_frequencies(config),
    )


def deletion_flips(
    model: SERModel | EnsembleModel,
    utterances: list[torch.Tensor],
    fraction: float = 0.2,
    draws: int = 5,
    seed: int = 0,
    aggregate: str = "logprob",
) -> dict:
    """The deletion test on utterances (each its segments ``(n, C, F, T)``, as the model takes them).

    For each utterance the frames of its segments are ranked by their saliency for the predicted
    class (summed over frequency); the top ``fraction`` of them are replaced by the model's
    per-bin training mean (``model.norm.mean``: what SpecAugment's masks hold), and the decision
    is taken again. Two references hide as many frames at random (``draws`` draws each): single
    frames scattered anywhere (``random``), and one run of consecutive frames at a random place
    (``block``: shaped like the salient frames of a smooth map, and like SpecAugment's time masks).
    Returns the share of decisions that changed for each, and ``salient`` over each reference.
    """
    if not 0 < fraction < 1:
        raise EmovisionError(f"the deletion fraction must be between 0 and 1, got {fraction}")
    rng = np.random.default_rng(seed)
    first = model.members[0] if isinstance(model, EnsembleModel) else model
    fill = first.norm.mean.detach().cpu()
    flips = {"salient": 0.0, "random": 0.0, "block": 0.0}
    for segments in utterances:
        before = _decision(model, segments, aggregate)
        maps = segment_saliency(model, segments, before)
        weights = maps.sum(axis=1).reshape(-1)
        count = max(1, round(fraction * weights.size))

        def flipped(frames: np.ndarray, segments: torch.Tensor = segments, before: int = before) -> bool:
            return _decision(model, _masked(segments, frames, fill), aggregate) != before

        flips["salient"] += flipped(np.argsort(-weights, kind="stable")[:count])
        for _ in range(draws):
            flips["random"] += flipped(rng.choice(weights.size, size=count, replace=False)) / draws
            start = int(rng.integers(weights.size - count + 1))
            flips["block"] += flipped(np.arange(start, start + count)) / draws
    n = max(len(utterances), 1)
    shares = {key: value / n for key, value in flips.items()}
    return {
        "utterances": len(utterances),
        "fraction": fraction,
        **{key: float(value) for key, value in shares.items()},
        **{
            f"over_{key}": float(shares["salient"] / shares[key]) if shares[key] > 0 else float("inf")
            for key in ("random", "block")
        },
    }


def _decision(model: SERModel | EnsembleModel, segments: torch.Tensor, aggregate: str) -> int:
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = model(segments.to(device, torch.float32)).float()
    log_probs = torch.log_softmax(logits, dim=1).cpu().numpy()
    return int(utterance_scores(log_probs, np.array([log_probs.shape[0]]), aggregate)[0].argmax())


def _masked(segments: torch.Tensor, flat_frames: np.ndarray, fill: torch.Tensor) -> torch.Tensor:
    """``segments`` ``(n, C, F, T)`` with the frames ``flat_frames`` (indices into ``n × T``) set to ``fill`` ``(C, F, 1)``."""
    out = segments.clone()
    rows, frames = np.divmod(np.asarray(flat_frames, dtype=np.int64), segments.shape[-1])
    out[torch.from_numpy(rows), :, :, torch.from_numpy(frames)] = fill[..., 0].to(out.dtype)
    return out


def save_explanation(explanation: Explanation, folder: str | Path, stem: str) -> tuple[Path, Path]:
    """``folder/stem.png`` (the map over the spectrogram, the frame weights and the emotion over
    time) and ``folder/stem.npy`` (the map ``(F, T)``), both written atomically."""
    from emovision import plots

    folder = Path(folder)
    item = explanation.prediction
    title = (
        f"{Path(item.source).name}: {item.label} ({item.confidence:.0%}); "
        f"{explanation.method} map for {explanation.explained}"
    )
    png = plots.explanation(
        explanation.spectrogram,
        explanation.saliency,
        explanation.times,
        explanation.frequencies,
        item.times,
        item.segment_probabilities,
        item.classes,
        folder / f"{stem}.png",
        title,
    )
    npy = atomic_write(folder / f"{stem}.npy", lambda temp: np.save(temp, explanation.saliency), ".npy")
    return png, npy
