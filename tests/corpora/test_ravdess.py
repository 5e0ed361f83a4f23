from collections import Counter

import numpy as np
import soundfile as sf

from emovision.corpora import load_corpus


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
