"""The batched torch features against the numpy features, on real emoDB recordings of different lengths.

Both paths compute in float32 with different FFT and ``log10`` implementations. Their difference
is rounding: almost every value agrees within 1e-3 dB; the few larger ones (at most 0.02 dB) are
bins 60–80 dB below their frame, where float32 FFT rounding is relatively large and where each path
is that far from a float64 computation too.
"""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from emovision.cli import main
from emovision.data.audio import load_audio
from emovision.data.corpora import load_corpus
from emovision.data.extract import extract_corpus, torch_device
from emovision.data.features import FEATURE_TYPES, FeatureConfig, compute_features
from emovision.data.features_torch import batch_features
from emovision.data.store import load_speakers
from emovision.errors import EmovisionError

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def assert_same_db(ours: list[np.ndarray], reference: list[np.ndarray]) -> None:
    """Equal to float32 rounding: 99.9 % of all values within 1e-3 dB, every value within 0.02 dB."""
    assert [a.shape for a in ours] == [b.shape for b in reference]
    assert all(a.dtype == np.float32 for a in ours)
    difference = np.concatenate([np.abs(a - b).ravel() for a, b in zip(ours, reference, strict=True)])
    assert np.quantile(difference, 0.999) < 1e-3
    assert difference.max() < 0.02


@pytest.fixture(scope="module")
def signals(emodb_wavs) -> list[np.ndarray]:
    """Real recordings (all 2 s in this copy) cut and joined to 0.05–6 s, so a batch is mostly padding."""
    y = [load_audio(emodb_wavs[i]) for i in (0, 50, 100, 200, 300, 400)]
    return [y[0][:800], y[1][:12345], y[2], np.concatenate([y[3], y[4], y[5]]), y[4][:16001], y[5][7000:]]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", FEATURE_TYPES)
def test_batch_equals_numpy_features(signals, kind, device):
    config = FeatureConfig(kind=kind, seed=3)
    keys = [f"utt{i}" for i in range(len(signals))]
    batch = batch_features(signals, config, keys, device=device)
    reference = [compute_features(signal, config, key) for signal, key in zip(signals, keys, strict=True)]
    assert [a.shape for a in batch] == [(config.channels, config.height, 1 + s.size // 160) for s in signals]
    db_channels = 1 if kind == "logmeldeltaspec" else config.channels
    assert_same_db([a[:db_channels] for a in batch], [b[:db_channels] for b in reference])
    assert all(a[:db_channels].max(axis=(1, 2)).tolist() == [0.0] * db_channels for a in batch)
    for ours, expected in zip(batch, reference, strict=True):
        np.testing.assert_allclose(ours[db_channels:], expected[db_channels:], atol=2e-3)


def test_noise_and_room_follow_the_key(signals):
    config = FeatureConfig(kind="lognrevspec")
    first, second = batch_features(signals[2:3] * 2, config, ["a", "b"])
    np.testing.assert_allclose(first[0], second[0], atol=1e-5)
    assert not np.allclose(first[1:], second[1:], atol=0.1)


def test_extraction_with_the_torch_path_writes_the_same_file(tmp_path, emodb_wavs):
    rows = ["path,speaker,label"]
    for i, wav in enumerate(emodb_wavs[:9]):
        audio, rate = sf.read(wav, dtype="float32")
        cut = tmp_path / f"u{i}.wav"
        sf.write(cut, np.tile(audio, 3)[: rate // 2 + i * rate // 2], rate)
        rows.append(f"{cut},s{i % 2},{'a' if i % 3 else 'b'}")
    (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    rows.append("broken.wav,s1,a")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    corpus = load_corpus("manifest", tmp_path / "m.csv")
    config = FeatureConfig(kind="logmeldeltaspec", segment_frames=100)
    extract_corpus(corpus, config, tmp_path / "numpy.h5", workers=1, progress=False)
    extract_corpus(
        corpus, config, tmp_path / "torch.h5", workers=2, progress=False, device="cpu-torch", batch_size=4
    )
    reference, ours = load_speakers(tmp_path / "numpy.h5"), load_speakers(tmp_path / "torch.h5")
    assert list(ours) == list(reference) == ["s0", "s1"]
    for speaker, data in ours.items():
        expected = reference[speaker]
        assert data.utterance_ids == expected.utterance_ids and data.skipped == expected.skipped
        for name in ("segment_labels", "utterance_labels", "segments_per_utterance", "durations"):
            np.testing.assert_array_equal(getattr(data, name), getattr(expected, name))
        assert_same_db([data.segments[:, 0]], [expected.segments[:, 0]])
        np.testing.assert_allclose(data.segments[:, 1:], expected.segments[:, 1:], atol=2e-3)
    assert ours["s1"].skipped[0][1].startswith("unreadable audio")
    assert list(ours["s0"].segments_per_utterance) == [1, 2, 3, 4, 5]


def test_devices_are_checked():
    assert torch_device("cpu") is None and torch_device("cpu-torch") == "cpu"
    assert torch_device("auto") == ("cuda" if torch.cuda.is_available() else None)
    if not torch.cuda.is_available():
        with pytest.raises(EmovisionError, match="no CUDA GPU"):
            torch_device("cuda")
    with pytest.raises(EmovisionError, match="unknown device"):
        torch_device("tpu")


def test_numpy_features_do_not_import_torch():
    code = "import sys, emovision.data.features, emovision.data.extract; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_extract_command_device_option(tmp_path, emodb_wavs, capsys):
    csv = tmp_path / "m.csv"
    csv.write_text("path,speaker,label\n" + "".join(f"{wav},s0,a\n" for wav in emodb_wavs[:3]))
    out = tmp_path / "auto.h5"
    assert main(["extract", "manifest", str(csv), "-o", str(out), "--device", "auto", "--quiet"]) == 0
    assert len(load_speakers(out)["s0"].utterance_ids) == 3
    code = main(
        ["extract", "manifest", str(csv), "-o", str(tmp_path / "gpu.h5"), "--device", "cuda", "--quiet"]
    )
    if torch.cuda.is_available():
        assert code == 0
    else:
        assert code == 2 and "no CUDA GPU" in capsys.readouterr().err
