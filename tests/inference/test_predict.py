"""Recognizer and ``emovision predict`` on real emoDB recordings with a tiny trained model."""

from __future__ import annotations

import json
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
from trained_model import untrained_checkpoint

from emovision import Recognizer
from emovision.cli import main
from emovision.data.audio import load_audio
from emovision.data.features import (
    FeatureConfig,
    SpeakerStatistics,
    compute_features,
    segment,
    speaker_normalise,
)
from emovision.data.store import load_speakers
from emovision.errors import AudioError, CheckpointError, EmovisionError
from emovision.inference.results import Failure
from emovision.training.calibration import apply_temperature
from emovision.training.checkpoint import load_checkpoint, save_checkpoint
from emovision.training.metrics import confusion_matrix, utterance_scores


def _long_recording(path: Path, wavs: list[Path], count: int) -> Path:
    """``count`` real recordings one after another in one file (22.05 kHz)."""
    parts = [sf.read(wav, dtype="float32")[0] for wav in wavs[:count]]
    sf.write(path, np.concatenate(parts), sf.info(wavs[0]).samplerate)
    return path


def test_training_features_and_raw_audio_give_the_same_predictions(trained_model, recognizer):
    """The stored training segments and the recordings themselves give the same probabilities."""
    data = load_speakers(trained_model.features, ["03"])["03"]
    bounds = np.cumsum([0, *data.segments_per_utterance])
    by_stem = {wav.stem: wav for wav in trained_model.test_wavs}
    for i, utterance in enumerate(data.utterance_ids[:6]):
        stored = recognizer.predict_segments(data.segments[bounds[i] : bounds[i + 1]], name=utterance)
        heard = recognizer.predict(by_stem[utterance])
        np.testing.assert_allclose(heard.segment_probabilities, stored.segment_probabilities, atol=1e-5)
        for name in recognizer.classes:
            assert heard.probabilities[name] == pytest.approx(stored.probabilities[name], abs=1e-5)
        assert heard.label == stored.label


def test_predictions_from_audio_reproduce_the_checkpoints_test_result(trained_model, recognizer):
    """The confusion matrix that training computed on the test speaker's features, from raw audio."""
    payload = load_checkpoint(trained_model.checkpoint)
    ids = payload["metrics"]["test_utterance_ids"]
    by_stem = {wav.stem: wav for wav in trained_model.test_wavs}
    predictions = recognizer.predict_many([by_stem[utterance] for utterance in ids])
    truth = load_speakers(trained_model.features, ["03"])["03"].utterance_labels
    guessed = [recognizer.classes.index(p.label) for p in predictions]
    matrix = confusion_matrix(truth, np.array(guessed), len(recognizer.classes))
    assert matrix.tolist() == payload["metrics"]["test"]["confusion"]


@pytest.mark.parametrize("rule", ["logprob", "prob"])
def test_aggregation_is_the_training_rule(recognizer, emodb_wavs, rule, monkeypatch):
    monkeypatch.setattr(recognizer, "aggregate", rule)
    prediction = recognizer.predict(emodb_wavs[7])
    segments = np.log(prediction.segment_probabilities)
    scores = utterance_scores(segments, np.array([segments.shape[0]]), rule)
    expected = np.exp(apply_temperature(scores, recognizer.temperature or 1.0)[0])  # calibrated
    got = [prediction.probabilities[name] for name in recognizer.classes]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_file_bytes_and_samples_give_the_same_prediction(recognizer, emodb_wavs):
    wav = emodb_wavs[7]
    samples, rate = sf.read(wav, dtype="float32")
    from_file = recognizer.predict(wav)
    from_bytes = recognizer.predict(wav.read_bytes(), name=wav.name)
    from_samples = recognizer.predict(samples, rate)
    stereo = recognizer.predict(np.stack([samples, samples], axis=1), rate)
    for other in (from_bytes, from_samples, stereo):
        np.testing.assert_allclose(other.segment_probabilities, from_file.segment_probabilities, atol=1e-6)
        assert other.label == from_file.label
    assert from_file.source == str(wav) and from_bytes.source == wav.name
    assert from_samples.source == "<samples>"
    assert from_file.duration == pytest.approx(2.0, abs=1e-3)
    assert sum(from_file.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
    assert from_file.top(3)[0] == (from_file.label, from_file.confidence)
    with pytest.raises(EmovisionError, match="sample_rate"):
        recognizer.predict(samples)


def test_segments_carry_their_times(tmp_path, recognizer, emodb_wavs):
    """12 s of speech: 13 one-second segments, each with probabilities and its start and end."""
    long = _long_recording(tmp_path / "long.wav", emodb_wavs, 6)
    prediction = recognizer.predict(long)
    frames = 1 + 12 * 16000 // 160
    assert prediction.segment_probabilities.shape == (1 + int(np.ceil((frames - 100) / 100)), 7)
    np.testing.assert_allclose(prediction.segment_probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(prediction.times[:, 0], np.arange(13.0))
    assert prediction.times[-1, 1] == pytest.approx(12.0) and prediction.duration == pytest.approx(12.0)
    body = prediction.to_dict()
    assert json.loads(json.dumps(body)) == body
    assert body["segments"][1]["start"] == 1.0 and body["segments"][1]["end"] == 2.0


def test_shifted_last_segment_gets_its_own_times(tmp_path, emodb_wavs):
    """With segment_tail="shift" the last of 201 frames' segments starts at frame 101, not 200."""
    config = FeatureConfig(segment_frames=100, segment_tail="shift")
    recognizer = Recognizer.load(untrained_checkpoint(tmp_path / "shift.pth", config))
    prediction = recognizer.predict(emodb_wavs[9])
    np.testing.assert_allclose(prediction.times, [[0.0, 1.0], [1.0, 2.0], [1.01, 2.0]])


def test_times_count_from_the_recording_start_when_silence_is_cut(tmp_path, emodb_wavs):
    """A model trained on features with ``trim_db`` cuts the same silence; its segments' times still
    count from the start of the file: 1.5 s of zeros before a recording move them by 1.5 s plus the
    recording's own lead-in, as ``librosa.effects.trim`` finds it."""
    config = FeatureConfig(segment_frames=100, trim_db=40.0)
    recognizer = Recognizer.load(untrained_checkpoint(tmp_path / "trim.pth", config))
    speech = load_audio(emodb_wavs[20])
    padded = np.concatenate([np.zeros(24000, np.float32), speech, np.zeros(8000, np.float32)])
    start, stop = librosa.effects.trim(padded, top_db=40, frame_length=640, hop_length=160)[1]
    prediction = recognizer.predict(padded, sample_rate=16000)
    assert start >= 24000
    assert prediction.times[0, 0] == pytest.approx(start / 16000)
    assert prediction.segment_probabilities.shape[0] == int(np.ceil((1 + (stop - start) // 160) / 100))
    np.testing.assert_allclose(
        recognizer.predict(padded[start:stop], sample_rate=16000).segment_probabilities,
        prediction.segment_probabilities,
        atol=1e-6,
    )


def test_batched_prediction_keeps_order_and_reports_failures(tmp_path, trained_model, emodb_wavs):
    """Small batches across files give the single-file results; a broken file in between fails alone."""
    recognizer = Recognizer.load(trained_model.checkpoint, batch_size=4)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt nonsense")
    files = [*emodb_wavs[20:24], broken, *emodb_wavs[24:28]]
    results = list(recognizer.iter_predict(files, workers=2))
    assert [str(r.source) for r in results] == [str(f) for f in files]
    assert isinstance(results[4], Failure) and "unreadable audio" in results[4].reason
    for file, result in zip(files, results, strict=True):
        if file != broken:
            single = recognizer.predict(file)
            np.testing.assert_allclose(result.segment_probabilities, single.segment_probabilities, atol=1e-5)
    with pytest.raises(AudioError, match=r"broken\.wav"):
        recognizer.predict_many(files)


def test_lognrevspec_noise_is_seeded_by_the_file_stem(tmp_path, emodb_wavs):
    config = FeatureConfig(kind="lognrevspec", segment_frames=100)
    recognizer = Recognizer.load(untrained_checkpoint(tmp_path / "nrev.pth", config))
    wav = emodb_wavs[3]
    assert recognizer.predict(wav).features is None
    audio = load_audio(wav, config.sample_rate)
    expected = recognizer.predict_segments(segment(compute_features(audio, config, wav.stem), config))
    other_key = recognizer.predict_segments(segment(compute_features(audio, config, "x"), config))
    heard = recognizer.predict(wav, keep_features=True)
    np.testing.assert_allclose(heard.features, compute_features(audio, config, wav.stem))
    np.testing.assert_allclose(heard.segment_probabilities, expected.segment_probabilities, atol=1e-6)
    assert not np.allclose(heard.segment_probabilities, other_key.segment_probabilities, atol=1e-6)
    renamed = recognizer.predict(wav.read_bytes(), name=wav.name)
    np.testing.assert_allclose(renamed.segment_probabilities, heard.segment_probabilities, atol=1e-6)


def test_legacy_checkpoint_without_features_is_a_clear_error(tmp_path, trained_model, emodb_wavs, capsys):
    payload = load_checkpoint(trained_model.checkpoint)
    payload["feature_config"] = None
    legacy = save_checkpoint(payload, tmp_path / "legacy.pth")
    recognizer = Recognizer.load(legacy)
    with pytest.raises(CheckpointError, match="legacy pickle"):
        recognizer.predict(emodb_wavs[0])
    segments = load_speakers(trained_model.features, ["03"])["03"].segments[:3]
    assert np.isnan(recognizer.predict_segments(segments).times).all()
    assert main(["predict", str(legacy), str(emodb_wavs[0])]) == 2
    err = capsys.readouterr().err
    assert "legacy pickle" in err and "Traceback" not in err


def test_predict_command_table_folders_and_exit_codes(tmp_path, trained_model, emodb_wavs, capsys):
    folder = tmp_path / "calls"
    (folder / "sub").mkdir(parents=True)
    for wav in emodb_wavs[:2]:
        (folder / wav.name).symlink_to(wav)
    (folder / "sub" / emodb_wavs[2].name).symlink_to(emodb_wavs[2])
    (folder / "notes.txt").write_text("not audio")
    model = str(trained_model.checkpoint)
    assert main(["predict", model, str(folder), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "3 recording(s)" in out and "top 3" in out
    for wav in emodb_wavs[:3]:
        assert wav.stem in out
    (folder / "broken.wav").write_bytes(b"not a wav file at all")
    assert main(["predict", model, str(folder), str(tmp_path / "missing.wav"), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "broken.wav: unreadable audio" in captured.err and "missing.wav: no such file" in captured.err
    assert "3 predicted, 2 failed" in captured.err and "Traceback" not in captured.err
    assert main(["predict", model, str(folder / "broken.wav"), "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("error: ") and "broken.wav: unreadable audio" in captured.err
    assert main(["predict", str(tmp_path / "none.pth"), str(folder), "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_predict_command_json_lines_and_timeline(tmp_path, trained_model, recognizer, emodb_wavs, capsys):
    long = _long_recording(tmp_path / "long.wav", emodb_wavs[40:], 5)
    timeline = tmp_path / "figures" / "timeline.png"
    files = [str(emodb_wavs[0]), str(long)]
    code = main(["predict", str(trained_model.checkpoint), *files, "--json", "--timeline", str(timeline)])
    assert code == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert [row["file"] for row in rows] == files
    for row, file in zip(rows, files, strict=True):
        expected = recognizer.predict(file)
        assert row["emotion"] == expected.label
        assert row["probabilities"] == pytest.approx(expected.probabilities, abs=1e-6)
    assert len(rows[1]["segments"]) == 11
    assert timeline.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"timeline: {timeline}" in captured.err
    assert not list(tmp_path.glob("figures/.*"))


def test_a_speaker_normalised_model_uses_the_statistics_it_is_adapted_to(tmp_path, emodb_wavs, capsys):
    """Unadapted, a recording is normalised by its own statistics; adapted, by those pooled over the
    speaker's recordings (unreadable ones left out); ``--same-speaker`` adapts to the files given."""
    config = FeatureConfig(segment_frames=100, segment_tail="shift", speaker_norm=True)
    path = untrained_checkpoint(tmp_path / "norm.pth", config)
    wavs = [wav for wav in emodb_wavs if wav.name.startswith("03")][:6]
    raw = [segment(compute_features(load_audio(wav, 16000), config), config) for wav in wavs]
    recognizer = Recognizer.load(path)
    assert recognizer.speaker_normalised and not recognizer.adapted
    alone = recognizer.predict(wavs[0])
    own = recognizer.predict_segments(speaker_normalise(raw[0]))
    np.testing.assert_allclose(alone.segment_probabilities, own.segment_probabilities, atol=1e-5)
    assert recognizer.adapt([*wavs, tmp_path / "missing.wav"]) == 6 and recognizer.adapted
    pooled = SpeakerStatistics.of(np.concatenate(raw))
    adapted = list(recognizer.iter_predict(wavs[:2]))
    for prediction, segments in zip(adapted, raw[:2], strict=True):
        expected = recognizer.predict_segments(speaker_normalise(segments, pooled))
        np.testing.assert_allclose(
            prediction.segment_probabilities, expected.segment_probabilities, atol=1e-5
        )
    assert np.abs(adapted[0].segment_probabilities - alone.segment_probabilities).max() > 1e-4
    turn = recognizer.predict_turns(wavs[0], vad="energy", normalise="turn").turns[0]
    samples = load_audio(wavs[0], 16000)[int(turn.start * 16000) : int(turn.end * 16000)]
    pieces = segment(compute_features(samples, config), config)
    by_pooled = recognizer.predict_segments(speaker_normalise(pieces, pooled)).probabilities
    by_itself = recognizer.predict_segments(speaker_normalise(pieces)).probabilities
    assert turn.probabilities == pytest.approx(by_pooled, abs=3e-5)  # an untrained model: small numbers
    assert max(abs(turn.probabilities[c] - by_itself[c]) for c in by_itself) > 2e-4

    assert main(["predict", str(path), *map(str, wavs), "--same-speaker", "--json", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "speaker statistics: 6 recording(s)" in captured.err
    first = json.loads(captured.out.splitlines()[0])
    assert first["probabilities"] == pytest.approx(adapted[0].probabilities, abs=1e-5)
    assert main(["predict", str(path), str(wavs[0]), "--quiet"]) == 0
    assert "scored by itself" in capsys.readouterr().err
    plain = untrained_checkpoint(tmp_path / "plain.pth", FeatureConfig(segment_frames=100))
    assert main(["predict", str(plain), str(wavs[0]), "--same-speaker", "--quiet"]) == 2
    captured = capsys.readouterr()
    assert "not trained with speaker normalisation" in captured.err and "Traceback" not in captured.err
