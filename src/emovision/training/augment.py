"""Training-time augmentation in the batch: SpecAugment masks, frequency warping, mixup, stability-training
perturbations, random oversampling, and the pick of stored waveform-augmented copies.

Batches are ``(B, C, F, T)`` tensors. Index-like draws (permutations, mixing weights, picks)
come from the CPU ``generator`` passed in; noise tensors from the device's global RNG. Both
are seeded and saved with a run, so a run is repeatable and resumable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.special import betaincinv


def spec_augment(
    x: torch.Tensor,
    fill: torch.Tensor,
    generator: torch.Generator,
    freq_masks: int = 2,
    freq_width: int = 8,
    time_masks: int = 2,
    time_width: int = 12,
) -> torch.Tensor:
    """A copy of ``x`` ``(B, C, F, T)`` with SpecAugment (Park et al. 2019) frequency and time masks.

    Each sample gets ``freq_masks`` bands of ``0 … freq_width`` bins and ``time_masks`` spans of
    ``0 … time_width`` frames (widths and positions uniform, masks may overlap), the same on every
    channel, set to ``fill`` (broadcast over ``(C, F, 1)``: the per-bin training mean, so a masked
    region is zero after input normalisation). Draws come from the CPU ``generator``; the
    masks are built on ``x``'s device.
    """
    batch, _, height, frames = x.shape
    mask = torch.zeros(batch, 1, height, frames, dtype=torch.bool, device=x.device)
    for count, width, size, axis in (
        (freq_masks, freq_width, height, 2),
        (time_masks, time_width, frames, 3),
    ):
        if count == 0:
            continue
        widths = torch.randint(0, min(width, size) + 1, (batch, count), generator=generator)
        starts = (torch.rand(batch, count, generator=generator) * (size - widths + 1)).long()
        position = torch.arange(size).view(1, 1, size)
        inside = (position >= starts.unsqueeze(-1)) & (position < (starts + widths).unsqueeze(-1))
        band = inside.any(dim=1).to(x.device)
        mask |= band.view(batch, 1, size, 1) if axis == 2 else band.view(batch, 1, 1, size)
    return torch.where(mask, fill.to(x.dtype), x)


def frequency_warp(
    x: torch.Tensor, frequencies: torch.Tensor, generator: torch.Generator, max_warp: float = 0.1
) -> torch.Tensor:
    """A copy of ``x`` ``(B, C, F, T)`` whose spectra are stretched along frequency as a longer or
    shorter vocal tract would (vocal tract length perturbation, Jaitly & Hinton 2013).

    Each sample draws ``α ~ U(1 − max_warp, 1 + max_warp)``; the row of centre frequency ``f`` Hz
    (``frequencies`` ``(F,)``, ascending, see :func:`emovision.data.features.bin_frequencies`) takes
    the input's value at ``f / α``, linearly interpolated between the two neighbouring rows; below the
    first and above the last row the edge row is repeated. The same warp on every channel and frame.
    ``α`` comes from the CPU ``generator``.
    """
    batch, channels, height, frames = x.shape
    alpha = 1 + max_warp * (2 * torch.rand(batch, generator=generator, dtype=torch.float64) - 1)
    freqs = frequencies.to(torch.float64)
    source = freqs.view(1, height) / alpha.view(batch, 1)
    upper = torch.searchsorted(freqs, source).clamp(1, height - 1)
    lower = upper - 1
    share = ((source - freqs[lower]) / (freqs[upper] - freqs[lower])).clamp(0.0, 1.0)
    shape = (batch, channels, height, frames)
    low = x.gather(2, lower.to(x.device).view(batch, 1, height, 1).expand(shape))
    high = x.gather(2, upper.to(x.device).view(batch, 1, height, 1).expand(shape))
    share = share.to(device=x.device, dtype=x.dtype).view(batch, 1, height, 1)
    return low + share * (high - low)


def pick_versions(
    segment_ranges: list[list[tuple[int, int]]], prob: float, generator: torch.Generator
) -> torch.Tensor:
    """Segment indices of one epoch: every utterance once, as itself or one of its augmented copies.

    ``segment_ranges[u]`` lists ``(start, count)`` of utterance ``u``'s versions, the clean one
    first; with probability ``prob`` one of the copies (uniformly) replaces the clean version.
    """
    draws = torch.rand(len(segment_ranges), generator=generator).tolist()
    picks = torch.randint(0, 1 << 30, (len(segment_ranges),), generator=generator).tolist()
    chosen = []
    for versions, draw, pick in zip(segment_ranges, draws, picks, strict=True):
        start, count = versions[0]
        if len(versions) > 1 and draw < prob:
            start, count = versions[1 + pick % (len(versions) - 1)]
        chosen.append(torch.arange(start, start + count))
    return torch.cat(chosen) if chosen else torch.zeros(0, dtype=torch.long)


def mixup(
    x: torch.Tensor, y: torch.Tensor, alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mix each sample with a partner from one random permutation of the batch (as the original).

    Per-sample ``λ ~ Beta(alpha, alpha)`` folded to ``λ = max(λ, 1 − λ)`` so the sample keeps
    the larger share. Returns ``(x_mixed, y_a, y_b, λ)`` with ``λ`` of shape ``(B,)``.
    ``generator`` is a CPU generator (λ by inverse-CDF sampling of uniform draws).
    """
    batch = x.shape[0]
    uniform = torch.rand(batch, generator=generator, dtype=torch.float64)
    lam = torch.from_numpy(betaincinv(alpha, alpha, uniform.numpy())).float()
    lam = torch.maximum(lam, 1 - lam).to(x.device)
    permutation = torch.randperm(batch, generator=generator).to(x.device)
    shape = (batch,) + (1,) * (x.dim() - 1)
    mixed = lam.view(shape) * x + (1 - lam.view(shape)) * x[permutation]
    return mixed, y, y[permutation], lam


def mixup_loss(
    logits: torch.Tensor,
    y_a: torch.Tensor,
    y_b: torch.Tensor,
    lam: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Batch mean of ``λ·CE(y_a) + (1 − λ)·CE(y_b)``, each CE against the label smoothed by ε."""
    loss_a = F.cross_entropy(
        logits, y_a, weight=class_weights, reduction="none", label_smoothing=label_smoothing
    )
    loss_b = F.cross_entropy(
        logits, y_b, weight=class_weights, reduction="none", label_smoothing=label_smoothing
    )
    return (lam * loss_a + (1 - lam) * loss_b).mean()


def stability_kl(clean_logits: torch.Tensor, perturbed_logits: torch.Tensor) -> torch.Tensor:
    """Batch mean of ``KL(f(x) ‖ f(x̃)) = Σ_k P_k (log P_k − log Q_k)``, from log-probabilities.

    ``P`` is the prediction on the clean input, ``Q`` on its perturbed copy (Zheng et al. 2016).
    Both sides carry gradients.
    """
    log_p = F.log_softmax(clean_logits.float(), dim=1)
    log_q = F.log_softmax(perturbed_logits.float(), dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()


def gaussian_perturbation(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x + scale·ε`` with ``ε ~ N(0, 1)`` from the global RNG of ``x``'s device.

    ``scale`` broadcasts over ``(B, C, F, T)``."""
    return x + scale * torch.randn_like(x)


def channel_perturbation(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """For ``lognrevspec`` ``(B, 3, F, T)`` = (clean, noisy, reverberant): a copy whose clean channel
    is replaced, per sample at random, by the noisy or the reverberant one."""
    pick = torch.randint(1, x.shape[1], (x.shape[0],), generator=generator).to(x.device)
    perturbed = x.clone()
    perturbed[:, 0] = x[torch.arange(x.shape[0], device=x.device), pick]
    return perturbed


def oversample_indices(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """All indices plus random repeats of each minority class up to the majority class's count."""
    labels = labels.cpu()
    counts = torch.bincount(labels)
    target = int(counts.max())
    extra = []
    for label, count in enumerate(counts.tolist()):
        if 0 < count < target:
            members = torch.nonzero(labels == label).flatten()
            picks = torch.randint(0, count, (target - count,), generator=generator)
            extra.append(members[picks])
    return torch.cat([torch.arange(labels.numel()), *extra])


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``N / (K · n_k)`` per class (1 for a class with no sample)."""
    counts = torch.bincount(labels.cpu(), minlength=num_classes).float()
    weights = labels.numel() / (num_classes * counts.clamp(min=1))
    return torch.where(counts > 0, weights, torch.ones_like(weights))
