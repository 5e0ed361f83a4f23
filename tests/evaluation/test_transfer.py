"""Cross-corpus evaluation: a model scored on a features file whose classes have other names."""

import json
import warnings

import h5py
import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, recall_score

from emovision.cli import main
from emovision.data.corpora import load_corpus
from emovision.data.extract import extract_corpus
from emovision.training.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint

RENAME = {"anger": "angry", "happiness": "happy", "sadness": "sad", "neutral": "calm", "boredom": "bored"}


@pytest.fixture(scope="module")
def renamed(trained_model, tmp_path_factory, emodb_dir):
    """Speakers 03 and 09 of emoDB as a manifest with other class names (disgust left out)."""
    from trained_model import CONFIG

    root = tmp_path_factory.mktemp("transfer")
    corpus = load_corpus("emodb", emodb_dir)
    rows = ["path,speaker,label"] + [
        f"{u.path},{u.speaker},{RENAME.get(u.label, u.label)}"
        for u in corpus.utterances
        if u.speaker in ("03", "09") and u.label != "disgust"
    ]
    (root / "other.csv").write_text("\n".join(rows) + "\n")
    features = root / "other.h5"
    extract_corpus(load_corpus("manifest", root / "other.csv"), CONFIG, features, workers=1, progress=False)
    return features


def test_classes_are_matched_through_the_map_and_unknown_ones_dropped(
    trained_model, renamed, tmp_path, emodb_dir
):
    mapping = "angry=anger,happy=happiness,sad=sadness,calm=neutral"
    out = tmp_path / "eval"
    assert (
        main(["evaluate", str(trained_model.checkpoint), str(renamed), "--out", str(out), "--map", mapping])
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    expected = {"angry": "anger", "happy": "happiness", "sad": "sadness", "calm": "neutral", "fear": "fear"}
    assert summary["class_map"] == expected  # mapped, or the same name
    assert list(summary["dropped"]) == ["bored"]  # no model class of that name, and not mapped
    assert summary["utterances"] == sum(s["utterances"] for s in summary["speakers"].values())
    assert summary["recall"]["disgust"] is None  # no disgust in the file: its recall is undefined
    boredom = [
        w for w in (emodb_dir / "wav").glob("*.wav") if w.name[:2] in ("03", "09") and w.name[5] == "L"
    ]
    assert summary["dropped"] == {"bored": len(boredom)}  # emoDB's letter L: Langeweile
    assert f"dropped (class unknown to the model): bored {len(boredom)}" in (out / "summary.md").read_text()
    assert (out / "confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def varied(trained_model, tmp_path_factory):
    """The tiny model with a random classifier over its standardised embeddings and the ``prob`` rule:
    one epoch leaves it deciding one class for nearly everything, and an evaluation of constant
    decisions checks little."""
    payload = load_checkpoint(trained_model.checkpoint)
    model = model_from_checkpoint(payload)
    with h5py.File(trained_model.features, "r") as handle:
        segments = torch.from_numpy(np.concatenate([handle[s]["segments"][:] for s in handle]))
    with torch.no_grad():
        embedded = model.embed(segments).double()
    centre, spread = embedded.mean(dim=0), embedded.std(dim=0).clamp(min=1e-6)
    shape = payload["state_dict"]["backbone.classifier.weight"].shape
    weight = torch.randn(shape[:2], generator=torch.Generator().manual_seed(0), dtype=torch.float64) / spread
    payload["state_dict"]["backbone.classifier.weight"] = weight.float().reshape(shape)
    payload["state_dict"]["backbone.classifier.bias"] = -(weight @ centre).float()
    payload["aggregate"] = "prob"
    return save_checkpoint(payload, tmp_path_factory.mktemp("varied") / "varied.pth")


def _own_predictions(checkpoint, features, mapping: dict[str, str], allowed: list[str] | None = None):
    """Per speaker, the truth and the argmax decisions of the checkpoint's network on every recording
    of ``features`` whose class the model knows, as model class indices: read with h5py, run through
    the network and combined by the checkpoint's aggregation rule here, not by emovision's evaluation.
    With ``allowed`` (model class names) the argmax is taken over those classes alone."""
    payload = load_checkpoint(checkpoint)
    model = model_from_checkpoint(payload)
    model_classes = payload["classes"]
    out = {}
    with h5py.File(features, "r") as handle:
        file_classes = json.loads(handle.attrs["classes"])
        for speaker in handle:
            group = handle[speaker]
            with torch.no_grad():
                log_probs = torch.log_softmax(model(torch.from_numpy(group["segments"][:])), dim=1).numpy()
            truth, decided, start = [], [], 0
            for label, count in zip(
                group["utterance_labels"][:], group["segments_per_utterance"][:], strict=True
            ):
                rows = log_probs[start : start + count]
                start += count
                name = mapping.get(file_classes[label], file_classes[label])
                if name not in model_classes:
                    continue
                probabilities = payload["aggregate"] == "prob"  # mean probability, else mean log-probability
                score = np.exp(rows).mean(axis=0) if probabilities else rows.mean(axis=0)
                choices = (
                    range(len(model_classes))
                    if allowed is None
                    else [model_classes.index(c) for c in allowed]
                )
                truth.append(model_classes.index(name))
                decided.append(max(choices, key=lambda i: score[i]))
            out[speaker] = (np.array(truth), np.array(decided))
    return out, model_classes


def _balanced(truth, decided) -> float:
    with warnings.catch_warnings():  # a class predicted but absent from the truth is left out
        warnings.simplefilter("ignore", UserWarning)
        return float(balanced_accuracy_score(truth, decided))


def test_evaluate_reports_sklearns_figures_on_the_predictions_it_made(varied, renamed, tmp_path):
    mapping = {"angry": "anger", "happy": "happiness", "sad": "sadness", "calm": "neutral"}
    out = tmp_path / "eval"
    text = ",".join(f"{k}={v}" for k, v in mapping.items())
    assert main(["evaluate", str(varied), str(renamed), "--out", str(out), "--map", text]) == 0
    summary = json.loads((out / "summary.json").read_text())
    own, classes = _own_predictions(varied, renamed, mapping)
    assert sorted(summary["speakers"]) == sorted(own) == ["03", "09"]
    for speaker, (truth, decided) in own.items():
        reported = summary["speakers"][speaker]
        assert reported["utterances"] == truth.size
        assert reported["wa"] == pytest.approx(accuracy_score(truth, decided), abs=1e-12)
        assert reported["ua"] == pytest.approx(_balanced(truth, decided), abs=1e-12)
    truth = np.concatenate([t for t, _ in own.values()])
    decided = np.concatenate([d for _, d in own.values()])
    assert len(set(decided.tolist())) >= 4  # decisions that vary from recording to recording
    assert summary["utterances"] == truth.size
    assert summary["wa"] == pytest.approx(accuracy_score(truth, decided), abs=1e-12)
    assert summary["ua"] == pytest.approx(_balanced(truth, decided), abs=1e-12)
    assert summary["confusion"] == confusion_matrix(truth, decided, labels=range(len(classes))).tolist()
    present = sorted(set(truth.tolist()))
    recalls = recall_score(truth, decided, labels=present, average=None)
    assert {k: v for k, v in summary["recall"].items() if v is not None} == pytest.approx(
        {classes[i]: r for i, r in zip(present, recalls, strict=True)}
    )
    table = (out / "summary.md").read_text()
    assert f"WA {accuracy_score(truth, decided):.3f}, UA {_balanced(truth, decided):.3f}" in table


def test_shared_answers_decide_among_the_classes_the_file_can_hold(varied, renamed, tmp_path):
    mapping = {"angry": "anger", "happy": "happiness", "sad": "sadness", "calm": "neutral"}
    text = ",".join(f"{k}={v}" for k, v in mapping.items())
    results = {}
    for answers in ("all", "shared"):
        out = tmp_path / answers
        assert (
            main(
                [
                    "evaluate",
                    str(varied),
                    str(renamed),
                    "--out",
                    str(out),
                    "--map",
                    text,
                    "--answers",
                    answers,
                ]
            )
            == 0
        )
        results[answers] = json.loads((out / "summary.json").read_text())
    shared = results["shared"]
    assert shared["answers"] == "shared"
    # the file holds anger, happiness, sadness, neutral and fear (boredom dropped, no disgust)
    allowed = ["anger", "fear", "happiness", "neutral", "sadness"]
    own, classes = _own_predictions(varied, renamed, mapping, allowed)
    truth = np.concatenate([t for t, _ in own.values()])
    decided = np.concatenate([d for _, d in own.values()])
    assert shared["confusion"] == confusion_matrix(truth, decided, labels=range(len(classes))).tolist()
    assert shared["ua"] == pytest.approx(_balanced(truth, decided), abs=1e-12)
    unused = [classes.index("boredom"), classes.index("disgust")]
    assert np.asarray(shared["confusion"])[:, unused].sum() == 0  # never answered
    everything = np.asarray(results["all"]["confusion"])
    assert everything[:, unused].sum() > 0  # the unrestricted model does answer them: the test could fail
    assert "Answers: the shared classes only" in (tmp_path / "shared" / "summary.md").read_text()


def test_bad_evaluations_are_refused(trained_model, renamed, tmp_path, emodb_dir, capsys):
    def refused(*extra, message):
        assert main(["evaluate", str(trained_model.checkpoint), *extra, "--out", str(tmp_path / "x")]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "x").exists()

    refused(str(renamed), "--map", "grumpy=anger", message="not a class of")
    refused(str(renamed), "--map", "angry", message="FILE_CLASS=MODEL_CLASS")
    nothing = tmp_path / "nothing.h5"
    rows = ["path,speaker,label"] + [f"{w},a,zzz" for w in sorted((emodb_dir / "wav").glob("03*.wav"))[:3]]
    (tmp_path / "nothing.csv").write_text("\n".join(rows) + "\n")
    from trained_model import CONFIG

    extract_corpus(
        load_corpus("manifest", tmp_path / "nothing.csv"), CONFIG, nothing, workers=1, progress=False
    )
    refused(str(nothing), message="no class in common")
    other = tmp_path / "other-config.h5"
    extract_corpus(
        load_corpus("manifest", tmp_path / "nothing.csv"), type(CONFIG)(n_mels=64), other, progress=False
    )
    refused(str(other), message="n_mels 64 (model: 128)")
