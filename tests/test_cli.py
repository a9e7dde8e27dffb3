"""The command line: info output, one-line errors with exit status 2, --debug tracebacks."""

import json
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
    assert {"demo", "info", "train", "convert", "reproduce", "egbas", "inverse-set", "dgn-am", "ppgn"} <= set(names)
    listed = [line.split()[0] for line in text.split("commands:")[1].strip().splitlines()]
    assert listed == names


def test_help_and_parse_errors_do_not_import_jax():
    """`jaxprobe --help`, a command's --help and a parse error build every parser without importing
    JAX (in a fresh interpreter: this one has JAX already); the help names every command."""
    script = """
import contextlib, io, json, sys
from jaxprobe.cli import main
for argv in (["--help"], ["inverse-set", "--help"], ["reproduce", "egbas", "--help"], ["no-such-command"]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as e:
            code = e.code
    jax = sorted(m for m in sys.modules if m.split(".")[0] in ("jax", "jaxlib", "flax"))
    print(json.dumps({"argv": argv, "code": code, "out": out.getvalue(), "err": err.getvalue(), "jax": jax}))
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    runs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(x["argv"][0], x["code"], x["jax"]) for x in runs] == [
        ("--help", 0, []), ("inverse-set", 0, []), ("reproduce", 0, []), ("no-such-command", 2, [])]
    listed = runs[0]["out"].split("commands:")[1].split("positional arguments")[0]
    assert {line.split()[0] for line in listed.strip().splitlines()} >= {
        "demo", "info", "train", "convert", "reproduce", "egbas", "inverse-set", "dgn-am", "ppgn"}
    assert "--repel" in runs[1]["out"] and "invalid choice: 'no-such-command'" in runs[3]["err"]


def test_parser_choices_are_the_librarys():
    """The parsers' copies of the library's choices and defaults (kept so that --help needs no JAX)."""
    from jaxprobe.cli import dgn_am, egbas, inverse_set, ppgn
    from jaxprobe.experiments import codespace, egbas_tables
    from jaxprobe.experiments import ppgn as ppgn_experiments
    from jaxprobe.inverse_sets import inverse_set as inverse_set_lib

    assert egbas.REPRO_DEFAULTS == egbas_tables.REPRO_DEFAULTS
    assert inverse_set.REPEL == inverse_set_lib.REPEL
    assert dgn_am.BOUNDS == codespace.BOUNDS and ppgn.PRIORS == ppgn_experiments.PRIORS
    from jaxprobe.cli import build_parser
    from jaxprobe.train.recipes import RECIPES

    train_help = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert all(name in train_help for name in RECIPES), train_help  # every trainable name is listed


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


def test_the_json_check_catches_float_counts_and_numeric_stop_reasons():
    """`json_checks.natural_json`, which the command tests run on every command's JSON, fails on
    what the issue names (a stop reason 2, a count 20.0) and passes the same record written well."""
    from json_checks import natural_json

    good = {"stop_reason": "capacity full", "n_accepted": 20, "steps": {"sampling_steps": 3},
            "per_query": {"stop_reason": [["complete", "stalled"]], "n_samples": [[1, 2]]}, "layer": "fc1"}
    seen = natural_json(good)
    assert sorted(seen["reasons"]) == ["per_query.stop_reason", "stop_reason"]
    assert sorted(seen["counts"]) == ["n_accepted", "per_query.n_samples", "steps.sampling_steps"]
    for bad in ({**good, "stop_reason": 2}, {**good, "stop_reason": "2"}, {**good, "n_accepted": 20.0},
                {**good, "per_query": {"stop_reason": [["complete", 1]], "n_samples": [[1, 2]]}},
                {**good, "steps": {"sampling_steps": True}}):
        with pytest.raises(AssertionError):
            natural_json(bad)
