"""Which epoch to keep: the best validation epoch (what ``cv`` keeps), the last epoch, or both.

Every fold of a finished cv folder keeps ``best.pth`` (the epoch its one validation speaker chose)
and ``last.pth`` (the state after the last epoch, kept for resuming). This scores the test speaker's
recordings, each alone (the cold mode; the runs must use no speaker normalisation), with the best
epoch, the last epoch, and both as one model (mean of their utterance log-probabilities), and prints
the pooled UA of each and the paired ΔUA against the best epoch per fold (mean ± standard error,
folds better). Nothing is trained; the runs are only read.

    .venv/bin/python benchmarks/last_epoch.py ../served/demo-cv ../served/ravdess-none-copies
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from emovision.inference.runs import finished_runs
from emovision.tables import ResultTable, paired_change
from emovision.training.checkpoint import load_weights_only, model_from_checkpoint
from emovision.training.dataset import load_split, open_source
from emovision.training.metrics import (
    metrics_from_confusion,
    paired_difference,
    score_utterances,
    segment_log_probs,
    utterance_scores,
)

CHOICES = ("best", "last", "best+last")


def fold_scores(run_dir: Path) -> list[dict[str, dict]]:
    """Per fold, the test metrics of each choice of :data:`CHOICES`."""
    _, runs = finished_runs(run_dir)
    folds = []
    for run in runs:
        payload = run.checkpoint
        if payload.get("speaker_norm"):
            raise SystemExit(f"{run.folder}: a speaker-normalised run; this compares cold models only")
        source = open_source(payload["features_file"])
        test = load_split(source, payload["fold"]["test"])
        best = model_from_checkpoint(payload).eval()
        last = model_from_checkpoint(payload).eval()
        last.load_state_dict(load_weights_only(run.folder / "last.pth")["model"])
        scores = {}
        for name, model in (("best", best), ("last", last)):
            log_probs = segment_log_probs(model, test.segments)
            scores[name] = utterance_scores(log_probs, test.segments_per_utterance, payload["aggregate"])
        scores["best+last"] = (scores["best"] + scores["last"]) / 2
        folds.append(
            {c: score_utterances(test.utterance_labels, scores[c], payload["classes"]) for c in CHOICES}
        )
    return folds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="finished cv folders (no speaker normalisation)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    table = ResultTable(
        ["run", "best: pooled UA", "last: pooled UA", "best+last: pooled UA", "ΔUA last", "ΔUA best+last"]
    )
    every = []
    for run_dir in args.runs:
        folds = fold_scores(run_dir)
        every += folds
        pooled = [f"{pooled_ua(folds, c):.3f}" for c in CHOICES]
        table.add(str(run_dir), *pooled, *(paired_change(paired(folds, c)) for c in CHOICES[1:]))
    if len(args.runs) > 1:
        table.add("all folds above", "", "", "", *(paired_change(paired(every, c)) for c in CHOICES[1:]))
    print("\n".join(table.markdown()))


def pooled_ua(folds: list[dict[str, dict]], choice: str) -> float:
    """The UA of ``choice`` over the test recordings of all ``folds`` together."""
    classes = list(folds[0][choice]["recall"])
    return metrics_from_confusion(np.sum([f[choice]["confusion"] for f in folds], axis=0), classes)["ua"]


def paired(folds: list[dict[str, dict]], choice: str) -> dict:
    """The paired ΔUA of ``choice`` − best over ``folds``."""
    return paired_difference(np.array([f[choice]["ua"] - f["best"]["ua"] for f in folds]))


if __name__ == "__main__":
    main()
