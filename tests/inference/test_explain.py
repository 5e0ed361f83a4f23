"""Explanations: Grad-CAM and attention maps against their closed forms, maps laid on the recording,
the Recognizer, the command line and the ONNX refusal."""

from __future__ import annotations

import json
from itertools import pairwise

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emovision import Recognizer
from emovision.cli import main
from emovision.data.features import FeatureConfig, bin_frequencies, compute_features
from emovision.errors import EmovisionError
from emovision.inference.explain import (
    cam_stage,
    deletion_flips,
    frame_weights,
    grad_cam,
    method_of,
    recording_map,
    segment_saliency,
)
from emovision.training.models import build_ser_model


def _upsampled(coarse: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    fine = F.interpolate(coarse[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return (fine / fine.flatten(1).amax(dim=1).clamp(min=1e-12)[:, None, None]).numpy()


def test_grad_cam_of_a_gap_classifier_is_the_class_activation_map():
    # alexnet_gap: logits = mean over positions of a 1×1 convolution, so on the last feature map the
    # gradient of class c is W[c] / positions everywhere and Grad-CAM reduces to CAM (Zhou et al.
    # 2016): relu(Σ_k W[c,k] A_k).
    torch.manual_seed(0)
    model = build_ser_model("alexnet_gap", 4, 1, 64).eval()
    x = torch.randn(3, 1, 64, 120)
    with torch.no_grad():
        fmap = model.feature_map(x)
    weight = model.backbone.classifier.weight[2, :, 0, 0]
    cam = torch.relu(torch.einsum("k,bkft->bft", weight, fmap)).detach()
    found = grad_cam(model, x, 2, model.stages()[-1])
    torch.testing.assert_close(found / found.amax(), cam / cam.amax(), atol=1e-5, rtol=1e-4)
    assert method_of(model) == "grad-cam"


@pytest.mark.parametrize(
    ("name", "stage", "shape"),
    [
        # hand count of the 64 × 200 input's strides: the last block at 1/8 of the height
        ("efficientnet_lite0", "_blocks.4", (8, 25)),
        ("resnet18", "layer2", (8, 25)),
        ("alexnet_gap", "features.1", (15, 49)),
    ],
)
def test_grad_cam_reads_the_last_block_at_an_eighth_of_the_resolution(name, stage, shape):
    torch.manual_seed(0)
    model = build_ser_model(name, 4, 1, 64).eval()
    x = torch.randn(2, 1, 64, 200)
    chosen = cam_stage(model, x)
    assert chosen is model.backbone.get_submodule(stage)
    coarse = grad_cam(model, x, 1, chosen)
    assert coarse.shape == (2, *shape) and coarse.min() >= 0
    np.testing.assert_allclose(segment_saliency(model, x, 1), _upsampled(coarse, (64, 200)), atol=1e-5)


def test_an_attention_model_shows_its_own_weights():
    torch.manual_seed(0)
    model = build_ser_model("resnet18", 4, 1, 64, head="attention").eval()
    x = torch.randn(2, 1, 64, 96)
    with torch.no_grad():
        weights = model.attention.weights(model.feature_map(x))
    maps = segment_saliency(model, x, 0)
    np.testing.assert_allclose(maps, _upsampled(weights, (64, 96)), atol=1e-5)
    assert maps.shape == (2, 64, 96) and np.allclose(maps.max(axis=(1, 2)), 1.0)
    assert method_of(model) == "attention"


def test_segment_maps_are_laid_on_the_recording_and_averaged_where_they_overlap():
    maps = np.stack([np.full((2, 4), 1.0), np.full((2, 4), 3.0), np.full((2, 4), 5.0)])
    # starts 0, 2, 4 on a 9-frame recording: frames 2–3 and 4–5 are covered twice, frame 8 by none.
    laid = recording_map(maps, np.array([0, 2, 4]), 9)
    assert laid.shape == (2, 9)
    np.testing.assert_allclose(laid[0], [1, 1, 2, 2, 4, 4, 5, 5, 0])
    # padding past the end is dropped
    np.testing.assert_allclose(recording_map(maps[:1], np.array([0]), 3)[0], [1, 1, 1])
    weights = frame_weights(laid)
    assert weights.sum() == pytest.approx(1.0) and weights[-1] == 0
    np.testing.assert_allclose(weights, laid.sum(axis=0) / laid.sum())


def test_bin_frequencies_are_the_mel_band_centres_and_fft_bins():
    import librosa

    mel = FeatureConfig(n_mels=40)
    np.testing.assert_allclose(
        bin_frequencies(mel), librosa.mel_frequencies(42, fmin=0.0, fmax=8000.0)[1:-1], rtol=1e-5
    )
    spec = FeatureConfig(kind="logspec", n_fft=800, max_freq=4000)
    assert bin_frequencies(spec).shape == (spec.n_bins,) and bin_frequencies(spec)[1] == pytest.approx(20.0)


def test_recognizer_explains_a_real_recording(trained_model):
    recognizer = Recognizer.load(trained_model.checkpoint)
    wav = trained_model.test_wavs[0]
    explanation = recognizer.explain(wav)
    feature = compute_features(*_samples(wav), recognizer.config)
    assert explanation.saliency.shape == feature.shape[1:] == explanation.spectrogram.shape
    np.testing.assert_allclose(explanation.spectrogram, feature[0])
    assert explanation.saliency.min() >= 0 and explanation.saliency.max() == pytest.approx(1.0)
    assert explanation.times[1] == pytest.approx(0.01) and np.all(np.diff(explanation.frequencies) > 0)
    expected = recognizer.predict(wav)
    assert explanation.prediction.label == expected.label == explanation.explained
    assert explanation.prediction.probabilities == pytest.approx(expected.probabilities)
    other = next(name for name in recognizer.classes if name != expected.label)
    assert recognizer.explain(wav, target=other).explained == other
    with pytest.raises(EmovisionError, match="not one of"):
        recognizer.explain(wav, target="joy")


def _samples(path):
    from emovision.data.audio import load_audio

    return (load_audio(path, 16000),)


def test_predict_explain_writes_a_picture_and_the_map(trained_model, tmp_path, capsys):
    wavs = trained_model.test_wavs[:2]
    out = tmp_path / "why"
    status = main(
        ["predict", str(trained_model.checkpoint), *map(str, wavs), "--explain", str(out), "--json"]
    )
    assert status == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["file"] for line in lines] == list(map(str, wavs))
    for wav, line in zip(wavs, lines, strict=True):
        saved = np.load(out / f"{wav.stem}.npy")
        weights = line["explanation"]["frame_weights"]
        assert len(weights) == saved.shape[1] and sum(weights) == pytest.approx(1.0, abs=1e-4)
        np.testing.assert_allclose(weights, saved.sum(axis=0) / saved.sum(), atol=1e-5)
        png = (out / f"{wav.stem}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_explain_refuses_what_it_cannot_do_before_any_work(trained_model, tmp_path, capsys):
    from emovision.inference.onnx_export import export_onnx

    onnx = export_onnx(trained_model.checkpoint, tmp_path / "tiny.onnx").path
    with pytest.raises(EmovisionError, match="ONNX model cannot be explained"):
        Recognizer.load(onnx).explain(trained_model.test_wavs[0])
    wav = str(trained_model.test_wavs[0])
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    for args, reason in [
        ([str(onnx), wav, "--explain", str(tmp_path / "x")], "ONNX model cannot be explained"),
        ([str(trained_model.checkpoint), wav, "--explain", str(blocked / "x")], "cannot write there"),
        (
            [str(trained_model.checkpoint), wav, "--explain", str(tmp_path / "y"), "--turns"],
            "leave out --turns",
        ),
    ]:
        assert main(["predict", *args]) == 2
        err = capsys.readouterr().err
        assert reason in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_deletion_test_counts_flips_against_random_frames(trained_model):
    from emovision.data.store import load_speakers
    from emovision.training.checkpoint import load_checkpoint, model_from_checkpoint

    model = model_from_checkpoint(load_checkpoint(trained_model.checkpoint))
    speaker = load_speakers(trained_model.features, ["03"])["03"]
    bounds = np.cumsum([0, *speaker.segments_per_utterance])
    utterances = [torch.from_numpy(speaker.segments[a:b]) for a, b in pairwise(bounds)]
    result = deletion_flips(model, utterances[:12], fraction=0.2, draws=2)
    assert result["utterances"] == 12 and 0 <= result["random"] <= 1 and 0 <= result["salient"] <= 1
    # hiding every frame but one leaves nothing to decide on: salient and random agree
    nearly_all = deletion_flips(model, utterances[:6], fraction=0.999, draws=1)
    assert nearly_all["salient"] == pytest.approx(nearly_all["random"]) == pytest.approx(nearly_all["block"])


def test_deletion_hides_exactly_the_chosen_frames_with_the_training_mean():
    from emovision.inference.explain import _masked

    segments = torch.arange(2 * 1 * 3 * 4, dtype=torch.float32).view(2, 1, 3, 4)
    fill = torch.tensor([[[-1.0], [-2.0], [-3.0]]])  # (C, F, 1)
    hidden = _masked(segments, np.array([1, 6]), fill)  # frame 1 of segment 0, frame 2 of segment 1
    expected = segments.clone()
    expected[0, :, :, 1] = fill[..., 0]
    expected[1, :, :, 2] = fill[..., 0]
    assert torch.equal(hidden, expected) and not torch.equal(segments, expected)
