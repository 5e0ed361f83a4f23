"""IEMOCAP: labels from the ``EmoEvaluation`` summary lines, audio from ``sentences/wav``.

Layout under ROOT (``IEMOCAP_full_release``)::

    SessionN/dialog/EmoEvaluation/<dialog>.txt   summary lines "[START - END]\\tUTT\\tCODE\\t[V, A, D]"
    SessionN/sentences/wav/<dialog>/<utt>.wav

Only the ``.txt`` files directly in ``EmoEvaluation/`` are read (its subfolders hold other
annotations). The speaker is the session number and the gender letter before the utterance
number: ``Ses01F_impro01_M000`` is ``1M``.

Class sets: ``4`` (default) ang, hap (with exc merged into it), sad, neu — 5531 utterances;
``4-noexc`` the same with exc utterances dropped; ``all`` every category except ``xxx``
(no majority vote); or a comma list of codes.
"""

from __future__ import annotations

import re
from pathlib import Path

from emovision.data.audio import find_audio_file
from emovision.data.corpora.base import Corpus, Utterance, require_dir, require_utterances, resolve_classes
from emovision.errors import CorpusError

NAME = "iemocap"
CODES = ["neu", "hap", "exc", "sad", "ang", "fru", "sur", "fea", "dis", "oth"]
CLASS_SETS = {
    "4": ["ang", "hap", "sad", "neu"],
    "4-noexc": ["ang", "hap", "sad", "neu"],
    "all": CODES,
}
DEFAULT_CLASSES = "4"
MERGES = {"4": {"exc": "hap"}}
SPEAKERS = [f"{session}{gender}" for session in range(1, 6) for gender in "FM"]
_SUMMARY_RE = re.compile(
    r"^\[(?P<start>[\d.]+) - (?P<end>[\d.]+)\]\t(?P<utt>Ses\d\d[FM]_\S+)\t(?P<code>\w+)\t"
    r"\[(?P<val>[\d.]+), (?P<act>[\d.]+), (?P<dom>[\d.]+)\]"
)


def load_corpus(root: str | Path, classes: str | None = None, improvised_only: bool = False) -> Corpus:
    """The labelled utterances of every ``Session*`` folder under ``root``."""
    root = require_dir(Path(root), "IEMOCAP")
    spec = classes or DEFAULT_CLASSES
    names = resolve_classes(spec, CLASS_SETS, DEFAULT_CLASSES)
    merges = MERGES.get(spec, {})
    sessions = sorted(path for path in root.glob("Session*") if path.is_dir())
    if not sessions:
        raise CorpusError(f"no Session1…Session5 folders under {root}: point ROOT at IEMOCAP_full_release")
    utterances: list[Utterance] = []
    skipped: list[tuple[str, str]] = []
    for session in sessions:
        for label_file in sorted((session / "dialog" / "EmoEvaluation").glob("*.txt")):
            for fields in parse_label_file(label_file):
                code = merges.get(fields["code"], fields["code"])
                if code not in names:
                    continue
                if improvised_only and fields["method"] != "impro":
                    continue
                utt = fields["utt"]
                folder = session / "sentences" / "wav" / fields["dialog"]
                path = find_audio_file(folder, utt)
                if path is None:
                    skipped.append((str(folder / f"{utt}.wav"), "audio file missing"))
                    continue
                utterances.append(Utterance(utt, path, fields["speaker"], code, fields))
    corpus = Corpus(NAME, names, utterances, skipped)
    return require_utterances(corpus, root, "no summary line matched an existing wav file")


def parse_label_file(path: Path) -> list[dict]:
    """Summary lines of one ``EmoEvaluation/<dialog>.txt``; header and evaluator lines are skipped."""
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _SUMMARY_RE.match(line)
        if match:
            records.append(_record(match))
    return records


def _record(match: re.Match) -> dict:
    utt = match["utt"]
    dialog, turn = utt.rsplit("_", 1)
    session = int(utt[3:5])
    gender = turn[0]
    return {
        "utt": utt,
        "code": match["code"],
        "dialog": dialog,
        "session": session,
        "speaker": f"{session}{gender}",
        "gender": gender,
        "method": "impro" if "_impro" in dialog else "script",
        "start": float(match["start"]),
        "end": float(match["end"]),
        "vad": [float(match["val"]), float(match["act"]), float(match["dom"])],
    }
