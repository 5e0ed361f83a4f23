"""Embeddings: the classifier's input, per recording or per speech turn, written as .npy or Parquet."""

import csv

import numpy as np
import pyarrow.parquet as parquet
import pytest
import soundfile as sf
import torch
from test_turns import _conversation

from emovision.cli import main
from emovision.data.audio import load_audio
from emovision.data.features import FeatureConfig, compute_features, segment
from emovision.inference.predict import Recognizer
from emovision.training.checkpoint import load_checkpoint, model_from_checkpoint
from emovision.training.metrics import segment_embeddings


def test_the_embedding_is_what_the_classifier_receives(trained_model, emodb_wavs):
    payload = load_checkpoint(trained_model.checkpoint)
    model = model_from_checkpoint(payload)
    config = FeatureConfig.from_dict(payload["feature_config"])
    recognizer = Recognizer.load(trained_model.checkpoint)
    samples = load_audio(emodb_wavs[7], config.sample_rate, min_samples=config.min_samples)
    segments = torch.from_numpy(segment(compute_features(samples, config, emodb_wavs[7].stem), config))
    vectors = segment_embeddings(model, segments)
    head = model.backbone.classifier  # alexnet_gap: a 1×1 convolution after global pooling is linear
    logits = vectors @ head.weight[:, :, 0, 0].detach().numpy().T + head.bias.detach().numpy()
    with torch.no_grad():
        np.testing.assert_allclose(logits, model(segments).numpy(), rtol=1e-4, atol=1e-4)
    whole = recognizer.embed(emodb_wavs[7])
    assert whole.vectors.shape == (1, 256) and whole.spans[0, 1] == pytest.approx(samples.size / 16000)
    np.testing.assert_allclose(whole.vectors[0], vectors.mean(axis=0), rtol=1e-5)


def test_embed_command_per_turn_to_npy_and_parquet(trained_model, emodb_wavs, tmp_path, capsys):
    samples, truth = _conversation(emodb_wavs[200:203])
    sf.write(tmp_path / "talk.wav", samples, 16000)
    model = str(trained_model.checkpoint)
    args = [
        "embed",
        model,
        str(tmp_path / "talk.wav"),
        str(emodb_wavs[0]),
        "--turns",
        "--vad",
        "energy",
        "--quiet",
    ]
    assert main([*args, "-o", str(tmp_path / "e.npy")]) == 0
    assert "4 vector(s) of 256 values from 2 recording(s)" in capsys.readouterr().out
    vectors = np.load(tmp_path / "e.npy")
    index = list(csv.DictReader((tmp_path / "e.csv").open()))
    assert vectors.shape == (4, 256) and [row["file"] for row in index] == [
        str(tmp_path / "talk.wav")
    ] * 3 + [str(emodb_wavs[0])]
    assert np.allclose([float(row["start"]) for row in index[:3]], truth[:, 0] - 0.1, atol=0.2)
    assert main([*args, "-o", str(tmp_path / "e.parquet")]) == 0
    table = parquet.read_table(tmp_path / "e.parquet").to_pydict()
    np.testing.assert_allclose(np.array(table["embedding"]), vectors, rtol=1e-6)
    assert table["file"] == [row["file"] for row in index]
    assert main(["embed", model, str(emodb_wavs[0]), "-o", str(tmp_path / "e.txt")]) == 2
    assert "suffix must be one of .npy, .parquet" in capsys.readouterr().err
