import pytest

from emovision.data.corpora import load_corpus
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


def test_lognrevspec_of_a_file_in_a_subfolder_is_the_same_at_extraction_and_prediction(tmp_path, emodb_wavs):
    import numpy as np

    from emovision.data.audio import load_audio
    from emovision.data.extract import extract_corpus
    from emovision.data.features import FeatureConfig, compute_features, segment
    from emovision.data.store import load_speakers

    (tmp_path / "calls" / "monday").mkdir(parents=True)
    target = tmp_path / "calls" / "monday" / "a.wav"
    target.write_bytes(emodb_wavs[0].read_bytes())
    csv = tmp_path / "corpus.csv"
    csv.write_text(f"path,speaker,label\n{target},s1,calm\n{emodb_wavs[1]},s2,tense\n")
    corpus = load_corpus("manifest", csv)
    config = FeatureConfig(kind="lognrevspec", segment_frames=100)
    extract_corpus(corpus, config, tmp_path / "f.h5", workers=1, progress=False)
    stored = load_speakers(tmp_path / "f.h5", ["s1"])["s1"]
    assert stored.utterance_ids[0] != "a"  # the manifest's id keeps the folder …
    predicted = segment(
        compute_features(load_audio(target, 16000), config, "a"), config
    )  # … prediction: the stem
    assert np.array_equal(stored.segments, predicted)
