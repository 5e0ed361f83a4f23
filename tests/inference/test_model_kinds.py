"""One model, three forms: a checkpoint, the cv folder holding it, its ONNX export. ``evaluate`` and
``embed`` give the same answers on each (a one-fold cv folder is the ensemble of one model)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emovision.cli import main


@pytest.fixture(scope="module")
def one_fold_cv(trained_model, tmp_path_factory):
    """A cv folder of one fold trained one epoch on the tiny model's features, and its ONNX export."""
    root = tmp_path_factory.mktemp("kinds")
    folds = root / "one.json"
    folds.write_text(json.dumps([{"test": ["03"], "val": ["09"], "train": ["10", "12"]}]))
    cv = root / "cv"
    args = ["cv", str(trained_model.features), "--folds", str(folds), "--epochs", "1", "--batch-size", "32"]
    assert main([*args, "--device", "cpu", "--quiet", "--out", str(cv)]) == 0
    checkpoint = next(cv.glob("fold01-*/best.pth"))
    assert main(["export", str(checkpoint), "-o", str(root / "fold.onnx")]) == 0
    return cv, checkpoint, root / "fold.onnx"


@pytest.mark.slow
def test_evaluate_gives_the_same_figures_on_a_checkpoint_its_cv_folder_and_its_onnx(
    one_fold_cv, trained_model, tmp_path
):
    cv, checkpoint, onnx = one_fold_cv
    summaries = {}
    for name, model in (("checkpoint", checkpoint), ("cv", cv), ("onnx", onnx)):
        assert main(["evaluate", str(model), str(trained_model.features), "--out", str(tmp_path / name)]) == 0
        summaries[name] = json.loads((tmp_path / name / "summary.json").read_text())
    first = summaries["checkpoint"]
    assert first["utterances"] == sum(s["utterances"] for s in first["speakers"].values()) > 100
    for other in ("cv", "onnx"):
        assert summaries[other]["utterances"] == first["utterances"]
        assert summaries[other]["confusion"] == first["confusion"], other
        assert summaries[other]["ua"] == pytest.approx(first["ua"]), other


@pytest.mark.slow
def test_embed_on_a_cv_folder_is_its_fold_models_embedding(one_fold_cv, trained_model, tmp_path):
    cv, checkpoint, _ = one_fold_cv
    wavs = [str(w) for w in trained_model.test_wavs[:3]]
    assert main(["embed", str(cv), *wavs, "-o", str(tmp_path / "cv.npy"), "--quiet"]) == 0
    assert main(["embed", str(checkpoint), *wavs, "-o", str(tmp_path / "fold.npy"), "--quiet"]) == 0
    from_cv, from_fold = np.load(tmp_path / "cv.npy"), np.load(tmp_path / "fold.npy")
    assert from_cv.shape == (3, 256)
    np.testing.assert_allclose(from_cv, from_fold, rtol=1e-5, atol=1e-6)
