"""`jaxprobe dgn-am` on the shipped models: its files, its JSON against a fresh recomputation from the
saved codes, and bad input naming the flag."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

import jaxprobe
from jaxprobe.cli import main
from jaxprobe.experiments.inverse_set_repro import reference_images
from json_checks import natural_json


def test_dgn_am_writes_images_codes_and_activations(tmp_path):
    out = tmp_path / "run"
    assert main(["dgn-am", "--neuron", "logits:3", "--neuron", "logits:7", "--steps", "30", "--out", str(out)]) == 0
    record = json.loads((out / "dgn_am.json").read_text())
    assert {"steps", "seed", "predicted"} <= set(natural_json(record)["counts"])  # ints, not floats
    assert [r["neuron"] for r in record["neurons"]] == ["logits:3", "logits:7"]
    for png in ("dgn_am_logits_3.png", "dgn_am_logits_7.png"):
        assert (out / png).stat().st_size > 500
    g, c = jaxprobe.load("fc_generator"), jaxprobe.load("classifier")
    saved = np.load(out / "codes.npz")
    assert np.all(saved["codes"] <= saved["upper"]) and np.all(saved["codes"] >= saved["lower"])
    for key, field in (("codes", "final_activation"), ("best_codes", "best_activation")):
        images = jaxprobe.convert_pixels(g.forward(g.params, jnp.asarray(saved[key])), g.pixels, c.pixels)
        logits = np.asarray(c.forward(c.params, images))
        np.testing.assert_allclose([r[field] for r in record["neurons"]], logits[[0, 1], [3, 7]], rtol=1e-4, atol=1e-3)
    for r, unit in zip(record["neurons"], (3, 7)):
        real = np.asarray(c.forward(c.params, c.pixels.from_canonical(jnp.asarray(reference_images(unit, 500)))))
        np.testing.assert_allclose(r["real_mean"], real[:, unit].mean(), rtol=1e-4)
        assert r["best_activation"] >= r["final_activation"] - 1e-4


@pytest.mark.parametrize("argv, message", [
    (["--neuron", "logits:12"], "--neuron: neuron 'logits:12'"),
    (["--neuron", "nope:1"], "--neuron: neuron 'nope:1'"),
    (["--neuron", "logits:1", "--steps", "0"], "--steps: expected an integer >= 1"),
    ([], "--neuron: expected at least one"),
])
def test_bad_input_names_the_flag(tmp_path, capsys, argv, message):
    assert main(["dgn-am", *argv, "--out", str(tmp_path / "x")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
