"""Cross-corpus evaluation: a model scored on a features file whose classes have other names."""

import json

import pytest

from emovision.cli import main
from emovision.corpora import load_corpus
from emovision.extract import extract_corpus

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


def test_classes_are_matched_through_the_map_and_unknown_ones_dropped(trained_model, renamed, tmp_path):
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
    assert summary["recall"]["disgust"] is None and 0 <= summary["ua"] <= 1
    assert (out / "confusion.png").stat().st_size > 0 and "dropped" in (out / "summary.md").read_text()


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
