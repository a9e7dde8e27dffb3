"""Atomic writes: whole or nothing, with the permissions a plain write would give."""

import hashlib
import os
import stat

import pytest

from jaxprobe.errors import JaxprobeError
from jaxprobe.io import MARKER, atomic_dir, atomic_file, check_replaceable, sha256_file, write_text


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
    with atomic_dir(target) as tmp:  # an earlier output of jaxprobe's
        (tmp / "old.txt").write_text("old")
    old = os.umask(0o022)
    try:
        with atomic_dir(target) as tmp:
            (tmp / "new.txt").write_text("new")
            assert not (target / "new.txt").exists()  # not visible until complete
    finally:
        os.umask(old)
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "new.txt"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "new.txt"]
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


def _victim(root):
    """A user's directory: files jaxprobe did not write, one in a subdirectory."""
    root.mkdir()
    (root / "thesis.txt").write_text("years of work")
    (root / "sub").mkdir()
    (root / "sub" / "data.csv").write_text("1,2,3")
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_atomic_dir_never_replaces_a_users_directory_without_force(tmp_path):
    victim = tmp_path / "victim"
    before = _victim(victim)
    with pytest.raises(JaxprobeError, match=r"^out: .*victim is a non-empty directory that jaxprobe did not write"):
        with atomic_dir(victim) as tmp:
            (tmp / "result.json").write_text("{}")
    assert sorted(str(p.relative_to(victim)) for p in victim.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim"]  # no temporary left behind
    with pytest.raises(JaxprobeError, match="^--out: "):
        check_replaceable(victim, name="--out")
    # missing and empty directories are fine; so is a file's parent that does not exist yet
    assert check_replaceable(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    assert check_replaceable(tmp_path / "empty") == tmp_path / "empty"
    (tmp_path / "file").write_text("x")
    with pytest.raises(JaxprobeError, match="exists and is not a directory"):
        check_replaceable(tmp_path / "file")


def test_force_replaces_a_users_directory_but_never_cwd_its_parents_or_home(tmp_path, monkeypatch):
    victim = tmp_path / "victim"
    _victim(victim)
    with atomic_dir(victim, force=True) as tmp:
        (tmp / "result.json").write_text("{}")
    assert sorted(p.name for p in victim.iterdir()) == [MARKER, "result.json"]
    work, home = tmp_path / "work" / "deep", tmp_path / "home" / "me"
    work.mkdir(parents=True)
    home.mkdir(parents=True)
    (work / "notes.txt").write_text("keep")
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(home))
    for target, why in ((".", "it is the working directory"), (work.parent, "it contains the working directory"),
                        (home, "it is the home directory"), ("~", "it is the home directory"),
                        (home.parent, "it contains the home directory")):
        for force in (False, True):
            with pytest.raises(JaxprobeError, match=why):
                check_replaceable(target, force=force)
    with atomic_dir(work / "out", force=True) as tmp:  # below the working directory: fine
        (tmp / "a").write_text("a")
    assert (work / "notes.txt").read_text() == "keep"
