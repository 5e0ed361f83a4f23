"""Waveform augmentation: the copies extract writes, and that only training speakers read them."""

import numpy as np
import pytest

from emovision.cli import main
from emovision.data import acoustics
from emovision.data.audio import load_audio
from emovision.data.augment_audio import AugmentPlan, augmented_copies, babble_talkers
from emovision.data.store import load_speakers
from emovision.errors import EmovisionError
from emovision.training.dataset import load_split, open_source
from emovision.training.folds import make_fold
from emovision.training.options import TrainConfig
from emovision.training.train import Trainer

KINDS = ("noise:white", "noise:pink", "noise:babble", "reverb", "speed", "gain")


def test_plan_expands_noise_types_and_checks_its_options():
    plan = AugmentPlan(augment=("noise", "reverb"), copies=2)
    assert plan.kinds == ("noise:white", "noise:pink", "noise:babble", "reverb")
    assert plan.variants == tuple(k for k in plan.kinds for _ in range(2))
    for bad in (
        {"augment": ("noise",), "noises": ("recorded",)},
        {"augment": ("echo",)},
        {"augment": ("noise",), "copies": 0},
        {"augment": ("reverb",), "rt60": (0.0, 1.0)},
    ):
        with pytest.raises(EmovisionError):
            AugmentPlan(**bad)


def test_copies_are_repeatable_and_noise_lands_in_the_snr_range(emodb_wavs):
    samples = load_audio(emodb_wavs[0], 16000)
    talkers = babble_talkers([str(p) for p in emodb_wavs[1:8]], "a", AugmentPlan(augment=("noise",)))
    plan = AugmentPlan(augment=("noise", "reverb", "speed", "gain"), snr=(5.0, 15.0))
    first = augmented_copies(samples, 16000, "a", plan, talkers)
    again = augmented_copies(samples, 16000, "a", plan, talkers)
    other = augmented_copies(samples, 16000, "b", plan, talkers)
    assert len(first) == len(plan.variants) == 6
    for kind, a, b, c in zip(plan.variants, first, again, other, strict=True):
        assert np.array_equal(a, b)
        assert kind == "speed" or not np.array_equal(a, c)  # speed: one of two factors, may coincide
    speech = acoustics.active_power(samples, 16000)
    for signal in first[:3]:  # white, pink, babble
        snr = 10 * np.log10(speech / np.mean((signal - samples) ** 2))
        assert 5.0 - 1e-3 <= snr <= 15.0 + 1e-3
    reverb, speed, gain = first[3:]
    assert reverb.size == samples.size and not np.allclose(reverb, samples)
    assert round(samples.size / speed.size, 2) in (0.9, 1.1)
    ratio = np.abs(gain).max() / np.abs(samples).max()
    assert 10 ** (-12 / 20) - 1e-6 <= ratio <= 10 ** (12 / 20) + 1e-6


def test_extract_stores_one_copy_per_kind_of_every_utterance(emodb_augmented):
    source = open_source(emodb_augmented)
    assert source.copy_kinds == KINDS and source.augment["copies"] == 1
    data = load_speakers(emodb_augmented, ["03"], augmented=True)["03"]
    copies = data.augmented
    utterances = len(data.utterance_ids)
    assert list(copies.kinds) == list(KINDS) * utterances
    assert copies.source.tolist() == [u for u in range(utterances) for _ in KINDS]
    starts = np.concatenate([[0], np.cumsum(copies.segments_per_utterance)])
    for i, row in enumerate(copies.source):
        labels = copies.segment_labels[starts[i] : starts[i + 1]]
        assert (labels == data.utterance_labels[row]).all()
    clean_first = data.segments[: data.segments_per_utterance[0]]
    noisy_first = copies.segments[: copies.segments_per_utterance[0]]
    assert clean_first.shape == noisy_first.shape and not np.allclose(clean_first, noisy_first)
    assert load_speakers(emodb_augmented, ["03"])["03"].augmented is None  # not read unless asked


def test_only_the_training_speakers_see_copies_and_only_of_the_asked_kinds(emodb_augmented, tmp_path):
    source = open_source(emodb_augmented)
    split = load_split(source, ["03", "08"], ("noise:pink", "reverb"))
    assert len(split.versions) == len(split.utterance_ids)
    assert all(len(v) == 3 for v in split.versions)  # clean, pink noise, reverb
    assert split.copies.shape[0] == sum(count for v in split.versions for _, count in v[1:])
    fold = make_fold(source, ["09"], ["10"], ["03", "08", "11"])
    config = TrainConfig(model="alexnet_gap", epochs=1, device="cpu", augment="specaugment,noise,speed")
    trainer = Trainer(source, fold, config, tmp_path, progress=None)
    trainer.prepare()
    assert trainer.val_split.copies is None and trainer.test_split.copies is None
    clean = len(trainer.train_split)
    assert trainer.train_x.shape[0] == clean + trainer.train_split.copies.shape[0] > 3 * clean
    with pytest.raises(EmovisionError, match="no such augmented copies"):
        load_split(open_source(emodb_augmented), ["03"], ("noise:recorded",))


def test_train_command_with_augmentation_and_its_bad_options(emodb_augmented, tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "train",
        str(emodb_augmented),
        "--val-speaker",
        "09",
        "--test-speaker",
        "10",
        "--model",
        "alexnet_gap",
    ]
    args += ["--epochs", "1", "--device", "cpu", "--quiet", "--out", str(out)]
    assert main([*args, "--augment", "specaugment,noise,reverb", "--augment-prob", "0.7"]) == 0
    from emovision.training.checkpoint import load_checkpoint

    recorded = load_checkpoint(out / "best.pth")["train_config"]
    assert recorded["augment"] == "specaugment,noise,reverb" and recorded["augment_prob"] == 0.7
    capsys.readouterr()
    for bad, message in (
        (["--augment", "echo"], "unknown augmentation"),
        (["--augment-prob", "1.5"], "--augment-prob"),
        (["--augment", "specaugment", "--freq-mask-width", "0"], "mask-width"),
    ):
        assert main([*args[:-1], str(tmp_path / "bad"), *bad]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()
