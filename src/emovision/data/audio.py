"""Load, downmix, resample and validate audio: one loader for every corpus.

Every function returns mono ``float32`` samples in [-1, 1] at the requested rate (Hz). The decoder
(soundfile) and the resampler (soxr) load on first use, so that everything that reads only feature
files — training, cross-validation, reports — runs where neither is installed.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from emovision.errors import AudioError

DEFAULT_SAMPLE_RATE = 16000
# What the audio reader (libsndfile through soundfile) decodes, by file name; it reads the format
# from the file's header, so a FLAC file named .wav is read as FLAC.
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".au", ".caf", ".w64")


def audio_files(path: str | Path) -> list[Path]:
    """The audio files (by suffix, see :data:`AUDIO_SUFFIXES`) under folder ``path``, recursively, sorted."""
    return sorted(
        item for item in Path(path).rglob("*") if item.suffix.lower() in AUDIO_SUFFIXES and item.is_file()
    )


def find_audio_file(folder: Path, stem: str) -> Path | None:
    """The audio file ``folder/stem.<suffix>`` in the first of :data:`AUDIO_SUFFIXES` that exists, or None."""
    for suffix in AUDIO_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def load_audio(
    source: str | Path | bytes, sample_rate: int = DEFAULT_SAMPLE_RATE, min_samples: int = 1
) -> np.ndarray:
    """Read wav/flac/ogg from a path or bytes; return mono samples ``(n,)`` at ``sample_rate`` Hz.

    Raises :class:`AudioError` naming the file and the reason for a missing, empty,
    unreadable, silent (all-zero) or too-short file (fewer than ``min_samples`` samples
    after resampling, e.g. one analysis window).
    """
    import soundfile as sf

    name = "<upload>" if isinstance(source, bytes) else str(source)
    if isinstance(source, bytes):
        if not source:
            raise AudioError(name, "empty file (0 bytes)")
        handle: io.BytesIO | str = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise AudioError(name, "no such file")
        if path.stat().st_size == 0:
            raise AudioError(name, "empty file (0 bytes)")
        handle = str(path)
    try:
        samples, rate = sf.read(handle, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(name, f"unreadable audio ({_short(exc)})") from None
    return prepare_audio(samples, rate, sample_rate, min_samples=min_samples, source=name)


def prepare_audio(
    samples: np.ndarray,
    rate: int,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    min_samples: int = 1,
    source: str = "<samples>",
) -> np.ndarray:
    """Downmix ``(n,)`` or ``(n, channels)`` samples, resample ``rate`` → ``sample_rate`` Hz, validate.

    Resampling uses soxr's high quality mode (the same as ``librosa.load``'s default).
    """
    import soxr

    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    elif samples.ndim != 1:
        raise AudioError(source, f"expected (samples,) or (samples, channels), got {samples.shape}")
    if rate <= 0:
        raise AudioError(source, f"invalid sample rate {rate}")
    if samples.size == 0:
        raise AudioError(source, "no audio samples")
    if not np.all(np.isfinite(samples)):
        raise AudioError(source, "audio contains NaN or infinite values")
    if rate != sample_rate:
        samples = soxr.resample(samples, rate, sample_rate, quality="HQ").astype(np.float32)
    if samples.size < min_samples:
        seconds = samples.size / sample_rate
        needed = min_samples / sample_rate
        raise AudioError(source, f"too short ({seconds:.3f} s, at least {needed:.3f} s needed)")
    if not np.any(samples):
        raise AudioError(source, "silent (all samples are zero)")
    return samples


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def audio_info(path: str | Path) -> tuple[int, int]:
    """``(frames, sample_rate)`` of an audio file from its header, without decoding it."""
    import soundfile as sf

    name = str(path)
    if not Path(path).is_file():
        raise AudioError(name, "no such file")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(name, f"unreadable audio ({_short(exc)})") from None
    return int(info.frames), int(info.samplerate)


def stream_audio(path: str | Path, sample_rate: int, block_seconds: float = 30.0) -> Iterator[np.ndarray]:
    """Mono ``float32`` samples of ``path`` at ``sample_rate`` Hz in blocks of about
    ``block_seconds``, decoded and resampled (one continuous soxr stream) piece by piece: the
    memory does not grow with the file's length."""
    import soundfile as sf
    import soxr

    name = str(path)
    try:
        with sf.SoundFile(str(path)) as handle:
            rate = handle.samplerate
            stream = (
                None if rate == sample_rate else soxr.ResampleStream(rate, sample_rate, 1, dtype="float32")
            )
            size = max(1, int(block_seconds * rate))
            while True:
                block = handle.read(size, dtype="float32", always_2d=True)
                last = block.shape[0] < size
                mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
                out = mono if stream is None else stream.resample_chunk(mono, last=last)
                if out.size:
                    yield np.ascontiguousarray(out, dtype=np.float32)
                if last:
                    return
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(name, f"unreadable audio ({_short(exc)})") from None


def read_span(path: str | Path, start: float, end: float, sample_rate: int) -> np.ndarray:
    """Mono samples of ``path`` from ``start`` to ``end`` seconds, at ``sample_rate`` Hz (only that
    stretch is decoded)."""
    import soundfile as sf
    import soxr

    name = str(path)
    try:
        with sf.SoundFile(str(path)) as handle:
            rate = handle.samplerate
            first = max(0, round(start * rate))
            handle.seek(min(first, handle.frames))
            block = handle.read(max(0, round(end * rate) - first), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(name, f"unreadable audio ({_short(exc)})") from None
    mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
    if rate == sample_rate or mono.size == 0:
        return mono
    return soxr.resample(mono, rate, sample_rate, quality="HQ").astype(np.float32)
