"""Spectrogram features and their segmentation into fixed-size "images".

Every feature is an array ``(C, F, T)``: channels, frequency bins (or mel bands) and frames
(one per hop, 10 ms by default). Values are in dB relative to the utterance's maximum
(``ref=max``), floored ``top_db`` below it.

Feature types:

``logspec``
    1 channel: power spectrum bins below ``max_freq`` (200 bins up to 4 kHz by default).
``logmelspec``
    1 channel: ``n_mels`` mel bands (Slaney scale and norm, as librosa) of the power spectrum.
``logmeldeltaspec``
    3 channels: log-mel, its Δ (Savitzky-Golay, width ``delta_width``) and ΔΔ (Δ of Δ).
``lognrevspec``
    3 channels: ``logspec`` of the clean signal, of the signal plus white noise (standard
    deviation ``noise_std``, or at ``noise_snr`` dB when set) and of the signal reverberated
    by a synthetic room of ``rt60`` seconds; the noise and the room depend only on ``seed``
    and the utterance id.

With ``trim_db`` set, the recording's leading and trailing silence is cut before anything else
(:func:`speech_span`): everything before the first and after the last frame whose energy is within
``trim_db`` dB of the loudest frame's, as ``librosa.effects.trim`` with the analysis window and hop.
Training, prediction, robustness and every other path get the same samples; times reported for
segments are counted from the recording's start (:func:`speech_span`'s first sample).

Segments of ``segment_frames`` frames start every ``segment_hop`` frames (default: no
overlap). The last partial segment and utterances shorter than one segment are padded with
each channel's silence value: the utterance's floor for dB channels, 0 for Δ channels (the
original padded with 0, the loudest value on this scale). With ``segment_tail="shift"`` the
last partial segment of a longer utterance is instead moved back to end at the last frame,
so no segment of such an utterance is mostly padding. ``segment_tail="trim"`` shifts such a
last segment only when the frames left over fill at least half a segment, and otherwise drops
them: a shifted segment that overlaps its predecessor almost entirely (a 201-frame utterance
cut into 100-frame segments gives ``[0, 100)``, ``[100, 200)`` and ``[101, 201)``) costs a third
of the compute and adds one new frame.

``speaker_norm`` turns every speaker's segments (and openSMILE functionals) into z-scores of that speaker's own statistics:
the mean and standard deviation of each channel and bin over all the speaker's segments and
frames (:func:`speaker_normalise`). What is left is how an utterance differs from the speaker's
usual voice and recording channel, which is what carries the emotion. It needs no labels, only
several recordings of the speaker: extraction uses each speaker's utterances (the test speaker's
too, unlabelled, as speaker-normalised benchmarks do); prediction uses the recordings it is given
(see :meth:`emovision.inference.predict.Recognizer.adapt`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import scipy.fft
import scipy.sparse
from scipy.ndimage import convolve1d
from scipy.signal import get_window, savgol_coeffs

from emovision.data import acoustics
from emovision.errors import EmovisionError, check_options

FEATURE_TYPES = ("logspec", "logmelspec", "logmeldeltaspec", "lognrevspec")
SEGMENT_TAILS = ("pad", "shift", "trim")
AMIN = 1e-10


@dataclass(frozen=True)
class FeatureConfig:
    """Every parameter of a feature; stored in the features file and in checkpoints."""

    kind: str = "logmelspec"
    sample_rate: int = 16000
    window_ms: float = 40.0
    hop_ms: float = 10.0
    n_fft: int = 800
    preemphasis: float = 0.97
    top_db: float = 80.0
    max_freq: float = 4000.0
    n_mels: int = 128
    delta_width: int = 5
    noise_std: float = 0.002
    noise_snr: float | None = None
    rt60: float = 0.5
    seed: int = 0
    segment_frames: int = 300
    segment_hop: int | None = None
    segment_tail: str = "pad"
    speaker_norm: bool = False
    trim_db: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in FEATURE_TYPES:
            raise EmovisionError(
                f"unknown feature type {self.kind!r}: choose one of {', '.join(FEATURE_TYPES)}"
            )
        finite = all(
            math.isfinite(v)
            for v in (self.window_ms, self.hop_ms, self.top_db, self.max_freq, self.noise_std, self.rt60)
        )
        checks = [
            (
                finite and (self.noise_snr is None or math.isfinite(self.noise_snr)),
                "feature options must be finite numbers",
            ),
            (self.sample_rate >= 1000, f"--sample-rate must be at least 1000 Hz, got {self.sample_rate}"),
            (self.window_ms > 0 and self.hop_ms > 0, "--window-ms and --hop-ms must be positive"),
            (
                self.n_fft >= 2 and self.n_fft % 2 == 0,
                f"--n-fft must be an even number ≥ 2, got {self.n_fft}",
            ),
            (self.n_mels >= 1, f"--n-mels must be at least 1, got {self.n_mels}"),
            (self.top_db > 0, f"--top-db must be positive, got {self.top_db}"),
            (
                self.trim_db is None or (math.isfinite(self.trim_db) and self.trim_db > 0),
                f"--trim-db must be a positive number of dB, got {self.trim_db}",
            ),
            (self.max_freq > 0, f"--max-freq must be positive, got {self.max_freq}"),
            (self.noise_std >= 0, f"--noise-std must be ≥ 0, got {self.noise_std}"),
            (self.rt60 > 0, f"--rt60 must be positive, got {self.rt60}"),
            (self.segment_frames >= 1, f"--segment-frames must be at least 1, got {self.segment_frames}"),
            (
                self.segment_hop is None or self.segment_hop >= 1,
                f"--segment-hop must be at least 1 (leave it out for no overlap), got {self.segment_hop}",
            ),
            (-1.0 <= self.preemphasis < 1.0, f"--preemphasis must be in [-1, 1), got {self.preemphasis}"),
        ]
        check_options(checks)
        if self.win_length > self.n_fft:
            raise EmovisionError(
                f"window of {self.window_ms} ms ({self.win_length} samples) is longer than n_fft={self.n_fft}"
            )
        if self.hop_length < 1 or self.segment_frames < 1 or self.frame_hop < 1:
            raise EmovisionError("hop, segment length and segment hop must be positive")
        if self.segment_tail not in SEGMENT_TAILS:
            raise EmovisionError(
                f"segment tail must be one of {', '.join(SEGMENT_TAILS)}, got {self.segment_tail!r}"
            )
        if self.delta_width < 3 or self.delta_width % 2 == 0:
            raise EmovisionError(f"delta width must be odd and at least 3, got {self.delta_width}")
        if self.kind in ("logspec", "lognrevspec") and self.n_bins < 1:
            raise EmovisionError(f"max_freq {self.max_freq} Hz keeps no frequency bin")

    @property
    def win_length(self) -> int:
        """Analysis window in samples."""
        return round(self.window_ms * self.sample_rate / 1000)

    @property
    def hop_length(self) -> int:
        """Frame hop in samples."""
        return round(self.hop_ms * self.sample_rate / 1000)

    @property
    def frame_hop(self) -> int:
        """Frames between the starts of consecutive segments."""
        return self.segment_hop or self.segment_frames

    @property
    def n_bins(self) -> int:
        """Linear-frequency bins kept by ``logspec``: those below ``max_freq``."""
        return min(self.n_fft // 2 + 1, math.ceil(self.max_freq * self.n_fft / self.sample_rate))

    @property
    def channels(self) -> int:
        return 3 if self.kind in ("logmeldeltaspec", "lognrevspec") else 1

    @property
    def height(self) -> int:
        """F: frequency bins or mel bands."""
        return self.n_mels if self.kind.startswith("logmel") else self.n_bins

    @property
    def min_samples(self) -> int:
        """Shortest usable signal: one window (Δ features: ``delta_width`` frames)."""
        if self.kind == "logmeldeltaspec":
            return max(self.win_length, (self.delta_width - 1) * self.hop_length)
        return self.win_length

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> FeatureConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


def feature_key(path: str | Path) -> str:
    """What seeds ``lognrevspec``'s noise and room for the recording at ``path``: its file name without
    folder and suffix. Extraction, robustness and prediction all use it, so a recording gets the same
    features whatever the corpus calls the utterance (a manifest's ids keep their folders)."""
    return Path(path).stem


def compute_features(samples: np.ndarray, config: FeatureConfig, key: str = "") -> np.ndarray:
    """Feature ``(C, F, T)`` float32 of mono ``samples`` at ``config.sample_rate``.

    ``key`` (the utterance id) seeds the noise and room of ``lognrevspec``.
    """
    signals = channel_signals(samples, config, key)
    if config.kind == "logmeldeltaspec":
        logmel = _logmel(signals[0], config)
        delta = savgol_delta(logmel, config.delta_width)
        return np.stack([logmel, delta, savgol_delta(delta, config.delta_width)])
    spectrogram = _logmel if config.kind == "logmelspec" else _logspec
    return np.stack([spectrogram(signal, config) for signal in signals])


def channel_signals(samples: np.ndarray, config: FeatureConfig, key: str = "") -> list[np.ndarray]:
    """The mono signals ``(n,)`` whose spectrograms make the channels, all as long as ``samples``.

    ``[samples]``, or for ``lognrevspec`` ``[clean, noisy, reverberant]``: the noise and the room
    come from :func:`acoustics.rng_for` with ``config.seed`` and ``key``, on the CPU. With
    ``config.trim_db`` the samples are first cut to :func:`speech_span`.
    """
    if config.trim_db is not None:
        start, stop = speech_span(samples, config)
        samples = samples[start:stop]
    if config.kind != "lognrevspec":
        return [samples]
    rng = acoustics.rng_for(config.seed, key)
    noise = acoustics.white_noise(samples.size, rng)
    if config.noise_snr is None:
        noisy = samples + config.noise_std * noise
    else:
        noisy = acoustics.add_noise_snr(samples, noise, config.noise_snr, config.sample_rate)
    room = acoustics.synthetic_rir(config.rt60, config.sample_rate, rng)
    return [samples, noisy, acoustics.reverberate(samples, room)]


def speech_span(samples: np.ndarray, config: FeatureConfig) -> tuple[int, int]:
    """First and one-past-last sample of ``samples`` ``(n,)`` without the leading and trailing silence.

    Frames of ``win_length`` samples every ``hop_length``, centred (zero-padded by half a window at
    both ends); a frame is speech when its mean power is within ``config.trim_db`` dB of the loudest
    frame's. The span runs from the first speech frame's hop to the end of the last one's, as
    ``librosa.effects.trim(samples, top_db=trim_db, frame_length=win_length, hop_length=hop_length)``,
    widened to ``config.min_samples`` where it is shorter. The whole signal when ``trim_db`` is None.
    """
    if config.trim_db is None or samples.size == 0:
        return 0, samples.size
    half, hop = config.win_length // 2, config.hop_length
    padded = np.pad(samples.astype(np.float32, copy=False), half)
    frames = 1 + (padded.size - config.win_length) // hop if padded.size >= config.win_length else 0
    if frames < 1:
        return 0, samples.size
    windows = np.lib.stride_tricks.sliding_window_view(padded, config.win_length)[::hop][:frames]
    level = 10 * np.log10(np.maximum(np.mean(windows.astype(np.float64) ** 2, axis=1), AMIN))
    speech = np.flatnonzero(level > level.max() - config.trim_db)
    start, stop = int(speech[0]) * hop, min(samples.size, (int(speech[-1]) + 1) * hop)
    if stop - start < config.min_samples:
        stop = min(samples.size, start + config.min_samples)
        start = max(0, stop - config.min_samples)
    return start, stop


def savgol_delta(values: np.ndarray, width: int) -> np.ndarray:
    """Savitzky–Golay first derivative (order 1, ``width`` frames) along the last axis, float32, per frame.

    Equals ``scipy.signal.savgol_filter(values, width, 1, deriv=1, mode="interp")`` (as
    ``librosa.feature.delta``): the interior is the same convolution; at the edges a straight-line
    fit's slope over the first or last ``width`` frames is exactly the interior value next to them,
    so it is copied instead of fitted (no least-squares solve per call, and no BLAS threads).
    Needs at least ``width`` frames.
    """
    if values.shape[-1] < width:
        raise ValueError(f"Δ features need at least {width} frames, got {values.shape[-1]}")
    half = width // 2
    delta = convolve1d(values, savgol_coeffs(width, 1, deriv=1), axis=-1, mode="constant")
    delta[..., :half] = delta[..., half : half + 1]
    delta[..., -half:] = delta[..., -half - 1 : -half]
    return delta.astype(np.float32, copy=False)


def silence_values(features: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Per-channel padding value ``(C,)``: the dB floor, or 0 for Δ channels."""
    floors = features.reshape(features.shape[0], -1).min(axis=1)
    if config.kind == "logmeldeltaspec":
        floors[1:] = 0.0
    return floors.astype(np.float32)


def segment_starts(frames: int, config: FeatureConfig) -> np.ndarray:
    """First frame of each segment of a ``frames``-long feature ``(N,)``.

    Segments start every ``frame_hop`` frames. With ``segment_tail="shift"`` a last partial
    segment of an utterance longer than one segment is moved back to end at the last frame
    (overlapping its predecessor) instead of being padded.
    """
    size, hop = config.segment_frames, config.frame_hop
    count = 1 if frames <= size else 1 + math.ceil((frames - size) / hop)
    starts = np.arange(count) * hop
    if config.segment_tail != "pad" and frames > size:
        left_over = frames - (int(starts[-2]) + size) if count > 1 else 0
        if config.segment_tail == "trim" and 0 < left_over < size / 2:
            return starts[:-1]
        starts[-1] = frames - size
    return starts


@dataclass(frozen=True)
class SpeakerStatistics:
    """One speaker's ``mean`` and ``std`` over ``count`` rows: of segments ``(N, C, F, T)`` per channel
    and bin over all frames (``(C, F, 1)``, dB), or of functionals ``(U, D)`` per value (``(D,)``)."""

    mean: np.ndarray
    std: np.ndarray
    count: int

    @classmethod
    def of(cls, values: np.ndarray) -> SpeakerStatistics:
        """The statistics of segments ``(N, C, F, T)`` or functionals ``(U, D)``, at least one row."""
        if values.ndim not in (2, 4) or values.shape[0] == 0:
            raise EmovisionError(
                "speaker statistics need segments (N, C, F, T) or functionals (U, D) with N ≥ 1, "
                f"got {values.shape}"
            )
        axes = (0, 3) if values.ndim == 4 else (0,)
        wide = values.astype(np.float64, copy=False)
        mean = wide.mean(axis=axes, keepdims=True)[0]
        std = np.sqrt(np.maximum((wide**2).mean(axis=axes, keepdims=True)[0] - mean**2, 0.0))
        floor = MIN_STD_DB if values.ndim == 4 else MIN_STD_FUNCTIONALS
        return cls(mean.astype(np.float32), np.maximum(std, floor).astype(np.float32), int(values.shape[0]))

    def merge(self, other: SpeakerStatistics | None) -> SpeakerStatistics:
        """The statistics of both sets of rows pooled (each row weighs the same)."""
        if other is None:
            return self
        n, m = self.count, other.count
        mean = (n * self.mean.astype(np.float64) + m * other.mean) / (n + m)
        square = (
            n * (self.std.astype(np.float64) ** 2 + self.mean**2) + m * (other.std**2 + other.mean**2)
        ) / (n + m)
        std = np.sqrt(np.maximum(square - mean**2, 0.0))
        floor = MIN_STD_DB if self.mean.ndim == 3 else MIN_STD_FUNCTIONALS
        return SpeakerStatistics(mean.astype(np.float32), np.maximum(std, floor).astype(np.float32), n + m)


# Smallest standard deviation divided by: 1e-3 dB for segments; functionals come in every unit.
MIN_STD_DB = 1e-3
MIN_STD_FUNCTIONALS = 1e-8


def speaker_normalise(values: np.ndarray, statistics: SpeakerStatistics | None = None) -> np.ndarray:
    """Segments ``(N, C, F, T)`` or functionals ``(U, D)`` as z-scores of a speaker's ``statistics``
    (default: their own)."""
    if values.shape[0] == 0:
        return values.astype(np.float32, copy=False)
    statistics = statistics or SpeakerStatistics.of(values)
    return ((values - statistics.mean) / statistics.std).astype(np.float32)


def speaker_normalise_groups(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Rows of ``values`` (segments ``(N, C, F, T)`` or functionals ``(N, D)``), each group of rows
    (``groups`` ``(N,)``: a speaker, a speaker under one corruption …) by its own statistics."""
    out = np.empty(values.shape, dtype=np.float32)
    for group in np.unique(groups):
        rows = groups == group
        out[rows] = speaker_normalise(values[rows])
    return out


def segment(features: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Split ``(C, F, T)`` into ``(N, C, F, segment_frames)``, padding with the silence values."""
    channels, height, frames = features.shape
    size = config.segment_frames
    starts = segment_starts(frames, config)
    total = int(starts[-1]) + size
    padded = np.empty((channels, height, max(total, frames)), dtype=np.float32)
    padded[..., :frames] = features
    padded[..., frames:] = silence_values(features, config)[:, None, None]
    return np.stack([padded[..., start : start + size] for start in starts])


def segment_times(n_segments: int, config: FeatureConfig, frames: int | None = None) -> np.ndarray:
    """Start and end of each segment in seconds ``(N, 2)``; ``frames`` (the feature's length)
    places a shifted last segment (``segment_tail="shift"``)."""
    starts = np.arange(n_segments) * config.frame_hop
    if frames is not None:
        starts = segment_starts(frames, config)[:n_segments]
    seconds = starts * config.hop_ms / 1000
    return np.stack([seconds, seconds + config.segment_frames * config.hop_ms / 1000], axis=1)


def power_spectrum(samples: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Pre-emphasised, Hamming-windowed power spectrum ``(n_fft // 2 + 1, T)`` float32.

    Frames are centred (``n_fft // 2`` zeros padded on each side), ``T = 1 + n // hop``.
    """
    emphasised = _preemphasis(samples.astype(np.float32, copy=False), config.preemphasis)
    half = config.n_fft // 2
    padded = np.pad(emphasised, (half, half))
    frames = np.lib.stride_tricks.sliding_window_view(padded, config.n_fft)[:: config.hop_length]
    spectrum = scipy.fft.rfft(frames * analysis_window(config), axis=1)
    power = spectrum.real**2 + spectrum.imag**2
    return np.ascontiguousarray(power.T, dtype=np.float32)


def to_db(power: np.ndarray, top_db: float) -> np.ndarray:
    """``10·log10(power / max)``, floored ``top_db`` below 0 dB (librosa's ``power_to_db``)."""
    level = 10.0 * np.log10(np.maximum(power, AMIN))
    level -= level.max()
    return np.maximum(level, -top_db).astype(np.float32)


def mel_filterbank(config: FeatureConfig) -> np.ndarray:
    """Slaney-style mel filterbank ``(n_mels, n_fft // 2 + 1)``, area-normalised (as librosa)."""
    return _mel_filterbank(config.sample_rate, config.n_fft, config.n_mels)


def bin_frequencies(config: FeatureConfig) -> np.ndarray:
    """Centre frequency (Hz) of each row of a feature ``(F,)``: the mel bands' centres for ``logmel*``
    features, the FFT bins' frequencies for ``logspec`` and ``lognrevspec``."""
    if config.kind.startswith("logmel"):
        top = _hz_to_mel(config.sample_rate / 2)
        return _mel_to_hz(np.linspace(0.0, top, config.n_mels + 2))[1:-1].astype(np.float32)
    return (np.arange(config.n_bins) * config.sample_rate / config.n_fft).astype(np.float32)


def _logspec(samples: np.ndarray, config: FeatureConfig) -> np.ndarray:
    return to_db(power_spectrum(samples, config)[: config.n_bins], config.top_db)


def _logmel(samples: np.ndarray, config: FeatureConfig) -> np.ndarray:
    return to_db(_sparse_mel_filterbank(config) @ power_spectrum(samples, config), config.top_db)


def _preemphasis(samples: np.ndarray, coef: float) -> np.ndarray:
    """``y[0] = x[0]``, ``y[n] = x[n] − coef·x[n−1]`` (librosa's default start state is not used)."""
    emphasised = samples.copy()
    emphasised[1:] -= np.float32(coef) * samples[:-1]
    return emphasised


_CACHE: dict[tuple, np.ndarray | scipy.sparse.csr_array] = {}


def analysis_window(config: FeatureConfig) -> np.ndarray:
    """Hamming window of ``win_length`` samples centred in ``n_fft`` zeros ``(n_fft,)`` float32 (cached)."""
    key = ("window", config.win_length, config.n_fft)
    if key not in _CACHE:
        window = get_window("hamming", config.win_length, fftbins=True)
        left = (config.n_fft - config.win_length) // 2
        full = np.zeros(config.n_fft, dtype=np.float32)
        full[left : left + config.win_length] = window
        _CACHE[key] = full
    return _CACHE[key]


def _mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    key = ("mel", sample_rate, n_fft, n_mels)
    if key in _CACHE:
        return _CACHE[key]
    fft_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_points = np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), n_mels + 2)
    edges = _mel_to_hz(mel_points)
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    _CACHE[key] = weights.astype(np.float32)
    return _CACHE[key]


def _sparse_mel_filterbank(config: FeatureConfig) -> scipy.sparse.csr_array:
    """:func:`mel_filterbank` as a sparse matrix: each band covers a few bins, and a sparse product
    is many times faster than a dense one and uses no BLAS threads (which contend with the workers)."""
    key = ("sparse-mel", config.sample_rate, config.n_fft, config.n_mels)
    if key not in _CACHE:
        _CACHE[key] = scipy.sparse.csr_array(mel_filterbank(config))
    return _CACHE[key]


_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    hz = np.asanyarray(hz, dtype=np.float64)
    linear = hz / _F_SP
    log = _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(hz >= _MIN_LOG_HZ, log, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    linear = _F_SP * mel
    log = _MIN_LOG_HZ * np.exp(_LOGSTEP * (mel - _MIN_LOG_MEL))
    return np.where(mel >= _MIN_LOG_MEL, log, linear)
