"""Speech turns: the detectors on real emoDB speech with known pauses, and predict --turns end to end."""

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from emovision.cli import main
from emovision.data.audio import load_audio
from emovision.data.vad import VadOptions, resolve_detector, speech_turns
from emovision.errors import EmovisionError
from emovision.inference.predict import Recognizer

PAUSES = (1.0, 0.8, 1.5, 0.6, 1.2)


def _conversation(wavs, pauses=PAUSES, rate=16000):
    """emoDB utterances (their own leading and trailing silence trimmed at 40 dB below the peak)
    separated by known pauses of low room noise; returns the samples and the true turns (s)."""
    rng = np.random.default_rng(0)
    parts, truth, t = [], [], 0.0
    for pause, wav in zip(pauses, wavs, strict=False):
        noise = (rng.standard_normal(int(pause * rate)) * 1e-4).astype(np.float32)
        speech = _trimmed(load_audio(wav, rate))
        parts += [noise, speech]
        truth.append((t + pause, t + pause + speech.size / rate))
        t += pause + speech.size / rate
    parts.append((rng.standard_normal(rate) * 1e-4).astype(np.float32))
    return np.concatenate(parts), np.array(truth)


def _trimmed(samples, top_db=40.0, frame=400):
    energy = np.array([np.mean(samples[i : i + frame] ** 2) for i in range(0, samples.size - frame, frame)])
    loud = np.flatnonzero(10 * np.log10(energy + 1e-12) > 10 * np.log10(energy.max()) - top_db)
    return samples[loud[0] * frame : (loud[-1] + 1) * frame]


@pytest.mark.parametrize("detector", ["energy", "silero"])
def test_turn_boundaries_are_found_within_a_fifth_of_a_second(detector, emodb_wavs):
    samples, truth = _conversation(emodb_wavs[200:205])
    found = speech_turns(samples, VadOptions(padding=0.0), detector)
    assert found.shape == truth.shape, (found, truth)
    assert np.abs(found - truth).max() <= 0.2, np.round(found - truth, 2)
    pauses = np.c_[np.r_[0.0, truth[:, 1]], np.r_[truth[:, 0], samples.size / 16000]]
    for start, end in found:  # no turn begins or ends inside a pause by more than the tolerance
        assert not any(a + 0.2 < start < b - 0.2 or a + 0.2 < end < b - 0.2 for a, b in pauses)


def test_turn_rules_merge_short_pauses_drop_short_bursts_and_pad(emodb_wavs):
    samples, _ = _conversation(emodb_wavs[200:203], pauses=(1.0, 0.2, 1.0))
    merged = speech_turns(samples, VadOptions(min_silence=0.4, padding=0.0), "energy")
    assert merged.shape[0] == 2  # the 0.2-s pause does not end a turn
    padded = speech_turns(samples, VadOptions(min_silence=0.4, padding=0.15), "energy")
    assert np.allclose(padded[:, 0], merged[:, 0] - 0.15, atol=1e-9)
    assert padded[1, 0] > padded[0, 1]  # padding never makes turns overlap
    click = np.zeros(32000, np.float32)
    click[16000:16800] = 0.3 * np.sin(np.arange(800) / 3)  # 50 ms burst
    assert speech_turns(click, VadOptions(min_speech=0.25), "energy").shape == (0, 2)
    assert speech_turns(np.zeros(16000, np.float32), detector="energy").shape == (0, 2)


def test_bad_vad_options():
    with pytest.raises(EmovisionError, match="--min-speech"):
        VadOptions(min_speech=0)
    with pytest.raises(EmovisionError, match="--vad must be"):
        resolve_detector("webrtc")


def test_each_turn_gets_its_own_emotion_and_silence_is_never_scored(trained_model, emodb_wavs, tmp_path):
    samples, truth = _conversation(emodb_wavs[200:204])
    recognizer = Recognizer.load(trained_model.checkpoint)
    result = recognizer.predict_turns(samples, 16000, vad="energy")
    assert len(result.turns) == len(truth)
    for turn, wav in zip(result.turns, emodb_wavs[200:204], strict=True):
        alone = recognizer.predict(_trimmed(load_audio(wav, 16000)), 16000)
        assert turn.emotion == alone.label  # the turn is scored like the utterance on its own
        assert sum(turn.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    unsure = recognizer.predict_turns(samples, 16000, vad="energy", min_confidence=1.0)
    assert {turn.emotion for turn in unsure.turns} == {"uncertain"}
    with pytest.raises(EmovisionError, match="between 0 and 1"):
        recognizer.predict_turns(samples, 16000, min_confidence=1.5)


def test_predict_turns_command_writes_csv_jsonl_and_webvtt(trained_model, emodb_wavs, tmp_path, capsys):
    samples, truth = _conversation(emodb_wavs[200:204])
    for name in ("a", "b"):
        sf.write(tmp_path / f"{name}.wav", samples, 16000)
    model = str(trained_model.checkpoint)
    args = ["predict", model, str(tmp_path / "a.wav"), str(tmp_path / "b.wav"), "--turns", "--vad", "energy"]
    assert main([*args, "--turns-out", str(tmp_path / "t.csv"), "--quiet"]) == 0
    assert "4 turn(s)" in capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert len(rows) == 8 and {row["file"] for row in rows} == {
        str(tmp_path / "a.wav"),
        str(tmp_path / "b.wav"),
    }
    assert np.allclose([float(row["start"]) for row in rows[:4]], truth[:, 0] - 0.1, atol=0.2)
    assert main([*args, "--json", "--turns-out", str(tmp_path / "t.vtt"), "--quiet"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 8 and set(lines[0]) == {
        "file",
        "start",
        "end",
        "emotion",
        "confidence",
        "probabilities",
    }
    vtt = (tmp_path / "t-a.vtt").read_text()
    assert vtt.startswith("WEBVTT\n") and vtt.count(" --> ") == 4 and (tmp_path / "t-b.vtt").exists()
    assert "00:00:0" in vtt and f"{lines[0]['emotion']} (" in vtt


def test_predict_turns_bad_input(trained_model, emodb_wavs, tmp_path, capsys):
    model = str(trained_model.checkpoint)
    quiet = tmp_path / "room-noise.wav"
    sf.write(quiet, (np.random.default_rng(1).standard_normal(48000) * 1e-3).astype(np.float32), 16000)
    assert main(["predict", model, str(quiet), "--turns", "--vad", "energy", "--quiet"]) == 2
    assert "no speech found" in capsys.readouterr().err
    assert main(["predict", model, str(emodb_wavs[0]), "--turns", "--min-confidence", "1.5"]) == 2
    assert "--min-confidence must be between 0 and 1" in capsys.readouterr().err
    assert main(["predict", model, str(emodb_wavs[0]), "--turns-out", str(tmp_path / "t.srt")]) == 2
    assert "suffix" in capsys.readouterr().err
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "broken.wav").write_text("not audio")
    sf.write(folder / "short.wav", load_audio(emodb_wavs[3], 16000)[:8000], 16000)  # half a second
    assert main(["predict", model, str(folder), "--turns", "--vad", "energy", "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "broken.wav: unreadable audio" in captured.err and "1 analysed, 1 failed" in captured.err
    assert "short.wav" in captured.out and "1 turn(s)" in captured.out  # shorter than a segment: padded


def test_a_long_file_is_streamed_to_the_same_turns_as_in_memory(trained_model, emodb_wavs, tmp_path):
    """70 s at 22.05 kHz: the file path is read in 30-s blocks and resampled as a stream; the same
    samples given in memory are resampled at once. Same turns (within a detector frame), same emotions."""
    import soxr

    samples, truth = _conversation(emodb_wavs[300:330], pauses=[1.0, 0.7, 1.3] * 10)
    assert samples.size / 16000 > 70
    at_22k = soxr.resample(samples, 16000, 22050).astype(np.float32)
    sf.write(tmp_path / "long.wav", at_22k, 22050)
    recognizer = Recognizer.load(trained_model.checkpoint)
    seen = []
    streamed = recognizer.predict_turns(
        tmp_path / "long.wav", vad="energy", progress=lambda d, t: seen.append(d)
    )
    held = recognizer.predict_turns(at_22k, 22050, vad="energy")
    assert len(seen) >= 3 and seen[-1] == pytest.approx(streamed.duration, abs=0.01)
    assert len(streamed.turns) == len(held.turns) == len(truth)
    for a, b in zip(streamed.turns, held.turns, strict=True):
        assert abs(a.start - b.start) <= 0.021 and abs(a.end - b.end) <= 0.021
        assert a.emotion == b.emotion
