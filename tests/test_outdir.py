"""Output directories: replaced only when they hold exactly what jaxprobe wrote, never holding the
command's inputs, never through a link, atomically, with leftovers of killed writers cleaned or
recovered, one writer at a time, and every path error in one line."""

import json
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from jaxprobe.errors import JaxprobeError
from jaxprobe import io
from jaxprobe.io import MARKER, atomic_dir, check_replaceable


def _write(target, files=None, **kw):
    files = {"result.json": "{}", "sub/image.png": "png"} if files is None else files
    with atomic_dir(target, **kw) as tmp:
        for name, text in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text)
    return target


def _tree(root):
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def test_marker_lists_every_file_with_its_sha256(tmp_path):
    import hashlib

    out = _write(tmp_path / "out")
    record = json.loads((out / MARKER).read_text())
    assert record["files"] == {name: hashlib.sha256((out / name).read_bytes()).hexdigest()
                               for name in ("result.json", "sub/image.png")}
    assert record["dirs"] == ["sub"]
    _write(out, {"new.txt": "new"})  # unchanged: replaced without force
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "new.txt"]
    assert sorted(os.listdir(tmp_path)) == ["out"]


@pytest.mark.parametrize("change, why", [
    (lambda d: (d / "NOTES.txt").write_text("mine"), r"files were added since jaxprobe wrote it: NOTES\.txt"),
    (lambda d: (d / "sub" / "extra").mkdir(), r"added.*sub/extra"),
    (lambda d: (d / "result.json").unlink(), r"files jaxprobe wrote were removed: result\.json"),
    (lambda d: (d / "sub" / "image.png").write_text("edited"), r"were changed: sub/image\.png"),
    (lambda d: (d / MARKER).write_text(""), "marker is empty or not one jaxprobe writes"),
    (lambda d: (d / MARKER).write_text("{garbled"), "marker is empty or not one jaxprobe writes"),
    (lambda d: (d / MARKER).write_text("written by jaxprobe; jaxprobe may replace this directory whole\n"),
     "marker is empty or not one jaxprobe writes"),  # an older jaxprobe's marker lists nothing
    (lambda d: ((d / MARKER).unlink(), (d / MARKER).symlink_to(d / "result.json")), "marker is not a file"),
    (lambda d: (d / "link").symlink_to("/etc/passwd"), r"added.*link"),
])
def test_changed_directory_needs_force(tmp_path, change, why):
    out = _write(tmp_path / "out")
    change(out)
    before = _tree(out)
    with pytest.raises(JaxprobeError, match=rf"^--out: .* did not write, or changed since \(.*{why}.*"
                                            r"replace it whole with --force$") as info:
        _write(out, {"new.txt": "x"}, name="--out")
    assert "force=True" not in str(info.value) and "\n" not in str(info.value)
    assert _tree(out) == before and sorted(os.listdir(tmp_path)) == ["out"]
    _write(out, {"new.txt": "x"}, force=True)
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "new.txt"]


def test_only_an_empty_marker_is_not_jaxprobes(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / MARKER).write_text("")
    with pytest.raises(JaxprobeError, match="marker is empty"):
        check_replaceable(tmp_path / "d")


def test_input_inside_out_is_refused(tmp_path):
    out = _write(tmp_path / "marked", {"my.caffemodel": "weights"})
    for inp in (out / "my.caffemodel", out, tmp_path / "marked" / "sub" / ".." / "my.caffemodel"):
        with pytest.raises(JaxprobeError, match=r"^out: .*marked holds .*, which this command reads"):
            _write(out, inputs=[inp], force=True)
    assert (out / "my.caffemodel").read_text() == "weights"
    # through a link into --out, too
    (tmp_path / "alias").symlink_to(out / "my.caffemodel")
    with pytest.raises(JaxprobeError, match="which this command reads"):
        check_replaceable(out, inputs=[tmp_path / "alias"], force=True)
    check_replaceable(out, inputs=[tmp_path / "elsewhere"])  # outside: fine


def test_convert_never_deletes_the_file_it_reads(tmp_path):
    """The issue's case: `convert caffe --caffemodel marked/my.caffemodel --out marked`, with
    inputs that convert fine elsewhere."""
    import numpy as np

    from jaxprobe.cli import main
    from jaxprobe.models import caffe_spec
    from test_convert_roundtrip import write_caffemodel
    from test_convert_security import GENERATED_LENET

    out = _write(tmp_path / "marked", {"net.prototxt": GENERATED_LENET})
    write_caffemodel(tmp_path / "my.caffemodel", caffe_spec.parse_prototxt(GENERATED_LENET), np.random.default_rng(0))
    with atomic_dir(out) as tmp:  # both inputs in a directory jaxprobe wrote, unchanged since
        (tmp / "net.prototxt").write_text(GENERATED_LENET)
        os.rename(tmp_path / "my.caffemodel", tmp / "my.caffemodel")
    before = _tree(out)
    argv = ["convert", "caffe", "--prototxt", str(out / "net.prototxt"), "--caffemodel", str(out / "my.caffemodel")]
    for force in ([], ["--force"]):
        assert main(argv + ["--out", str(out)] + force) == 2
    assert _tree(out) == before
    assert main(argv + ["--out", str(tmp_path / "elsewhere")]) == 0  # the same inputs convert


def test_force_never_follows_a_link(tmp_path):
    real = _write(tmp_path / "real")
    (tmp_path / "link").symlink_to(real)
    before = _tree(real)
    for force in (False, True):
        with pytest.raises(JaxprobeError, match=r"link is a symbolic link; jaxprobe never replaces a link"):
            _write(tmp_path / "link", {"x": "x"}, force=force)
    assert _tree(real) == before and (tmp_path / "link").is_symlink()
    _write(tmp_path / "link" / "inner", {"x": "x"})  # a link above the target is only a path
    assert (real / "inner" / "x").read_text() == "x"


def test_path_errors_are_one_line(tmp_path):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    cases = [tmp_path / "afile" / "sub", tmp_path / ("n" * 300), tmp_path / "loop" / "sub", tmp_path / "loop",
             "/proc/newdir", str(tmp_path / "nul\x00byte")]
    for target in cases:
        with pytest.raises(JaxprobeError, match=r"^out: ") as info:
            _write(target)
        assert "\n" not in str(info.value)
    assert sorted(os.listdir(tmp_path)) == ["afile", "loop"]


def test_replacement_is_one_exchange_and_leftovers_are_cleaned(tmp_path, monkeypatch):
    out = _write(tmp_path / "out", {"a": "old"})
    # killed right after the swap: the new result is in place; the old copy waits under the temp name
    real_rmtree = io.shutil.rmtree

    def killed(path, *a, **kw):
        raise SystemExit("killed")

    monkeypatch.setattr(io.shutil, "rmtree", killed)
    with pytest.raises(SystemExit):
        _write(out, {"a": "new"})
    monkeypatch.setattr(io.shutil, "rmtree", real_rmtree)
    assert (out / "a").read_text() == "new"
    leftovers = [n for n in os.listdir(tmp_path) if n != "out"]
    assert leftovers and all(n.startswith((".out.tmp-", ".out.lock")) for n in leftovers)
    _write(out, {"a": "newer"})  # the next run cleans up
    assert sorted(os.listdir(tmp_path)) == ["out"]


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_leftovers_of_dead_writers_are_removed_live_ones_kept(tmp_path):
    out = _write(tmp_path / "out", {"a": "good"})
    dead, live = _dead_pid(), os.getppid()
    for name in (f".out.tmp-{dead}-abcd", f".out.old-{dead}-ef01", ".out.tmp-xyz_a1b2", f".out.tmp-{live}-9999"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "big.bin").write_bytes(b"x" * 1000)
    _write(out, {"a": "next"})
    assert sorted(os.listdir(tmp_path)) == [f".out.tmp-{live}-9999", "out"]  # another process's, maybe working


def test_interrupted_journal_swap_is_completed_or_rolled_back(tmp_path):
    dead = _dead_pid()
    # killed between the two renames of the fallback: --out missing, old and new beside it
    for new_exists, expect in ((True, "new"), (False, "old")):
        root = tmp_path / expect
        root.mkdir()
        new, old = root / f".out.tmp-{dead}-1111", root / f".out.old-{dead}-2222"
        for d, text in ((new, "new"), (old, "old")):
            if d is new and not new_exists:
                continue
            _write(root / "stage", {"a": text})
            os.rename(root / "stage", d)
        (root / ".out.journal").write_text(json.dumps({"new": new.name, "old": old.name}))
        with pytest.raises(RuntimeError):  # the next run, even one that fails, recovers first
            with atomic_dir(root / "out"):
                raise RuntimeError("fails")
        assert (root / "out" / "a").read_text() == expect
        assert sorted(os.listdir(root)) == ["out"]


def test_older_jaxprobes_hidden_copy_is_recovered(tmp_path):
    """An older jaxprobe killed between its renames left only `.NAME.old-PID`."""
    _write(tmp_path / "stage", {"a": "precious"})
    os.rename(tmp_path / "stage", tmp_path / f".out.old-{_dead_pid()}")
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "out"):
            raise RuntimeError("fails")
    assert (tmp_path / "out" / "a").read_text() == "precious"


def test_fallback_without_exchange_is_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(io, "_rename2", lambda src, dst, flags: False)
    out = _write(tmp_path / "out", {"a": "1"})
    _write(out, {"a": "2"})
    assert (out / "a").read_text() == "2" and sorted(os.listdir(tmp_path)) == ["out"]
    # an error between the two renames puts the old directory back at once
    real_rename, calls = os.rename, []

    def second_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real_rename(src, dst)

    monkeypatch.setattr(io.os, "rename", second_fails)
    with pytest.raises(KeyboardInterrupt):
        _write(out, {"a": "3"})
    monkeypatch.setattr(io.os, "rename", real_rename)
    assert (out / "a").read_text() == "2" and sorted(os.listdir(tmp_path)) == ["out"]


def test_two_writers_one_wins_the_other_says_so(tmp_path):
    out = tmp_path / "out"
    inside, release = threading.Event(), threading.Event()

    def first():
        with atomic_dir(out, name="--out") as tmp:
            (tmp / "a").write_text("first")
            inside.set()
            release.wait(10)

    t = threading.Thread(target=first)
    t.start()
    assert inside.wait(10)
    with pytest.raises(JaxprobeError, match=r"^--out: another jaxprobe process is writing .*out now"):
        _write(out, {"a": "second"}, name="--out")
    release.set()
    t.join()
    assert (out / "a").read_text() == "first" and sorted(os.listdir(tmp_path)) == ["out"]


CONCURRENT = textwrap.dedent("""
    import sys, time
    from jaxprobe.errors import JaxprobeError
    from jaxprobe.io import atomic_dir
    try:
        with atomic_dir(sys.argv[1], name="--out") as tmp:
            (tmp / "who").write_text(sys.argv[2])
            time.sleep(1.0)
    except JaxprobeError as e:
        print(e)
        sys.exit(2)
""")


def test_two_processes_one_wins(tmp_path):
    out = tmp_path / "out"
    ps = [subprocess.Popen([sys.executable, "-c", CONCURRENT, str(out), str(i)], stdout=subprocess.PIPE, text=True)
          for i in range(2)]
    results = [(p.wait(60), p.stdout.read()) for p in ps]
    assert sorted(r for r, _ in results) == [0, 2], results
    loser = next(o for r, o in results if r == 2)
    assert loser.count("\n") == 1 and "another jaxprobe process is writing" in loser
    winner = str(next(i for i, (r, _) in enumerate(results) if r == 0))
    assert (out / "who").read_text() == winner and sorted(os.listdir(tmp_path)) == ["out"]
