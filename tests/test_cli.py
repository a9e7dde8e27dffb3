"""The command line: info output, one-line errors with exit status 2, --debug tracebacks."""

import re
import subprocess
import sys

import pytest

from jaxprobe import JaxprobeError
from jaxprobe.cli import main
from jaxprobe.models.store import save_model
from conftest import tiny_generator


def test_info_lists_layers_shapes_and_counts(tmp_path, capsys):
    g = tiny_generator(widths=(6, 4, 2))
    save_model(g, tmp_path / "g")
    assert main(["info", str(tmp_path / "g")]) == 0
    out = capsys.readouterr().out
    counts = g.param_counts()
    for i, (name, shape) in enumerate(g.layer_shapes().items(), 1):
        line = next(l for l in out.splitlines() if l.split()[:2] == [str(i), name])
        assert re.findall(r"\([^)]*\)", line) == [str(shape), str(g.layer_output_shape(i))]
        assert line.endswith(f"{counts[name]:,}")
    assert f"total parameters: {sum(counts.values()):,}" in out
    assert "range [-1.0, 1.0], gray" in out


@pytest.mark.parametrize("argv, message", [
    (["info", "no_such_model"], "jaxprobe: error: model: 'no_such_model' is neither a shipped model"),
    (["train", "resnet", "--out", "/tmp/x"], "jaxprobe: error: name: no recipe 'resnet'"),
])
def test_errors_are_one_line_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("argv", [["--debug", "info", "no_such_model"], ["info", "no_such_model", "--debug"],
                                  ["convert", "torch", "missing.pth", "--arch", "vgg16", "--out", "x", "--debug"]])
def test_debug_shows_the_exception_before_or_after_the_command(argv):
    with pytest.raises(JaxprobeError):
        main(argv)


def test_help_names_every_command(capsys):
    from jaxprobe.cli import _subparsers, build_parser

    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    text = capsys.readouterr().out.split("positional arguments")[0]
    names = list(_subparsers(parser))
    assert {"demo", "info", "train", "convert", "reproduce", "egbas", "inverse-set"} <= set(names)
    listed = [line.split()[0] for line in text.split("commands:")[1].strip().splitlines()]
    assert listed == names


def test_readme_commands_parse():
    """Every concrete `jaxprobe ...` line of the README (no [optional] or a|b synopsis) parses."""
    import shlex
    from pathlib import Path

    from jaxprobe.cli import build_parser

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text().replace("\\\n", " ")
    lines = [l.strip() for l in readme.splitlines() if l.startswith("    jaxprobe ")]
    concrete = [l for l in lines if not any(c in l for c in "[|]") and "..." not in l]
    assert len(concrete) >= 3, lines
    parser = build_parser()
    for line in concrete:
        parser.parse_args(shlex.split(line.split("#")[0])[1:])  # SystemExit (exit 2) on a bad flag or choice


def test_console_script_exit_status():
    r = subprocess.run([sys.executable, "-m", "jaxprobe", "info", "no_such_model"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "no_such_model" in r.stderr


def test_out_never_replaces_a_users_directory(tmp_path, monkeypatch):
    """demo, convert and train refuse a directory jaxprobe did not write before doing any work, and
    leave every file in it; `--out .` is refused even with --force."""
    from test_io import _victim

    victim = tmp_path / "victim"
    before = _victim(victim)
    g = tiny_generator()
    save_model(g, tmp_path / "g")
    commands = [
        ["demo", "--out", str(victim)],
        ["train", "classifier", "--out", str(tmp_path), "--steps", "1"],  # would write tmp_path/classifier
        ["convert", "torch", str(tmp_path / "none.pth"), "--arch", "vgg16", "--out", str(victim)],
        ["convert", "caffe", "--prototxt", "x", "--caffemodel", "y", "--out", str(victim)],
    ]
    (tmp_path / "classifier").mkdir()
    (tmp_path / "classifier" / "mine.txt").write_text("mine")
    for argv in commands:
        assert main(argv) == 2, argv
    assert sorted(str(p.relative_to(victim)) for p in victim.rglob("*")) == before
    assert (tmp_path / "classifier" / "mine.txt").read_text() == "mine"
    with pytest.raises(JaxprobeError, match="directory: .* jaxprobe did not write"):
        save_model(g, victim)
    monkeypatch.chdir(victim)
    assert main(["demo", "--out", ".", "--force"]) == 2
    assert sorted(str(p.relative_to(victim)) for p in victim.rglob("*")) == before
