"""Cross-corpus evaluation: a trained model (checkpoint, ONNX file or cv folder) scored on another
features file, e.g. trained on IEMOCAP and tested on emoDB.

Classes are matched by name, or through ``--map`` (``happy=happiness``: the features file's class
→ the model's); utterances of classes the model does not know are dropped and counted. The
features must have been extracted with the model's feature configuration (the segment hop and
tail may differ: they only decide where segments start). WA, UA (over the model's classes present
in the file), per-class recall, per-speaker results and the confusion matrix are written as
``summary.json``, ``summary.md`` and ``confusion.png``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from emovision import plots
from emovision.data.speaker_norm import ENROL_DRAWS, MODES, ModeView, mode_label, mode_view, recording_moments
from emovision.data.store import load_speakers, open_info
from emovision.errors import EmovisionError
from emovision.files import atomic_write_bytes
from emovision.inference.predict import Recognizer
from emovision.tables import ResultTable
from emovision.training.metrics import score_utterances, utterance_scores

MAY_DIFFER = ("segment_hop", "segment_tail")


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
    model: str | Path, features: str | Path, out: str | Path, mapping: dict[str, str], enrol: int = 5
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
    recognizer = Recognizer.load(model, fusion="off")
    info = open_info(features)
    _check_config(recognizer, info, Path(features))
    unknown = [name for name in mapping if name not in info.classes]
    if unknown:
        raise EmovisionError(f"--map names {unknown[0]!r}, which is not a class of {features}")
    target = {name: mapping.get(name, name) for name in info.classes}
    index = {name: recognizer.classes.index(t) for name, t in target.items() if t in recognizer.classes}
    if not index:
        raise EmovisionError(
            f"no class in common: the model knows {', '.join(recognizer.classes)}, {features} holds "
            f"{', '.join(info.classes)} (match them with --map FILE_CLASS=MODEL_CLASS,…)"
        )
    normaliser = recognizer.normaliser
    views = (
        [("served", 0)]
        if normaliser is None
        else [(m, d) for m in MODES for d in range(ENROL_DRAWS if m == "enrolled" else 1)]
    )
    truth: dict = {view: [] for view in views}
    scores: dict = {view: [] for view in views}
    dropped, speakers = {}, {}
    loaded = load_speakers(features)
    for speaker, data in loaded.items():
        count = len(data.utterance_labels)
        if normaliser is not None and count <= enrol:
            raise EmovisionError(
                f"--enrol {enrol}: speaker {speaker} of {features} has {count} recordings, so at most "
                f"{count - 1} can enrol and leave one to score"
            )
    for speaker, data in loaded.items():
        starts = np.concatenate([[0], np.cumsum(data.segments_per_utterance)])
        keep = [u for u, label in enumerate(data.utterance_labels) if info.classes[label] in index]
        for label in data.utterance_labels:
            if info.classes[label] not in index:
                dropped[info.classes[label]] = dropped.get(info.classes[label], 0) + 1
        if not keep:
            continue
        pieces = np.concatenate([data.segments[starts[u] : starts[u + 1]] for u in keep])
        counts = data.segments_per_utterance[keep]
        labels = np.array([index[info.classes[data.utterance_labels[u]]] for u in keep])
        if normaliser is not None:
            # the speaker's statistics come from all of its recordings, whatever their label
            means, squares = recording_moments(data.segments, data.segments_per_utterance)
            owner = np.zeros(len(data.utterance_labels), dtype=np.int64)
        for mode, draw in views:
            scored = np.ones(len(keep), dtype=bool)
            inputs = pieces
            if normaliser is not None:
                view = mode_view(normaliser, means, squares, [speaker], owner, mode, enrol, draw)
                kept = ModeView(view.mean[keep], view.std[keep], view.scored[keep])
                inputs = kept.normalise(pieces, counts)
                scored = kept.scored
            log_probs = recognizer.log_probs(inputs)
            utterance = utterance_scores(log_probs, counts, recognizer.aggregate)
            if (mode, draw) == views[0]:
                speakers[speaker] = score_utterances(labels, utterance, recognizer.classes)
            truth[(mode, draw)].append(labels[scored])
            scores[(mode, draw)].append(utterance[scored])
    pooled = {
        view: score_utterances(np.concatenate(truth[view]), np.concatenate(scores[view]), recognizer.classes)
        for view in views
    }
    metrics = pooled[views[0]]
    modes = None
    if normaliser is not None:
        modes = {"k": enrol}
        for mode in MODES:
            entries = [pooled[view] for view in views if view[0] == mode]
            modes[mode] = {key: float(np.mean([e[key] for e in entries])) for key in ("wa", "ua")}
    summary = {
        "model": str(model),
        "features_file": str(features),
        "corpus": info.corpus,
        "model_classes": recognizer.classes,
        "class_map": {name: recognizer.classes[i] for name, i in index.items()},
        "dropped": dropped,
        "mode": "any" if modes is None else "cold",
        "modes": modes,
        **metrics,
        "speakers": {
            name: {"wa": m["wa"], "ua": m["ua"], "utterances": m["utterances"]}
            for name, m in speakers.items()
        },
    }
    out = Path(out)
    atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=2).encode())
    atomic_write_bytes(out / "summary.md", transfer_markdown(summary).encode())
    plots.confusion(
        metrics["confusion"],
        recognizer.classes,
        out / "confusion.png",
        title=f"{Path(model).name} on {info.corpus}: WA {metrics['wa']:.3f}, UA {metrics['ua']:.3f}",
    )
    return summary


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
