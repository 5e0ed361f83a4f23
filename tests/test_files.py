"""Atomic writes: a failed write leaves the old file whole and no temporary file behind."""

import pytest

from emovision.files import atomic_write, atomic_write_bytes


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "deep" / "state.json"
    atomic_write_bytes(target, b"old")

    def fail(temp):
        temp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"


def test_written_files_get_the_usual_permissions(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        path = atomic_write_bytes(tmp_path / "summary.json", b"{}")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644
