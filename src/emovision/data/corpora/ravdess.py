"""RAVDESS, speech part: ``Actor_XX/03-01-EE-II-SS-RR-AA.wav`` (or ``.flac``, any audio format).

Fields: modality (03 audio-only), vocal channel (01 speech; 02 song is skipped), emotion EE,
intensity II (01 normal, 02 strong; neutral has no strong), statement SS, repetition RR, actor AA
(odd = male, even = female). The speaker is the actor number; intensity, statement and
repetition are kept on every utterance (``extra``), and ``intensity`` selects normal, strong or
both.
"""

from __future__ import annotations

import re
from pathlib import Path

from emovision.data.corpora.base import (
    Corpus,
    Utterance,
    named_audio,
    require_dir,
    require_utterances,
    resolve_classes,
)
from emovision.errors import CorpusError

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
INTENSITIES = {"normal": (1,), "strong": (2,), "both": (1, 2)}
_NAME_RE = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


def load_corpus(root: str | Path, classes: str | None = None, intensity: str = "both") -> Corpus:
    """Every speech recording under ``root`` (searched recursively, any audio format) named by
    RAVDESS's scheme, of ``intensity`` ``normal``, ``strong`` or ``both``."""
    root = require_dir(Path(root), "RAVDESS")
    names = resolve_classes(classes, CLASS_SETS, DEFAULT_CLASSES)
    if intensity not in INTENSITIES:
        raise CorpusError(f"--intensity must be one of {', '.join(INTENSITIES)}, got {intensity!r}")
    utterances = []
    found, skipped = named_audio(root, _NAME_RE, "RAVDESS's scheme (03-01-EE-II-SS-RR-AA)")
    for path, groups in found:
        _modality, channel, emotion, intensity_code, statement, repetition, actor = groups
        label = EMOTIONS.get(emotion)
        if channel != "01" or label not in names or int(intensity_code) not in INTENSITIES[intensity]:
            continue
        extra = {
            "gender": "M" if int(actor) % 2 else "F",
            "intensity": int(intensity_code),
            "statement": int(statement),
            "repetition": int(repetition),
        }
        utterances.append(Utterance(path.stem, path, actor, label, extra))
    corpus = Corpus(NAME, names, utterances, skipped)
    return require_utterances(
        corpus, root, "expected Actor_XX/03-01-EE-II-SS-RR-AA audio files (.wav, .flac …)"
    )
