"""Portability of the machine helpers and options that are checked before any work."""

import os

import pytest

from emovision.cli import main
from emovision.system import available_cores


def test_available_cores_without_sched_getaffinity(monkeypatch):
    if hasattr(os, "sched_getaffinity"):
        assert available_cores() == len(os.sched_getaffinity(0))
        monkeypatch.delattr(os, "sched_getaffinity")
    assert available_cores() == (os.cpu_count() or 1)


@pytest.mark.parametrize(
    "option",
    [
        ["--n-mels", "0"],
        ["--rt60", "0"],
        ["--noise-std", "-0.1"],
        ["--n-fft", "801"],
        ["--segment-hop", "0"],
        ["--augment", "noise", "--augment-snr", "5"],
        ["--augment", "echo"],
        ["--functionals", "GeMAPS"],
    ],
)
def test_bad_extract_options_are_refused_before_any_work(option, emodb_dir, tmp_path, capsys):
    out = tmp_path / "f.h5"
    assert main(["extract", "emodb", str(emodb_dir), "-o", str(out), "--quiet", *option]) == 2
    err = capsys.readouterr().err
    assert option[0] in err or option[-1] in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_an_extraction_with_no_usable_file_fails_and_writes_nothing(tmp_path, capsys):
    root = tmp_path / "corpus"
    (root / "wav").mkdir(parents=True)
    (root / "wav" / "03a01Fa.wav").write_text("not audio")
    (root / "wav" / "08a01Wa.wav").write_bytes(b"")
    out = tmp_path / "out" / "f.h5"
    assert main(["extract", "emodb", str(root), "-o", str(out), "--quiet"]) == 2
    assert "no usable recording" in capsys.readouterr().err
    assert not out.exists() and not out.with_name("f.h5.partial").exists()


def test_errors_about_bracketed_paths_are_printed_whole_on_one_line(tmp_path, capsys):
    missing = tmp_path / "[bold]runs" / ("a-very-long-folder-name-" * 8) / "features.h5"
    assert (
        main(
            ["train", str(missing), "--val-speaker", "1", "--test-speaker", "2", "--out", str(tmp_path / "o")]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert str(missing) in err and len(err.strip().splitlines()) == 1


def test_a_missing_extra_says_which_pip_install_brings_it():
    from emovision.errors import EmovisionError
    from emovision.system import require

    assert require("json", "serve", "x").dumps([]) == "[]"
    with pytest.raises(
        EmovisionError, match=r"emovision serve needs no_such_module: pip install 'emovision\[serve\]'"
    ):
        require("no_such_module.sub", "serve", "emovision serve")


def test_ordered_map_keeps_the_order_with_and_without_a_pool():
    from emovision.system import ordered_map, worker_pool

    items = [-5, 3, -1, 4, -2, 0, 7]
    assert list(ordered_map(None, abs, items, 2)) == [5, 3, 1, 4, 2, 0, 7]
    with worker_pool(2) as pool:
        assert list(ordered_map(pool, abs, items, 1)) == [5, 3, 1, 4, 2, 0, 7]
