"""Calibration: temperature scaling fitted on the validation speakers, ECE, and its use in prediction."""

import json

import numpy as np
import pytest
from trained_model import untrained_checkpoint

from emovision.cli import main
from emovision.data.features import FeatureConfig
from emovision.errors import EmovisionError
from emovision.inference.predict import Recognizer
from emovision.training.calibration import (
    apply_temperature,
    cross_fitted_temperatures,
    fit_temperature,
    mean_nll,
    pooled_calibration,
    reliability,
)
from emovision.training.checkpoint import load_checkpoint


def _sampled(temperature: float, count: int = 4000, classes: int = 4):
    """Scores whose labels are drawn from ``softmax(scores / temperature)``."""
    rng = np.random.default_rng(0)
    scores = apply_temperature(rng.normal(0, 3, (count, classes)), 1.0)
    truth = np.exp(apply_temperature(scores, temperature))
    labels = np.array([rng.choice(classes, p=p / p.sum()) for p in truth])
    return scores, labels


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_with(true_temperature):
    scores, labels = _sampled(true_temperature)
    fitted = fit_temperature(scores, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.1)
    assert mean_nll(scores, labels, fitted) <= mean_nll(scores, labels, 1.0) + 1e-9
    over = reliability(apply_temperature(scores, 1.0), labels)["ece"]
    fixed = reliability(apply_temperature(scores, fitted), labels)["ece"]
    assert fixed < 0.03 and (true_temperature == 1.0 or fixed < over / 2)


def test_reliability_bins_and_ece_by_hand():
    log_probs = np.log(np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]]))
    result = reliability(log_probs, np.array([0, 1, 0, 0]))
    full = [b for b in result["bins"] if b["count"]]
    assert [(b["count"], b["accuracy"]) for b in full] == [(2, 1.0), (2, 0.5)]
    assert result["ece"] == pytest.approx((2 * 0.4 + 2 * 0.4) / 4)


def test_training_fits_a_temperature_and_prediction_applies_it(trained_model, emodb_wavs, tmp_path, capsys):
    checkpoint = load_checkpoint(trained_model.checkpoint)
    metrics = checkpoint["metrics"]["calibration"]
    temperature = checkpoint["temperature"]
    assert temperature == metrics["temperature"] and 0.05 <= temperature <= 20
    assert metrics["val_nll_calibrated"] <= metrics["val_nll"] + 1e-9
    assert {"test_ece", "test_ece_calibrated"} <= set(metrics)
    scaled = Recognizer.load(trained_model.checkpoint).predict(emodb_wavs[5])
    raw = Recognizer.load(trained_model.checkpoint, calibration="off").predict(emodb_wavs[5])
    expected = np.exp(apply_temperature(np.log([list(raw.probabilities.values())]), temperature))[0]
    assert list(scaled.probabilities.values()) == pytest.approx(expected, abs=1e-6)
    assert scaled.label == raw.label
    plain = untrained_checkpoint(tmp_path / "plain.pth", FeatureConfig())
    with pytest.raises(EmovisionError, match="has no calibration"):
        Recognizer.load(plain, calibration="on")
    assert main(["predict", str(plain), str(emodb_wavs[5]), "--calibration", "on"]) == 2
    assert "has no calibration" in capsys.readouterr().err


def test_pooled_calibration_uses_each_folds_own_temperature():
    runs = []
    for temperature in (0.5, 2.0):
        scores, labels = _sampled(temperature, count=500)
        runs.append({"test_scores": scores.tolist(), "test_labels": labels.tolist(),
                     "calibration": {"temperature": fit_temperature(scores, labels)}})  # fmt: skip
    pooled = pooled_calibration(runs)
    assert pooled["runs"] == 2 and pooled["ece_calibrated"] < pooled["ece"]
    assert pooled_calibration([{"test_scores": [], "calibration": None}]) is None
    assert json.dumps(pooled)


def test_a_fold_is_calibrated_on_the_folds_that_share_none_of_its_speakers():
    sharp, sharp_labels = _sampled(0.5, count=1500)
    flat, flat_labels = _sampled(2.0, count=1500)
    folds = [({"03"}, sharp, sharp_labels), ({"08"}, flat, flat_labels), ({"03", "09"}, flat, flat_labels)]
    first, second, third = cross_fitted_temperatures(folds)
    # the first fold shares speaker 03 with the third, so only the second (drawn at T = 2) is its reference
    assert first == pytest.approx(2.0, rel=0.15)
    # the third shares 03 with the first: only the second again
    assert third == pytest.approx(first)
    # the second pools the first (T = 0.5) and the third (T = 2): between the two
    assert 0.5 * 1.15 < second < 2.0 / 1.15
    assert cross_fitted_temperatures([({"03"}, sharp, sharp_labels)]) == [None]
