"""Batched torch version of :mod:`emovision.data.features`: the same numbers, many utterances at once, on a GPU.

Utterances of different lengths are zero-padded into one batch ``(R, n_max)`` (one row per channel
signal) with their lengths; every per-utterance quantity (the dB reference and floor, the Δ edges)
uses only the frames of that utterance, never the padding. The window and the mel filterbank are
those of :mod:`emovision.data.features`. The noise and the room of ``lognrevspec`` come from
:func:`emovision.data.features.channel_signals` on the CPU (the same numpy generator, so the same
signals); only the STFT, mel, dB and Δ run in torch.

The results equal :func:`emovision.data.features.compute_features` to float32 rounding: over emoDB,
99.99 % of the values within 1e-3 dB and all within 0.02 dB (the largest differences are bins
60–80 dB below their frame, where float32 FFT rounding is relatively large in either path).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from emovision.data.features import AMIN, FeatureConfig, analysis_window, channel_signals, mel_filterbank


def batch_features(
    signals: Sequence[np.ndarray],
    config: FeatureConfig,
    keys: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
) -> list[np.ndarray]:
    """Feature ``(C, F, T_i)`` float32 of each mono signal ``(n_i,)`` at ``config.sample_rate``, in one batch.

    ``keys`` (utterance ids) seed the noise and room of ``lognrevspec``, as in
    :func:`emovision.data.features.compute_features`; the default is ``""`` for every signal.
    """
    keys = [""] * len(signals) if keys is None else keys
    prepared = [channel_signals(s, config, key) for s, key in zip(signals, keys, strict=True)]
    return features_of_channel_signals(prepared, config, device)


def features_of_channel_signals(
    batch: Sequence[Sequence[np.ndarray]], config: FeatureConfig, device: str | torch.device = "cpu"
) -> list[np.ndarray]:
    """Feature ``(C, F, T_i)`` float32 of each utterance given as its channel signals.

    ``batch[i]`` is :func:`emovision.data.features.channel_signals` of utterance ``i``: 1 signal, or 3
    of one length for ``lognrevspec``; ``T_i = 1 + n_i // hop_length``.
    """
    if not batch:
        return []
    per_utterance = len(batch[0])
    rows = [np.asarray(signal, dtype=np.float32) for signals in batch for signal in signals]
    if len(rows) != per_utterance * len(batch):
        raise ValueError("every utterance of a batch needs the same number of channel signals")
    sizes = [row.size for row in rows]
    padded = np.zeros((len(rows), max(sizes)), dtype=np.float32)
    for index, row in enumerate(rows):
        padded[index, : row.size] = row
    device = torch.device(device)
    with torch.inference_mode():
        samples = torch.from_numpy(padded).to(device)
        lengths = torch.tensor(sizes, device=device)
        frames = 1 + lengths // config.hop_length
        power = power_spectrum(samples, lengths, config)
        if config.kind in ("logspec", "lognrevspec"):
            level = to_db(power[:, : config.n_bins], frames, config.top_db)
        else:
            level = to_db(mel_spectrum(power, config), frames, config.top_db)
        if config.kind == "logmeldeltaspec":
            delta = savgol_delta(level, frames, config.delta_width)
            delta2 = savgol_delta(delta, frames, config.delta_width)
            stacked = torch.stack([level, delta, delta2], dim=1)
        else:
            stacked = level.reshape(len(batch), per_utterance, *level.shape[1:])
        result = stacked.cpu().numpy()
    counts = frames[::per_utterance].tolist()
    return [np.ascontiguousarray(result[i, ..., :count]) for i, count in enumerate(counts)]


def power_spectrum(samples: torch.Tensor, lengths: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """Pre-emphasised, windowed power spectrum ``(R, n_fft // 2 + 1, T_max)`` of zero-padded ``(R, n_max)``.

    Each row is pre-emphasised within its ``lengths[r]`` samples and zero after them, as the
    unpadded signal with :func:`emovision.data.features.power_spectrum`'s centring zeros;
    ``T_max = 1 + n_max // hop_length`` (frames past ``1 + lengths[r] // hop_length`` are padding).
    """
    shifted = samples[:, :-1] * config.preemphasis
    emphasised = torch.cat([samples[:, :1], samples[:, 1:] - shifted], dim=1)
    inside = torch.arange(samples.shape[1], device=samples.device) < lengths[:, None]
    emphasised = torch.where(inside, emphasised, 0.0)
    half = config.n_fft // 2
    frames = F.pad(emphasised, (half, half)).unfold(1, config.n_fft, config.hop_length)
    window = torch.from_numpy(analysis_window(config)).to(samples.device)
    spectrum = torch.fft.rfft(frames * window, dim=-1)
    return (spectrum.real**2 + spectrum.imag**2).transpose(1, 2)


def mel_spectrum(power: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """Mel power ``(R, n_mels, T)`` of a power spectrum ``(R, n_fft // 2 + 1, T)``.

    The product runs in float64, so a global TF32 setting cannot coarsen it.
    """
    weights = torch.from_numpy(mel_filterbank(config)).to(power.device, torch.float64)
    return torch.matmul(weights, power.double()).float()


def to_db(power: torch.Tensor, frames: torch.Tensor, top_db: float) -> torch.Tensor:
    """``10·log10(power / max)`` floored ``top_db`` below 0 dB, per row ``(R, F, T)``.

    The maximum of row ``r`` is taken over its first ``frames[r]`` frames only.
    """
    level = 10.0 * torch.log10(torch.clamp(power, min=AMIN))
    padding = torch.arange(level.shape[-1], device=level.device) >= frames[:, None]
    reference = level.masked_fill(padding[:, None, :], -torch.inf).amax(dim=(1, 2), keepdim=True)
    return torch.clamp(level - reference, min=-top_db)


def savgol_delta(values: torch.Tensor, frames: torch.Tensor, width: int) -> torch.Tensor:
    """Savitzky–Golay first derivative (order 1, ``width`` frames) along T of ``(R, F, T)``, float32.

    As ``scipy.signal.savgol_filter(..., deriv=1, mode="interp")`` on each row's first
    ``frames[r]`` frames: with a straight-line fit, the first and last ``width // 2`` frames take
    the slope of the first and last full window. Accumulates in float64, as scipy does.
    """
    half = width // 2
    if int(frames.min()) < width:
        raise ValueError(f"Δ features need at least {width} frames, got {int(frames.min())}")
    total = values.shape[-1]
    weights = torch.arange(-half, half + 1, dtype=torch.float64, device=values.device)
    weights /= (weights**2).sum()
    wide = values.double()
    interior = sum(weights[k] * wide[..., k : total - 2 * half + k] for k in range(width))
    steps = torch.arange(total, device=values.device)
    centre = torch.minimum(steps.clamp(min=half)[None, :], (frames - 1 - half)[:, None]) - half
    index = centre[:, None, :].expand(values.shape[0], values.shape[1], total)
    return torch.gather(interior, -1, index).float()
