"""A cv folder as a model: late fusion with openSMILE functionals, the fold ensemble, a final model."""

import json

import numpy as np
import pytest
import torch

from emovision.audio import load_audio
from emovision.checkpoint import load_checkpoint, model_from_checkpoint
from emovision.cli import main
from emovision.dataset import open_source
from emovision.features import segment
from emovision.fusion import WEIGHTS, choose_weight
from emovision.predict import Recognizer
from emovision.runs import load_model_payload

FOLDS = [{"name": "a", "test": ["03"], "val": ["10"]}, {"name": "b", "test": ["08"], "val": ["09"]}]


@pytest.fixture(scope="module")
def cv_run(emodb_augmented, tmp_path_factory):
    root = tmp_path_factory.mktemp("cv-fusion")
    (root / "folds.json").write_text(json.dumps(FOLDS))
    out = root / "cv"
    args = ["cv", str(emodb_augmented), "--folds", str(root / "folds.json"), "--model", "alexnet_gap"]
    args += [
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--device",
        "cpu",
        "--quiet",
        "--fusion",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    return out


def test_fusion_report_and_that_it_chooses_on_the_validation_speaker(cv_run, capsys):
    report = json.loads((cv_run / "fusion.json").read_text())
    assert [f["name"] for f in report["folds"]] == ["a", "b"]
    for fold in report["folds"]:
        assert fold["weight"] in WEIGHTS
        assert fold["linear"]["ua"] > 0.5  # eGeMAPS + logistic regression, 4 classes: chance 0.25
        assert fold["image"]["utterances"] == fold["fusion"]["utterances"]
    summary = json.loads((cv_run / "summary.json").read_text())
    image_ua = [f["ua"] for f in summary["folds"]]
    assert [f["image"]["ua"] for f in report["folds"]] == pytest.approx(image_ua)  # the cv's own scores
    assert "| fusion |" in (cv_run / "fusion.md").read_text()
    assert main(["fuse", str(cv_run), "--quiet"]) == 0
    assert "ΔUA fusion - image" in capsys.readouterr().out


def test_choose_weight_prefers_the_better_scores_and_ties_go_to_equal_weights():
    labels = np.array([0, 1, 0, 1])
    good = np.log(np.array([[0.9, 0.1], [0.1, 0.9], [0.8, 0.2], [0.3, 0.7]]))
    bad = good[:, ::-1].copy()
    assert choose_weight(good, bad, labels, ["a", "b"]) > 0.5
    assert choose_weight(bad, good, labels, ["a", "b"]) < 0.5
    assert choose_weight(good, good, labels, ["a", "b"]) == 0.5


def test_fusion_needs_functionals(cv_run, tmp_path, capsys, emodb_dir):
    plain = tmp_path / "plain.h5"
    assert main(["extract", "emodb", str(emodb_dir), "--classes", "4", "-o", str(plain), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["fuse", str(cv_run), "--functionals", str(plain), "--quiet"]) == 2
    assert "no openSMILE functionals" in capsys.readouterr().err


def test_a_cv_folder_is_the_ensemble_of_its_fold_models(cv_run, emodb_wavs, tmp_path):
    payload = load_model_payload(cv_run)
    assert len(payload["members"]) == 2 and payload["model"]["name"].startswith("ensemble of 2")
    wav = next(p for p in emodb_wavs if p.name.startswith("03"))
    ensemble = Recognizer.load(cv_run, calibration="off")  # raw: the members' mean log-probabilities
    prediction = ensemble.predict(wav)
    pieces = torch.from_numpy(segment(ensemble.features(load_audio(wav, 16000)), ensemble.config))
    members = [model_from_checkpoint(load_checkpoint(p)) for p in sorted(cv_run.glob("fold*/best.pth"))]
    with torch.no_grad():
        mean = torch.stack([torch.log_softmax(m(pieces), dim=1) for m in members]).mean(0).mean(0)
    expected = torch.softmax(mean, dim=0).numpy()
    assert np.allclose([prediction.probabilities[c] for c in ensemble.classes], expected, atol=1e-5)
    onnx = tmp_path / "ensemble.onnx"
    assert main(["export", str(cv_run), "-o", str(onnx)]) == 0
    from_onnx = Recognizer.load(onnx, calibration="off").predict(wav)
    assert from_onnx.label == prediction.label
    assert abs(from_onnx.confidence - prediction.confidence) < 1e-4
    temperatures = [load_checkpoint(p)["temperature"] for p in sorted(cv_run.glob("fold*/best.pth"))]
    assert Recognizer.load(cv_run).temperature == Recognizer.load(onnx).temperature == np.median(temperatures)


def test_final_model_on_all_speakers_takes_the_cv_recipe_and_median_epoch(
    cv_run, emodb_augmented, emodb_wavs, tmp_path
):
    out = tmp_path / "final"
    args = ["train", str(emodb_augmented), "--all-speakers", "--epochs-from", str(cv_run), "--lr", "5e-4"]
    assert main([*args, "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    checkpoint = load_checkpoint(out / "best.pth")
    summary = json.loads((cv_run / "summary.json").read_text())
    assert checkpoint["train_config"]["epochs"] == round(
        float(np.median([f["best_epoch"] for f in summary["folds"]]))
    )
    assert checkpoint["train_config"]["model"] == "alexnet_gap" and checkpoint["train_config"]["lr"] == 5e-4
    assert checkpoint["fold"]["train"] == open_source(emodb_augmented).speakers
    assert checkpoint["fold"]["val"] == checkpoint["fold"]["test"] == []
    assert Recognizer.load(out / "best.pth").predict(emodb_wavs[0]).label in checkpoint["classes"]
    assert (
        main(
            [
                "train",
                str(emodb_augmented),
                "--all-speakers",
                "--val-speaker",
                "03",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
