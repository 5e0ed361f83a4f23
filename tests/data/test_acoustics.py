import numpy as np
import pytest

from emovision.data import acoustics
from emovision.data.audio import load_audio


@pytest.mark.parametrize("snr", [30.0, 10.0, 0.0, -5.0])
@pytest.mark.parametrize("kind", ["white", "pink"])
def test_noise_is_added_at_the_requested_snr_over_active_speech(emodb_wavs, snr, kind):
    speech = load_audio(emodb_wavs[3])
    rng = np.random.default_rng(1)
    noise = (
        acoustics.white_noise(speech.size, rng) if kind == "white" else acoustics.pink_noise(speech.size, rng)
    )
    noisy = acoustics.add_noise_snr(speech, noise, snr, 16000)
    added = noisy - speech
    measured = 10 * np.log10(acoustics.active_power(speech, 16000) / np.mean(added.astype(np.float64) ** 2))
    assert measured == pytest.approx(snr, abs=0.5)


def test_active_speech_ignores_padding_silence(emodb_wavs):
    speech = load_audio(emodb_wavs[3])
    padded = np.concatenate([np.zeros(32000, np.float32), speech])
    assert acoustics.active_power(padded, 16000) == pytest.approx(
        acoustics.active_power(speech, 16000), rel=0.02
    )


@pytest.mark.parametrize("rt60", [0.2, 0.3, 0.6, 0.9, 1.5])
def test_impulse_response_has_the_requested_rt60(rt60):
    for seed in range(3):
        rir = acoustics.synthetic_rir(rt60, 16000, np.random.default_rng(seed))
        assert acoustics.estimate_rt60(rir, 16000) == pytest.approx(rt60, rel=0.10)


def test_rng_for_depends_on_seed_and_key_only():
    a = acoustics.rng_for(3, "03a01Fa").standard_normal(4)
    b = acoustics.rng_for(3, "03a01Fa").standard_normal(4)
    c = acoustics.rng_for(4, "03a01Fa").standard_normal(4)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_babble_gives_every_talker_the_same_level_and_hits_the_snr(emodb_wavs):
    talkers = [load_audio(path) for path in emodb_wavs[10:14]]
    n = 40000
    mixed = acoustics.babble(talkers, n, 16000, np.random.default_rng(5))
    assert mixed.shape == (n,) and mixed.dtype == np.float32
    assert mixed.std() == pytest.approx(1.0, rel=1e-4)
    louder = [talkers[0] * 100.0, *talkers[1:]]
    np.testing.assert_allclose(acoustics.babble(louder, n, 16000, np.random.default_rng(5)), mixed, atol=1e-4)
    speech = load_audio(emodb_wavs[3])
    noise = acoustics.babble(talkers, speech.size, 16000, np.random.default_rng(6))
    added = acoustics.add_noise_snr(speech, noise, 5.0, 16000) - speech
    measured = 10 * np.log10(acoustics.active_power(speech, 16000) / np.mean(added.astype(np.float64) ** 2))
    assert measured == pytest.approx(5.0, abs=0.5)


def test_babble_of_silent_talkers_is_silence():
    assert not acoustics.babble([np.zeros(100, np.float32)], 50, 16000, np.random.default_rng(0)).any()


def _slope_db_per_octave(noise: np.ndarray) -> float:
    """Least-squares slope of the averaged periodogram (Hann, 4096-sample blocks) in dB against
    octaves, over 1/1024 … 1/2 of the sampling rate."""
    blocks = noise[: noise.size // 4096 * 4096].reshape(-1, 4096).astype(np.float64)
    power = (np.abs(np.fft.rfft(blocks * np.hanning(4096), axis=1)) ** 2).mean(axis=0)
    bins = np.arange(4, 2049)  # frequency bin k is k / 4096 of the sampling rate
    octaves = np.log2(bins)
    return float(np.polyfit(octaves, 10 * np.log10(power[bins]), 1)[0])


def test_pink_noise_falls_3_db_per_octave_and_white_noise_is_flat():
    rng = np.random.default_rng(4)
    pink = acoustics.pink_noise(1 << 20, rng)
    white = acoustics.white_noise(1 << 20, rng)
    assert _slope_db_per_octave(pink) == pytest.approx(-10 * np.log10(2), abs=0.2)  # 1/f power: −3.01
    assert _slope_db_per_octave(white) == pytest.approx(0.0, abs=0.2)
    assert pink.std() == pytest.approx(1.0, rel=1e-3) and white.std() == pytest.approx(1.0, rel=1e-2)
    assert abs(pink.mean()) < 1e-3  # no DC
