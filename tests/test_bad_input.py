"""Every command against hostile input: exit status 2, one line on stderr, never a traceback.

One table: missing paths, empty and truncated files, corrupt HDF5 / JSON / checkpoint / ONNX /
TOML, a text file named ``.wav``, bracketed and non-ASCII names, an output folder nobody may
write to. Each case is built from the real tiny model and its real features file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from emovision.cli import main
from emovision.training.folds import Fold
from emovision.training.options import TrainConfig


@pytest.fixture(scope="module")
def bad(tmp_path_factory, trained_model) -> dict[str, Path]:
    """Damaged and misleading files next to good ones, by name."""
    root = tmp_path_factory.mktemp("bad [input] ünï")
    good_features = trained_model.features.read_bytes()
    good_checkpoint = trained_model.checkpoint.read_bytes()
    files = {
        "empty": b"",
        "text": "nur Text, kein Ton — [böse]\n".encode(),
        "features-truncated.h5": good_features[: len(good_features) // 2],
        "checkpoint-truncated.pth": good_checkpoint[: len(good_checkpoint) // 3],
        "broken JSON": b'{"folds": [1, 2',
    }
    paths = {}
    for name, content in files.items():
        paths[name] = root / f"{name.replace(' ', '-')}.bin"
        paths[name].write_bytes(content)
    for suffix in (".wav", ".h5", ".pth", ".onnx", ".toml", ".csv"):
        (root / f"[kaputt] ünï{suffix}").write_bytes(files["text"])
        paths[f"text{suffix}"] = root / f"[kaputt] ünï{suffix}"
        (root / f"empty{suffix}").write_bytes(b"")
        paths[f"empty{suffix}"] = root / f"empty{suffix}"
    paths["truncated.h5"] = root / "truncated.h5"
    paths["truncated.h5"].write_bytes(files["features-truncated.h5"])
    paths["truncated.pth"] = root / "truncated.pth"
    paths["truncated.pth"].write_bytes(files["checkpoint-truncated.pth"])
    (root / "[kaputt] zwei.wav").write_bytes(files["text"])
    manifest = root / "text-wav.csv"
    manifest.write_text(f"path,speaker,label\n{paths['text.wav']},s1,a\n{root / '[kaputt] zwei.wav'},s2,b\n")
    paths["text-wav manifest"] = manifest
    for state in ("cv.json", "summary.json", "metrics.json", "robustness.json"):
        folder = root / f"[damaged {state}]"
        folder.mkdir()
        (folder / state).write_bytes(files["broken JSON"])
        if state == "summary.json":
            (folder / "cv.json").write_text("[]")  # a cv.json of the wrong shape
        paths[f"damaged {state}"] = folder
    # beside the damaged file what gets a command that far: a finished cv has a summary.json, and
    # report reads robustness.json of a finished run
    (paths["damaged cv.json"] / "summary.json").write_text("{}")
    shutil.copy(trained_model.checkpoint.parent / "metrics.json", paths["damaged robustness.json"])
    fold = root / "[damaged fold]"
    (fold / "fold01-test-03").mkdir(parents=True)
    shutil.copy(trained_model.checkpoint, fold / "fold01-test-03" / "best.pth")
    (fold / "fold01-test-03" / "metrics.json").write_bytes(files["broken JSON"])
    paths["damaged fold"] = fold
    # a cv folder whose one fold run has a damaged metrics.json
    finished = root / "[damaged fold metrics]"
    (finished / "fold01-tiny").mkdir(parents=True)
    shutil.copy(trained_model.checkpoint, finished / "fold01-tiny" / "best.pth")
    (finished / "fold01-tiny" / "metrics.json").write_bytes(files["broken JSON"])
    record = {
        "features_file": str(trained_model.features),
        "train_config": TrainConfig(model="alexnet_gap", epochs=1).identity(),
        "folds": [Fold(["10", "12"], ["09"], ["03"], name="tiny").to_dict()],
        "repeats": 1,
    }
    (finished / "cv.json").write_text(json.dumps(record))
    (finished / "summary.json").write_text("{}")
    paths["damaged fold metrics"] = finished
    paths["file as folder"] = paths["text"] / "out"
    paths["missing"] = root / "nicht da [x]" / "ünï.wav"
    paths["read-only"] = _read_only_folder(root)
    return paths


def _read_only_folder(root: Path) -> Path:
    """A folder this process may not write in: mode 0555, or for root (who ignores modes) a folder
    under ``/sys``, where even root may create nothing."""
    if os.geteuid() == 0:
        return Path("/sys/emovision-read-only")
    folder = root / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


Case = Callable[[dict[str, Path], object], list[str]]
CASES: dict[str, Case] = {
    "extract: missing corpus folder": lambda p, m: ["extract", "emodb", str(p["missing"]), "-o", str(p["text"])],
    "extract: empty manifest": lambda p, m: ["extract", "manifest", str(p["empty.csv"]), "-o", "x.h5"],
    "extract: text manifest": lambda p, m: ["extract", "manifest", str(p["text.csv"]), "-o", "x.h5"],
    "extract: text files named .wav": lambda p, m: ["extract", "manifest", str(p["text-wav manifest"]), "-o", "t.h5"],
    "extract: read-only output": lambda p, m: [
        "extract", "emodb", str(m.emodb_dir), "-o", str(p["read-only"] / "x.h5"),
    ],
    "extract: output under a file": lambda p, m: [
        "extract", "emodb", str(m.emodb_dir), "-o", str(p["file as folder"] / "x.h5"),
    ],
    "train: missing features": lambda p, m: ["train", str(p["missing"]), "--all-speakers", "--out", "o"],
    "train: empty features": lambda p, m: ["train", str(p["empty.h5"]), "--all-speakers", "--out", "o"],
    "train: text features": lambda p, m: ["train", str(p["text.h5"]), "--all-speakers", "--out", "o"],
    "train: truncated HDF5": lambda p, m: ["train", str(p["truncated.h5"]), "--all-speakers", "--out", "o"],
    "train: --save-label in a missing folder": lambda p, m: [
        "train", str(m.features), "--all-speakers", "--epochs", "1", "--out", "o",
        "--save-label", str(p["missing"].parent / "label"),
    ],
    "train: read-only --out": lambda p, m: [
        "train", str(m.features), "--all-speakers", "--epochs", "1", "--out", str(p["read-only"] / "run"),
    ],
    "train: text --config": lambda p, m: ["train", str(m.features), "--config", str(p["text.toml"]), "--out", "o"],
    "train: damaged --epochs-from": lambda p, m: [
        "train", str(m.features), "--all-speakers", "--epochs-from", str(p["damaged summary.json"]), "--out", "o",
    ],
    "cv: damaged cv.json in --out": lambda p, m: ["cv", str(m.features), "--out", str(p["damaged cv.json"])],
    "cv: --summarize a damaged cv.json": lambda p, m: ["cv", "--summarize", "--out", str(p["damaged cv.json"])],
    "cv: --summarize a damaged fold": lambda p, m: ["cv", "--summarize", "--out", str(p["damaged fold metrics"])],
    "report: damaged summary.json": lambda p, m: ["report", str(p["damaged summary.json"])],
    "report: damaged metrics.json": lambda p, m: ["report", str(p["damaged metrics.json"])],
    "report: damaged robustness.json": lambda p, m: ["report", str(p["damaged robustness.json"])],
    "report: missing run": lambda p, m: ["report", str(p["missing"].parent)],
    "predict: text file named .wav": lambda p, m: ["predict", str(m.checkpoint), str(p["text.wav"])],
    "predict: empty .wav": lambda p, m: ["predict", str(m.checkpoint), str(p["empty.wav"])],
    "predict: missing recording": lambda p, m: ["predict", str(m.checkpoint), str(p["missing"])],
    "predict: text checkpoint": lambda p, m: ["predict", str(p["text.pth"]), str(m.test_wavs[0])],
    "predict: truncated checkpoint": lambda p, m: ["predict", str(p["truncated.pth"]), str(m.test_wavs[0])],
    "predict: text ONNX": lambda p, m: ["predict", str(p["text.onnx"]), str(m.test_wavs[0])],
    "predict: damaged cv folder": lambda p, m: ["predict", str(p["damaged fold"]), str(m.test_wavs[0])],
    "embed: text ONNX": lambda p, m: ["embed", str(p["text.onnx"]), str(m.test_wavs[0]), "-o", "e.npy"],
    "embed: text recording": lambda p, m: ["embed", str(m.checkpoint), str(p["text.wav"]), "-o", "e.npy"],
    "export: truncated checkpoint": lambda p, m: ["export", str(p["truncated.pth"]), "-o", "m.onnx"],
    "export: read-only output": lambda p, m: ["export", str(m.checkpoint), "-o", str(p["read-only"] / "m.onnx")],
    "serve: empty checkpoint": lambda p, m: ["serve", str(p["empty.pth"]), "--port", "0"],
    "evaluate: text ONNX": lambda p, m: ["evaluate", str(p["text.onnx"]), str(m.features), "--out", "e"],
    "evaluate: truncated features": lambda p, m: [
        "evaluate", str(m.checkpoint), str(p["truncated.h5"]), "--out", "e",
    ],
    "fuse: damaged cv.json": lambda p, m: ["fuse", str(p["damaged cv.json"])],
    "ensemble: a folder that is no cv": lambda p, m: [
        "ensemble", str(p["damaged fold"]), str(p["damaged fold"]), "--out", "e",
    ],
    "ensemble: a cv.json of the wrong shape": lambda p, m: [
        "ensemble", str(p["damaged summary.json"]), str(p["damaged summary.json"]), "--out", "e",
    ],
    "robustness: damaged cv.json": lambda p, m: [
        "robustness", str(p["damaged cv.json"]), "--root", str(m.emodb_dir),
    ],
    "robustness: a folder that is no cv": lambda p, m: [
        "robustness", str(p["damaged fold"]), "--root", str(m.emodb_dir),
    ],
    "robustness: damaged fold metrics": lambda p, m: [
        "robustness", str(p["damaged fold metrics"]), "--root", str(m.emodb_dir),
    ],
    "demo: missing emoDB": lambda p, m: ["demo", "--emodb-dir", str(p["missing"].parent), "--out", "d"],
}  # fmt: skip

DENIED = (
    r"read-only\S*: (operation not permitted|permission denied)"  # /sys for root, a 0555 folder otherwise
)
ONNX = r"\[kaputt\] ünï\.onnx is not a readable ONNX model"
NO_CV = r"\[damaged fold\] is not a cross-validation folder \(no cv\.json\)"
BAD_RECORD = r"\[damaged cv\.json\]/cv\.json is not a readable cross-validation record file \(JSONDecodeError"
BAD_FOLD = (
    r"\[damaged fold metrics\]/fold01-tiny/metrics\.json is not a readable metrics file \(JSONDecodeError"
)
BAD_SUMMARY = r"\[damaged summary\.json\]/summary\.json is not a readable cross-validation summary file"
UNREADABLE_WAV = r"\[kaputt\] ünï\.wav: unreadable audio \(.*Format not recognised"
# Why each case is refused (a regular expression searched in the error line, case ignored): the
# reason, not only that there is one.
REASONS: dict[str, str] = {
    "extract: missing corpus folder": r"emoDB root .*nicht da \[x\]/ünï\.wav does not exist",
    "extract: empty manifest": r"empty\.csv lacks the column\(s\) path, speaker, label \(header: none\)",
    "extract: text manifest": r"ünï\.csv lacks the column\(s\) path, speaker, label \(header: nur Text, kein Ton",
    "extract: text files named .wav": r"no usable recording: all 2 files were skipped \(first: .*"
    + UNREADABLE_WAV,
    "extract: read-only output": DENIED,
    "extract: output under a file": r"text\.bin/out: not a directory",
    "train: missing features": r"features file .*nicht da \[x\]/ünï\.wav does not exist",
    "train: empty features": r"empty\.h5 is not an HDF5 features file",
    "train: text features": r"\[kaputt\] ünï\.h5 is not an HDF5 features file",
    "train: truncated HDF5": r"truncated\.h5 is not an HDF5 features file",
    "train: --save-label in a missing folder": r"--save-label .*: the folder .*nicht da \[x\] does not exist",
    "train: read-only --out": r"cannot write the run folder .*" + DENIED,
    "train: text --config": r"--config .*\[kaputt\] ünï\.toml is not a readable TOML file",
    "train: damaged --epochs-from": BAD_SUMMARY,
    "cv: damaged cv.json in --out": BAD_RECORD,
    "cv: --summarize a damaged cv.json": BAD_RECORD,
    "cv: --summarize a damaged fold": BAD_FOLD,
    "report: damaged summary.json": BAD_SUMMARY,
    "report: damaged metrics.json": r"\[damaged metrics\.json\]/metrics\.json is not a readable metrics file",
    "report: damaged robustness.json": r"\[damaged robustness\.json\]/robustness\.json is not a readable robustness file",
    "report: missing run": r"nicht da \[x\] holds no .*run",
    "predict: text file named .wav": UNREADABLE_WAV,
    "predict: empty .wav": r"empty\.wav: empty file \(0 bytes\)",
    "predict: missing recording": r"nicht da \[x\]/ünï\.wav: no such file or folder",
    "predict: text checkpoint": r"\[kaputt\] ünï\.pth cannot be loaded safely \(weights_only=True\): UnpicklingError",
    "predict: truncated checkpoint": r"truncated\.pth cannot be loaded safely \(weights_only=True\)",
    "predict: text ONNX": ONNX,
    "predict: damaged cv folder": r"\[damaged fold\] is a folder but not an emovision cv folder \(no cv\.json\)",
    "embed: text ONNX": ONNX,
    "embed: text recording": UNREADABLE_WAV,
    "export: truncated checkpoint": r"truncated\.pth cannot be loaded safely",
    "export: read-only output": DENIED,
    "serve: empty checkpoint": r"empty\.pth cannot be loaded safely",
    "evaluate: text ONNX": ONNX,
    "evaluate: truncated features": r"truncated\.h5 is not an HDF5 features file",
    "fuse: damaged cv.json": BAD_RECORD,
    "ensemble: a folder that is no cv": NO_CV,
    "ensemble: a cv.json of the wrong shape": r"\[damaged summary\.json\]/cv\.json is not a cross-validation record file: it holds a JSON list",
    "robustness: damaged cv.json": BAD_RECORD,
    "robustness: a folder that is no cv": NO_CV,
    "robustness: damaged fold metrics": BAD_FOLD,
    "demo: missing emoDB": r"emoDB root .*nicht da \[x\] does not exist",
}


class _Model:
    """What the cases need of the tiny trained model, plus the emoDB folder."""

    def __init__(self, trained_model, emodb_dir: Path):
        self.checkpoint, self.features = trained_model.checkpoint, trained_model.features
        self.test_wavs, self.emodb_dir = trained_model.test_wavs, emodb_dir


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_exit_2(case, bad, trained_model, emodb_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = CASES[case](bad, _Model(trained_model, emodb_dir))
    code = main(args)
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, f"{case}: exit {code}\n{err[-1500:]}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{case}: {err[-1500:]}"
    assert re.search(REASONS[case], lines[0], re.IGNORECASE), f"{case}: {lines[0]}"
    assert "Traceback" not in err + out
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not written, f"{case} wrote {written}"


def test_every_command_is_in_the_table():
    from emovision.cli import COMMANDS

    covered = {case.split(":")[0] for case in CASES}
    assert covered == set(COMMANDS), set(COMMANDS) - covered
    assert set(REASONS) == set(CASES)


def test_damaged_json_names_the_file(bad, capsys):
    assert main(["report", str(bad["damaged metrics.json"])]) == 2
    err = capsys.readouterr().err
    assert "metrics.json" in err and "[damaged metrics.json]" in err  # brackets printed, not eaten as markup
