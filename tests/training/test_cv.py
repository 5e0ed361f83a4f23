"""Cross-validation: fold rules, summaries, resume, parallel folds, reports, torchrun DDP."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch
from conftest import build_iemocap_tree
from scipy.special import log_softmax
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from emovision.cli import main
from emovision.data.corpora import load_corpus
from emovision.data.extract import extract_corpus
from emovision.data.features import FeatureConfig
from emovision.errors import EmovisionError
from emovision.training.checkpoint import load_checkpoint
from emovision.training.cv import run_cv
from emovision.training.dataset import load_split, open_source
from emovision.training.folds import make_fold, make_folds, validation_speaker, validation_trains
from emovision.training.options import TrainConfig


def _assert_picture(path: Path) -> None:
    """A PNG file that decodes to a picture with something drawn on it."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and min(pixels.shape[:2]) >= 200 and pixels.std() > 0.05, (path, pixels.shape)


QUICK = TrainConfig(model="alexnet_gap", epochs=1, batch_size=32, lr=3e-4, device="cpu")


@pytest.fixture(scope="module")
def emodb_small(tmp_path_factory, emodb_dir):
    """emoDB speakers 03 (M), 08 (F), 09 (F), 10 (M): 4 classes, 64 mels, 100 frames."""
    corpus = load_corpus("emodb", emodb_dir, "4")
    corpus.utterances = [u for u in corpus.utterances if u.speaker in ("03", "08", "09", "10")]
    out = tmp_path_factory.mktemp("cv") / "small.h5"
    extract_corpus(corpus, FeatureConfig(n_mels=64, segment_frames=100), out, progress=False)
    return out


@pytest.fixture(scope="module")
def iemocap_features(tmp_path_factory, emodb_wavs):
    """A miniature IEMOCAP (three utterances per improvised dialog turn-taker) as features."""
    root = tmp_path_factory.mktemp("iemocap")
    keep = ("F000", "M000", "F001", "M001", "F002", "M002", "F003", "M003")
    release = build_iemocap_tree(root, emodb_wavs[5], keep=lambda utt: "impro" in utt and utt.endswith(keep))
    out = root / "iemocap.h5"
    extract_corpus(
        load_corpus("iemocap", release), FeatureConfig(n_mels=64, segment_frames=100), out, progress=False
    )
    return out


def test_iemocap_fold_rules(iemocap_features):
    source = open_source(iemocap_features)
    assert sorted(source.speakers) == sorted(f"{s}{g}" for s in range(1, 6) for g in "FM")
    ten = make_folds(source)
    assert [(f.test, f.val) for f in ten[:3]] == [(["1F"], ["1M"]), (["1M"], ["1F"]), (["2F"], ["2M"])]
    assert all(len(f.train) == 8 and not set(f.train) & set(f.val + f.test) for f in ten)
    five = make_folds(source, "iemocap5")
    assert [f.test[0] for f in five] == ["1M", "2F", "3F", "4F", "5F"]
    assert [f.val[0] for f in five] == ["1F", "2M", "3M", "4M", "5M"]


def test_loso_picks_a_validation_speaker_of_the_same_gender(emodb_small):
    source = open_source(emodb_small)
    assert source.genders == {"03": "M", "08": "F", "09": "F", "10": "M"}
    assert [validation_speaker(source, s) for s in ("03", "08", "09", "10")] == ["10", "09", "08", "03"]
    folds = make_folds(source)
    assert [f.test for f in folds] == [["03"], ["08"], ["09"], ["10"]]


def test_fold_files(emodb_small, tmp_path):
    source = open_source(emodb_small)
    as_json = tmp_path / "folds.json"
    as_json.write_text(json.dumps([{"name": "a", "test": ["03"], "val": ["10"], "train": ["08", "09"]}]))
    (fold,) = make_folds(source, str(as_json))
    assert (fold.name, fold.train, fold.val, fold.test) == ("a", ["08", "09"], ["10"], ["03"])
    as_csv = tmp_path / "folds.csv"
    as_csv.write_text("test,val\n03,10\n08+09,10\n")
    assert [f.test for f in make_folds(source, str(as_csv))] == [["03"], ["08", "09"]]
    bad = tmp_path / "bad.csv"
    bad.write_text("test,val\n03,77\n")
    with pytest.raises(EmovisionError, match="unknown validation speaker '77'"):
        make_folds(source, str(bad))
    with pytest.raises(EmovisionError, match="no such file"):
        make_folds(source, str(tmp_path / "none.json"))


def test_cv_writes_the_summary_and_resumes_without_redoing_folds(emodb_small, tmp_path, monkeypatch):
    out = tmp_path / "cv"
    summary = run_cv(emodb_small, QUICK, out, progress=False)
    assert len(summary["folds"]) == 4
    assert json.loads((out / "summary.json").read_text())["pooled"] == summary["pooled"]
    record = json.loads((out / "cv.json").read_text())
    assert [f["test"] for f in record["folds"]] == [f["test"] for f in summary["folds"]]
    for name in ("confusion.png", "reliability.png"):
        _assert_picture(out / name)
    # every figure from the folds' own decisions, by scikit-learn and numpy
    runs = [json.loads(path.read_text()) for path in sorted(out.glob("fold*/metrics.json"))]
    labels = [np.asarray(r["test_labels"]) for r in runs]
    decided = [np.argmax(r["test_scores"], axis=1) for r in runs]
    ua = [balanced_accuracy_score(y, d) for y, d in zip(labels, decided, strict=True)]
    wa = [accuracy_score(y, d) for y, d in zip(labels, decided, strict=True)]
    assert [f["ua"] for f in summary["folds"]] == pytest.approx(ua)
    assert [f["wa"] for f in summary["folds"]] == pytest.approx(wa)
    assert summary["ua_mean"] == pytest.approx(np.mean(ua)) and summary["wa_mean"] == pytest.approx(
        np.mean(wa)
    )
    assert summary["ua_std"] == pytest.approx(np.std(ua, ddof=1)) and summary["wa_std"] == pytest.approx(
        np.std(wa, ddof=1)
    )
    pooled = np.concatenate(labels), np.concatenate(decided)
    assert summary["pooled"]["ua"] == pytest.approx(balanced_accuracy_score(*pooled))
    assert summary["pooled"]["wa"] == pytest.approx(accuracy_score(*pooled))
    calibration = summary["calibration"]
    assert calibration["runs"] == 4 and len(calibration["temperatures"]) == 4
    assert sum(b["count"] for b in calibration["bins"]) == summary["pooled"]["utterances"]
    assert (
        f"{calibration['ece']:.3f} → {calibration['ece_calibrated']:.3f}" in (out / "summary.md").read_text()
    )
    assert summary["pooled"]["utterances"] == sum(f["utterances"] for f in summary["folds"])
    assert abs(summary["ua_mean"] - sum(f["ua"] for f in summary["folds"]) / 4) < 1e-12
    assert "mean ± std" in (out / "summary.md").read_text()
    assert summary["versions"]["torch"]
    from emovision.training import train

    def must_not_train(*args, **kwargs):
        raise AssertionError("a finished fold was trained again")

    monkeypatch.setattr(train.Trainer, "prepare", must_not_train)
    again = run_cv(emodb_small, QUICK, out, progress=False)
    assert again["folds"] == summary["folds"]
    # a folder written before an option existed resumes too: the option takes its default
    for option in ("label_smoothing", "warp_max"):
        del record["train_config"][option]
    (out / "cv.json").write_text(json.dumps(record))
    assert run_cv(emodb_small, QUICK, out, progress=False)["folds"] == summary["folds"]
    with pytest.raises(
        EmovisionError, match=r"other options \(--batch-size 32 → 64, --epochs 1 → 2, --lr 0.0003 → 0.001\)"
    ):
        run_cv(emodb_small, TrainConfig(model="alexnet_gap", epochs=2, device="cpu"), out, progress=False)


CV_CHILD = """
import sys
from interrupt import kill_at
from emovision.training import train
from emovision.cli import main

features, folds, out, kill = sys.argv[1:]
if kill == "yes":  # the second fold killed after its first epoch's last.pth
    kill_at(train, "save_checkpoint", 1, after=True, when=lambda state, path: path.parent.name.startswith("fold02"))
main(["cv", features, "--folds", folds, "--model", "alexnet_gap", "--epochs", "2", "--batch-size", "32",
      "--lr", "3e-4", "--device", "cpu", "--quiet", "--out", out])
"""


def test_a_killed_cv_resumes_without_redoing_finished_folds(emodb_small, tmp_path):
    from interrupt import run_child

    folds = tmp_path / "two.json"
    folds.write_text(json.dumps([{"test": ["03"], "val": ["10"]}, {"test": ["08"], "val": ["10"]}]))
    common = (str(emodb_small), str(folds))
    run_child(CV_CHILD, *common, str(tmp_path / "straight"), "no", killed=False)
    run_child(CV_CHILD, *common, str(tmp_path / "killed"), "yes", killed=True)
    first = tmp_path / "killed" / "fold01-test-03" / "metrics.json"
    finished = first.stat().st_mtime_ns
    assert not (tmp_path / "killed" / "fold02-test-08" / "metrics.json").exists()
    run_child(CV_CHILD, *common, str(tmp_path / "killed"), "no", killed=False)
    assert first.stat().st_mtime_ns == finished
    straight, resumed = (
        json.loads((tmp_path / n / "summary.json").read_text()) for n in ("straight", "killed")
    )
    assert resumed["folds"] == straight["folds"] and resumed["pooled"] == straight["pooled"]


def _one_fold(tmp_path: Path) -> str:
    path = tmp_path / "one.json"
    path.write_text(json.dumps([{"test": ["03"], "val": ["10"]}]))
    return str(path)


def test_parallel_folds_and_repeats_match_sequential(emodb_small, tmp_path):
    folds = tmp_path / "two.json"
    folds.write_text(json.dumps([{"test": ["03"], "val": ["10"]}, {"test": ["08"], "val": ["09"]}]))
    common = {"folds": str(folds), "repeats": 2, "progress": False}
    sequential = run_cv(emodb_small, QUICK, tmp_path / "seq", **common)
    parallel = run_cv(emodb_small, QUICK, tmp_path / "par", parallel=2, **common)
    assert len(parallel["folds"]) == 4 and {f["seed"] for f in parallel["folds"]} == {111, 112}
    runs = sorted(p.parent.name for p in (tmp_path / "seq").glob("*/metrics.json"))
    assert len(runs) == 4 and runs == sorted(p.parent.name for p in (tmp_path / "par").glob("*/metrics.json"))
    assert [(f["wa"], f["ua"]) for f in parallel["folds"]] == [
        (f["wa"], f["ua"]) for f in sequential["folds"]
    ]
    for run in runs:  # every utterance's scores (other thread counts: float sums in another order)
        seq, par = (
            json.loads((tmp_path / side / run / "metrics.json").read_text()) for side in ("seq", "par")
        )
        np.testing.assert_allclose(np.array(par["test_scores"]), np.array(seq["test_scores"]), atol=1e-5)


def test_cv_and_report_commands(emodb_small, tmp_path, capsys):
    out = tmp_path / "cvcmd"
    args = [
        "cv",
        str(emodb_small),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--device",
        "cpu",
    ]
    assert main([*args, "--quiet", "--folds", _one_fold(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "mean ± std" in printed and "summary.md" in printed
    assert main(["report", str(out), str(out / "fold01-test-03")]) == 0
    report = capsys.readouterr().out
    assert "alexnet_gap" in report and "pooled" in report
    config = FeatureConfig.from_dict(json.loads((out / "summary.json").read_text())["feature_config"])
    assert f"{config.kind} {config.height}×{config.segment_frames}" in report
    assert main(["report", str(tmp_path)]) == 2
    # a cv still training (a second fold listed, not finished) is reported on its finished folds
    partial = tmp_path / "partial"
    shutil.copytree(out, partial)
    (partial / "summary.json").unlink()
    record = json.loads((partial / "cv.json").read_text())
    record["folds"].append({**record["folds"][0], "name": "later", "test": ["09"], "val": ["08"]})
    (partial / "cv.json").write_text(json.dumps(record))
    assert main(["report", str(partial), str(out), "--markdown"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {partial} |")]
    assert "| 1 of 2 |" in rows[0]


def test_torchrun_ddp_on_cpu_with_gloo(emodb_small, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    args = ["train", str(emodb_small), "--val-speaker", "10", "--test-speaker", "03", "--epochs", "2",
            "--batch-size", "32", "--lr", "3e-4", "--device", "cpu", "--quiet"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [str(torchrun), "--nproc-per-node", "2", "-m", "emovision", *args, "--out", str(tmp_path / "ddp")],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert ddp["world_size"] == 2
    single = subprocess.run(
        [sys.executable, "-m", "emovision", *args, "--out", str(tmp_path / "one")],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr[-2000:]
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    for a, b in zip(ddp["history"], one["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=2e-3)
    shutil.rmtree(tmp_path / "ddp")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch_ranks(args: list[str], outs: list[Path]) -> list[subprocess.CompletedProcess]:
    """``emovision train`` as a gloo group of ``len(outs)`` processes, rank r writing to ``outs[r]``
    (as on machines that share no storage), the way torchrun would start them."""
    port = str(_free_port())
    procs = []
    for rank, out in enumerate(outs):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "WORLD_SIZE": str(len(outs)), "RANK": str(rank),
               "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}  # fmt: skip
        command = [sys.executable, "-m", "emovision", *args, "--out", str(out)]
        procs.append(
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    results = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    return results


def test_ddp_ranks_agree_without_shared_storage_and_small_last_batches(emodb_small, tmp_path):
    source = open_source(emodb_small)
    fold = make_fold(source, ["10"], ["03"])
    segments = len(load_split(source, fold.train))
    batch = next(b for b in range(8, segments) if segments % b in (2, 3))  # last batch: 1 or 2 per rank
    args = ["train", str(emodb_small), "--val-speaker", "10", "--test-speaker", "03", "--epochs", "3",
            "--patience", "1", "--batch-size", str(batch), "--lr", "3e-3", "--device", "cpu", "--quiet"]  # fmt: skip
    shared, private = tmp_path / "rank0", tmp_path / "rank1-only"
    first = _launch_ranks(args, [shared, private])
    assert [r.returncode for r in first] == [0, 0], first[0].stderr[-1500:] + first[1].stderr[-1500:]
    metrics = json.loads((shared / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert all(np.isfinite(row["train_loss"]) for row in metrics["history"])
    assert metrics["epochs_run"] == len(metrics["history"]) <= 3
    assert not private.exists() or not any(private.iterdir())
    again = _launch_ranks([*args, "--resume"], [shared, private])
    assert [r.returncode for r in again] == [0, 0], again[1].stderr[-1500:]
    assert json.loads((shared / "metrics.json").read_text()) == metrics


def test_rank_shares_use_every_segment_once_and_weight_to_the_batch_mean():
    from emovision.training.train import rank_batches

    for n, batch, world in [(70, 32, 2), (66, 32, 2), (65, 32, 2), (64, 32, 2), (101, 30, 3), (9, 4, 1)]:
        order = torch.randperm(n)
        per_rank = [rank_batches(order, batch, world, rank) for rank in range(world)]
        used = torch.cat([share for shares in per_rank for share, _ in shares])
        assert sorted(used.tolist()) == list(range(n))
        assert min(share.numel() for shares in per_rank for share, _ in shares) >= 2
        values = torch.rand(n, dtype=torch.float64)
        for parts in zip(*per_rank, strict=True):
            whole = torch.cat([share for share, _ in parts])
            ddp_mean = sum(w * values[share].mean() for share, w in parts) / world
            assert float(ddp_mean) == pytest.approx(float(values[whole].mean()))
    with pytest.raises(EmovisionError, match="two per process"):
        rank_batches(torch.arange(3), 32, 2, 0)


def test_repeats_are_also_scored_as_a_within_fold_ensemble(emodb_small, tmp_path):
    summary = run_cv(emodb_small, QUICK, tmp_path / "cv", folds="loso", repeats=2, progress=False)
    ensemble = summary["ensemble"]
    assert [f["runs"] for f in ensemble["folds"]] == [2, 2, 2, 2]
    runs = sorted((tmp_path / "cv").glob("fold*/metrics.json"))
    first = [json.loads(p.read_text()) for p in runs[:2]]
    import numpy as np

    from emovision.training.metrics import score_utterances

    mean = np.mean([np.asarray(m["test_scores"]) for m in first], axis=0)
    expected = score_utterances(np.asarray(first[0]["test_labels"]), mean, summary["classes"])
    assert ensemble["folds"][0]["ua"] == pytest.approx(expected["ua"])
    assert "Within-fold ensemble of the 2 seeds" in (tmp_path / "cv" / "summary.md").read_text()


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc (Linux)")
def test_killing_cv_ends_its_fold_workers(emodb_small, tmp_path):
    import signal
    import time

    out = tmp_path / "cv"
    command = [sys.executable, "-m", "emovision.cli", "cv", str(emodb_small), "--model", "alexnet_gap"]
    command += ["--epochs", "50", "--device", "cpu", "--parallel-folds", "2", "--quiet", "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(out.glob("fold*/last.pth")) and time.time() < deadline:
        time.sleep(0.5)
    workers = _children(process.pid)
    assert list(out.glob("fold*/last.pth")) and len(workers) >= 2
    process.send_signal(signal.SIGKILL)
    process.wait()
    deadline = time.time() + 15
    while any(Path(f"/proc/{pid}").exists() for pid in workers) and time.time() < deadline:
        time.sleep(0.5)
    alive = [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "fold workers outlived the killed cv process"


def test_report_pairs_cv_runs_over_their_shared_folds(tmp_path, capsys):
    def write(name, folds):
        folder = tmp_path / name
        folder.mkdir()
        summary = {
            "folds": [{"name": n, "test": [n[-2:]], "ua": ua, "wa": ua, "seed": 1} for n, ua in folds],
            "wa_mean": 0.5, "wa_std": 0.1, "ua_mean": 0.5, "ua_std": 0.1,
            "pooled": {"wa": 0.5, "ua": 0.5},
            "train_config": {"model": "m" * 90, "augment": "specaugment,noise"},
        }  # fmt: skip
        (folder / "summary.json").write_text(json.dumps(summary))
        return folder

    base = write("base", [("test-03", 0.5), ("test-08", 0.4), ("test-09", 0.3)])
    corpus = write("corpus", [("test-13+14", 0.5), ("test-15+16", 0.7)])  # other folds: its own base
    other = write("other", [("test-03", 0.6), ("test-08", 0.3), ("test-09", 0.5), ("test-10", 0.9)])
    again = write("again", [("test-13+14", 0.6), ("test-15+16", 0.9)])
    assert main(["report", str(base), str(corpus), str(other), str(again), "--markdown"]) == 0
    out = capsys.readouterr().out
    assert f"| {other} | {base} | +0.067 ± 0.088 (2/3) |" in out
    assert f"| {again} | {corpus} | +0.150 ± 0.050 (2/2) |" in out
    assert f"| {corpus} | {base} |" not in out
    assert main(["report", str(base), str(other), "--only", "fusion", "--markdown"]) == 0
    assert capsys.readouterr().out == ""  # neither run is fused: nothing else is printed
    with pytest.raises(SystemExit) as stopped:
        main(["report", str(base), "--only", "runs,fusoin"])
    assert stopped.value.code == 2 and "unknown table 'fusoin'" in capsys.readouterr().err
    assert "augment specaugment+noise" in out
    assert all(line.startswith("|") for line in out.splitlines() if "mmmm" in line)  # rows never wrap


def test_an_experiment_is_a_file_rerun_exactly_from_its_config_toml(emodb_small, tmp_path, capsys):
    folds = tmp_path / "folds.json"
    folds.write_text(json.dumps([{"test": ["03"], "val": ["10"]}]))
    config = tmp_path / "experiment.toml"
    config.write_text(
        f'features = "{emodb_small}"\nmodel = "alexnet_gap"\nepochs = 1\nbatch-size = 32\n'
        f'lr = 3e-4\ndevice = "cpu"\nfolds = "{folds}"\naugment = "specaugment"\n'
    )
    assert (
        main(["cv", "--config", str(config), "--epochs", "2", "--quiet", "--out", str(tmp_path / "x")]) == 0
    )
    recorded = (tmp_path / "x" / "config.toml").read_text()
    assert "epochs = 2" in recorded and 'augment = "specaugment"' in recorded and "quiet" not in recorded
    first = json.loads((tmp_path / "x" / "summary.json").read_text())
    assert first["train_config"]["epochs"] == 2  # the flag won over the file
    assert (
        main(["cv", "--config", str(tmp_path / "x" / "config.toml"), "--quiet", "--out", str(tmp_path / "y")])
        == 0
    )
    again = json.loads((tmp_path / "y" / "summary.json").read_text())
    assert again["folds"] == first["folds"] and again["train_config"] == first["train_config"]
    capsys.readouterr()
    for text, message in (
        ("epoch = 3\n", "unknown option 'epoch'"),
        ('epochs = "3"\n', "epochs must be int"),
    ):
        bad = tmp_path / "bad.toml"
        bad.write_text(f'features = "{emodb_small}"\n' + text)
        assert main(["cv", "--config", str(bad), "--out", str(tmp_path / "z")]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "z").exists()


def test_one_fold_per_job_then_the_summary_and_a_lock_per_fold(emodb_small, tmp_path, capsys):
    out = tmp_path / "cv"
    args = ["cv", str(emodb_small), "--model", "alexnet_gap", "--epochs", "1", "--device", "cpu", "--quiet"]
    args += ["--out", str(out)]
    assert main([*args, "--fold", "2"]) == 0
    assert "not finished yet: fold01-test-03, fold03-test-09, fold04-test-10" in capsys.readouterr().out
    assert not (out / "summary.json").exists() and (out / "fold02-test-08" / "metrics.json").exists()
    assert main(["cv", "--summarize", "--out", str(out)]) == 0
    assert "3 run(s) not finished" in capsys.readouterr().out
    (out / "fold01-test-03").mkdir()
    (out / "fold01-test-03" / ".lock").write_text("another-host 123")
    assert main([*args, "--fold", "test-03"]) == 2
    assert "being trained by another process" in capsys.readouterr().err
    (out / "fold01-test-03" / ".lock").write_text(
        f"{socket.gethostname()} 999999999"
    )  # a process that is gone
    for fold in ("test-03", "3", "4"):
        assert main([*args, "--fold", fold]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["folds"]) == 4 and "missing" not in summary
    assert not list(out.glob("*/.lock"))
    assert main([*args, "--fold", "5"]) == 2
    assert "names no fold" in capsys.readouterr().err


def _nll_minimising_temperature(scores: np.ndarray, labels: np.ndarray) -> float:
    """A grid search over T in [0.05, 20] of the mean NLL of ``labels`` under softmax(scores / T)."""
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 20001))
    nll = [-log_softmax(np.asarray(scores) / t, axis=1)[np.arange(len(labels)), labels].mean() for t in grid]
    return float(grid[int(np.argmin(nll))])


def test_validation_speakers_can_train_too_with_the_last_epoch_kept(emodb_small, tmp_path, capsys):
    source = open_source(emodb_small)
    moved = validation_trains(source, make_folds(source))
    # by hand: loso on 03 M, 08 F, 09 F, 10 M validates 03 on 10, 08 on 09, 09 on 08, 10 on 03
    assert [(f.test, f.val, f.train) for f in moved] == [
        (["03"], [], ["08", "09", "10"]),
        (["08"], [], ["03", "09", "10"]),
        (["09"], [], ["03", "08", "10"]),
        (["10"], [], ["03", "08", "09"]),
    ]
    folds = tmp_path / "two.json"
    folds.write_text(json.dumps([{"test": ["03"], "val": ["10"]}, {"test": ["08"], "val": ["09"]}]))
    args = ["cv", str(emodb_small), "--model", "alexnet_gap", "--epochs", "2", "--device", "cpu", "--quiet"]
    args += ["--folds", str(folds), "--validation", "train"]
    assert main([*args, "--out", str(tmp_path / "x")]) == 2
    assert "add --select-by last" in capsys.readouterr().err and not (tmp_path / "x").exists()
    for seed in ("111", "112"):
        assert main([*args, "--select-by", "last", "--seed", seed, "--out", str(tmp_path / seed)]) == 0
    printed = capsys.readouterr().out
    assert "│ —          │" in printed  # the fold table's validation column
    runs = {
        (seed, test): json.loads((tmp_path / seed / f"fold0{i}-test-{test}" / "metrics.json").read_text())
        for seed in ("111", "112")
        for i, test in ((1, "03"), (2, "08"))
    }
    metrics = runs["111", "03"]
    assert metrics["fold"]["train"] == ["08", "09", "10"] and metrics["fold"]["val"] == []
    assert metrics["val"] is None and metrics["best_epoch"] == 2
    assert all("val_ua" not in row for row in metrics["history"])
    assert 'validation = "train"' in (tmp_path / "111" / "config.toml").read_text()
    summary_md = (tmp_path / "111" / "summary.md").read_text()
    assert "last epoch, validation speakers train" in summary_md
    assert "temperature fitted on the other folds' test speakers" in summary_md
    test = load_split(source, ["03"])
    expected_ua = balanced_accuracy_score(test.utterance_labels, np.argmax(metrics["test_scores"], axis=1))
    assert metrics["test"]["ua"] == pytest.approx(expected_ua)
    # each fold's temperature comes from the other fold's test speaker, never its own
    for seed in ("111", "112"):
        for own, other in (("03", "08"), ("08", "03")):
            reference = runs[seed, other]
            expected = _nll_minimising_temperature(reference["test_scores"], reference["test_labels"])
            assert runs[seed, own]["calibration"]["temperature"] == pytest.approx(expected, rel=2e-3)
            assert runs[seed, own]["calibration"]["fitted_on"] == "the other folds' test speakers"
    best = load_checkpoint(tmp_path / "111" / "fold01-test-03" / "best.pth")
    assert best["temperature"] == metrics["calibration"]["temperature"]
    assert main([*args, "--select-by", "last", "--seed", "111", "--out", str(tmp_path / "111")]) == 0
    again = json.loads((tmp_path / "111" / "fold01-test-03" / "metrics.json").read_text())
    assert again["calibration"] == metrics["calibration"]
    both = tmp_path / "both"
    assert (
        main(["ensemble", str(tmp_path / "111"), str(tmp_path / "112"), "--out", str(both), "--quiet"]) == 0
    )
    ensemble = json.loads((both / "summary.json").read_text())
    mean = {
        t: np.mean([runs[seed, t]["test_scores"] for seed in ("111", "112")], axis=0) for t in ("03", "08")
    }
    labels = {t: runs["111", t]["test_labels"] for t in ("03", "08")}
    expected = np.median([_nll_minimising_temperature(mean[t], labels[t]) for t in ("08", "03")])
    assert ensemble["temperature"] == pytest.approx(expected, rel=2e-3)
    assert ensemble["folds"][0]["ua"] == pytest.approx(
        balanced_accuracy_score(test.utterance_labels, mean["03"].argmax(1))
    )
