"""ONNX export: PyTorch and ONNX Runtime agree, the file is self-contained, and it runs without torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from trained_model import untrained_checkpoint

from emovision import Recognizer
from emovision.cli import main
from emovision.data.audio import load_audio
from emovision.data.features import FeatureConfig, compute_features
from emovision.data.store import load_speakers
from emovision.errors import CheckpointError
from emovision.inference.onnx_export import export_onnx
from emovision.training.checkpoint import load_checkpoint, model_from_checkpoint


@pytest.fixture(scope="module")
def exported(tmp_path_factory, trained_model):
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    return export_onnx(trained_model.checkpoint, out)


def test_onnx_runtime_matches_pytorch_on_real_features(exported, trained_model):
    """Logits within 1e-4 on the test speaker's segments (100 frames) and on whole utterances (201)."""
    model = model_from_checkpoint(load_checkpoint(trained_model.checkpoint))
    session = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    segments = load_speakers(trained_model.features, ["03"])["03"].segments[:40]
    recognizer = Recognizer.load(trained_model.checkpoint)
    whole = np.stack(
        [
            compute_features(load_audio(wav, 16000), recognizer.config, wav.stem)
            for wav in trained_model.test_wavs[:4]
        ]
    )
    assert exported.dynamic_time and segments.shape[-1] == 100 and whole.shape[-1] == 201
    for batch in (segments, segments[:1], whole):
        with torch.no_grad():
            expected = model(torch.from_numpy(batch)).numpy()
        actual = session.run(["logits"], {"segments": batch})[0]
        assert actual.shape == expected.shape
        np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=0)
    assert exported.max_difference <= 1e-4


def test_onnx_file_carries_what_prediction_needs(exported, trained_model):
    proto = onnx.load(str(exported.path))
    meta = {item.key: item.value for item in proto.metadata_props}
    payload = load_checkpoint(trained_model.checkpoint)
    assert meta["format"] == "emovision-onnx"
    assert json.loads(meta["classes"]) == payload["classes"]
    assert json.loads(meta["feature_config"]) == payload["feature_config"]
    assert meta["aggregate"] == payload["aggregate"] and json.loads(meta["model"]) == payload["model"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 1, 128, "frames"]


def test_recognizer_on_onnx_equals_checkpoint(exported, trained_model):
    files = trained_model.test_wavs[:10]
    onnx_results = Recognizer.load(exported.path).predict_many(files)
    torch_results = Recognizer.load(trained_model.checkpoint).predict_many(files)
    for a, b in zip(onnx_results, torch_results, strict=True):
        np.testing.assert_allclose(a.segment_probabilities, b.segment_probabilities, atol=1e-5)
        assert a.label == b.label


def test_onnx_prediction_never_imports_torch(exported, trained_model):
    wav = trained_model.test_wavs[0]
    script = (
        "import json, sys\n"
        "from emovision import Recognizer\n"
        "assert 'torch' not in sys.modules, 'importing Recognizer imported torch'\n"
        f"r = Recognizer.load({str(exported.path)!r})\n"
        f"p = r.predict({str(wav)!r})\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'backend': r.backend, 'result': p.to_dict()}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["torch"] is False and answer["backend"] == "onnx"
    expected = Recognizer.load(trained_model.checkpoint).predict(wav)
    assert answer["result"]["emotion"] == expected.label
    assert answer["result"]["probabilities"] == pytest.approx(expected.probabilities, abs=1e-5)


def test_export_command(tmp_path, trained_model, capsys):
    out = tmp_path / "cli.onnx"
    assert main(["export", str(trained_model.checkpoint), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and "time axis dynamic" in printed and "matches PyTorch" in printed
    assert main(["export", str(trained_model.checkpoint), "-o", str(tmp_path / "model.bin")]) == 2
    assert "must end in .onnx" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "cli.onnx"), "-o", str(tmp_path / "again.onnx")]) == 2
    err = capsys.readouterr().err
    assert "cannot be loaded safely" in err and "Traceback" not in err


def test_resized_models_keep_a_dynamic_time_axis(tmp_path):
    """With --resize the input is interpolated to a fixed size: any number of frames is valid."""
    config = FeatureConfig(segment_frames=100)
    checkpoint = untrained_checkpoint(tmp_path / "resize.pth", config, resize=64)
    result = export_onnx(checkpoint, tmp_path / "resize.onnx")
    assert result.dynamic_time
    model = model_from_checkpoint(load_checkpoint(checkpoint))
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    for frames in (100, 37, 260):
        batch = (-80 * rng.random((2, 1, 128, frames))).astype(np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(batch)).numpy()
        np.testing.assert_allclose(
            session.run(["logits"], {"segments": batch})[0], expected, atol=1e-4, rtol=0
        )


def test_other_onnx_files_are_refused(tmp_path):
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    foreign = tmp_path / "foreign.onnx"
    onnx.save(onnx.helper.make_model(graph), str(foreign))
    with pytest.raises(CheckpointError, match="not one made by emovision export"):
        Recognizer.load(foreign)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"definitely not protobuf")
    with pytest.raises(CheckpointError, match="not a readable ONNX model"):
        Recognizer.load(garbage)
    with pytest.raises(CheckpointError, match="does not exist"):
        Recognizer.load(tmp_path / "missing.onnx")


def test_a_speaker_normalised_onnx_model_is_adapted_like_its_checkpoint(tmp_path, emodb_wavs):
    config = FeatureConfig(segment_frames=100, segment_tail="shift", speaker_norm=True)
    checkpoint = untrained_checkpoint(tmp_path / "norm.pth", config)
    exported = export_onnx(checkpoint, tmp_path / "norm.onnx")
    files = [wav for wav in emodb_wavs if wav.name.startswith("08")][:5]
    loaded = [Recognizer.load(exported.path), Recognizer.load(checkpoint)]
    assert loaded[0].backend == "onnx" and loaded[0].speaker_normalised
    for recognizer in loaded:
        assert recognizer.adapt(files) == len(files)
    onnx_results, torch_results = (recognizer.predict_many(files[:2]) for recognizer in loaded)
    for a, b in zip(onnx_results, torch_results, strict=True):
        np.testing.assert_allclose(a.segment_probabilities, b.segment_probabilities, atol=1e-5)


def test_an_attention_model_exports_and_embeds(trained_model, tmp_path):
    """The attention head survives the export (same logits on real segments) and gives embeddings of its
    feature map's width."""
    from emovision.training.folds import Fold
    from emovision.training.options import TrainConfig
    from emovision.training.train import train_fold

    fold = Fold(["10", "12"], ["09"], ["03"], name="attention")
    config = TrainConfig(model="alexnet_gap", head="attention", epochs=1, batch_size=32, device="cpu")
    train_fold(trained_model.features, fold, config, tmp_path / "run")
    checkpoint = tmp_path / "run" / "best.pth"
    assert load_checkpoint(checkpoint)["model"]["head"] == "attention"
    result = export_onnx(checkpoint, tmp_path / "attention.onnx")
    assert result.max_difference <= 1e-4
    segments = load_speakers(trained_model.features, ["03"])["03"].segments[:16]
    model = model_from_checkpoint(load_checkpoint(checkpoint))
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = model(torch.from_numpy(segments)).numpy()
    np.testing.assert_allclose(
        session.run(["logits"], {"segments": segments})[0], expected, atol=1e-4, rtol=0
    )
    vectors = Recognizer.load(checkpoint).embed(trained_model.test_wavs[0]).vectors
    assert vectors.shape == (1, 256)  # alexnet_gap's last feature map has 256 channels
