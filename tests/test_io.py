"""Atomic writes: whole or nothing, with the permissions a plain write would give."""

import hashlib
import os
import stat

import pytest

from jaxprobe.io import atomic_dir, atomic_file, sha256_file, write_text


def test_write_text_replaces_whole_and_respects_umask(tmp_path):
    old = os.umask(0o022)
    try:
        p = write_text(tmp_path / "sub" / "a.json", "first")
        write_text(p, "second")
        assert p.read_text() == "second"
        assert stat.S_IMODE(p.stat().st_mode) == 0o644
        assert [q.name for q in p.parent.iterdir()] == ["a.json"]  # no temporary left behind
    finally:
        os.umask(old)


def test_atomic_dir_replaces_on_success_and_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    old = os.umask(0o022)
    try:
        with atomic_dir(target) as tmp:
            (tmp / "new.txt").write_text("new")
            assert not (target / "new.txt").exists()  # not visible until complete
    finally:
        os.umask(old)
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_sha256_file_matches_hashlib(tmp_path):
    data = os.urandom(3 * (1 << 20) + 17)  # spans several read blocks
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_atomic_file_keeps_suffix_and_cleans_up_on_error(tmp_path):
    target = tmp_path / "fig.png"
    with atomic_file(target, suffix=".png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path
        tmp.write_bytes(b"png")
    assert target.read_bytes() == b"png"
    with pytest.raises(ValueError):
        with atomic_file(target) as tmp:
            tmp.write_bytes(b"half")
            raise ValueError("draw failed")
    assert target.read_bytes() == b"png" and sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]
