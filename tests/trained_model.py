"""A tiny real model for the prediction tests: alexnet_gap trained for one epoch on four emoDB speakers.

Four speakers' recordings (training 10 and 12, validation 09, test 03) are extracted as
log-mel features with 100-frame segments (1 s), then one fold is trained on the CPU. It
takes about 15 s on two cores and is built once per test session (see ``trained_model``
in ``conftest.py``). :func:`untrained_checkpoint` makes checkpoints for other feature types
and options where only the mechanics matter (feature seeding, ONNX shapes), not accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from emovision.data.corpora import load_corpus
from emovision.data.corpora.base import Corpus
from emovision.data.extract import extract_corpus
from emovision.data.features import FeatureConfig
from emovision.training.checkpoint import FORMAT, VERSION, save_checkpoint
from emovision.training.folds import Fold
from emovision.training.models import build_ser_model
from emovision.training.options import TrainConfig
from emovision.training.train import train_fold

TRAIN_SPEAKERS = ["10", "12"]
VAL_SPEAKERS = ["09"]
TEST_SPEAKERS = ["03"]
CONFIG = FeatureConfig(segment_frames=100)


@dataclass(frozen=True)
class TrainedModel:
    """The run's checkpoint, its features file, and the test speaker's recordings."""

    checkpoint: Path
    features: Path
    test_wavs: list[Path]
    classes: list[str]


def train_tiny_model(out: Path, emodb_dir: Path) -> TrainedModel:
    """Extract, train and return the tiny model under ``out``."""
    corpus = load_corpus("emodb", emodb_dir)
    keep = set(TRAIN_SPEAKERS + VAL_SPEAKERS + TEST_SPEAKERS)
    subset = Corpus(corpus.name, corpus.classes, [u for u in corpus.utterances if u.speaker in keep])
    features = out / "emodb-subset.h5"
    extract_corpus(subset, CONFIG, features, workers=2, progress=False)
    fold = Fold(TRAIN_SPEAKERS, VAL_SPEAKERS, TEST_SPEAKERS, name="tiny")
    config = TrainConfig(model="alexnet_gap", epochs=1, batch_size=32, device="cpu")
    train_fold(features, fold, config, out / "run")
    test_wavs = sorted(u.path for u in subset.utterances if u.speaker in TEST_SPEAKERS)
    return TrainedModel(out / "run" / "best.pth", features, test_wavs, list(corpus.classes))


def untrained_checkpoint(path: Path, config: FeatureConfig, resize: int | None = None) -> Path:
    """A checkpoint of an untrained alexnet_gap for ``config``: for the pipeline's mechanics, not accuracy."""
    torch.manual_seed(0)
    model = build_ser_model("alexnet_gap", 7, config.channels, config.height, resize=resize).eval()
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model": {
            "name": "alexnet_gap",
            "num_classes": 7,
            "channels": config.channels,
            "height": config.height,
            "frames": config.segment_frames,
            "input_norm": "bin",
            "resize": resize,
        },
        "classes": ["anger", "boredom", "disgust", "fear", "happiness", "sadness", "neutral"],
        "feature_config": config.to_dict(),
        "aggregate": "prob",
        "state_dict": model.state_dict(),
    }
    return save_checkpoint(payload, path)
