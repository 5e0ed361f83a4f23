"""Speaker normalisation in the data pipeline: the statistics, the enrolment draws, the training draws,
and that a served recording is scored exactly as the cross-validation measured it in each mode."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from emovision.cli import main
from emovision.data.speaker_norm import (
    MAX_TRAIN_ENROL,
    SpeakerMoments,
    SpeakerNormaliser,
    TrainingDraws,
    enrolment,
    mode_view,
    recording_moments,
)
from emovision.errors import EmovisionError
from emovision.inference.predict import Recognizer
from emovision.training.folds import Fold
from emovision.training.options import TrainConfig
from emovision.training.train import train_fold


def test_recording_moments_are_each_recordings_mean_and_mean_square_over_its_frames():
    rng = np.random.default_rng(0)
    segments = rng.normal(size=(5, 2, 3, 4))
    means, squares = recording_moments(segments, np.array([2, 3]))
    first = segments[:2].transpose(1, 2, 0, 3).reshape(2, 3, -1)
    second = segments[2:].transpose(1, 2, 0, 3).reshape(2, 3, -1)
    np.testing.assert_allclose(means[0], first.mean(axis=-1))
    np.testing.assert_allclose(means[1], second.mean(axis=-1))
    np.testing.assert_allclose(squares[1], (second**2).mean(axis=-1))


def test_statistics_shrink_towards_the_prior_by_its_weight_in_recordings():
    prior = SpeakerNormaliser("mixed", np.array([[0.0]]), np.array([[4.0]]), prior_weight=1.0)
    # one recording with mean 2 and mean square 8 (variance 4): (2 + 0) / 2 = 1; (8 + 4) / 2 = 6
    mean, std = prior.statistics(np.array([[2.0]]), np.array([[8.0]]), 1)
    assert mean.shape == (1, 1, 1) and mean.item() == pytest.approx(1.0)
    assert std.item() == pytest.approx(np.sqrt(6.0 - 1.0))
    # nine recordings summing to mean 18 and mean square 72: (18 + 0) / 10, (72 + 4) / 10
    mean, std = prior.statistics(np.array([[18.0]]), np.array([[72.0]]), 9)
    assert mean.item() == pytest.approx(1.8) and std.item() == pytest.approx(np.sqrt(7.6 - 1.8**2))
    none = SpeakerNormaliser("mixed", np.array([[0.0]]), np.array([[4.0]]), prior_weight=0.0)
    assert none.statistics(np.array([[2.0]]), np.array([[8.0]]), 1)[0].item() == pytest.approx(2.0)
    assert prior.of(SpeakerMoments())[1].item() == pytest.approx(2.0)  # nothing known: the prior


def test_enrolment_draws_are_seeded_by_speaker_and_draw_and_leave_recordings_to_score():
    first = enrolment("03", 49, 5, 0)
    assert first.size == 5 and len(set(first.tolist())) == 5 and first.max() < 49
    assert np.array_equal(first, enrolment("03", 49, 5, 0))
    assert not np.array_equal(first, enrolment("03", 49, 5, 1))
    assert not np.array_equal(first, enrolment("08", 49, 5, 0))
    assert enrolment("03", 4, 5, 0).size == 3  # at most all but one: something is left to score


def test_mode_views_use_the_recording_alone_k_others_or_all():
    rng = np.random.default_rng(1)
    means, squares = rng.normal(size=(12, 1, 2)), rng.uniform(2, 3, size=(12, 1, 2))
    speakers = np.array([0] * 7 + [1] * 5)
    prior = SpeakerNormaliser("mixed", means.mean(axis=0), squares.mean(axis=0), 1.0)
    cold = mode_view(prior, means, squares, ["a", "b"], speakers, "cold")
    assert cold.scored.all()
    np.testing.assert_allclose(cold.mean[3], prior.statistics(means[3], squares[3], 1)[0])
    whole = mode_view(prior, means, squares, ["a", "b"], speakers, "transductive")
    expected = prior.statistics(means[7:].sum(axis=0), squares[7:].sum(axis=0), 5)
    np.testing.assert_allclose(whole.mean[8], expected[0])
    np.testing.assert_allclose(whole.std[11], expected[1])
    enrolled = mode_view(prior, means, squares, ["a", "b"], speakers, "enrolled", enrol=2, draw=0)
    chosen = 7 + enrolment("b", 5, 2, 0)
    assert sorted(np.flatnonzero(~enrolled.scored[7:]) + 7) == sorted(chosen)
    by_hand = prior.statistics(means[chosen].sum(axis=0), squares[chosen].sum(axis=0), 2)
    np.testing.assert_allclose(enrolled.mean[9], by_hand[0])


def test_training_draws_never_enrol_the_utterance_itself_and_cover_every_mode():
    # two speakers: utterances 0-3 and 4-6; rows 0-6 clean, rows 7-8 copies of utterances 1 and 5
    means = np.arange(9, dtype=float).reshape(9, 1, 1)
    draws = TrainingDraws(
        SpeakerNormaliser("mixed", np.zeros((1, 1)), np.ones((1, 1)), 1.0),
        row_recording=np.arange(9),
        means=means,
        squares=means**2 + 1,
        recording_utterance=np.array([0, 1, 2, 3, 4, 5, 6, 1, 5]),
        utterance_speakers=np.array([0, 0, 0, 0, 1, 1, 1]),
    )
    generator = torch.Generator().manual_seed(0)
    assert draws.recordings(7, "cold", generator).tolist() == [7]  # a copy by itself
    assert sorted(draws.recordings(8, "transductive", generator).tolist()) == [4, 5, 6]
    for _ in range(50):
        enrolled = draws.recordings(7, "enrolled", generator)
        assert 1 <= enrolled.size <= min(MAX_TRAIN_ENROL, 3) and 1 not in enrolled and 7 not in enrolled
        assert set(enrolled.tolist()) <= {0, 2, 3}
    mean, std = draws.batch(torch.arange(9), generator)
    assert mean.shape == (9, 1, 1, 1) and std.shape == (9, 1, 1, 1) and bool((std > 0).all())


def test_a_served_recording_scores_as_the_cv_measured_it_in_every_mode(normalised_run):
    """Recognizer.predict (nothing enrolled) gives the cold scores; adapted to the enrolment draw, the
    enrolled scores; adapted to all the speaker's recordings, the transductive ones."""
    out, metrics, model = normalised_run
    modes = metrics["test_modes"]
    assert metrics["test"]["ua"] == modes["cold"]["ua"]
    wavs = {path.stem: path for path in model.test_wavs}
    ids = metrics["test_utterance_ids"]
    recognizer = Recognizer.load(out / "best.pth", calibration="off")
    assert recognizer.speaker_normalised and recognizer.normaliser.mode == "mixed"

    def log_probs(index: int) -> np.ndarray:
        prediction = recognizer.predict(wavs[ids[index]])
        return np.log([prediction.probabilities[c] for c in recognizer.classes])

    np.testing.assert_allclose(log_probs(0), modes["cold"]["scores"][0], atol=2e-4)
    assert recognizer.predict(wavs[ids[0]]).speaker == {"mode": "cold", "recordings": 0, "seconds": 0.0}
    draw = modes["enrolled"]["draws"][0]
    enrolled = [ids[i] for i, scored in enumerate(draw["scored"]) if not scored]
    assert len(enrolled) == 5 and enrolled == [ids[i] for i in enrolment("03", len(ids), 5, 0)]
    recognizer.adapt([wavs[name] for name in enrolled])
    first = draw["scored"].index(True)
    np.testing.assert_allclose(log_probs(first), draw["scores"][first], atol=2e-4)
    recognizer.reset()
    recognizer.adapt([wavs[name] for name in ids])
    np.testing.assert_allclose(log_probs(3), modes["transductive"]["scores"][3], atol=2e-4)
    assert recognizer.predict(wavs[ids[3]]).speaker["recordings"] == len(ids)


def test_enrolling_as_it_predicts_scores_each_recording_by_the_earlier_ones(normalised_run):
    out, _, model = normalised_run
    recognizer = Recognizer.load(out / "best.pth", calibration="off")
    first, second, third = model.test_wavs[:3]
    cold_second = recognizer.predict(second).probabilities
    assert recognizer.predict(first, enrol=True).speaker["mode"] == "cold"
    after_one = recognizer.predict(second, enrol=True)
    assert after_one.speaker == {"mode": "enrolled", "recordings": 1, "seconds": 2.0}
    assert after_one.probabilities != pytest.approx(cold_second, abs=1e-6)
    reference = Recognizer.load(out / "best.pth", calibration="off")
    reference.adapt([first, second])
    assert recognizer.predict(third).probabilities == pytest.approx(
        reference.predict(third).probabilities, abs=1e-6
    )
    other = recognizer.with_speaker(recognizer.new_enrolment())
    assert other.predict(third).speaker["mode"] == "cold" and recognizer.speaker.recordings == 2


def test_the_cv_summary_reports_every_mode(normalised_run, tmp_path, capsys):
    """cv on pipeline-normalised features prints cold, enrolled-5 and transductive with paired Δ."""
    _, _, model = normalised_run
    folds = tmp_path / "folds.json"
    folds.write_text(json.dumps([{"test": "03", "val": "09"}]))
    args = [
        "cv",
        str(model.features),
        "--out",
        str(tmp_path / "cv"),
        "--model",
        "alexnet_gap",
        "--epochs",
        "1",
    ]
    args += [
        "--batch-size",
        "32",
        "--device",
        "cpu",
        "--speaker-norm",
        "mixed",
        "--folds",
        str(folds),
        "--quiet",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "mode of the table: cold" in printed and "enrolled-5" in printed and "transductive" in printed
    summary = json.loads((tmp_path / "cv" / "summary.json").read_text())
    assert summary["mode"] == "cold" and summary["modes"]["k"] == 5
    assert summary["ua_mean"] == pytest.approx(summary["modes"]["cold"]["ua_mean"])
    assert "| enrolled-5 |" in (tmp_path / "cv" / "summary.md").read_text()


def test_pipeline_normalisation_refuses_features_normalised_at_extraction(tmp_path, emodb_dir):
    from emovision.data.corpora import load_corpus
    from emovision.data.corpora.base import Corpus
    from emovision.data.extract import extract_corpus
    from emovision.data.features import FeatureConfig

    corpus = load_corpus("emodb", emodb_dir)
    subset = Corpus(
        corpus.name, corpus.classes, [u for u in corpus.utterances if u.speaker in ("03", "09", "10")]
    )
    path = tmp_path / "normalised.h5"
    extract_corpus(subset, FeatureConfig(segment_frames=100, speaker_norm=True), path, progress=False)
    config = TrainConfig(model="alexnet_gap", epochs=1, device="cpu", speaker_norm="mixed")
    with pytest.raises(EmovisionError, match="extracted without --speaker-norm"):
        train_fold(path, Fold(["10"], ["09"], ["03"]), config, tmp_path / "run")
    assert not (tmp_path / "run" / "last.pth").exists()
    with pytest.raises(EmovisionError, match="--enrol must be at least 1"):
        TrainConfig(enrol=0)
    with pytest.raises(EmovisionError, match="--speaker-norm must be one of"):
        TrainConfig(speaker_norm="sometimes")


def test_turns_are_normalised_by_the_turns_before_them_by_the_recording_or_alone(normalised_run, tmp_path):
    import soundfile as sf

    from emovision.data.audio import load_audio

    out, _, model = normalised_run
    recognizer = Recognizer.load(out / "best.pth", calibration="off")
    silence = np.zeros(8000, dtype=np.float32)
    parts = [load_audio(wav, 16000) for wav in model.test_wavs[:3]]
    samples = np.concatenate([silence, parts[0], silence, parts[1], silence, parts[2], silence])
    alone = recognizer.predict_turns(samples, 16000, vad="energy", normalise="turn").turns
    causal = recognizer.predict_turns(samples, 16000, vad="energy", normalise="causal").turns
    whole = recognizer.predict_turns(samples, 16000, vad="energy", normalise="recording").turns
    assert len(alone) == len(causal) == len(whole) >= 2
    assert causal[0].probabilities == pytest.approx(alone[0].probabilities, abs=1e-6)
    assert causal[1].probabilities != pytest.approx(alone[1].probabilities, abs=1e-4)
    assert whole[0].probabilities != pytest.approx(alone[0].probabilities, abs=1e-4)
    first = samples[int(causal[0].start * 16000) : int(causal[0].end * 16000)]
    second = samples[int(causal[1].start * 16000) : int(causal[1].end * 16000)]
    sf.write(tmp_path / "first.wav", first, 16000, subtype="FLOAT")
    sf.write(tmp_path / "second.wav", second, 16000, subtype="FLOAT")
    reference = recognizer.with_speaker(recognizer.new_enrolment())
    reference.adapt([tmp_path / "first.wav"])
    expected = reference.predict(tmp_path / "second.wav").probabilities
    assert causal[1].probabilities == pytest.approx(expected, abs=1e-5)
    assert recognizer.speaker.recordings == 0  # turns never change what the recognizer knows
    with pytest.raises(EmovisionError, match="--normalise must be one of"):
        recognizer.predict_turns(samples, 16000, vad="energy", normalise="speaker")


def test_enrolling_more_recordings_than_a_speaker_has_is_refused_before_any_work(
    trained_model, tmp_path, capsys
):
    """Speaker 03 has 49 recordings in the tiny model's features: 48 may enrol, 49 may not."""
    args = ["train", str(trained_model.features), "--test-speaker", "03", "--val-speaker", "09"]
    args += ["--model", "alexnet_gap", "--epochs", "1", "--device", "cpu", "--speaker-norm", "mixed"]
    assert main([*args, "--enrol", "49", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "speaker 03 has 49 recordings, so at most 48 can enrol" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "last.pth").exists()
    assert main([*args, "--enrol", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--enrol must be at least 1" in capsys.readouterr().err


def test_evaluate_scores_a_normalised_model_in_every_mode_as_the_cv_did(normalised_run, tmp_path):
    from emovision.evaluation.transfer import evaluate_on

    out, metrics, model = normalised_run
    summary = evaluate_on(out / "best.pth", model.features, tmp_path / "evaluate", {})
    assert summary["mode"] == "cold" and set(summary["modes"]) == {"k", "cold", "enrolled", "transductive"}
    assert summary["speakers"]["03"]["ua"] == pytest.approx(metrics["test_modes"]["cold"]["ua"], abs=1e-9)
    assert "| enrolled-5 |" in (tmp_path / "evaluate" / "summary.md").read_text()


def test_an_onnx_export_carries_the_speaker_normalisation(normalised_run, tmp_path):
    from emovision.inference.onnx_export import export_onnx

    out, _, model = normalised_run
    exported = export_onnx(out / "best.pth", tmp_path / "model.onnx").path
    torch_model = Recognizer.load(out / "best.pth", calibration="off")
    onnx_model = Recognizer.load(exported, calibration="off")
    assert onnx_model.normaliser.mode == "mixed" and onnx_model.speaker_normalised
    wav = model.test_wavs[4]
    for recognizer in (torch_model, onnx_model):
        recognizer.adapt(model.test_wavs[:3])
    expected = torch_model.predict(wav).probabilities
    assert onnx_model.predict(wav).probabilities == pytest.approx(expected, abs=1e-4)
    assert onnx_model.predict(wav).speaker["recordings"] == 3
