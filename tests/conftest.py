"""Shared fixtures: the real emoDB recordings and a miniature IEMOCAP tree from the real labels."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMOVISION_SHARED_DATA", ROOT.parent / "shared" / "data"))
EMODB = SHARED / "emodb"
RAVDESS = SHARED / "ravdess"
IEMOCAP_LABELS = SHARED / "iemocap-labels"
HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"


def pytest_configure(config):
    if not (EMODB / "wav").is_dir() or not IEMOCAP_LABELS.is_dir():
        raise pytest.UsageError(f"the shared test data is missing: expected {EMODB} and {IEMOCAP_LABELS}")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:  # pytest -n: the cores shared between the worker processes
        import torch

        from emovision.system import available_cores

        torch.set_num_threads(max(1, available_cores() // workers))


@pytest.fixture(scope="session")
def emodb_dir() -> Path:
    return EMODB


@pytest.fixture(scope="session")
def emodb_wavs() -> list[Path]:
    return sorted((EMODB / "wav").glob("*.wav"))


@pytest.fixture(scope="session")
def ravdess_files() -> list[Path]:
    """The 720 RAVDESS recordings (16 kHz FLAC, about 1 s of silence before and after the speech)."""
    return sorted(RAVDESS.glob("Actor_*/*.flac"))


def build_iemocap_tree(root: Path, audio: Path, keep=lambda utt: True) -> Path:
    """IEMOCAP_full_release under ``root`` from the real summary lines; every wav links to ``audio``.

    Each label file gets the real header, the summary lines with evaluator lines from the
    real excerpt after them, and a decoy file in the ``Categorical/`` subfolder.
    """
    lines = (IEMOCAP_LABELS / "emo_labels.txt").read_text().splitlines()
    evaluator = [
        line
        for line in (IEMOCAP_LABELS / "EmoEvaluation_excerpt.txt").read_text().splitlines()
        if line.startswith(("C-", "A-"))
    ][:5]
    by_dialog: dict[str, list[str]] = defaultdict(list)
    for line in lines:
        utt = line.split("\t")[1]
        by_dialog[utt.rsplit("_", 1)[0]].append(line)
    release = root / "IEMOCAP_full_release"
    for dialog, summary in by_dialog.items():
        session = release / f"Session{int(dialog[3:5])}"
        labels = session / "dialog" / "EmoEvaluation"
        (labels / "Categorical").mkdir(parents=True, exist_ok=True)
        body = "".join(line + "\n" + "\n".join(evaluator) + "\n\n" for line in summary)
        (labels / f"{dialog}.txt").write_text(HEADER + body)
        (labels / "Categorical" / f"{dialog}_e1_cat.txt").write_text(body)
        wav_dir = session / "sentences" / "wav" / dialog
        wav_dir.mkdir(parents=True, exist_ok=True)
        for line in summary:
            utt = line.split("\t")[1]
            if keep(utt):
                (wav_dir / f"{utt}.wav").symlink_to(audio)
    return release


@pytest.fixture(scope="session")
def iemocap_full(tmp_path_factory, emodb_wavs) -> Path:
    """All 10039 labelled utterances, each a link to one real emoDB recording."""
    return build_iemocap_tree(tmp_path_factory.mktemp("iemocap-full"), emodb_wavs[0])


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory, emodb_dir):
    """A tiny alexnet_gap checkpoint trained on four emoDB speakers (see ``tests/trained_model.py``)."""
    from trained_model import train_tiny_model

    return train_tiny_model(tmp_path_factory.mktemp("trained-model"), emodb_dir)


@pytest.fixture(scope="module")
def recognizer(trained_model):
    """The tiny model loaded for prediction (one per test module: tests may change its state)."""
    from emovision import Recognizer

    return Recognizer.load(trained_model.checkpoint)


@pytest.fixture(scope="session")
def normalised_run(trained_model, tmp_path_factory):
    """The tiny model's speakers and features trained one epoch with ``--speaker-norm mixed``: the run
    folder, its metrics and the tiny model (features, test recordings)."""
    from emovision.training.folds import Fold
    from emovision.training.options import TrainConfig
    from emovision.training.train import train_fold

    out = tmp_path_factory.mktemp("normalised") / "run"
    fold = Fold(["10", "12"], ["09"], ["03"], name="tiny")
    config = TrainConfig(model="alexnet_gap", epochs=1, batch_size=32, device="cpu", speaker_norm="mixed")
    metrics = train_fold(trained_model.features, fold, config, out)
    return out, metrics, trained_model


@pytest.fixture(scope="session")
def emodb_augmented(tmp_path_factory, emodb_dir) -> Path:
    """emoDB speakers 03, 08, 09, 10, 11 in 4 classes (a manifest), 64 mels × 100 frames, with one
    copy per augmentation kind (noise white, pink, babble; reverb; speed; gain) and eGeMAPS
    functionals, made by the extract command."""
    from emovision.cli import main

    root = tmp_path_factory.mktemp("emodb-augmented")
    names = {"W": "anger", "F": "happiness", "T": "sadness", "N": "neutral"}
    rows = ["path,speaker,label,utterance"] + [
        f"{wav},{wav.name[:2]},{names[wav.name[5]]},{wav.stem}"
        for wav in sorted((EMODB / "wav").glob("*.wav"))
        if wav.name[:2] in ("03", "08", "09", "10", "11") and wav.name[5] in names
    ]
    (root / "emodb.csv").write_text("\n".join(rows) + "\n")
    out = root / "emodb-aug.h5"
    args = ["extract", "manifest", str(root / "emodb.csv"), "--classes", "neutral,happiness,sadness,anger"]
    args += ["--n-mels", "64", "--segment-frames", "100", "--segment-tail", "shift"]
    args += ["--augment", "noise,reverb,speed,gain", "--functionals", "eGeMAPSv02"]
    assert main([*args, "-o", str(out), "--quiet"]) == 0
    return out
