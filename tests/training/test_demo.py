"""The demo's plan and its emoDB download (from a local archive: there is no network here)."""

import json
import os
import re
import tomllib
import zipfile

import pytest

from emovision.data.corpora import emodb, load_corpus
from emovision.errors import CorpusError, EmovisionError
from emovision.training import demo


def test_cpu_plan_is_the_reduced_configuration():
    plan = demo.plan("cpu")
    assert plan.training.device == "cpu" and plan.training.model == "efficientnet_lite0"
    assert plan.training.pretrained
    assert plan.training.augmentations == ("specaugment", "noise", "reverb", "speed")
    assert plan.augment.kinds == ("noise:white", "noise:pink", "noise:babble", "reverb", "speed")
    assert "reduced" in plan.note and "15 minutes" in plan.note
    assert plan.features.segment_tail == "trim"
    assert plan.features.segment_frames == 200  # 2-s segments: better on 8 of 10 emoDB folds
    # no speaker normalisation: what the cv measures is what a recording alone gets (BENCHMARKS.md)
    assert not plan.features.speaker_norm and plan.training.speaker_norm == "none"
    # the last epoch kept, so each fold's validation speaker trains too (both corpora gain)
    assert plan.training.select_by == "last" and plan.validation == "train"


def test_gpu_plan_is_the_cpu_recipe_trained_longer(monkeypatch):
    monkeypatch.setattr(demo.torch.cuda, "is_available", lambda: True)
    gpu, cpu = demo.plan("auto"), demo.plan("cpu")
    assert gpu.training.device == "cuda" and "full" in gpu.note
    assert (
        gpu.training.epochs == 24 and cpu.training.epochs == 12
    )  # 15 of 20 emoDB folds better over two seeds
    assert gpu.features == cpu.features and gpu.augment == cpu.augment
    assert gpu.validation == cpu.validation == "train"
    assert gpu.training.augmentations == cpu.training.augmentations
    assert gpu.training.batch_size == cpu.training.batch_size == 16


def test_emodb_root_prefers_the_argument_then_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EMODB_DIR", str(tmp_path / "env"))
    assert demo.emodb_root(tmp_path / "arg") == tmp_path / "arg"
    assert demo.emodb_root(None) == tmp_path / "env"


def test_download_unpacks_the_archive_once(monkeypatch, tmp_path, emodb_wavs):
    archive = tmp_path / "download.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for wav in emodb_wavs[:5]:
            zipped.write(wav, f"wav/{wav.name}")
    monkeypatch.setattr(emodb, "DOWNLOAD_URL", archive.as_uri())
    root = emodb.download(tmp_path / "cache")
    corpus = load_corpus("emodb", root)
    assert len(corpus.utterances) == 5
    archive.unlink()
    assert emodb.download(tmp_path / "cache") == root


def test_no_network_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setattr(emodb, "DOWNLOAD_URL", "http://127.0.0.1:9/download.zip")
    with pytest.raises(CorpusError, match="EMODB_DIR"):
        emodb.download(tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.partial"))


def _cv_args(argv):
    from emovision.cli import build_parser, with_config

    parser = build_parser()
    return with_config(parser, parser.parse_args(argv), argv)


def test_every_recipe_is_a_cv_config_and_a_demo_plan():
    from emovision.cli.training import training_config_from_args
    from emovision.training.options import TrainConfig

    recipes = sorted(demo.RECIPES.glob("*.toml"))
    assert {p.name for p in recipes} >= {"demo-cpu.toml", "demo-gpu.toml"}
    for recipe in recipes:
        chosen = demo.plan("cpu", recipe)
        args = _cv_args(["cv", "f.h5", "--config", str(recipe), "--out", "o"])
        assert training_config_from_args(args) == chosen.training
        assert isinstance(chosen.training, TrainConfig) and chosen.recipe == recipe.resolve()


def test_extract_reads_a_recipes_extract_table_and_flags_win():
    from emovision.cli import build_parser

    for recipe in sorted(demo.RECIPES.glob("*.toml")):
        table = tomllib.loads(recipe.read_text(encoding="utf-8"))["extract"]
        flags = [f"--{key}={value}" for key, value in table.items()]
        spelled = build_parser().parse_args(["extract", "emodb", "root", *flags])
        from_recipe = _cv_args(["extract", "emodb", "root", "--config", str(recipe)])
        different = {k for k, v in vars(from_recipe).items() if k != "parser" and v != getattr(spelled, k)}
        assert different == {"config"}
    recipe = demo.RECIPES / "demo-cpu.toml"
    assert _cv_args(["extract", "emodb", "root", "--config", str(recipe), "--n-mels", "128"]).n_mels == 128


def test_extract_refuses_a_recipe_with_an_unknown_extract_option(tmp_path, capsys):
    from emovision.cli import main

    bad = tmp_path / "bad.toml"
    bad.write_text('model = "alexnet_gap"\n[extract]\nsegment-lenght = 200\n')
    assert main(["extract", "emodb", str(tmp_path), "--config", str(bad), "-o", str(tmp_path / "f.h5")]) == 2
    assert "unknown option 'segment-lenght'" in capsys.readouterr().err
    assert not (tmp_path / "f.h5").exists()


def test_the_demo_recipe_may_train_the_validation_speakers_and_names_an_unknown_key(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        'model = "alexnet_gap"\nselect-by = "last"\nvalidation = "train"\n[extract]\nn-mels = 64\n'
    )
    assert demo.plan("cpu", recipe).validation == "train"
    recipe.write_text('model = "alexnet_gap"\nvalidation = "train"\n[extract]\nn-mels = 64\n')
    with pytest.raises(EmovisionError, match="add --select-by last"):
        demo.plan("cpu", recipe)
    recipe.write_text('model = "alexnet_gap"\nepochz = 3\n[extract]\nn-mels = 64\n')
    with pytest.raises(EmovisionError, match="not 'epochz'"):
        demo.plan("cpu", recipe)


def test_a_recipe_with_an_unknown_extract_option_is_refused(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('model = "alexnet_gap"\n[extract]\nn-mels = 64\nsegment-lenght = 200\n')
    with pytest.raises(EmovisionError, match="has no option 'segment_lenght'"):
        demo.plan("cpu", bad)


@pytest.mark.slow
def test_the_demo_runs_end_to_end_on_three_speakers_and_leaves_a_rerunnable_config(
    monkeypatch, tmp_path, emodb_dir, capsys
):
    """The real code path of ``emovision demo`` (progress display on) with a small recipe on three
    speakers: features, three folds, the summary, and a config.toml that ``cv --config`` reruns."""
    from emovision.cli import main

    real = demo.load_corpus

    def three_speakers(name, root, *args, **kwargs):
        corpus = real(name, root, *args, **kwargs)
        corpus.utterances = [u for u in corpus.utterances if u.speaker in ("03", "08", "09")]
        return corpus

    monkeypatch.setattr(demo, "load_corpus", three_speakers)
    recipe = tmp_path / "small.toml"
    recipe.write_text(
        'model = "alexnet_gap"\nepochs = 1\nbatch-size = 32\ndevice = "cpu"\n'
        '[extract]\nn-mels = 64\nsegment-frames = 100\nsegment-tail = "trim"\n'
    )
    out = tmp_path / "demo"
    assert main(["demo", "--emodb-dir", str(emodb_dir), "--out", str(out), "--recipe", str(recipe)]) == 0
    printed = capsys.readouterr().out
    cv = out / "cv-alexnet_gap"
    summary = json.loads((cv / "summary.json").read_text())
    assert [f["test"] for f in summary["folds"]] == [["03"], ["08"], ["09"]]
    assert "mean ± std" in printed and str(recipe) in printed
    config = (cv / "config.toml").read_text()
    assert f'features = "{out / "emodb-logmelspec-64x100-trim.h5"}"' in config and "[extract]" in config
    assert f"parallel-folds = {len(os.sched_getaffinity(0))}\n" in config  # the cores it trained on
    rerun = tmp_path / "rerun"
    assert main(["cv", "--config", str(cv / "config.toml"), "--out", str(rerun), "--quiet"]) == 0
    again = json.loads((rerun / "summary.json").read_text())
    assert [f["ua"] for f in again["folds"]] == [f["ua"] for f in summary["folds"]]


EXPERIMENTS = demo.RECIPES / "experiments"


def test_every_experiment_recipe_reads_as_cv_and_extract_options():
    from emovision.cli.training import training_config_from_args
    from emovision.training.options import TrainConfig

    recipes = sorted(EXPERIMENTS.glob("*.toml"))
    assert len(recipes) >= 30
    for recipe in recipes:
        config = training_config_from_args(_cv_args(["cv", "f.h5", "--config", str(recipe), "--out", "o"]))
        assert isinstance(config, TrainConfig)
        table = tomllib.loads(recipe.read_text(encoding="utf-8"))["extract"]
        extract = _cv_args(["extract", "emodb", "root", "--config", str(recipe)])
        assert (
            extract.n_mels == table.get("n-mels", 128) and extract.segment_frames == table["segment-frames"]
        )
        if "features" in table:
            assert extract.kind == table["features"] != "logmelspec"


def test_the_accuracy_script_names_only_recipes_and_its_own_steps():
    """Every configuration BENCHMARKS.md runs through benchmarks/accuracy_emodb.sh is a recipe file
    (optionally -seedS) or one of the script's steps."""
    root = demo.RECIPES.parent
    script = (root / "benchmarks" / "accuracy_emodb.sh").read_text(encoding="utf-8")
    steps = set(re.findall(r"^    ([a-z0-9_-]+)\)", script, flags=re.M))
    used = set()
    commands = (root / "BENCHMARKS.md").read_text(encoding="utf-8").replace("\\\n", " ")
    for line in commands.splitlines():
        if line.startswith("    ") and "accuracy_emodb.sh ../" in line:
            used |= set(line.split("accuracy_emodb.sh ../", 1)[1].split()[1:])
    assert {"lite0-aug-2s-seed112", "demo-cpu-spknorm-aug-mc", "fusion"} <= used
    for name in used:
        recipe = EXPERIMENTS / f"{re.sub(r'-seed[0-9]+$', '', name)}.toml"
        assert name in steps or recipe.is_file(), name
