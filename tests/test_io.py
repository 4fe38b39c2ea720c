"""Atomic writes: nothing is half-written, a failed write leaves the old contents."""

from __future__ import annotations

import pytest

from neurodiff.io import atomic_dir, atomic_path, atomic_write_json, file_sha256, folder_summary


def test_atomic_path_replaces_on_success_and_keeps_old_on_failure(tmp_path):
    target = tmp_path / "sub" / "out.nii.gz"
    with atomic_path(target) as tmp:
        assert tmp.name.endswith(".tmp.nii.gz") and tmp.parent == target.parent
        tmp.write_text("new")
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["out.nii.gz"]


def test_atomic_dir_swaps_whole_folders(tmp_path):
    target = tmp_path / "synthetic"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("1")
    with pytest.raises(KeyboardInterrupt), atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("2")
        raise KeyboardInterrupt
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    with atomic_dir(target) as tmp:
        (tmp / "c.txt").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["c.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synthetic"]


def test_json_checksum_and_summary(tmp_path):
    path = atomic_write_json(tmp_path / "x.json", {"a": 1})
    assert path.read_text() == '{\n  "a": 1\n}\n'
    # the known digest of the file's bytes (printf '{\n  "a": 1\n}\n' | sha256sum)
    assert file_sha256(path) == "5e36b6560513586ced65eca0e8b025fe88edbcab82ba2cb67a5fcb2d7b202383"
    assert file_sha256(path, chunk=4) == file_sha256(path)  # read in pieces: the same digest
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "v.nii.gz").write_bytes(b"0" * 10)
    text = folder_summary(tmp_path)
    assert text.splitlines()[0].endswith("2 files, 0.0 MB, 1 *.nii.gz")
    assert "d/v.nii.gz" in text and "x.json" in text


def test_atomic_writes_get_the_mode_of_a_plain_open(tmp_path):
    import os
    import stat

    from neurodiff.io import atomic_dir, atomic_path, atomic_write_text

    old = os.umask(0o022)
    try:
        f = atomic_write_text(tmp_path / "a.txt", "x")
        assert stat.S_IMODE(f.stat().st_mode) == 0o644  # not mkstemp's private 0600
        with atomic_path(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"y")
        assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o644
        with atomic_dir(tmp_path / "folder") as d:
            (d / "x").write_text("x")
        assert stat.S_IMODE((tmp_path / "folder").stat().st_mode) == 0o755  # not mkdtemp's 0700
        os.umask(0o077)
        assert stat.S_IMODE(atomic_write_text(tmp_path / "c.txt", "z").stat().st_mode) == 0o600
    finally:
        os.umask(old)
