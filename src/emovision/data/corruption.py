"""Corrupted audio for robustness tests: the conditions (noise type and SNR, RT60), what makes them
repeatable, and the corruption itself.

Every draw depends only on the plan's seed, the utterance id and the condition (never on the
processing order): one noise signal per utterance and noise type, scaled to each SNR, and one
room per utterance, decaying at each RT60. Babble is the sum of level-normalised utterances of
speakers who are not a test speaker of the fold.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from emovision.data import acoustics
from emovision.data.acoustics import NOISE_TYPES
from emovision.data.audio import load_audio
from emovision.data.corpora import Utterance
from emovision.errors import EmovisionError

NOISE_SUFFIXES = (".wav", ".flac", ".ogg")
DEFAULT_SNRS = (30.0, 20.0, 10.0, 5.0, 0.0)
DEFAULT_NOISES = ("white", "pink", "babble")
DEFAULT_RT60S = (0.3, 0.6, 0.9)
MAX_RT60 = 10.0
SNR_RANGE = (-50.0, 100.0)


@dataclass(frozen=True)
class Condition:
    """One acoustic condition: ``clean``, ``noise`` (type and SNR in dB) or ``reverb`` (RT60 in s)."""

    kind: str
    noise: str | None = None
    snr_db: float | None = None
    rt60_s: float | None = None

    @property
    def name(self) -> str:
        """``clean``, ``white 10 dB`` or ``reverb 0.6 s``."""
        if self.kind == "noise":
            return f"{self.noise} {self.snr_db:g} dB"
        if self.kind == "reverb":
            return f"reverb {self.rt60_s:g} s"
        return "clean"


CLEAN = Condition("clean")


@dataclass(frozen=True)
class CorruptionPlan:
    """The conditions to evaluate and what makes them repeatable.

    ``snrs`` in dB, ``rt60s`` in seconds; ``noises`` from :data:`NOISE_TYPES` (``recorded``
    needs ``noise_files``); ``babble_talkers`` utterances make one babble; ``seed`` with the
    utterance id fixes every random draw.
    """

    snrs: tuple[float, ...] = DEFAULT_SNRS
    noises: tuple[str, ...] = DEFAULT_NOISES
    rt60s: tuple[float, ...] = DEFAULT_RT60S
    seed: int = 0
    babble_talkers: int = 5
    noise_files: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [name for name in self.noises if name not in NOISE_TYPES]
        if unknown:
            raise EmovisionError(
                f"--noise: unknown noise type {unknown[0]!r}: choose from {', '.join(NOISE_TYPES)}"
            )
        if "recorded" in self.noises and not self.noise_files:
            raise EmovisionError("--noise recorded needs --noise-dir with the noise recordings")
        if self.noises and not self.snrs:
            raise EmovisionError("--snr: noise types were given but no SNR")
        if self.babble_talkers < 1:
            raise EmovisionError("--babble-talkers must be at least 1")
        for option, values in (("--snr", self.snrs), ("--noise", self.noises), ("--rt60", self.rt60s)):
            if len(set(values)) != len(values):
                raise EmovisionError(f"{option} lists a value twice")

    @property
    def conditions(self) -> list[Condition]:
        """Clean first, then every noise type at every SNR, then every RT60, in the given orders."""
        noisy = [Condition("noise", noise=n, snr_db=s) for n in self.noises for s in self.snrs]
        return [CLEAN, *noisy, *(Condition("reverb", rt60_s=r) for r in self.rt60s)]

    def to_dict(self) -> dict:
        return asdict(self)


def parse_numbers(
    text: str, option: str, positive: bool = False, lower: float | None = None, upper: float | None = None
) -> tuple:
    """Comma-separated numbers of an option (``"30,20,10"``); empty text gives ``()``.

    Raises :class:`EmovisionError` naming ``option`` for a non-number, a non-finite value, a
    value ≤ 0 when ``positive``, or one outside ``[lower, upper]``.
    """
    values = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise EmovisionError(
                f"{option}: {part!r} is not a number (expected e.g. {option} 20,10,0)"
            ) from None
        if not math.isfinite(value):
            raise EmovisionError(f"{option}: {part!r} is not a finite number")
        if positive and value <= 0:
            raise EmovisionError(f"{option}: values must be positive, got {part}")
        if upper is not None and value > upper:
            raise EmovisionError(f"{option}: {part} is above the largest allowed value {upper:g}")
        if lower is not None and value < lower:
            raise EmovisionError(f"{option}: {part} is below the smallest allowed value {lower:g}")
        values.append(value)
    return tuple(values)


def parse_names(text: str) -> tuple[str, ...]:
    """Comma-separated names (``"white,pink"``); empty text gives ``()``."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def noise_recordings(folder: str | Path) -> tuple[str, ...]:
    """The wav/flac/ogg files under ``folder`` (searched recursively), sorted; each must be usable audio."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EmovisionError(f"--noise-dir {folder} is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in NOISE_SUFFIXES)
    if not files:
        raise EmovisionError(f"--noise-dir {folder} holds no {'/'.join(NOISE_SUFFIXES)} files")
    for path in files:
        load_audio(path)
    return tuple(str(p) for p in files)


def babble_pool(utterances: dict[str, Utterance], test_speakers: Sequence[str]) -> list[str]:
    """Ids of the utterances that may babble over a fold: those of every speaker but its test speakers."""
    excluded = set(test_speakers)
    return sorted(uid for uid, u in utterances.items() if u.speaker not in excluded)


def babble_sources(pool: Sequence[str], key: str, plan: CorruptionPlan) -> list[str]:
    """The ``plan.babble_talkers`` utterance ids (fewer if the pool is smaller) that babble over ``key``.

    ``pool`` holds the candidate ids (never a test speaker's); the draw depends only on the seed,
    ``key`` and the pool, whose order does not matter.
    """
    ordered = sorted(pool)
    rng = acoustics.rng_for(plan.seed, f"babble-talkers/{key}")
    picks = rng.choice(len(ordered), size=min(plan.babble_talkers, len(ordered)), replace=False)
    return [ordered[int(i)] for i in sorted(picks)]


def noise_signal(
    kind: str, n: int, sample_rate: int, key: str, plan: CorruptionPlan, talkers: Sequence[np.ndarray] = ()
) -> np.ndarray:
    """Noise ``(n,)`` of type ``kind`` for utterance ``key``; ``talkers`` are the babble voices."""
    rng = acoustics.rng_for(plan.seed, f"{kind}/{key}")
    if kind == "white":
        return acoustics.white_noise(n, rng)
    if kind == "pink":
        return acoustics.pink_noise(n, rng)
    if kind == "babble":
        if not talkers:
            raise EmovisionError(f"no babble talkers for {key}: the corpus has no other speaker")
        return acoustics.babble(list(talkers), n, sample_rate, rng)
    recording = _noise_recording(plan.noise_files[int(rng.integers(len(plan.noise_files)))], sample_rate)
    return acoustics.fit_length(recording, n, rng)


def room_impulse_response(rt60: float, sample_rate: int, key: str, plan: CorruptionPlan) -> np.ndarray:
    """The room of utterance ``key`` at ``rt60`` seconds: the same noise draw at every RT60."""
    return acoustics.synthetic_rir(rt60, sample_rate, acoustics.rng_for(plan.seed, f"reverb/{key}"))


def corrupt(
    samples: np.ndarray,
    sample_rate: int,
    key: str,
    plan: CorruptionPlan,
    talkers: Sequence[np.ndarray] = (),
) -> Iterator[tuple[Condition, np.ndarray]]:
    """Every condition of ``plan`` applied to ``samples`` ``(n,)`` at ``sample_rate`` Hz, clean first.

    ``key`` is the utterance id; ``talkers`` the babble voices (see :func:`babble_sources`).
    Yields ``(condition, signal (n,))``.
    """
    yield CLEAN, samples
    for kind in plan.noises:
        noise = noise_signal(kind, samples.size, sample_rate, key, plan, talkers)
        for snr in plan.snrs:
            yield (
                Condition("noise", noise=kind, snr_db=snr),
                acoustics.add_noise_snr(samples, noise, snr, sample_rate),
            )
    for rt60 in plan.rt60s:
        room = room_impulse_response(rt60, sample_rate, key, plan)
        yield Condition("reverb", rt60_s=rt60), acoustics.reverberate(samples, room)


@lru_cache(maxsize=16)
def _noise_recording(path: str, sample_rate: int) -> np.ndarray:
    return load_audio(path, sample_rate)


@lru_cache(maxsize=256)
def talker_audio(path: str, sample_rate: int) -> np.ndarray:
    """A babble talker's recording at ``sample_rate`` Hz (cached per process)."""
    return load_audio(path, sample_rate)
