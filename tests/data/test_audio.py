import numpy as np
import pytest
import soundfile as sf

from emovision.data.audio import load_audio, prepare_audio
from emovision.errors import AudioError


def test_real_file_is_resampled_to_16k(emodb_wavs):
    info = sf.info(emodb_wavs[0])
    samples = load_audio(emodb_wavs[0])
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert samples.size == pytest.approx(info.frames * 16000 / info.samplerate, abs=2)


@pytest.mark.parametrize("rate", [8000, 11025, 44100, 48000])
def test_any_rate_and_format(tmp_path, emodb_wavs, rate):
    original = load_audio(emodb_wavs[1], rate)
    for suffix in ("wav", "flac", "ogg"):
        path = tmp_path / f"x.{suffix}"
        sf.write(path, original, rate)
        out = load_audio(path)
        assert abs(out.size - original.size * 16000 / rate) <= 2


def test_stereo_is_downmixed(tmp_path):
    left = np.sin(np.linspace(0, 100, 16000)).astype(np.float32) * 0.5
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, np.zeros_like(left)], axis=1), 16000)
    np.testing.assert_allclose(load_audio(path), left / 2, atol=1e-4)


def test_bad_files_name_the_file_and_the_reason(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00garbage" * 10)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, dtype=np.float32), 16000)
    short = tmp_path / "short.wav"
    sf.write(short, np.ones(100, dtype=np.float32) * 0.1, 16000)
    cases = {
        tmp_path / "missing.wav": "no such file",
        empty: "empty file",
        corrupt: "unreadable audio",
        silent: "silent",
        short: "too short",
    }
    for path, reason in cases.items():
        with pytest.raises(AudioError) as info:
            load_audio(path, min_samples=640)
        assert str(path) in str(info.value) and reason in info.value.reason


def test_samples_in_memory():
    tone = np.sin(np.linspace(0, 1000, 44100)).astype(np.float32)
    out = prepare_audio(np.stack([tone, tone], axis=1), 44100, 16000)
    assert out.shape == (16000,)
    with pytest.raises(AudioError, match="NaN"):
        prepare_audio(np.array([0.1, np.nan, 0.2]), 16000)
