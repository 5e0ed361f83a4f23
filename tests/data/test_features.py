"""Each feature type against a direct librosa computation of the same definition."""

import librosa
import numpy as np
import pytest

from emovision.data import acoustics
from emovision.data.audio import load_audio
from emovision.data.features import (
    FeatureConfig,
    SpeakerStatistics,
    compute_features,
    segment,
    segment_starts,
    segment_times,
    silence_values,
    speaker_normalise,
    speech_span,
)
from emovision.errors import EmovisionError

STFT = {"n_fft": 800, "hop_length": 160, "win_length": 640, "window": "hamming"}


def _reference_input(path):
    y, _ = librosa.load(path, sr=16000)
    return y, np.append(y[0], y[1:] - np.float32(0.97) * y[:-1])


def _reference_logspec(emphasised):
    magnitude = np.abs(librosa.stft(emphasised, **STFT))[:200]
    return librosa.amplitude_to_db(magnitude, ref=np.max, top_db=80)


def _reference_logmel(emphasised):
    power = np.abs(librosa.stft(emphasised, **STFT)) ** 2
    mel = librosa.feature.melspectrogram(S=power, sr=16000, n_mels=128)
    return librosa.power_to_db(mel, ref=np.max, top_db=80)


@pytest.fixture(scope="module")
def utterances(emodb_wavs):
    return [emodb_wavs[i] for i in (0, 100, 400)]


def test_logspec_matches_librosa(utterances):
    for path in utterances:
        y, emphasised = _reference_input(path)
        ours = compute_features(load_audio(path), FeatureConfig(kind="logspec"))
        assert ours.shape == (1, 200, 1 + y.size // 160)
        np.testing.assert_allclose(ours[0], _reference_logspec(emphasised), atol=0.01)


def test_logmelspec_matches_librosa(utterances):
    for path in utterances:
        _, emphasised = _reference_input(path)
        ours = compute_features(load_audio(path), FeatureConfig(kind="logmelspec"))
        assert ours.shape[:2] == (1, 128)
        np.testing.assert_allclose(ours[0], _reference_logmel(emphasised), atol=0.01)


def test_logmeldeltaspec_matches_librosa(utterances):
    for path in utterances:
        _, emphasised = _reference_input(path)
        ours = compute_features(load_audio(path), FeatureConfig(kind="logmeldeltaspec"))
        logmel = _reference_logmel(emphasised)
        delta = librosa.feature.delta(logmel, width=5)
        delta2 = librosa.feature.delta(delta, width=5)
        for channel, reference in enumerate([logmel, delta, delta2]):
            np.testing.assert_allclose(ours[channel], reference, atol=0.01)


def test_lognrevspec_matches_librosa_on_the_same_noise_and_room(utterances):
    config = FeatureConfig(kind="lognrevspec", rt60=0.4, seed=7)
    for path in utterances:
        y = load_audio(path)
        ours = compute_features(y, config, key=path.stem)
        rng = acoustics.rng_for(7, path.stem)
        noisy = y + 0.002 * acoustics.white_noise(y.size, rng)
        reverberant = acoustics.reverberate(y, acoustics.synthetic_rir(0.4, 16000, rng))
        for channel, signal in enumerate([y, noisy, reverberant]):
            emphasised = np.append(signal[0], signal[1:] - np.float32(0.97) * signal[:-1])
            np.testing.assert_allclose(ours[channel], _reference_logspec(emphasised), atol=0.01)
        np.testing.assert_array_equal(ours, compute_features(y, config, key=path.stem))
        assert not np.array_equal(
            ours, compute_features(y, FeatureConfig(kind="lognrevspec", seed=8), path.stem)
        )


def test_noise_at_snr_option(utterances):
    y = load_audio(utterances[0])
    clean = compute_features(y, FeatureConfig(kind="lognrevspec", noise_snr=40.0), "a")
    loud = compute_features(y, FeatureConfig(kind="lognrevspec", noise_snr=0.0), "a")
    assert np.abs(loud[1] - loud[0]).mean() > 3 * np.abs(clean[1] - clean[0]).mean()


def test_segments_are_padded_with_the_floor_not_zero(utterances):
    config = FeatureConfig(kind="logmelspec", segment_frames=150)
    feature = compute_features(load_audio(utterances[0]), config)
    frames = feature.shape[-1]
    segments = segment(feature, config)
    assert segments.shape == (2, 1, 128, 150)
    np.testing.assert_array_equal(segments[0], feature[..., :150])
    tail = segments[1][..., frames - 150 :]
    assert np.all(tail == feature.min()) and feature.min() == pytest.approx(-80.0)


def test_overlapping_segments_and_delta_padding(utterances):
    config = FeatureConfig(kind="logmeldeltaspec", segment_frames=100, segment_hop=50)
    feature = compute_features(load_audio(utterances[0]), config)
    segments = segment(feature, config)
    assert segments.shape[0] == 1 + int(np.ceil((feature.shape[-1] - 100) / 50))
    np.testing.assert_array_equal(segments[1], feature[..., 50:150])
    assert list(silence_values(feature, config)[1:]) == [0.0, 0.0]
    long = FeatureConfig(kind="logmeldeltaspec", segment_frames=1000)
    padded = segment(feature, long)[0]
    assert (
        padded.shape[-1] == 1000
        and np.all(padded[1:, :, -1] == 0)
        and np.all(padded[0, :, -1] == feature[0].min())
    )


def test_invalid_configurations_are_clear_errors():

    with pytest.raises(EmovisionError, match="unknown feature type"):
        FeatureConfig(kind="mfcc")
    with pytest.raises(EmovisionError, match="longer than n_fft"):
        FeatureConfig(window_ms=100)
    assert FeatureConfig.from_dict(FeatureConfig(kind="logspec").to_dict()) == FeatureConfig(kind="logspec")


def test_shifted_tail_ends_at_the_last_frame(utterances):
    config = FeatureConfig(kind="logmelspec", segment_frames=100, segment_tail="shift")
    feature = compute_features(load_audio(utterances[0]), config)
    frames = feature.shape[-1]
    segments = segment(feature, config)
    assert segments.shape[0] == 3 and frames == 201
    np.testing.assert_array_equal(segments[2], feature[..., frames - 100 :])
    np.testing.assert_allclose(segment_times(3, config, frames)[:, 0], [0.0, 1.0, 1.01])
    short = FeatureConfig(kind="logmelspec", segment_frames=300, segment_tail="shift")
    assert segment(feature, short).shape == (1, 1, 128, 300)


def test_speaker_statistics_make_z_scores_per_channel_and_bin():
    rng = np.random.default_rng(0)
    segments = (rng.standard_normal((6, 3, 5, 40)) * np.arange(1, 6)[:, None] - 40.0).astype(np.float32)
    statistics = SpeakerStatistics.of(segments)
    assert statistics.mean.shape == statistics.std.shape == (3, 5, 1)
    normalised = speaker_normalise(segments)
    np.testing.assert_allclose(normalised.mean(axis=(0, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(normalised.std(axis=(0, 3)), 1.0, atol=1e-4)
    other = SpeakerStatistics.of(segments[:2] + 10.0)
    np.testing.assert_allclose(
        speaker_normalise(segments[2:], other), (segments[2:] - other.mean) / other.std, rtol=1e-5
    )
    flat = np.full((2, 1, 4, 10), -80.0, dtype=np.float32)
    assert np.all(speaker_normalise(flat) == 0.0)  # a constant bin is not divided by zero
    with pytest.raises(EmovisionError, match="N ≥ 1"):
        SpeakerStatistics.of(segments[:0])


@pytest.mark.parametrize(
    ("frames", "tail", "starts"),
    [
        # the README's example: a 201-frame utterance in 100-frame segments
        (201, "trim", [0, 100]),
        (201, "shift", [0, 100, 101]),
        (201, "pad", [0, 100, 200]),
        # at least half a segment of new frames: trim shifts the last segment back like shift
        (250, "trim", [0, 100, 150]),
        (249, "trim", [0, 100]),
        (100, "trim", [0]),
        (60, "trim", [0]),
    ],
)
def test_segment_tail_rules_by_hand(frames, tail, starts):
    config = FeatureConfig(segment_frames=100, segment_tail=tail)
    assert segment_starts(frames, config).tolist() == starts
    features = np.arange(frames, dtype=np.float32).reshape(1, 1, frames)
    cut = segment(features, config)
    assert cut.shape == (len(starts), 1, 1, 100)
    for piece, start in zip(cut, starts, strict=True):
        inside = min(100, frames - start)
        np.testing.assert_array_equal(piece[0, 0, :inside], np.arange(start, start + inside))


def test_speech_span_is_librosas_trim(ravdess_files, emodb_wavs):
    """The silence cut (``--trim-db``) against ``librosa.effects.trim`` with the same frames, on RAVDESS
    recordings (a second of silence at each end) and emoDB ones (almost none)."""
    config = FeatureConfig(trim_db=40.0)
    cut = 0
    for path in ravdess_files[::90] + emodb_wavs[::150]:
        samples = load_audio(path)
        _, expected = librosa.effects.trim(
            samples, top_db=40, frame_length=config.win_length, hop_length=config.hop_length
        )
        assert speech_span(samples, config) == tuple(int(v) for v in expected)
        cut += samples.size - (expected[1] - expected[0])
    assert cut > 8 * 16000
    assert speech_span(samples, FeatureConfig()) == (0, samples.size)


def test_trimmed_features_are_those_of_the_speech_alone(ravdess_files):
    samples = load_audio(ravdess_files[0])
    config = FeatureConfig(n_mels=64, trim_db=30.0)
    start, stop = speech_span(samples, config)
    assert 0 < start < stop < samples.size
    expected = compute_features(samples[start:stop], FeatureConfig(n_mels=64))
    np.testing.assert_array_equal(compute_features(samples, config), expected)


def test_a_click_in_silence_keeps_at_least_one_window():
    config = FeatureConfig(trim_db=40.0)
    samples = np.zeros(16000, dtype=np.float32)
    samples[8000] = 0.5
    start, stop = speech_span(samples, config)
    assert stop - start == config.win_length and start <= 8000 < stop


@pytest.mark.parametrize("value", [0.0, -3.0, float("nan")])
def test_trim_db_must_be_a_positive_number(value):
    with pytest.raises(EmovisionError, match="--trim-db must be a positive number"):
        FeatureConfig(trim_db=value)


def test_features_files_from_before_the_silence_cut_keep_everything():
    old = FeatureConfig().to_dict()
    del old["trim_db"]
    assert FeatureConfig.from_dict(old).trim_db is None
