"""`jaxprobe excite`: the files it writes, its flags and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import jaxprobe.cli
from jaxprobe.cli import main


@pytest.fixture(autouse=True)
def _excite_command(monkeypatch):
    if "excite" not in jaxprobe.cli.MODULES:  # until the lead registers it
        monkeypatch.setattr(jaxprobe.cli, "MODULES", jaxprobe.cli.MODULES + ("excite",))


def test_excite_command(tmp_path, capsys):
    out = tmp_path / "run"
    # Two targets read the same way (filter means): one compiled program; the compound and class
    # targets are the library's tests' (tests/test_excite.py).
    rc = main(["excite", "--target", "conv2:5", "--target", "conv2:7", "--pretrained", "--steps", "4",
               "--seed", "3", "--lambda", "0.5", "--out", str(out)])
    assert rc == 0
    record = json.loads((out / "excite.json").read_text())
    assert record["seed"] == 3 and record["lambda"] == 0.5 and record["steps"] == 4
    assert record["variant"] == "pretrained"
    assert [t["target"] for t in record["targets"]] == ["conv2:5", "conv2:7"]
    for t in record["targets"]:
        assert len(t["final_activations"]) == 10 and len(t["loss"]) == 4
        assert np.all(np.asarray(t["final_activations"]) >= 0)  # ReLU in place of the output
    assert all(len(t["target_activations"]) == 64 for t in record["targets"])  # every conv2 filter's mean
    for name in ("excite_images.png", "excite_loss.png", "images.npz"):
        assert (out / name).stat().st_size > 0
    text = capsys.readouterr().out
    assert set(record["files"]) == {p.name for p in out.iterdir() if not p.name.startswith(".")}
    for name in record["files"]:
        assert f"wrote {out.resolve() / name}" in text
    # the steps' own time (chunks after the first), compilation and loading apart
    assert 0 < record["seconds_per_step"] < record["wall_s"] / 4
    assert record["compile_s"] >= 0 and record["load_s"] > 0


@pytest.mark.parametrize("argv, message", [
    (["--target", "logits:11"], "--target 'logits:11'"),
    (["--target", "logits:3", "--lambda", "-1"], "--lambda: expected a non-negative weight"),
    (["--target", "logits:3", "--steps", "0"], "--steps: expected an integer >= 1"),
    (["--target", "logits:3", "--lambda", "1e39"], "--lambda: expected a non-negative weight"),  # inf in float32
    (["--target", "logits:3", "--lambda", "nan"], "--lambda: expected a non-negative weight"),
])
def test_excite_errors(tmp_path, capsys, argv, message):
    rc = main(["excite", *argv, "--out", str(tmp_path / "x")])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_parser_defaults_match_the_library():
    from jaxprobe.cli import excite as cli_excite
    from jaxprobe.codespace import excite as ex

    assert cli_excite.DEFAULT_LAMBDA == ex.DEFAULT_LAMBDA and cli_excite.DEFAULT_STEPS == ex.DEFAULT_STEPS
