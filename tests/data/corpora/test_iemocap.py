from collections import Counter

import pytest

from emovision.data.corpora import iemocap, load_corpus
from emovision.errors import CorpusError

PER_SPEAKER = {
    "1F": 528, "1M": 557, "2F": 481, "2M": 542, "3F": 522,
    "3M": 629, "4F": 528, "4M": 503, "5F": 590, "5M": 651,
}  # fmt: skip


def test_four_classes_with_exc_merged_gives_5531(iemocap_full):
    corpus = load_corpus("iemocap", iemocap_full)
    assert corpus.classes == ["ang", "hap", "sad", "neu"]
    assert len(corpus.utterances) == 5531
    labels = Counter(u.label for u in corpus.utterances)
    assert labels == {"neu": 1708, "hap": 1636, "ang": 1103, "sad": 1084}
    assert Counter(u.speaker for u in corpus.utterances) == PER_SPEAKER


def test_speaker_is_the_gender_letter_before_the_utterance_number(iemocap_full):
    corpus = load_corpus("iemocap", iemocap_full, "all")
    by_id = {u.id: u for u in corpus.utterances}
    assert by_id["Ses01F_impro01_F000"].speaker == "1F"
    male_in_female_dialog = [u for u in corpus.utterances if u.id.startswith("Ses01F") and u.id[-4] == "M"]
    assert male_in_female_dialog and all(u.speaker == "1M" for u in male_in_female_dialog)
    assert by_id["Ses01F_impro01_F000"].path.name == "Ses01F_impro01_F000.wav"
    assert by_id["Ses01F_impro01_F000"].path.parent.name == "Ses01F_impro01"


def test_other_class_sets(iemocap_full):
    noexc = load_corpus("iemocap", iemocap_full, "4-noexc")
    assert len(noexc.utterances) == 5531 - 1041
    everything = load_corpus("iemocap", iemocap_full, "all")
    assert len(everything.utterances) == 10039 - 2507
    improvised = load_corpus("iemocap", iemocap_full, "4-noexc", improvised_only=True)
    assert Counter(u.label for u in improvised.utterances) == {
        "neu": 1099,
        "sad": 608,
        "ang": 289,
        "hap": 284,
    }
    subset = load_corpus("iemocap", iemocap_full, "ang,sad")
    assert subset.classes == ["ang", "sad"] and len(subset.utterances) == 1103 + 1084


def test_header_evaluator_lines_and_subfolders_are_not_utterances(iemocap_full):
    label_file = iemocap_full / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt"
    text = label_file.read_text()
    assert text.startswith("% [START_TIME") and "C-E1:" in text
    records = iemocap.parse_label_file(label_file)
    assert [r["utt"] for r in records][:2] == ["Ses01F_impro01_F000", "Ses01F_impro01_F001"]
    assert all(r["utt"].startswith("Ses01F_impro01_") for r in records)


def test_missing_audio_is_listed_as_skipped(tmp_path, emodb_wavs):
    from conftest import build_iemocap_tree

    release = build_iemocap_tree(tmp_path, emodb_wavs[0], keep=lambda utt: not utt.endswith("0"))
    corpus = load_corpus("iemocap", release)
    assert 0 < len(corpus.skipped) < 5531
    assert len(corpus.utterances) + len(corpus.skipped) == 5531
    assert all(reason == "audio file missing" for _, reason in corpus.skipped)


def test_wrong_root_and_unknown_class_are_clear_errors(tmp_path, iemocap_full):
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus("iemocap", tmp_path / "nowhere")
    with pytest.raises(CorpusError, match="Session"):
        load_corpus("iemocap", tmp_path)
    with pytest.raises(CorpusError, match="unknown class 'happy'"):
        load_corpus("iemocap", iemocap_full, "ang,happy")
