"""Waveform augmentation for training: noisy, reverberant, speed-perturbed and re-gained copies.

``emovision extract … --augment noise,reverb,speed,gain --augment-copies N`` writes, beside
each utterance's features, ``N`` copies per augmentation *kind* (``noise:white``,
``noise:pink``, ``noise:babble``, ``noise:recorded``, ``reverb``, ``speed``, ``gain``). Training
reads them for its training speakers only (never validation or test) and, every epoch, replaces
each training utterance by one of its copies with probability ``--augment-prob``.

Every draw depends only on the plan's seed, the utterance id and the copy, so an extraction is
repeatable. Babble is made of other utterances of the *same* speaker: a copy is only ever used
while its speaker is a training speaker, so babble never carries a validation or test speaker's
voice into training, whatever the fold. Signals are mono float32 ``(n,)`` at ``sample_rate`` Hz.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

from emovision.data import acoustics
from emovision.data.acoustics import NOISE_TYPES
from emovision.data.audio import load_audio
from emovision.errors import EmovisionError, check_options

WAVE_AUGMENTS = ("noise", "reverb", "speed", "gain")
DEFAULT_NOISES = ("white", "pink", "babble")


@dataclass(frozen=True)
class AugmentPlan:
    """What ``extract --augment`` writes: ``copies`` copies of every kind in :attr:`kinds`.

    ``snr`` (dB) and ``rt60`` (s) are uniform ranges; ``speeds`` the resampling factors drawn
    from (Kaldi's 0.9 / 1.1: tempo and pitch change together); ``gain_db`` a uniform range;
    ``babble_talkers`` voices per babble; ``noise_files`` the recordings of ``noise:recorded``.
    """

    augment: tuple[str, ...] = ()
    copies: int = 1
    noises: tuple[str, ...] = DEFAULT_NOISES
    snr: tuple[float, float] = (0.0, 20.0)
    rt60: tuple[float, float] = (0.2, 1.0)
    speeds: tuple[float, ...] = (0.9, 1.1)
    gain_db: tuple[float, float] = (-12.0, 12.0)
    babble_talkers: int = 3
    noise_files: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [name for name in self.augment if name not in WAVE_AUGMENTS]
        if unknown:
            raise EmovisionError(
                f"--augment: {unknown[0]!r} is not a waveform augmentation ({', '.join(WAVE_AUGMENTS)})"
            )
        bad_noise = [name for name in self.noises if name not in NOISE_TYPES]
        checks = [
            (self.copies >= 1, "--augment-copies must be at least 1"),
            (not bad_noise, f"--augment-noises: unknown type {bad_noise[:1]}: {', '.join(NOISE_TYPES)}"),
            (
                "recorded" not in self.noises or bool(self.noise_files),
                "noise type 'recorded' needs --augment-noise-dir with noise recordings",
            ),
            (self.snr[0] <= self.snr[1] and self.snr[0] >= -50, "--augment-snr: LOW,HIGH dB, LOW ≥ -50"),
            (0 < self.rt60[0] <= self.rt60[1] <= 10, "--augment-rt60: LOW,HIGH seconds within 0…10"),
            (all(0.5 <= s <= 2.0 for s in self.speeds) and self.speeds, "--augment-speeds within 0.5…2"),
            (self.gain_db[0] <= self.gain_db[1], "--augment-gain: LOW,HIGH dB"),
            (self.babble_talkers >= 1, "--babble-talkers must be at least 1"),
        ]
        check_options(checks)

    @property
    def kinds(self) -> tuple[str, ...]:
        """``noise`` expanded to ``noise:TYPE`` per noise type, in the order given."""
        kinds: list[str] = []
        for name in self.augment:
            kinds.extend(f"noise:{n}" for n in self.noises) if name == "noise" else kinds.append(name)
        return tuple(kinds)

    @property
    def variants(self) -> tuple[str, ...]:
        """One kind per copy, in storage order: each kind ``copies`` times."""
        return tuple(kind for kind in self.kinds for _ in range(self.copies))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> AugmentPlan:
        return cls(**{key: tuple(v) if isinstance(v, list) else v for key, v in values.items()})


def babble_talkers(pool: Sequence[str], key: str, plan: AugmentPlan) -> list[str]:
    """The paths (from ``pool``: the same speaker's other recordings) whose voices babble over ``key``."""
    ordered = sorted(pool)
    if not ordered:
        return []
    rng = acoustics.rng_for(plan.seed, f"augment/babble-talkers/{key}")
    picks = rng.choice(len(ordered), size=min(plan.babble_talkers, len(ordered)), replace=False)
    return [ordered[int(i)] for i in sorted(picks)]


def augmented_copies(
    samples: np.ndarray, sample_rate: int, key: str, plan: AugmentPlan, talkers: Sequence[str] = ()
) -> list[np.ndarray]:
    """One signal per entry of ``plan.variants`` for utterance ``key`` (``talkers``: babble paths)."""
    copies = []
    for index, kind in enumerate(plan.variants):
        rng = acoustics.rng_for(plan.seed, f"augment/{kind}/{index}/{key}")
        copies.append(_apply(kind, samples, sample_rate, rng, plan, talkers))
    return copies


def _apply(
    kind: str,
    samples: np.ndarray,
    sample_rate: int,
    rng: np.random.Generator,
    plan: AugmentPlan,
    talkers: Sequence[str],
) -> np.ndarray:
    n = samples.size
    if kind == "reverb":
        room = acoustics.synthetic_rir(float(rng.uniform(*plan.rt60)), sample_rate, rng)
        return acoustics.reverberate(samples, room)
    if kind == "speed":
        import soxr  # loaded on first use, as in emovision.data.audio

        factor = float(plan.speeds[int(rng.integers(len(plan.speeds)))])
        return soxr.resample(samples, sample_rate * factor, sample_rate).astype(np.float32)
    if kind == "gain":
        return (samples * 10.0 ** (rng.uniform(*plan.gain_db) / 20.0)).astype(np.float32)
    noise_type = kind.partition(":")[2]
    if noise_type == "white":
        noise = acoustics.white_noise(n, rng)
    elif noise_type == "pink":
        noise = acoustics.pink_noise(n, rng)
    elif noise_type == "babble":
        voices = [_recording(path, sample_rate) for path in talkers]
        noise = acoustics.babble(voices, n, sample_rate, rng) if voices else acoustics.pink_noise(n, rng)
    else:
        recording = _recording(plan.noise_files[int(rng.integers(len(plan.noise_files)))], sample_rate)
        noise = acoustics.fit_length(recording, n, rng)
    return acoustics.add_noise_snr(samples, noise, float(rng.uniform(*plan.snr)), sample_rate)


@lru_cache(maxsize=64)
def _recording(path: str, sample_rate: int) -> np.ndarray:
    return load_audio(path, sample_rate)
