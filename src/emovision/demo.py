"""``make demo``: emoDB → features → leave-one-speaker-out cross-validation → report.

With a CUDA GPU the full configuration runs; on a CPU-only machine a reduced one (fewer
mel bands, shorter segments, fewer epochs) keeps the whole job under 15 minutes on two
cores, and the output says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from emovision.corpora import emodb, load_corpus
from emovision.cv import run_cv
from emovision.extract import extract_corpus
from emovision.features import FeatureConfig
from emovision.train import TrainConfig

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "emovision"


@dataclass(frozen=True)
class DemoPlan:
    """What the demo runs on this machine and why."""

    features: FeatureConfig
    training: TrainConfig
    note: str


def plan(device: str = "auto") -> DemoPlan:
    """The full configuration on a GPU, a reduced one on a CPU."""
    cuda = torch.cuda.is_available() and device != "cpu"
    if cuda:
        return DemoPlan(
            FeatureConfig(kind="logmelspec", n_mels=128, segment_frames=300, segment_tail="shift"),
            TrainConfig(
                model="alexnet_gap", epochs=60, batch_size=64, lr=1e-3, schedule="cosine", device="cuda"
            ),
            "GPU found: full configuration (128 mel bands, 300-frame segments, 60 epochs)",
        )
    return DemoPlan(
        FeatureConfig(kind="logmelspec", n_mels=64, segment_frames=100, segment_tail="shift"),
        TrainConfig(model="alexnet_gap", epochs=12, batch_size=32, lr=1e-3, schedule="cosine", device="cpu"),
        "no GPU: reduced CPU configuration (64 mel bands, 100-frame segments, 12 epochs, one fold per "
        "core) so the whole demo ends within 15 minutes on two cores; a GPU machine runs the full one",
    )


def emodb_root(given: str | Path | None) -> Path:
    """``given``, else ``$EMODB_DIR``, else the official archive downloaded into the cache."""
    root = given or os.environ.get("EMODB_DIR")
    if root:
        return Path(root)
    return emodb.download(CACHE)


def run_demo(emodb_dir: str | Path | None, out: str | Path, device: str = "auto", say=print) -> dict:
    """Run the demo; return the cross-validation summary."""
    out = Path(out)
    chosen = plan(device)
    say(chosen.note)
    root = emodb_root(emodb_dir)
    corpus = load_corpus("emodb", root)
    say(f"emoDB: {len(corpus.utterances)} utterances of {len(corpus.speakers())} speakers from {root}")
    features = out / f"emodb-{chosen.features.kind}-{chosen.features.n_mels}.h5"
    if not features.exists():
        extract_corpus(corpus, chosen.features, features)
    say(f"features: {features}")
    parallel = 1 if chosen.training.device == "cuda" else len(os.sched_getaffinity(0))
    return run_cv(features, chosen.training, out / f"cv-{chosen.training.model}", parallel=parallel)
