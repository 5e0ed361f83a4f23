"""Acoustic degradations: noise at a given SNR over active speech, and synthetic reverberation.

Signals are mono ``float32`` arrays ``(n,)``; rates in Hz, times in seconds, levels in dB.
Used by the ``lognrevspec`` feature and by the robustness evaluation.
"""

from __future__ import annotations

import zlib

import numpy as np
from scipy.signal import fftconvolve

# The noises the augmentation and the robustness conditions add: synthetic, talkers, or recorded files.
NOISE_TYPES = ("white", "pink", "babble", "recorded")
ACTIVE_FRAME_S = 0.02
ACTIVE_RANGE_DB = 40.0
_DECAY_60_DB = 3.0 * np.log(10.0)


def rng_for(seed: int, key: str) -> np.random.Generator:
    """A generator that depends only on ``seed`` and ``key`` (e.g. an utterance id), not on order."""
    return np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])


def white_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian white noise ``(n,)`` with unit variance."""
    return rng.standard_normal(n).astype(np.float32)


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Noise ``(n,)`` with a 1/f power spectrum (−3 dB per octave), unit variance."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    scale = np.ones(spectrum.size)
    scale[1:] = 1.0 / np.sqrt(np.arange(1, spectrum.size))
    scale[0] = 0.0
    pink = np.fft.irfft(spectrum * scale, n)
    return (pink / (pink.std() + 1e-12)).astype(np.float32)


def active_mask(signal: np.ndarray, sample_rate: int) -> np.ndarray:
    """Boolean mask ``(n,)`` of samples in 20 ms frames within 40 dB of the loudest frame."""
    frame = max(1, round(ACTIVE_FRAME_S * sample_rate))
    n_frames = int(np.ceil(signal.size / frame))
    padded = np.zeros(n_frames * frame, dtype=np.float64)
    padded[: signal.size] = signal
    energy = (padded.reshape(n_frames, frame) ** 2).mean(axis=1)
    active = energy >= energy.max() * 10.0 ** (-ACTIVE_RANGE_DB / 10.0)
    active &= energy > 0
    return np.repeat(active, frame)[: signal.size]


def active_power(signal: np.ndarray, sample_rate: int) -> float:
    """Mean power of the active-speech samples of ``signal`` (see :func:`active_mask`)."""
    mask = active_mask(signal, sample_rate)
    return float(np.mean(np.square(signal[mask], dtype=np.float64))) if mask.any() else 0.0


def fit_length(noise: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``noise`` tiled or cut (at a random offset) to exactly ``n`` samples."""
    if noise.size < n:
        noise = np.tile(noise, int(np.ceil(n / noise.size)))
    start = int(rng.integers(0, noise.size - n + 1))
    return noise[start : start + n]


def babble(talkers: list[np.ndarray], n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Babble noise ``(n,)`` with unit variance: the sum of ``talkers`` (mono signals at ``sample_rate`` Hz).

    Each talker is scaled to unit active-speech power (see :func:`active_power`), so every
    voice is equally loud, then tiled or cut at a random offset to ``n`` samples
    (:func:`fit_length`). Silent talkers are left out; with none left the result is zeros.
    """
    mixture = np.zeros(n, dtype=np.float64)
    for talker in talkers:
        power = active_power(talker, sample_rate)
        if power > 0.0:
            mixture += fit_length(talker, n, rng) / np.sqrt(power)
    std = mixture.std()
    return (mixture / std if std > 0 else mixture).astype(np.float32)


def add_noise_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float, sample_rate: int) -> np.ndarray:
    """``signal + g·noise`` with ``g`` set so that active-speech power / noise power = ``snr_db``.

    ``noise`` must have the length of ``signal`` (see :func:`fit_length`).
    """
    speech = active_power(signal, sample_rate)
    noise_power = float(np.mean(np.square(noise, dtype=np.float64)))
    if speech == 0.0 or noise_power == 0.0:
        return signal.copy()
    gain = np.sqrt(speech / (noise_power * 10.0 ** (snr_db / 10.0)))
    return (signal + gain * noise).astype(np.float32)


def synthetic_rir(rt60: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A room impulse response ``(n,)`` whose energy decays by 60 dB in ``rt60`` seconds.

    Exponentially decaying Gaussian noise (the statistical model of a diffuse late
    reverberation) after a unit direct path, ``2·rt60`` seconds long.
    """
    if rt60 <= 0:
        raise ValueError(f"RT60 must be positive, got {rt60}")
    n = max(2, round(2.0 * rt60 * sample_rate))
    t = np.arange(n) / sample_rate
    rir = rng.standard_normal(n) * np.exp(-_DECAY_60_DB * t / rt60)
    rir[0] = 1.0
    return (rir / np.abs(rir).max()).astype(np.float32)


def estimate_rt60(rir: np.ndarray, sample_rate: int) -> float:
    """RT60 in seconds by Schroeder backward integration and a line fit from −5 to −35 dB (T30)."""
    energy = np.cumsum(np.square(rir[::-1], dtype=np.float64))[::-1]
    decay_db = 10.0 * np.log10(energy / energy[0] + 1e-300)
    fit = (decay_db <= -5.0) & (decay_db >= -35.0)
    t = np.arange(rir.size)[fit] / sample_rate
    slope, _ = np.polyfit(t, decay_db[fit], 1)
    return float(-60.0 / slope)


def reverberate(signal: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """``signal`` convolved with ``rir``, cut to the length of ``signal``."""
    return fftconvolve(signal, rir)[: signal.size].astype(np.float32)
