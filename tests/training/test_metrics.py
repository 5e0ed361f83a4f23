"""WA and UA per fold, pooled and as fold mean ± std, against hand counts and scikit-learn.

WA is the accuracy over utterances; UA the mean recall over the classes present in the truth
(scikit-learn's ``balanced_accuracy_score``). The fold standard deviation is the sample one
(``ddof = 1``), 0 for a single fold.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score
from sklearn.metrics import confusion_matrix as sk_confusion

from emovision.training.cv import within_fold_ensemble
from emovision.training.metrics import (
    confusion_matrix,
    fold_summary,
    metrics_from_confusion,
    score_utterances,
)

CLASSES = ["anger", "happiness", "sadness", "neutral"]


def _sk_ua(truth, predictions) -> float:
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true": that class is left out
        warnings.simplefilter("ignore", UserWarning)
        return float(balanced_accuracy_score(truth, predictions))


def _one_hot_scores(predictions, classes: int = len(CLASSES)) -> np.ndarray:
    """Log-probabilities whose argmax is ``predictions``."""
    scores = np.full((len(predictions), classes), np.log(0.1))
    scores[np.arange(len(predictions)), predictions] = np.log(0.7)
    return scores


def test_a_class_absent_from_the_truth_is_left_out_of_ua_by_hand_and_as_sklearn():
    # truth: 3 anger, 2 happiness, no sadness or neutral; sadness is predicted twice
    truth = np.array([0, 0, 0, 1, 1])
    predictions = np.array([0, 2, 0, 1, 2])
    metrics = metrics_from_confusion(confusion_matrix(truth, predictions, 4), CLASSES)
    assert metrics["confusion"] == [[2, 0, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert metrics["wa"] == pytest.approx(3 / 5)
    assert metrics["ua"] == pytest.approx((2 / 3 + 1 / 2) / 2)  # not / 4: two classes are absent
    assert metrics["recall"] == {
        "anger": pytest.approx(2 / 3),
        "happiness": pytest.approx(1 / 2),
        "sadness": None,
        "neutral": None,
    }
    assert metrics["utterances"] == 5
    assert metrics["ua"] == pytest.approx(_sk_ua(truth, predictions))
    assert metrics["wa"] == pytest.approx(accuracy_score(truth, predictions))


def test_ties_go_to_the_first_class_and_a_single_utterance_scores_zero_or_one():
    tie = np.log(np.array([[0.2, 0.4, 0.4, 0.0 + 1e-9]]))  # happiness and sadness tie
    assert score_utterances(np.array([1]), tie, CLASSES)["confusion"][1] == [0, 1, 0, 0]
    wrong = score_utterances(np.array([2]), tie, CLASSES)
    assert wrong["confusion"][2] == [0, 1, 0, 0] and wrong["wa"] == 0.0 and wrong["ua"] == 0.0
    right = score_utterances(np.array([1]), tie, CLASSES)
    assert right["wa"] == 1.0 and right["ua"] == 1.0 and right["utterances"] == 1
    assert right["recall"] == {"anger": None, "happiness": 1.0, "sadness": None, "neutral": None}
    # a tie of all classes: the first
    flat = np.log(np.full((1, 4), 0.25))
    assert score_utterances(np.array([0]), flat, CLASSES)["wa"] == 1.0


def test_random_labels_per_fold_match_sklearn():
    rng = np.random.default_rng(11)
    for _ in range(40):
        size = int(rng.integers(1, 60))
        truth = rng.integers(0, 4, size)
        predictions = rng.integers(0, 4, size)
        metrics = score_utterances(truth, _one_hot_scores(predictions), CLASSES)
        assert metrics["wa"] == pytest.approx(accuracy_score(truth, predictions))
        assert metrics["ua"] == pytest.approx(_sk_ua(truth, predictions))
        assert metrics["confusion"] == sk_confusion(truth, predictions, labels=range(4)).tolist()
        present = sorted(set(truth.tolist()))
        recalls = recall_score(truth, predictions, labels=present, average=None)
        for index, value in zip(present, recalls, strict=True):
            assert metrics["recall"][CLASSES[index]] == pytest.approx(value)


def _folds(rng: np.random.Generator, sizes) -> tuple[list[dict], list[np.ndarray], list[np.ndarray]]:
    results, truths, predictions = [], [], []
    for size in sizes:
        truth = rng.integers(0, 4, size)
        truth[:2] = [0, 1]  # unequal class counts from fold to fold: pooled UA ≠ mean UA
        predicted = np.where(rng.random(size) < 0.5, truth, rng.integers(0, 4, size))
        results.append(score_utterances(truth, _one_hot_scores(predicted), CLASSES))
        truths.append(truth)
        predictions.append(predicted)
    return results, truths, predictions


def test_fold_mean_sample_std_and_pooled_figures_match_numpy_and_sklearn():
    rng = np.random.default_rng(3)
    results, truths, predictions = _folds(rng, (17, 40, 9, 31, 25))
    summary = fold_summary(results, CLASSES)
    ua = np.array([_sk_ua(t, p) for t, p in zip(truths, predictions, strict=True)])
    wa = np.array([accuracy_score(t, p) for t, p in zip(truths, predictions, strict=True)])
    assert summary["ua_mean"] == pytest.approx(ua.mean())
    assert summary["wa_mean"] == pytest.approx(wa.mean())
    assert summary["ua_std"] == pytest.approx(np.std(ua, ddof=1))
    assert summary["wa_std"] == pytest.approx(np.std(wa, ddof=1))
    assert summary["ua_std"] != pytest.approx(np.std(ua, ddof=0))  # the sample, not the population std
    everything = np.concatenate(truths), np.concatenate(predictions)
    assert summary["pooled"]["ua"] == pytest.approx(_sk_ua(*everything))
    assert summary["pooled"]["wa"] == pytest.approx(accuracy_score(*everything))
    assert summary["pooled"]["utterances"] == 17 + 40 + 9 + 31 + 25
    assert summary["pooled"]["confusion"] == sk_confusion(*everything, labels=range(4)).tolist()
    assert summary["pooled"]["ua"] != pytest.approx(ua.mean())  # pooled is not the fold mean


def test_two_folds_by_hand_and_a_single_fold_has_no_spread():
    # fold 1: 2 of 4 right (UA 0.5); fold 2: all right (UA 1)
    one = score_utterances(np.array([0, 0, 1, 1]), _one_hot_scores([0, 1, 1, 0]), CLASSES)
    two = score_utterances(np.array([2, 3]), _one_hot_scores([2, 3]), CLASSES)
    summary = fold_summary([one, two], CLASSES)
    assert summary["ua_mean"] == pytest.approx(0.75)
    assert summary["ua_std"] == pytest.approx(np.sqrt(2 * 0.25**2 / 1))  # ddof = 1: 0.354, not 0.25
    assert summary["pooled"]["wa"] == pytest.approx(4 / 6)
    assert summary["pooled"]["ua"] == pytest.approx((1 / 2 + 1 / 2 + 1 + 1) / 4)
    alone = fold_summary([one], CLASSES)
    assert alone["ua_std"] == 0.0 and alone["wa_std"] == 0.0 and alone["ua_mean"] == pytest.approx(0.5)


def test_within_fold_ensemble_scores_the_mean_of_each_folds_repeats_as_sklearn():
    rng = np.random.default_rng(5)
    results, expected_ua, truths, decisions = [], [], [], []
    for fold, size in (("f1", 23), ("f2", 30), ("f3", 14)):
        truth = rng.integers(0, 4, size)
        repeats = [rng.normal(size=(size, 4)) for _ in range(3)]
        for scores in repeats:
            results.append(
                {"fold": {"name": fold}, "test_labels": truth.tolist(), "test_scores": scores.tolist()}
            )
        decided = np.mean(repeats, axis=0).argmax(axis=1)
        expected_ua.append(_sk_ua(truth, decided))
        truths.append(truth)
        decisions.append(decided)
    ensemble = within_fold_ensemble(results, CLASSES)
    assert [f["runs"] for f in ensemble["folds"]] == [3, 3, 3]
    assert [f["ua"] for f in ensemble["folds"]] == pytest.approx(expected_ua)
    assert ensemble["ua_std"] == pytest.approx(np.std(expected_ua, ddof=1))
    pooled = np.concatenate(truths), np.concatenate(decisions)
    assert ensemble["pooled"]["ua"] == pytest.approx(_sk_ua(*pooled))
    assert ensemble["pooled"]["wa"] == pytest.approx(accuracy_score(*pooled))
