"""Cross-corpus evaluation: a trained model (checkpoint, ONNX file or cv folder) scored on another
features file, e.g. trained on IEMOCAP and tested on emoDB.

Classes are matched by name, or through ``--map`` (``happy=happiness``: the features file's class
→ the model's); utterances of classes the model does not know are dropped and counted. The
features must have been extracted with the model's feature configuration (the segment hop and
tail may differ: they only decide where segments start). WA, UA (over the model's classes present
in the file), per-class recall, per-speaker results and the confusion matrix are written as
``summary.json``, ``summary.md`` and ``confusion.png``.

``answers`` says which classes the model may answer: ``all`` of its own (a model used as it is on
another corpus, where emoDB's boredom remains a possible answer for a RAVDESS recording), or only the
``shared`` ones, those the file's classes are matched to: the cross-corpus protocol of a model trained on
the shared classes alone, read from the same network by leaving the other classes out of the decision.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emovision import plots
from emovision.data.speaker_norm import (
    ENROL_DRAWS,
    MODES,
    ModeView,
    SpeakerNormaliser,
    mode_label,
    mode_view,
    recording_moments,
)
from emovision.data.store import SpeakerFeatures, load_speakers, open_info
from emovision.errors import EmovisionError
from emovision.files import atomic_write_bytes
from emovision.inference.predict import Recognizer
from emovision.tables import ResultTable
from emovision.training.metrics import score_utterances

MAY_DIFFER = ("segment_hop", "segment_tail")
ANSWERS = ("all", "shared")


def parse_map(text: str | None) -> dict[str, str]:
    """``"happy=happiness,angry=anger"`` → ``{"happy": "happiness", "angry": "anger"}``."""
    mapping = {}
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        source, sep, target = (x.strip() for x in part.partition("="))
        if not sep or not source or not target:
            raise EmovisionError(f"--map: {part!r} is not FILE_CLASS=MODEL_CLASS")
        mapping[source] = target
    return mapping


def evaluate_on(
    model: str | Path,
    features: str | Path,
    out: str | Path,
    mapping: dict[str, str],
    enrol: int = 5,
    answers: str = "all",
) -> dict:
    """Score ``model`` on every utterance of ``features`` whose class it knows; write and return the summary.

    A model normalised in the data pipeline (``train --speaker-norm``) is scored in the three modes
    of :mod:`emovision.data.speaker_norm` (each speaker of the file enrolled from ``enrol`` of its
    recordings, in ``ENROL_DRAWS`` seeded draws): the summary's metrics are the cold mode's, and
    ``modes`` holds the pooled WA and UA of each; other models use no speaker information. A speaker's
    statistics come from all of its recordings (enrolment draws too), those of classes the model does
    not know included: labels never choose them; only recordings of known classes are scored.

    A cv folder's late fusion is not used: the features file holds spectrograms, not audio, so
    the image models alone are scored.
    """
    if answers not in ANSWERS:
        raise EmovisionError(f"--answers must be one of {', '.join(ANSWERS)}, got {answers!r}")
    recognizer = Recognizer.load(model, fusion="off")
    info = open_info(features)
    _check_config(recognizer, info, Path(features))
    index = _class_index(recognizer.classes, info.classes, mapping, features)
    scoring = _TransferScoring(recognizer, info.classes, index, enrol, answers == "shared")
    loaded = load_speakers(features)
    if scoring.normaliser is not None:
        _check_enrolment(loaded, enrol, features)
    for speaker, data in loaded.items():
        scoring.add_speaker(speaker, data)
    pooled = scoring.pooled()
    metrics = pooled[scoring.views[0]]
    modes = None if scoring.normaliser is None else _mode_means(pooled, enrol)
    summary = {
        "model": str(model),
        "features_file": str(features),
        "corpus": info.corpus,
        "model_classes": recognizer.classes,
        "class_map": {name: recognizer.classes[i] for name, i in index.items()},
        "dropped": scoring.dropped,
        "answers": answers,
        "mode": "any" if modes is None else "cold",
        "modes": modes,
        **metrics,
        "speakers": {
            name: {"wa": m["wa"], "ua": m["ua"], "utterances": m["utterances"]}
            for name, m in scoring.speakers.items()
        },
    }
    title = f"{Path(model).name} on {info.corpus}: WA {metrics['wa']:.3f}, UA {metrics['ua']:.3f}"
    _write_summary(summary, metrics["confusion"], recognizer.classes, Path(out), title)
    return summary


def _class_index(
    model_classes: list[str], file_classes: list[str], mapping: dict[str, str], features: str | Path
) -> dict[str, int]:
    """``{file class: index of its model class}`` for every file class the model knows, by name or
    through ``mapping``; raises :class:`EmovisionError` for a mapped name the file lacks or no class in
    common."""
    unknown = [name for name in mapping if name not in file_classes]
    if unknown:
        raise EmovisionError(f"--map names {unknown[0]!r}, which is not a class of {features}")
    target = {name: mapping.get(name, name) for name in file_classes}
    index = {name: model_classes.index(t) for name, t in target.items() if t in model_classes}
    if not index:
        raise EmovisionError(
            f"no class in common: the model knows {', '.join(model_classes)}, {features} holds "
            f"{', '.join(file_classes)} (match them with --map FILE_CLASS=MODEL_CLASS,…)"
        )
    return index


def _check_enrolment(loaded: dict[str, SpeakerFeatures], enrol: int, features: str | Path) -> None:
    """Raise :class:`EmovisionError` unless every speaker can enrol ``enrol`` recordings and keep one to score."""
    for speaker, data in loaded.items():
        count = len(data.utterance_labels)
        if count <= enrol:
            raise EmovisionError(
                f"--enrol {enrol}: speaker {speaker} of {features} has {count} recordings, so at most "
                f"{count - 1} can enrol and leave one to score"
            )


@dataclass
class _TransferScoring:
    """One model's scores on a features file, speaker by speaker.

    With ``shared_only`` the decision is taken among the model classes of ``index`` alone.
    ``views`` are the ``(mode, draw)`` pairs scored (``("served", 0)`` alone for a model without speaker
    normalisation); per view, ``truth`` and ``scores`` hold each speaker's true model-class indices ``(U,)``
    and utterance log-probabilities ``(U, K)`` of its scored recordings. ``dropped`` counts the recordings
    per file class the model does not know; ``speakers`` holds each speaker's metrics in the first view.
    """

    recognizer: Recognizer
    file_classes: list[str]
    index: dict[str, int]
    enrol: int
    shared_only: bool
    dropped: dict[str, int] = field(default_factory=dict)
    speakers: dict[str, dict] = field(default_factory=dict)
    normaliser: SpeakerNormaliser | None = field(init=False)
    views: list[tuple[str, int]] = field(init=False)
    truth: dict[tuple[str, int], list[np.ndarray]] = field(init=False)
    scores: dict[tuple[str, int], list[np.ndarray]] = field(init=False)

    def __post_init__(self) -> None:
        self.normaliser = self.recognizer.normaliser
        self.views = (
            [("served", 0)]
            if self.normaliser is None
            else [(m, d) for m in MODES for d in range(ENROL_DRAWS if m == "enrolled" else 1)]
        )
        self.truth = {view: [] for view in self.views}
        self.scores = {view: [] for view in self.views}

    def add_speaker(self, speaker: str, data: SpeakerFeatures) -> None:
        """Score the speaker's recordings of known classes in every view; count the others as dropped."""
        starts = np.concatenate([[0], np.cumsum(data.segments_per_utterance)])
        keep = [u for u, label in enumerate(data.utterance_labels) if self.file_classes[label] in self.index]
        for label in data.utterance_labels:
            name = self.file_classes[label]
            if name not in self.index:
                self.dropped[name] = self.dropped.get(name, 0) + 1
        if not keep:
            return
        pieces = np.concatenate([data.segments[starts[u] : starts[u + 1]] for u in keep])
        counts = data.segments_per_utterance[keep]
        labels = np.array([self.index[self.file_classes[data.utterance_labels[u]]] for u in keep])
        # the speaker's statistics come from all of its recordings, whatever their label
        moments = (
            None if self.normaliser is None else recording_moments(data.segments, data.segments_per_utterance)
        )
        for mode, draw in self.views:
            scored = np.ones(len(keep), dtype=bool)
            inputs = pieces
            if moments is not None:
                kept = self._speaker_view(speaker, moments, len(data.utterance_labels), mode, draw, keep)
                inputs = kept.normalise(pieces, counts)
                scored = kept.scored
            utterance = self.recognizer.utterance_log_probs(inputs, counts)
            if self.shared_only:
                utterance = restrict_answers(utterance, sorted(set(self.index.values())))
            if (mode, draw) == self.views[0]:
                self.speakers[speaker] = score_utterances(labels, utterance, self.recognizer.classes)
            self.truth[(mode, draw)].append(labels[scored])
            self.scores[(mode, draw)].append(utterance[scored])

    def _speaker_view(
        self,
        speaker: str,
        moments: tuple[np.ndarray, np.ndarray],
        recordings: int,
        mode: str,
        draw: int,
        keep: list[int],
    ) -> ModeView:
        """The statistics of the kept recordings in ``mode`` (enrolment ``draw``) from the recording
        moments ``(U, C, F)`` of all ``recordings`` of the one speaker."""
        means, squares = moments
        owner = np.zeros(recordings, dtype=np.int64)
        view = mode_view(self.normaliser, means, squares, [speaker], owner, mode, self.enrol, draw)
        return ModeView(view.mean[keep], view.std[keep], view.scored[keep])

    def pooled(self) -> dict[tuple[str, int], dict]:
        """The metrics of every view over all speakers' scored recordings together."""
        classes = self.recognizer.classes
        return {
            view: score_utterances(
                np.concatenate(self.truth[view]), np.concatenate(self.scores[view]), classes
            )
            for view in self.views
        }


def restrict_answers(log_probs: np.ndarray, allowed: list[int]) -> np.ndarray:
    """``log_probs`` ``(U, K)`` with every class outside ``allowed`` (indices) set to −∞, so that the
    argmax decides among the allowed classes only."""
    restricted = np.full_like(log_probs, -np.inf)
    restricted[:, allowed] = log_probs[:, allowed]
    return restricted


def _mode_means(pooled: dict[tuple[str, int], dict], enrol: int) -> dict:
    """Per mode the WA and UA of its pooled views (the mean over the enrolment draws), with ``k``: ``enrol``."""
    modes: dict = {"k": enrol}
    for mode in MODES:
        entries = [pooled[view] for view in pooled if view[0] == mode]
        modes[mode] = {key: float(np.mean([e[key] for e in entries])) for key in ("wa", "ua")}
    return modes


def _write_summary(summary: dict, confusion: list, classes: list[str], out: Path, title: str) -> None:
    """``summary.json``, ``summary.md`` and ``confusion.png`` (the pooled confusion matrix) in ``out``."""
    atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=2).encode())
    atomic_write_bytes(out / "summary.md", transfer_markdown(summary).encode())
    plots.confusion(confusion, classes, out / "confusion.png", title=title)


def _check_config(recognizer: Recognizer, info, path: Path) -> None:
    if recognizer.config is None:
        raise EmovisionError("the model's feature configuration is unknown (trained on a legacy pickle)")
    mine, theirs = recognizer.config.to_dict(), info.config.to_dict()
    differ = [k for k in mine if k not in MAY_DIFFER and mine[k] != theirs.get(k)]
    if differ:
        listed = ", ".join(f"{k} {theirs.get(k)!r} (model: {mine[k]!r})" for k in differ)
        raise EmovisionError(
            f"{path} was extracted with other features: {listed}; extract it with the model's"
        )


def speaker_table(summary: dict) -> ResultTable:
    """Each test speaker's utterances, WA and UA."""
    table = ResultTable(["speaker", "utterances", "WA", "UA"])
    for name, m in summary["speakers"].items():
        table.add(name, m["utterances"], f"{m['wa']:.3f}", f"{m['ua']:.3f}")
    return table


def transfer_markdown(summary: dict) -> str:
    lines = [
        f"# {summary['model']} on {summary['features_file']} ({summary['corpus']})",
        "",
        f"WA {summary['wa']:.3f}, UA {summary['ua']:.3f} over {summary['utterances']} utterances; "
        + (
            "dropped (class unknown to the model): "
            + ", ".join(f"{k} {v}" for k, v in summary["dropped"].items())
            if summary["dropped"]
            else "no utterance dropped"
        ),
        "",
        "Classes: " + ", ".join(f"{k} → {v}" for k, v in summary["class_map"].items()),
        "",
        "Answers: "
        + (
            "the shared classes only (the model's other classes left out of the decision)"
            if summary.get("answers") == "shared"
            else "any class of the model"
        ),
        "",
        *_modes_lines(summary.get("modes")),
        *speaker_table(summary).markdown(),
        "",
        "Recall: " + ", ".join(f"{k} {v:.3f}" for k, v in summary["recall"].items() if v is not None),
        "",
    ]
    return "\n".join(lines)


def _modes_lines(modes: dict | None) -> list[str]:
    """The pooled accuracy per evaluation mode, or the note that the model uses no speaker information."""
    if not modes:
        return [
            "Mode: any (the model uses no speaker information: cold, enrolled and transductive coincide)",
            "",
        ]
    table = ResultTable(["mode", "WA", "UA"])
    for m in MODES:
        table.add(mode_label(m, modes["k"]), f"{modes[m]['wa']:.3f}", f"{modes[m]['ua']:.3f}")
    return [
        "Mode of the figures above and of the per-speaker table: cold (a recording alone).",
        "",
        *table.markdown(),
        "",
    ]
