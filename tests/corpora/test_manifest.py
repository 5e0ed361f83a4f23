import pytest

from emovision.corpora import load_corpus
from emovision.errors import CorpusError


def test_manifest_rows_relative_paths_and_missing_files(tmp_path, emodb_wavs):
    csv = tmp_path / "corpus.csv"
    rows = ["path,speaker,label,utterance"]
    rows += [f"{w},spk{i % 2},{'calm' if i % 3 else 'tense'},u{i}" for i, w in enumerate(emodb_wavs[:6])]
    rows.append("missing.wav,spk0,calm,u99")
    csv.write_text("\n".join(rows) + "\n")
    corpus = load_corpus("manifest", csv)
    assert corpus.classes == ["calm", "tense"]
    assert len(corpus.utterances) == 6 and corpus.speakers() == ["spk0", "spk1"]
    assert corpus.skipped == [(str(tmp_path / "missing.wav"), "audio file missing")]
    only = load_corpus("manifest", csv, "tense")
    assert {u.label for u in only.utterances} == {"tense"}


def test_manifest_errors(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus("manifest", tmp_path / "none.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("file,who\nx.wav,a\n")
    with pytest.raises(CorpusError, match="lacks the column"):
        load_corpus("manifest", bad)
    ok = tmp_path / "ok.csv"
    ok.write_text("path,speaker,label\nx.wav,a,happy\n")
    with pytest.raises(CorpusError, match="unknown class 'sad'"):
        load_corpus("manifest", ok, "sad")
