"""RAVDESS, speech part: ``Actor_XX/03-01-EE-II-SS-RR-AA.wav``.

Fields: modality (03 audio-only), vocal channel (01 speech; 02 song is skipped), emotion EE,
intensity II, statement SS, repetition RR, actor AA (odd = male, even = female). The speaker
is the actor number.
"""

from __future__ import annotations

import re
from pathlib import Path

from emovision.corpora.base import (
    Corpus,
    Utterance,
    named_wavs,
    require_dir,
    require_utterances,
    resolve_classes,
)

NAME = "ravdess"
EMOTIONS = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
CLASS_SETS = {"8": list(EMOTIONS.values()), "4": ["neutral", "happy", "sad", "angry"]}
DEFAULT_CLASSES = "8"
_NAME_RE = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


def load_corpus(root: str | Path, classes: str | None = None) -> Corpus:
    """Every speech ``*.wav`` under ``root`` (searched recursively) named by RAVDESS's scheme."""
    root = require_dir(Path(root), "RAVDESS")
    names = resolve_classes(classes, CLASS_SETS, DEFAULT_CLASSES)
    utterances = []
    for path, groups in named_wavs(root, _NAME_RE):
        _modality, channel, emotion, intensity, statement, repetition, actor = groups
        label = EMOTIONS.get(emotion)
        if channel != "01" or label not in names:
            continue
        extra = {
            "gender": "M" if int(actor) % 2 else "F",
            "intensity": int(intensity),
            "statement": int(statement),
            "repetition": int(repetition),
        }
        utterances.append(Utterance(path.stem, path, actor, label, extra))
    corpus = Corpus(NAME, names, utterances)
    return require_utterances(corpus, root, "expected Actor_XX/03-01-EE-II-SS-RR-AA.wav files")
