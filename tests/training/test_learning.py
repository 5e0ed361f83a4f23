"""The product's recipe learns: pretrained efficientnet_lite0 with SpecAugment on 2-s segments, three
epochs, two speaker-independent folds of a 4-class emoDB slice, beats chance and the majority class."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emovision.data.corpora import load_corpus
from emovision.data.extract import extract_corpus
from emovision.data.features import FeatureConfig
from emovision.training.cv import run_cv
from emovision.training.options import TrainConfig


@pytest.mark.slow
def test_the_demo_recipe_beats_chance_and_the_majority_class(emodb_dir, tmp_path):
    corpus = load_corpus("emodb", emodb_dir, "4")
    corpus.utterances = [u for u in corpus.utterances if u.speaker in ("03", "08", "09", "10", "11", "12")]
    features = tmp_path / "slice.h5"
    extract_corpus(
        corpus, FeatureConfig(n_mels=64, segment_frames=200, segment_tail="trim"), features, progress=False
    )
    folds = tmp_path / "folds.json"
    folds.write_text(json.dumps([{"test": ["03"], "val": ["10"]}, {"test": ["08"], "val": ["09"]}]))
    config = TrainConfig(
        model="efficientnet_lite0",
        pretrained=True,
        epochs=3,
        batch_size=16,
        schedule="cosine",
        augment="specaugment",
        device="cpu",
    )
    summary = run_cv(features, config, tmp_path / "cv", folds=str(folds), progress=False)
    confusion = np.array(summary["pooled"]["confusion"])  # rows: true class
    truth = confusion.sum(axis=1)
    chance_ua = 1 / len(truth)  # also the UA of always answering one class
    majority_wa = truth.max() / truth.sum()
    ua = np.mean(np.diag(confusion) / truth)
    wa = np.trace(confusion) / truth.sum()
    assert summary["pooled"]["ua"] == pytest.approx(ua) and summary["pooled"]["wa"] == pytest.approx(wa)
    assert ua >= chance_ua + 0.1, (ua, chance_ua)
    assert wa >= majority_wa + 0.1, (wa, majority_wa)
