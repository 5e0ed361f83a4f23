from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf

from emovision.data.audio import load_audio
from emovision.data.corpora import load_corpus
from emovision.data.extract import extract_corpus
from emovision.data.features import FeatureConfig


def _make_ravdess(root):
    tone = (0.1 * np.sin(np.linspace(0, 400, 8000))).astype(np.float32)
    for actor in (1, 2):
        folder = root / f"Actor_{actor:02d}"
        folder.mkdir(parents=True)
        for emotion in range(1, 9):
            for channel in (1, 2):
                name = f"03-{channel:02d}-{emotion:02d}-01-01-01-{actor:02d}.wav"
                sf.write(folder / name, tone, 48000)
        (folder / "notes.wav").write_bytes(b"")


def test_ravdess_speech_files(tmp_path):
    _make_ravdess(tmp_path)
    corpus = load_corpus("ravdess", tmp_path)
    assert len(corpus.classes) == 8 and len(corpus.utterances) == 16
    assert corpus.speakers() == ["01", "02"]
    assert corpus.speaker_genders() == {"01": "M", "02": "F"}
    four = load_corpus("ravdess", tmp_path, "4")
    assert four.classes == ["neutral", "happy", "sad", "angry"]
    assert Counter(u.label for u in four.utterances) == dict.fromkeys(four.classes, 2)


RAVDESS = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "ravdess"


def test_the_shared_flac_copy_reads_as_it_comes():
    """All 720 recordings of actors 13-24, FLAC: 60 per actor; intensity and gender from the name.
    Hand count: every actor says 2 statements twice, at 2 intensities for 7 emotions and at normal
    intensity only for neutral: 96 per emotion, 48 neutral, 7 × 2 × 2 × 12 = 336 strong."""
    corpus = load_corpus("ravdess", RAVDESS)
    assert len(corpus.utterances) == 720 and corpus.skipped == []
    assert corpus.speakers() == [str(n) for n in range(13, 25)]
    assert Counter(u.speaker for u in corpus.utterances) == {str(n): 60 for n in range(13, 25)}
    assert Counter(u.label for u in corpus.utterances) == {**dict.fromkeys(corpus.classes, 96), "neutral": 48}
    assert Counter(u.extra["intensity"] for u in corpus.utterances) == {1: 384, 2: 336}
    assert corpus.speaker_genders()["13"] == "M" and corpus.speaker_genders()["24"] == "F"
    angry = next(u for u in corpus.utterances if u.id == "03-01-05-02-01-02-13")
    assert angry.label == "angry" and angry.path.suffix == ".flac"
    assert (angry.extra["intensity"], angry.extra["statement"], angry.extra["repetition"]) == (2, 1, 2)
    strong = load_corpus("ravdess", RAVDESS, intensity="strong")
    assert len(strong.utterances) == 336 and "neutral" not in {u.label for u in strong.utterances}
    assert len(load_corpus("ravdess", RAVDESS, intensity="normal").utterances) == 384


def test_suffixes_may_lie_other_names_are_listed_and_broken_files_skipped(tmp_path):
    source = RAVDESS / "Actor_14" / "03-01-03-01-01-01-14.flac"
    folder = tmp_path / "Actor_14"
    folder.mkdir()
    disguised = folder / "03-01-03-01-01-01-14.wav"  # FLAC content named .wav, as the originals are named
    disguised.write_bytes(source.read_bytes())
    (folder / "03-01-03-01-01-01-14.flac").write_bytes(source.read_bytes())  # the same recording twice
    (folder / "03-01-04-01-01-01-14.flac").write_bytes(b"fLaC not really")  # unreadable
    (folder / "take-2.flac").write_bytes(source.read_bytes())  # another naming scheme
    corpus = load_corpus("ravdess", tmp_path)
    assert [u.path.name for u in corpus.utterances] == [
        "03-01-03-01-01-01-14.flac",
        "03-01-04-01-01-01-14.flac",
    ]
    reasons = dict(corpus.skipped)
    assert "follow RAVDESS's scheme" in reasons[str(folder / "take-2.flac")]
    assert "same recording" in reasons[str(disguised)]
    samples = load_audio(disguised, 16000)
    np.testing.assert_array_equal(samples, load_audio(source, 16000))
    assert 2.9 <= samples.size / 16000 <= 5.3
    summary = extract_corpus(corpus, FeatureConfig(segment_frames=100), tmp_path / "out.h5", progress=False)
    skipped = dict(summary.skipped)
    assert len(skipped) == 3 and str(folder / "03-01-04-01-01-01-14.flac") in skipped


def test_ravdess_folds_test_a_male_and_a_female_actor_and_validate_on_the_next_pair():
    from emovision.training.dataset import FeatureSource
    from emovision.training.folds import make_folds

    actors = [str(n) for n in range(13, 25)]
    genders = {a: "M" if int(a) % 2 else "F" for a in actors}
    source = FeatureSource(Path("ravdess.h5"), "ravdess", ["neutral"], None, actors, genders)
    folds = make_folds(source)
    assert [f.test for f in folds] == [
        ["13", "14"],
        ["15", "16"],
        ["17", "18"],
        ["19", "20"],
        ["21", "22"],
        ["23", "24"],
    ]
    assert folds[0].val == ["15", "16"] and folds[-1].val == ["13", "14"]
    assert all(len(f.train) == 8 and not set(f.train) & set(f.val + f.test) for f in folds)
    assert len(make_folds(source, "loso")) == 12
