from collections import Counter

import pytest

from emovision.data.corpora import load_corpus
from emovision.errors import CorpusError


def test_all_535_real_recordings(emodb_dir):
    corpus = load_corpus("emodb", emodb_dir)
    assert len(corpus.utterances) == 535
    assert corpus.speakers() == ["03", "08", "09", "10", "11", "12", "13", "14", "15", "16"]
    assert Counter(u.label for u in corpus.utterances) == {
        "anger": 127, "boredom": 81, "disgust": 46, "fear": 69,
        "happiness": 71, "sadness": 62, "neutral": 79,
    }  # fmt: skip
    genders = corpus.speaker_genders()
    assert sorted(s for s, g in genders.items() if g == "M") == ["03", "10", "11", "12", "15"]
    first = corpus.utterances[0]
    assert (first.id, first.speaker, first.label) == ("03a01Fa", "03", "happiness")


def test_class_subset_and_errors(emodb_dir, tmp_path):
    corpus = load_corpus("emodb", emodb_dir, "4")
    assert corpus.classes == ["neutral", "happiness", "sadness", "anger"]
    assert len(corpus.utterances) == 79 + 71 + 62 + 127
    with pytest.raises(CorpusError, match="unknown class 'joy'"):
        load_corpus("emodb", emodb_dir, "anger,joy")
    with pytest.raises(CorpusError, match="no labelled audio"):
        load_corpus("emodb", tmp_path)
