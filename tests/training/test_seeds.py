"""Seeds: one seed gives the same weights and scores in any process, another seed other ones.

Training runs through the command line in fresh processes, SpecAugment on, on a few recordings of
the tiny model's speakers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from emovision.data.store import FeatureWriter, SpeakerFeatures, load_speakers, open_info
from emovision.training.checkpoint import load_checkpoint

CHILD = """
import sys
from emovision.cli import main

features, *runs = sys.argv[1:]
for run in runs:
    seed, out = run.split("=", 1)
    args = ["train", features, "--val-speaker", "09", "--test-speaker", "03", "--model", "alexnet_gap",
            "--epochs", "1", "--batch-size", "16", "--device", "cpu", "--augment", "specaugment",
            "--seed", seed, "--quiet", "--out", out]
    assert main(args) == 0, run
"""


def _first_recordings(source: Path, out: Path, count: int) -> Path:
    """A features file of the first ``count`` recordings of each speaker of ``source``."""
    info = open_info(source)
    writer = FeatureWriter(out, info.corpus, info.classes, info.config)
    for speaker, data in load_speakers(source).items():
        segments = int(data.segments_per_utterance[:count].sum())
        writer.write_speaker(
            speaker,
            SpeakerFeatures(
                segments=data.segments[:segments],
                segment_labels=data.segment_labels[:segments],
                utterance_labels=data.utterance_labels[:count],
                segments_per_utterance=data.segments_per_utterance[:count],
                utterance_ids=data.utterance_ids[:count],
                durations=data.durations[:count],
                gender=data.gender,
            ),
        )
    return writer.finish()


@pytest.mark.slow
def test_a_seed_gives_the_same_weights_in_another_process_and_another_seed_others(trained_model, tmp_path):
    features = _first_recordings(trained_model.features, tmp_path / "few.h5", 12)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # one core each, side by side
    command = [sys.executable, "-c", CHILD, str(features)]
    first = subprocess.Popen([*command, f"1={tmp_path / 'a1'}", f"2={tmp_path / 'a2'}"], env=env)
    second = subprocess.Popen([*command, f"1={tmp_path / 'b1'}"], env=env)
    assert first.wait(timeout=300) == 0 and second.wait(timeout=300) == 0
    weights = {
        name: load_checkpoint(tmp_path / name / "best.pth")["state_dict"] for name in ("a1", "b1", "a2")
    }
    metrics = {name: json.loads((tmp_path / name / "metrics.json").read_text()) for name in weights}
    assert [metrics[name]["train_config"]["seed"] for name in ("a1", "b1", "a2")] == [1, 1, 2]
    assert metrics["a1"]["train_config"]["augment"] == "specaugment"
    # the same seed in two processes: bit for bit
    assert weights["a1"].keys() == weights["b1"].keys()
    assert all(torch.equal(weights["a1"][key], weights["b1"][key]) for key in weights["a1"])
    assert metrics["a1"]["test_scores"] == metrics["b1"]["test_scores"]
    assert metrics["a1"]["history"][0]["train_loss"] == metrics["b1"]["history"][0]["train_loss"]
    # another seed: other weights in every trained layer, other test scores
    learned = [key for key in weights["a1"] if not key.startswith("norm.")]
    assert not any(torch.equal(weights["a1"][key], weights["a2"][key]) for key in learned)
    assert not np.allclose(metrics["a1"]["test_scores"], metrics["a2"]["test_scores"], atol=1e-4)
    for key in ("norm.mean", "norm.std"):  # the input statistics do not depend on the seed
        assert torch.equal(weights["a1"][key], weights["a2"][key])


def test_the_seed_sets_the_initial_weights(trained_model, tmp_path):
    from emovision.training.dataset import open_source
    from emovision.training.folds import Fold
    from emovision.training.options import TrainConfig
    from emovision.training.train import Trainer

    source = open_source(trained_model.features)
    fold = Fold(["10"], ["09"], ["03"], name="init")

    def initial(seed: int) -> dict:
        config = TrainConfig(model="alexnet_gap", epochs=1, device="cpu", seed=seed)
        trainer = Trainer(source, fold, config, tmp_path / str(seed), progress=None)
        trainer.prepare()
        return {k: v.clone() for k, v in trainer.model.state_dict().items() if not k.startswith("norm.")}

    with torch.random.fork_rng():  # the process's random state is left as it was
        torch.manual_seed(12345)  # whatever state the process is in
        one = initial(1)
        torch.rand(7)
        again, other = initial(1), initial(2)
    assert all(torch.equal(one[key], again[key]) for key in one)
    assert not any(torch.equal(one[key], other[key]) for key in one)
