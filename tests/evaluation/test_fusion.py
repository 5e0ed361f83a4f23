"""A cv folder as a model: late fusion with openSMILE functionals, the fold ensemble, a final model."""

import itertools
import json
import shutil
from pathlib import Path

import h5py
import httpx
import numpy as np
import pytest
import torch
from serve.live_server import running_server
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix, recall_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import QuantileTransformer, StandardScaler

from emovision.cli import main
from emovision.data.audio import load_audio
from emovision.data.features import segment, speaker_normalise
from emovision.data.functionals import Functionals
from emovision.data.speaker_norm import FunctionalsCentre
from emovision.data.store import read_functionals
from emovision.errors import CheckpointError, EmovisionError
from emovision.evaluation import cross_fusion, cv_fusion
from emovision.evaluation.cross_fusion import FoldScores
from emovision.evaluation.fold_cache import FoldCache
from emovision.evaluation.functionals_table import FunctionalsTable, functionals_table
from emovision.evaluation.fusion import WEIGHTS, choose_weight, held_out_folds, mean_image_scores
from emovision.evaluation.linear_model import (
    LinearTraining,
    centred_training,
    fit_linear,
    fit_linear_pipeline,
    linear_log_probs,
)
from emovision.inference.fusion_model import LinearFusion
from emovision.inference.predict import Recognizer
from emovision.inference.runs import finished_runs, load_model_payload
from emovision.serve import create_app
from emovision.training.checkpoint import load_checkpoint, model_from_checkpoint
from emovision.training.dataset import load_split, open_source
from emovision.training.metrics import score_utterances

FOLDS = [{"name": "a", "test": ["03"], "val": ["10"]}, {"name": "b", "test": ["08"], "val": ["09"]}]


@pytest.fixture(scope="module")
def cv_run(emodb_augmented, tmp_path_factory):
    root = tmp_path_factory.mktemp("cv-fusion")
    (root / "folds.json").write_text(json.dumps(FOLDS))
    out = root / "cv"
    assert main([*_small_cv(emodb_augmented, root / "folds.json"), "--fusion", "--out", str(out)]) == 0
    return out


def _small_cv(features, folds) -> list[str]:
    """A two-epoch ``alexnet_gap`` cv of ``features`` on the ``folds`` file, quiet, on the CPU."""
    args = ["cv", str(features), "--folds", str(folds), "--model", "alexnet_gap"]
    return [*args, "--epochs", "2", "--batch-size", "32", "--device", "cpu", "--quiet"]


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
    assert choose_weight(good, [("cold", bad, None)], labels, ["a", "b"]) > 0.5
    assert choose_weight(bad, [("cold", good, None)], labels, ["a", "b"]) < 0.5
    assert choose_weight(good, [("cold", good, None)], labels, ["a", "b"]) == 0.5


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
    # raw (no temperature, no fusion): the members' mean log-probabilities
    ensemble = Recognizer.load(cv_run, calibration="off", fusion="off")
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
    image_only = Recognizer.load(cv_run, fusion="off").temperature
    assert image_only == Recognizer.load(onnx).temperature == np.median(temperatures)


def test_the_fused_model_is_deployed_with_every_speaker_and_the_folds_medians(cv_run, emodb_augmented):
    report = json.loads((cv_run / "fusion.json").read_text())
    deployed = LinearFusion.load(cv_run / "fusion-model.npz")
    source = open_source(emodb_augmented)
    table = functionals_table(emodb_augmented, source.classes).utterances
    assert deployed.info["utterances"] == len(table) and deployed.info["speakers"] == 5
    assert deployed.info["copy_kinds"] == []  # the cv trained on clean speech only
    assert deployed.weight == pytest.approx(np.median([f["weight"] for f in report["folds"]]))
    assert deployed.temperature == pytest.approx(np.median([f["temperature"] for f in report["folds"]]))
    assert report["deployed"]["functionals"] == deployed.feature_set == "eGeMAPSv02"
    assert "To deploy: `fusion-model.npz`" in (cv_run / "fusion.md").read_text()
    # the stored arrays score exactly as the scikit-learn pipeline they came from
    ids = sorted(table)
    x = np.stack([table[uid][0] for uid in ids]).astype(np.float64)
    y = np.array([table[uid][2] for uid in ids])
    model, _, _ = fit_linear(x, y, [("cold", 0, x, None)], y, source.classes)
    again = LinearFusion.from_pipeline(
        model,
        feature_set="eGeMAPSv02",
        sample_rate=16000,
        classes=source.classes,
        weight=0.5,
        temperature=1.0,
        info={},
    )
    assert np.allclose(again.linear_log_probs(x), linear_log_probs(model, x, len(source.classes)), atol=1e-6)


def test_a_fused_cv_folder_predicts_with_its_linear_model(cv_run, emodb_augmented, emodb_wavs, capsys):
    wav = next(p for p in emodb_wavs if p.name.startswith("03") and p.name[5] == "W")
    samples = load_audio(wav, 16000)
    values = Functionals("eGeMAPSv02")(samples, 16000)
    ids, stored, _ = read_functionals(emodb_augmented)["03"]
    assert np.allclose(values, stored[ids.index(wav.stem)], atol=1e-4)  # the audio path extraction took
    fused = Recognizer.load(cv_run, fusion="on")
    assert fused.fusion is not None and "linear model on eGeMAPSv02" in fused.model["name"]
    image = Recognizer.load(cv_run, fusion="off", calibration="off").predict(wav)
    image_log = np.log([image.probabilities[c] for c in fused.classes])
    mixed = (
        fused.fusion.weight * image_log
        + (1 - fused.fusion.weight) * fused.fusion.linear_log_probs(values[None])[0]
    )
    expected = torch.softmax(torch.from_numpy(mixed / fused.temperature), dim=0).numpy()
    prediction = fused.predict(wav)
    assert np.allclose([prediction.probabilities[c] for c in fused.classes], expected, atol=1e-5)
    assert np.allclose(
        prediction.segment_probabilities, image.segment_probabilities
    )  # segments: image models
    turns = fused.predict_turns(wav, vad="energy")
    assert turns.turns and all(sum(t.probabilities.values()) == pytest.approx(1) for t in turns.turns)
    with pytest.raises(EmovisionError, match="precomputed segments"):
        fused.predict_segments(segment(fused.features(samples), fused.config))
    capsys.readouterr()
    assert main(["predict", str(cv_run), str(wav), "--json", "--quiet", "--fusion", "auto"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["probabilities"] == pytest.approx(prediction.probabilities, abs=1e-5)
    for fusion, fused_name in (("auto", True), ("off", False)):
        with running_server(create_app(cv_run, fusion=fusion)) as url:
            assert (
                "linear model on eGeMAPSv02" in httpx.get(f"{url}/api/health").json()["model"]
            ) is fused_name
            files = {"file": (wav.name, wav.read_bytes(), "audio/wav")}
            body = httpx.post(
                f"{url}/api/predict", files=files, params={"spectrogram": "true"}, timeout=60
            ).json()
            want = prediction if fusion == "auto" else Recognizer.load(cv_run, fusion="off").predict(wav)
            assert body["probabilities"] == pytest.approx(want.probabilities, abs=1e-5)


def test_fusion_on_needs_a_fused_model_and_a_damaged_one_is_refused(cv_run, emodb_wavs, tmp_path, capsys):
    checkpoint = next(cv_run.glob("fold*/best.pth"))
    assert main(["predict", str(checkpoint), str(emodb_wavs[0]), "--fusion", "on", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "has no fused model" in err and "Traceback" not in err
    copy = tmp_path / "cv"
    shutil.copytree(cv_run, copy)
    (copy / "fusion-model.npz").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="not a readable fused model"):
        Recognizer.load(copy, fusion="auto")
    assert Recognizer.load(copy, fusion="off").fusion is None
    # a fold retrained after the fusion was fitted: the stored weight no longer belongs to it
    shutil.copy(cv_run / "fusion-model.npz", copy / "fusion-model.npz")
    assert Recognizer.load(copy, fusion="on").fusion is not None
    assert Recognizer.load(copy).fusion is None  # off by default
    metrics = next(copy.glob("fold*/metrics.json"))
    metrics.write_text(metrics.read_text() + "\n")
    with pytest.raises(CheckpointError, match="fitted to other fold models"):
        Recognizer.load(copy, fusion="on")


def test_the_linear_model_trains_on_the_copies_functionals_of_the_training_speakers(
    cv_run, emodb_augmented, tmp_path, capsys
):
    copy = tmp_path / "cv"
    shutil.copytree(cv_run, copy)
    assert main(["fuse", str(copy), "--augment", "noise,reverb", "--quiet"]) == 0
    report = json.loads((copy / "fusion.json").read_text())
    assert report["copy_kinds"] == ["noise", "reverb"]
    assert "also trained on the training speakers' noise, reverb copies" in (copy / "fusion.md").read_text()
    source = open_source(emodb_augmented)
    table = functionals_table(emodb_augmented, source.classes)
    deployed = LinearFusion.load(copy / "fusion-model.npz")
    # every utterance clean, and a copy per noise type (white, pink, babble) and room
    assert deployed.info["utterances"] == len(table.utterances)
    assert deployed.info["copies"] == 4 * len(table.utterances)
    assert f"and their {4 * len(table.utterances)} noise, reverb copies" in (copy / "fusion.md").read_text()
    assert deployed.info["copy_kinds"] == ["noise", "reverb"]
    record = json.loads((copy / "cv.json").read_text())
    fold, entry = record["folds"][0], report["folds"][0]
    x, y = table.training(fold["train"], ("noise", "reverb"))
    clean_x, _ = table.training(fold["train"])
    assert len(y) == 5 * len(clean_x)
    test = load_split(source, fold["test"])
    model = fit_linear_pipeline(entry["C"], x, y)
    scores = linear_log_probs(model, table.lookup(test.utterance_ids), len(source.classes))
    assert score_utterances(test.utterance_labels, scores, source.classes)["ua"] == pytest.approx(
        entry["linear"]["ua"]
    )
    capsys.readouterr()
    assert main(["report", str(cv_run), str(copy), "--markdown"]) == 0
    out = capsys.readouterr().out
    clean = json.loads((cv_run / "fusion.json").read_text())["summary"]["fusion"]
    assert f"| {cv_run} | clean | " in out and f"| {copy} | clean + noise+reverb | " in out
    assert f"{clean['ua_mean']:.3f} ± {clean['ua_std']:.3f} | {clean['pooled']['ua']:.3f} |" in out
    delta = np.mean([b["fusion"]["ua"] - a["fusion"]["ua"] for a, b in zip(
        json.loads((cv_run / "fusion.json").read_text())["folds"], report["folds"], strict=True)])  # fmt: skip
    assert f"| {copy} | {cv_run} | " in out and f"{delta:+.3f} ± " in out
    assert main(["fuse", str(copy), "--augment", "none", "--quiet"]) == 0
    assert json.loads((copy / "fusion.json").read_text())["copy_kinds"] == []
    capsys.readouterr()
    for kinds, message in (("specaugment", "not a kind of waveform copy"), ("noise:brown", "unknown")):
        assert main(["fuse", str(copy), "--augment", kinds, "--quiet"]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(EmovisionError, match="holds no functionals of such copies"):
        FunctionalsTable(emodb_augmented, table.utterances, {}).check_kinds(("reverb",))


def test_the_fusion_under_noise_is_scored_per_fold_and_clean_reproduces_fuse(
    cv_run, cv_other_seed, emodb_augmented, tmp_path, capsys
):
    copy = tmp_path / "cv"
    shutil.copytree(cv_run, copy)
    # a linear model trained on the copies too, quantile-scaled: robustness retrains exactly that one per fold
    assert main(["fuse", str(copy), "--augment", "noise,reverb", "--scaling", "quantile", "--quiet"]) == 0
    fusion = json.loads((copy / "fusion.json").read_text())
    assert fusion["scaling"] == fusion["deployed"]["scaling"] == "quantile"
    source = open_source(emodb_augmented)
    table = functionals_table(emodb_augmented, source.classes)
    fold, entry = json.loads((copy / "cv.json").read_text())["folds"][0], fusion["folds"][0]
    x, y = table.training(fold["train"], ("noise", "reverb"))
    reference = make_pipeline(  # scikit-learn's own, built here
        QuantileTransformer(n_quantiles=min(1000, len(x)), output_distribution="normal", random_state=0),
        LogisticRegression(C=entry["C"], class_weight="balanced", max_iter=3000),
    ).fit(x, y)
    test = load_split(source, fold["test"])
    predicted = reference.predict(table.lookup(test.utterance_ids))
    assert recall_score(test.utterance_labels, predicted, average="macro") == pytest.approx(
        entry["linear"]["ua"]
    )
    manifest = emodb_augmented.parent / "emodb.csv"
    args = ["robustness", str(copy), "--root", str(manifest), "--snr", "10", "--noise", "white",
            "--rt60", "", "--workers", "2", "--device", "cpu", "--quiet"]  # fmt: skip
    assert main([*args, "--fusion"]) == 0
    assert "late fusion with openSMILE functionals" in capsys.readouterr().out
    report = json.loads((copy / "robustness.json").read_text())
    fused = {c["name"]: c for c in report["fusion"]}
    assert list(fused) == ["clean", "white 10 dB"]
    scored = json.loads((copy / "fusion.json").read_text())["summary"]
    for model in ("image", "linear", "fusion"):  # clean audio gives what fuse measured
        assert fused["clean"][model]["ua_mean"] == pytest.approx(scored[model]["ua_mean"], abs=1e-9)
    assert fused["white 10 dB"]["linear"]["ua_mean"] != fused["clean"]["linear"]["ua_mean"]
    assert "## Late fusion with openSMILE functionals" in (copy / "robustness.md").read_text()
    capsys.readouterr()
    assert main(["report", str(copy), "--markdown"]) == 0
    noisy = fused["white 10 dB"]["fusion"]
    row = f"| white 10 dB | {noisy['ua_mean']:.3f} ± {noisy['ua_std']:.3f} |"
    out = capsys.readouterr().out
    assert row in out.split("Robustness of the late fusion")[1]
    args[1] = str(cv_other_seed)
    assert main([*args, "--fusion"]) == 2
    assert "run emovision fuse on it first" in capsys.readouterr().err


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


@pytest.fixture(scope="module")
def cv_other_seed(cv_run, emodb_augmented, tmp_path_factory):
    out = tmp_path_factory.mktemp("cv-seed") / "cv"
    args = [*_small_cv(emodb_augmented, cv_run.parent / "folds.json"), "--seed", "5", "--augment", "noise"]
    args += ["--out", str(out)]
    assert main(args) == 0
    return out


def test_a_within_fold_ensemble_of_two_cvs_is_scored_and_fused_on_their_folds(
    cv_run, cv_other_seed, emodb_augmented, tmp_path, capsys
):
    out = tmp_path / "ensemble"
    args = [
        "ensemble",
        str(cv_run),
        str(cv_other_seed),
        "--out",
        str(out),
        "--functionals",
        str(emodb_augmented),
    ]
    assert main([*args, "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    source = open_source(emodb_augmented)
    members = [json.loads((run / "summary.json").read_text()) for run in (cv_run, cv_other_seed)]
    for i, fold in enumerate(summary["folds"]):
        assert fold["members_ua"] == pytest.approx([m["folds"][i]["ua"] for m in members])
        test = load_split(source, fold["test"])
        scores = [
            mean_image_scores([run], test)
            for run in (_fold_run(cv_run, fold["name"]), _fold_run(cv_other_seed, fold["name"]))
        ]
        expected = score_utterances(test.utterance_labels, np.mean(scores, axis=0), source.classes)
        assert fold["ua"] == pytest.approx(expected["ua"]) and fold["utterances"] == len(test.utterance_ids)
    fusion = json.loads((out / "fusion.json").read_text())
    assert [f["image"]["ua"] for f in fusion["folds"]] == pytest.approx([f["ua"] for f in summary["folds"]])
    assert fusion["copy_kinds"] == []  # only cv_other_seed trained on the noise copies
    alone = tmp_path / "noise-trained"
    shutil.copytree(cv_other_seed, alone)
    assert main(["fuse", str(alone), "--quiet"]) == 0
    assert json.loads((alone / "fusion.json").read_text())["copy_kinds"] == ["noise"]  # as its image models
    assert (out / "confusion.png").stat().st_size > 0 and "ensemble - 2" in (out / "summary.md").read_text()
    capsys.readouterr()
    assert main(["report", str(cv_run), str(out), "--markdown"]) == 0
    report = capsys.readouterr().out
    assert "within-fold ensemble of 2 cvs" in report and "| " + str(out) + " | " in report


def test_an_ensemble_folder_scores_a_features_file_with_every_member(
    cv_run, cv_other_seed, emodb_augmented, tmp_path
):
    out = tmp_path / "ensemble"
    assert main(["ensemble", str(cv_run), str(cv_other_seed), "--out", str(out), "--quiet"]) == 0
    assert main(["evaluate", str(out), str(emodb_augmented), "--out", str(tmp_path / "eval")]) == 0
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    # the reference: each fold model of both cvs read here, segment log-probabilities averaged per
    # utterance (the logprob rule) and over the four models (each cv's mean, then the two cvs' mean:
    # the same decisions, as every cv has two folds)
    models = [
        model_from_checkpoint(load_checkpoint(path)).eval()
        for run in (cv_run, cv_other_seed)
        for path in sorted(run.glob("*/best.pth"))
    ]
    assert len(models) == 4
    recognizer = Recognizer.load(out, calibration="off")
    truth, decided = [], []
    with h5py.File(emodb_augmented, "r") as handle:
        for speaker in handle:
            group = handle[speaker]
            segments = torch.from_numpy(group["segments"][:])
            with torch.no_grad():
                log_probs = np.mean([torch.log_softmax(m(segments), dim=1).numpy() for m in models], axis=0)
            counts = group["segments_per_utterance"][:]
            starts = np.cumsum([0, *counts])
            expected = np.stack([log_probs[a:b].mean(axis=0) for a, b in itertools.pairwise(starts)])
            scored = recognizer.utterance_log_probs(segments.numpy(), counts)
            # each renormalisation shifts an utterance's row by a constant: compare the rows centred
            centred = [x - x.mean(axis=1, keepdims=True) for x in (scored, expected)]
            assert np.allclose(*centred, atol=1e-4)
            truth += group["utterance_labels"][:].tolist()
            decided += expected.argmax(axis=1).tolist()
    assert summary["utterances"] == len(truth)
    assert (
        summary["confusion"]
        == confusion_matrix(truth, decided, labels=range(len(summary["model_classes"]))).tolist()
    )


def test_an_ensemble_folder_is_a_model_of_its_members_and_its_fusion(
    cv_run, cv_other_seed, emodb_augmented, emodb_wavs, tmp_path, capsys
):
    # the members and the ensemble move together: members are found relative to the ensemble
    shutil.copytree(cv_run, tmp_path / "runs" / "one")
    shutil.copytree(cv_other_seed, tmp_path / "runs" / "two")
    out = tmp_path / "runs" / "ensemble"
    members = [str(tmp_path / "runs" / name) for name in ("one", "two")]
    assert (
        main(["ensemble", *members, "--out", str(out), "--functionals", str(emodb_augmented), "--quiet"]) == 0
    )
    moved = tmp_path / "moved"
    (tmp_path / "runs").rename(moved)
    summary = json.loads((moved / "ensemble" / "summary.json").read_text())
    assert summary["temperature"] == pytest.approx(np.median([f["temperature"] for f in summary["folds"]]))
    wav = next(p for p in emodb_wavs if p.name.startswith("08"))
    raw = [
        Recognizer.load(moved / name, fusion="off", calibration="off").predict(wav) for name in ("one", "two")
    ]
    classes = raw[0].classes
    mean = np.mean([np.log([r.probabilities[c] for c in classes]) for r in raw], axis=0)
    image = Recognizer.load(moved / "ensemble", fusion="off", calibration="off")
    assert image.model["name"].startswith("ensemble of 2 cvs")
    prediction = image.predict(wav)
    expected = torch.softmax(torch.from_numpy(mean), dim=0).numpy()
    assert np.allclose([prediction.probabilities[c] for c in classes], expected, atol=1e-5)
    assert np.allclose(prediction.segment_probabilities, raw[0].segment_probabilities)
    fused = Recognizer.load(moved / "ensemble", fusion="on")
    values = Functionals("eGeMAPSv02")(load_audio(wav, 16000), 16000)[None]
    logits = fused.fusion.fuse(mean[None], values)[0] / fused.temperature
    expected = torch.softmax(torch.from_numpy(logits), dim=0).numpy()
    [batch] = list(fused.iter_predict([wav]))
    assert np.allclose([batch.probabilities[c] for c in classes], expected, atol=1e-5)
    assert fused.predict_turns(wav, vad="energy").turns
    with pytest.raises(EmovisionError, match="ensemble of cvs"):
        fused.embed(wav)
    capsys.readouterr()
    assert main(["export", str(moved / "ensemble"), "-o", str(tmp_path / "e.onnx")]) == 2
    assert "give one of its member cv folders" in capsys.readouterr().err
    # scored again without functionals: the earlier fused model is gone, not silently reused
    members = [str(moved / name) for name in ("one", "two")]
    assert main(["ensemble", *members, "--out", str(moved / "ensemble"), "--quiet"]) == 0
    assert not (moved / "ensemble" / "fusion-model.npz").exists()
    assert Recognizer.load(moved / "ensemble", fusion="auto").fusion is None
    shutil.rmtree(moved / "two")
    capsys.readouterr()
    assert main(["predict", str(moved / "ensemble"), str(wav), "--quiet"]) == 2
    assert "is not there any more" in capsys.readouterr().err


def test_an_ensemble_of_a_cv_with_itself_scores_as_the_cv(cv_run, tmp_path):
    assert main(["ensemble", str(cv_run), str(cv_run), "--out", str(tmp_path / "same"), "--quiet"]) == 0
    summary = json.loads((tmp_path / "same" / "summary.json").read_text())
    own = json.loads((cv_run / "summary.json").read_text())
    assert [f["ua"] for f in summary["folds"]] == pytest.approx([f["ua"] for f in own["folds"]])
    assert all(p["mean"] == pytest.approx(0) for p in summary["paired_ua"])


def test_an_ensemble_refuses_other_folds_one_member_and_its_own_member_as_output(cv_run, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(cv_run, other)
    metrics_path = next(other.glob("fold*-a*/metrics.json"))
    metrics = json.loads(metrics_path.read_text())
    metrics["fold"]["val"] = ["11"]
    metrics_path.write_text(json.dumps(metrics))
    out = tmp_path / "out"
    cases = [
        (["ensemble", str(cv_run), str(other), "--out", str(out)], "not cross-validated on the same folds"),
        (["ensemble", str(cv_run), "--out", str(out)], "at least two"),
        (["ensemble", str(cv_run), str(other), "--out", str(other)], "one of the members"),
        (["ensemble", str(cv_run), str(tmp_path / "missing"), "--out", str(out)], "not a cross-validation"),
    ]
    for args, message in cases:
        capsys.readouterr()
        assert main([*args, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
        assert not out.exists()


def _fold_run(cv_dir, name):
    return next(run for run in finished_runs(cv_dir)[1] if run.metrics["fold"]["name"] == name)


def test_a_speaker_normalised_fusion_is_used_only_on_a_speaker_it_was_adapted_to(
    cv_run, emodb_wavs, tmp_path, capsys
):
    """A fusion trained on speaker-normalised functionals (extract --speaker-norm) normalises the
    recording's functionals by the adapted speaker's; without a speaker it refuses to guess."""
    folder = tmp_path / "cv"
    shutil.copytree(cv_run, folder)
    deployed = LinearFusion.load(folder / "fusion-model.npz")
    deployed.info["speaker_norm"] = True
    deployed.save(folder / "fusion-model.npz")
    wavs = [p for p in emodb_wavs if p.name.startswith("03")][:8]
    fused = Recognizer.load(folder, fusion="on")
    assert fused.fusion_speaker_normalised and fused.speaker_normalised
    with pytest.raises(EmovisionError, match="speaker-normalised functionals"):
        fused.predict(wavs[0])
    assert fused.adapt(wavs) == len(wavs)
    values = np.stack([Functionals("eGeMAPSv02")(load_audio(wav, 16000), 16000) for wav in wavs])
    normalised = speaker_normalise(values)
    image = Recognizer.load(folder, fusion="off", calibration="off").predict(wavs[0])
    image_log = np.log([image.probabilities[c] for c in fused.classes])
    mixed = (
        fused.fusion.weight * image_log
        + (1 - fused.fusion.weight) * fused.fusion.linear_log_probs(normalised[:1].astype(np.float64))[0]
    )
    expected = torch.softmax(torch.from_numpy(mixed / fused.temperature), dim=0).numpy()
    prediction = fused.predict(wavs[0])
    assert np.allclose([prediction.probabilities[c] for c in fused.classes], expected, atol=1e-4)
    capsys.readouterr()
    assert main(["predict", str(folder), str(wavs[0]), "--fusion", "on", "--quiet"]) == 2
    assert "--same-speaker" in capsys.readouterr().err
    args = ["predict", str(folder), *map(str, wavs), "--fusion", "on", "--same-speaker", "--json", "--quiet"]
    assert main(args) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert row["probabilities"] == pytest.approx(prediction.probabilities, abs=1e-5)
    with pytest.raises(EmovisionError, match="--fusion off"):
        create_app(folder, fusion="on")


def test_functionals_are_centred_by_what_is_known_of_the_speaker():
    """Centring by hand: cold is τ/(1 + τ)·(x − m₀); a speaker known from n recordings is
    x − (Σ + τ·m₀)/(n + τ)."""
    prior = np.array([1.0, -2.0])
    centre = FunctionalsCentre(prior, 3.0)
    x = np.array([[5.0, 2.0]])
    np.testing.assert_allclose(centre.cold(x), [[3.0, 3.0]])  # 0.75·([5, 2] − [1, −2])
    known = np.array([[2.0, 0.0], [4.0, 2.0]])
    np.testing.assert_allclose(centre.centre(x, known.sum(axis=0), 2), [[5 - 9 / 5, 2 + 4 / 5]])


def test_a_centred_linear_model_trains_on_every_mode_and_copies_once(emodb_augmented):
    """Each clean utterance three times (by itself, by 1–10 of its speaker's others, by all), each
    selected copy once: the cold and transductive rows by hand."""
    source = open_source(emodb_augmented)
    table = functionals_table(emodb_augmented, source.classes)
    ids = [uid for uid, (_, speaker, _) in table.utterances.items() if speaker == "03"]
    clean = np.stack([table.utterances[uid][0] for uid in ids]).astype(np.float64)
    kinds, _, _ = table.copies["03"]
    reverb = sum(kind == "reverb" for kind in kinds)
    centre = FunctionalsCentre(clean.mean(axis=0) + 1.0, 3.0)
    x, y = centred_training(table, ["03"], ("reverb",), centre, np.random.default_rng(0))
    assert x.shape[0] == y.size == 3 * len(ids) + reverb and reverb > 0
    np.testing.assert_allclose(x[0 : 3 * len(ids) : 3], 0.75 * (clean - centre.prior))
    transductive = clean - (clean.sum(axis=0) + 3.0 * centre.prior) / (len(ids) + 3.0)
    np.testing.assert_allclose(x[2 : 3 * len(ids) : 3], transductive)
    assert list(y[: 3 * len(ids) : 3]) == [table.utterances[uid][2] for uid in ids]


def test_a_centred_fusion_is_scored_in_every_mode_and_deployed_cold_or_enrolled(
    cv_run, emodb_wavs, emodb_augmented, tmp_path, capsys
):
    """fuse --centre: every fold in the three modes; the deployed fusion centres a recording by itself
    when nothing is known of the speaker, and by the enrolled recordings after adapt."""
    folder = tmp_path / "cv"
    shutil.copytree(cv_run, folder)
    assert main(["fuse", str(folder), "--centre", "--enrol", "3", "--seed", "1", "--quiet"]) == 0
    assert "enrolled-3 UA" in capsys.readouterr().out
    report = json.loads((folder / "fusion.json").read_text())
    assert report["centre"] == {"weight": 3.0, "enrol": 3, "seed": 1} and report["mode"] == "cold"
    for fold in report["folds"]:
        scored = fold["modes"]["enrolled"]["fusion"]["utterances"]
        assert scored == 3 * (fold["fusion"]["utterances"] - 3)  # three draws, three enrolled each
        assert fold["modes"]["transductive"]["fusion"]["utterances"] == fold["fusion"]["utterances"]
    assert "| linear |" in (folder / "fusion.md").read_text()
    fused = Recognizer.load(folder, fusion="on")
    assert fused.fusion.centre is not None and fused.speaker_normalised
    wavs = [p for p in emodb_wavs if p.name.startswith("03")][:6]
    values = np.stack([Functionals("eGeMAPSv02")(load_audio(wav, 16000), 16000) for wav in wavs])
    image = Recognizer.load(folder, fusion="off", calibration="off").predict(wavs[0])
    image_log = np.log([image.probabilities[c] for c in fused.classes])
    prior, tau = fused.fusion.centre.prior, fused.fusion.centre.weight

    def expected(centred: np.ndarray) -> np.ndarray:
        linear = fused.fusion.linear_log_probs(centred[None])[0]
        mixed = fused.fusion.weight * image_log + (1 - fused.fusion.weight) * linear
        return torch.softmax(torch.from_numpy(mixed / fused.temperature), dim=0).numpy()

    cold = fused.predict(wavs[0])
    want = expected(tau / (1 + tau) * (values[0] - prior))
    assert np.allclose([cold.probabilities[c] for c in fused.classes], want, atol=1e-4)
    assert fused.adapt(wavs[1:]) == 5
    enrolled = fused.predict(wavs[0])
    want = expected(values[0] - (values[1:].sum(axis=0) + tau * prior) / (5 + tau))
    assert np.allclose([enrolled.probabilities[c] for c in fused.classes], want, atol=1e-4)
    args = ["robustness", str(folder), "--root", str(emodb_augmented.parent / "emodb.csv"), "--snr", "10",
            "--noise", "white", "--rt60", "", "--workers", "2", "--device", "cpu", "--fusion", "--enrol", "3", "--quiet"]  # fmt: skip
    assert main(args) == 0
    noisy = json.loads((folder / "robustness.json").read_text())["fusion"][1]
    capsys.readouterr()
    assert main(["report", str(folder), "--only", "fusion-robustness", "--markdown"]) == 0
    out = capsys.readouterr().out.split("Robustness of the late fusion")[1]
    assert "| condition | cv | cv enrolled-3 | cv transductive |" in out
    cells = [noisy["fusion"], noisy["modes"]["enrolled"]["fusion"], noisy["modes"]["transductive"]["fusion"]]
    assert (
        "| white 10 dB | " + " | ".join(f"{c['ua_mean']:.3f} ± {c['ua_std']:.3f}" for c in cells) + " |"
        in out
    )
    assert main(["fuse", str(folder), "--centre", "--centre-weight", "0", "--quiet"]) == 2
    assert "--centre-weight must be a positive" in capsys.readouterr().err
    for grid, reason in (("0.1,0.01", "must increase"), ("0,1", "positive finite"), ("1e-3,x", "comma list")):
        assert main(["fuse", str(folder), "--c-grid", grid, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert reason in err and len(err.strip().splitlines()) == 1


def test_an_ensemble_fuses_with_a_centred_linear_model_as_fuse_does(
    cv_run, emodb_augmented, tmp_path, capsys
):
    """ensemble --centre: the ensemble of a cv with itself makes the choices of fuse --centre on the cv,
    mode by mode, and its folder deploys the centred fusion."""
    folder = tmp_path / "cv"
    shutil.copytree(cv_run, folder)
    centre = ["--centre", "--enrol", "3", "--seed", "1", "--quiet"]
    assert main(["fuse", str(folder), "--functionals", str(emodb_augmented), *centre]) == 0
    out = tmp_path / "same"
    args = ["ensemble", str(cv_run), str(cv_run), "--out", str(out), "--functionals", str(emodb_augmented)]
    assert main([*args, *centre]) == 0
    fused, alone = (json.loads((f / "fusion.json").read_text()) for f in (out, folder))
    assert fused["centre"] == alone["centre"] == {"weight": 3.0, "enrol": 3, "seed": 1}
    for mine, theirs in zip(fused["folds"], alone["folds"], strict=True):
        assert (mine["C"], mine["weight"]) == (theirs["C"], theirs["weight"])
        for mode in ("enrolled", "transductive"):
            assert mine["modes"][mode]["fusion"]["ua"] == pytest.approx(theirs["modes"][mode]["fusion"]["ua"])
    assert Recognizer.load(out, fusion="on").fusion.centre is not None
    capsys.readouterr()
    for option in (["--centre"], ["--c-grid", "0.01"]):
        assert main(["ensemble", str(cv_run), str(cv_run), "--out", str(tmp_path / "bare"), *option]) == 2
        assert "give --functionals too" in capsys.readouterr().err


def _reference_choices(
    fold: dict, functionals: dict, labels_of: dict, grid=(1e-4, 1e-3, 1e-2, 1e-1, 1.0)
) -> tuple[float, float]:
    """C (of ``grid``) and image weight chosen by hand on ``fold``'s test speaker (scikit-learn, its own
    models)."""
    train = [s for s in functionals if s not in fold["fold"]["test"]]
    x = np.concatenate([functionals[s][1] for s in train]).astype(np.float64)
    y = np.concatenate([functionals[s][2] for s in train])
    test = fold["fold"]["test"][0]
    x_test, y_test = functionals[test][1].astype(np.float64), labels_of[test]
    best = None
    for c in grid:
        model = make_pipeline(
            StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=3000)
        )
        linear = np.log(np.clip(model.fit(x, y).predict_proba(x_test), 1e-6, None))
        ua = recall_score(y_test, linear.argmax(1), average="macro")
        if best is None or ua > best[0]:
            best = (ua, c, linear)
    image = np.asarray(fold["test_scores"])
    fused = [
        (recall_score(y_test, (w * image + (1 - w) * best[2]).argmax(1), average="macro"), -abs(w - 0.5), w)
        for w in WEIGHTS
    ]
    return best[1], max(fused)[2]


def test_folds_whose_validation_speakers_train_are_fused_on_the_other_folds_test_speakers(
    cv_run, emodb_augmented, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "valtrain"
    args = [*_small_cv(emodb_augmented, cv_run.parent / "folds.json"), "--validation", "train"]
    args += ["--select-by", "last", "--fusion", "--out", str(out)]
    assert main(args) == 0
    report = json.loads((out / "fusion.json").read_text())
    functionals = read_functionals(emodb_augmented)
    labels_of = {speaker: labels for speaker, (_, _, labels) in functionals.items()}
    metrics = {
        fold["fold"]["test"][0]: fold
        for fold in (json.loads(p.read_text()) for p in sorted(out.glob("fold*/metrics.json")))
    }
    assert [f["test"] for f in report["folds"]] == [["03"], ["08"]] and report["folds"][0]["val"] == []
    for fold, other in zip(report["folds"], ("08", "03"), strict=True):
        # chosen on the other fold's test speaker, never on its own
        assert (fold["C"], fold["weight"]) == _reference_choices(metrics[other], functionals, labels_of)
        assert fold["fitted_on"] == "the other folds' test speakers"
    assert "chosen on the other folds' test speakers" in (out / "fusion.md").read_text()
    # the fold's own test speaker scored with what was chosen: the image scores of its cv, its linear model
    own = metrics["03"]
    x = np.concatenate([functionals[s][1] for s in ("08", "09", "10", "11")]).astype(np.float64)
    y = np.concatenate([labels_of[s] for s in ("08", "09", "10", "11")])
    chosen = report["folds"][0]
    model = make_pipeline(
        StandardScaler(), LogisticRegression(C=chosen["C"], class_weight="balanced", max_iter=3000)
    )
    linear = np.log(
        np.clip(model.fit(x, y).predict_proba(functionals["03"][1].astype(np.float64)), 1e-6, None)
    )
    fused = chosen["weight"] * np.asarray(own["test_scores"]) + (1 - chosen["weight"]) * linear
    assert chosen["fusion"]["ua"] == pytest.approx(
        recall_score(labels_of["03"], fused.argmax(1), average="macro")
    )
    both = tmp_path / "both"
    args = [
        "ensemble",
        str(out),
        str(out),
        "--functionals",
        str(emodb_augmented),
        "--out",
        str(both),
        "--quiet",
    ]
    assert main(args) == 0
    ensemble = json.loads((both / "fusion.json").read_text())
    assert [(f["C"], f["weight"]) for f in ensemble["folds"]] == [
        (f["C"], f["weight"]) for f in report["folds"]
    ]
    assert ensemble["fitted_on"] == "the other folds' test speakers"
    # another grid of C: each fold chooses among its values, as by hand
    assert main(["fuse", str(out), "--c-grid", "0.0003,0.003,0.03", "--quiet"]) == 0
    report = json.loads((out / "fusion.json").read_text())
    assert report["c_grid"] == [0.0003, 0.003, 0.03]
    assert "C (among 0.0003, 0.003, 0.03)" in (out / "fusion.md").read_text()
    for fold, other in zip(report["folds"], ("08", "03"), strict=True):
        grid = (0.0003, 0.003, 0.03)
        assert (fold["C"], fold["weight"]) == _reference_choices(metrics[other], functionals, labels_of, grid)
    _an_interrupted_fusion_resumes_without_refitting(out, report, monkeypatch)


def _an_interrupted_fusion_resumes_without_refitting(out: Path, report: dict, monkeypatch) -> None:
    """fuse stopped before its report: the finished folds are kept, and the next fuse with the same
    linear training fits no linear model again and gives the same report; another C grid refits."""
    grid, fits = (0.0003, 0.003, 0.03), []

    def counted(*args, **kwargs):
        fits.append(args[0])
        return fit_linear_pipeline(*args, **kwargs)

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cross_fusion, "fit_linear_pipeline", counted)
    with monkeypatch.context() as patch:
        patch.setattr(cv_fusion, "write_fused", stop)
        with pytest.raises(KeyboardInterrupt):
            cv_fusion.fuse_cv(out, progress=False, linear=LinearTraining(c_grid=grid))
    kept = out / ".fusion-folds"
    assert len(fits) == 2 * len(grid) and len(list(kept.glob("*.npz"))) == 2
    resumed = cv_fusion.fuse_cv(out, progress=False, linear=LinearTraining(c_grid=grid))
    assert len(fits) == 2 * len(grid) and not kept.exists()
    pick = [(f["C"], f["weight"], f["temperature"], f["fusion"]["ua"]) for f in report["folds"]]
    assert [(f["C"], f["weight"], f["temperature"], f["fusion"]["ua"]) for f in resumed["folds"]] == pick
    with monkeypatch.context() as patch:
        patch.setattr(cv_fusion, "write_fused", stop)
        with pytest.raises(KeyboardInterrupt):
            cv_fusion.fuse_cv(out, progress=False, linear=LinearTraining(c_grid=grid))
    cv_fusion.fuse_cv(out, progress=False, linear=LinearTraining(c_grid=(0.01,)))
    assert len(fits) == 4 * len(grid) + 2  # kept folds of another grid are not used


def test_folds_are_fused_on_their_validation_speakers_or_all_on_the_other_folds(tmp_path):
    held = [{"test": ["03"], "val": ["10"]}, {"test": ["08"], "val": ["09"]}]
    trained = [{"test": ["03"], "val": []}, {"test": ["08"], "val": []}]
    assert held_out_folds(held, tmp_path) is True
    assert held_out_folds(trained, tmp_path) is False
    with pytest.raises(EmovisionError, match="folds with validation speakers and folds without"):
        held_out_folds([held[0], trained[1]], tmp_path)


def test_a_fold_cache_gives_back_what_it_kept_and_only_for_its_identity(tmp_path):
    folder = tmp_path / "kept"
    fused = {"name": "fold01", "test": ["03"], "C": 0.01, "weight": 0.4, "fusion": {"ua": 0.5}}
    rng = np.random.default_rng(0)
    views = [
        ("cold", rng.normal(size=(4, 3)), None),
        ("enrolled", rng.normal(size=(4, 3)), np.array([1, 0, 1, 1], bool)),
    ]
    scores = FoldScores(
        "fold02", {"test": ["08"], "val": []}, rng.normal(size=(4, 3)), np.array([0, 1, 2, 1]), {1e-3: views}
    )
    cache = FoldCache(folder, {"grid": [1e-3]})
    assert cache.get("fold01") is None
    cache.put("fold01", fused)
    cache.put("fold02", scores)
    again = FoldCache(folder, {"grid": [1e-3]})
    assert again.get("fold01") == fused
    back = again.get("fold02")
    assert (back.name, back.fold, list(back.linear)) == ("fold02", scores.fold, [1e-3])
    np.testing.assert_array_equal(back.image, scores.image)
    np.testing.assert_array_equal(back.labels, scores.labels)
    for (mode, kept_scores, kept), (want_mode, want_scores, want_kept) in zip(
        back.linear[1e-3], views, strict=True
    ):
        assert mode == want_mode
        np.testing.assert_array_equal(kept_scores, want_scores)
        assert (kept is None) == (want_kept is None)
        if kept is not None:
            np.testing.assert_array_equal(kept, want_kept)
    assert sorted(p.name for p in folder.iterdir()) == ["fold01.json", "fold02.npz"]
    for damage in (b"not a zip", b"", (folder / "fold02.npz").read_bytes()[:100]):
        for name in ("fold01.json", "fold03.npz"):
            (folder / name).write_bytes(damage)
        assert again.get("fold01") is None  # a damaged fold is computed again
        assert again.get("fold03") is None
    other = FoldCache(folder, {"grid": [1e-2]})
    assert other.get("fold02") is None  # kept for another identity
    other.put("fold02", scores)
    assert again.get("fold02") is None and other.get("fold02") is not None
    other.clear()
    assert not folder.exists()
