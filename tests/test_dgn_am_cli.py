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
    (["--neuron", "logits:1", "--bounds", "nowhere.txt"], "--bounds: expected 'real', 'none' or a file"),
])
def test_bad_input_names_the_flag(tmp_path, capsys, argv, message):
    assert main(["dgn-am", *argv, "--out", str(tmp_path / "x")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def small_classifier(tmp_path_factory):
    """A classifier that is not MNIST's: 24 x 24 grey input (fc_generator's 28 x 28 centre-cropped)."""
    from flax import nnx

    from jaxprobe.models import zoo
    from jaxprobe.models.layers import Act, Flatten, Layer, Network
    from jaxprobe.models.pixels import PixelConvention
    from jaxprobe.models.probe import Model

    def small24(*, rngs):
        return Network([Layer(nnx.Conv(1, 4, (3, 3), rngs=rngs), Act("relu"), (Flatten(),)),
                        Layer(nnx.Linear(24 * 24 * 4, 5, rngs=rngs), Act("identity"))], ["conv", "out"])

    zoo.register("test_small24", small24)
    px = PixelConvention(0.0, 1.0, "gray")
    manifest = {"architecture": {"builder": "test_small24", "kwargs": {}}, "role": "classifier",
                "pixels": px.to_dict(), "input_shape": [24, 24, 1]}
    model = Model.from_module("small24", small24(rngs=nnx.Rngs(0)), (24, 24, 1), "classifier", px, manifest)
    return jaxprobe.save_model(model, tmp_path_factory.mktemp("small") / "small24")


def test_non_mnist_classifier_runs_without_images_and_says_what_it_skipped(tmp_path, capsys, small_classifier):
    out = tmp_path / "run"
    assert main(["dgn-am", "--classifier", str(small_classifier), "--neuron", "out:1", "--neuron", "out:4",
                 "--steps", "6", "--out", str(out)]) == 0
    record = json.loads((out / "dgn_am.json").read_text())
    # the bounds come from fc_generator's encoder (the shipped MNIST classifier), the target is not MNIST's
    assert record["bounds"] == "real" and [r["real_mean"] for r in record["neurons"]] == [None, None]
    assert record["skipped"][0]["comparison"] == "real_mean" and "(24, 24, 1)" in record["skipped"][0]["reason"]
    text = capsys.readouterr().out
    assert "skipped real_mean" in text
    for name in record["files"]:  # every file written is listed, in the JSON and in the output
        assert (out / name).is_file() and f"wrote {out.resolve() / name}" in text
    assert set(record["files"]) == {p.name for p in out.iterdir() if not p.name.startswith(".")}
    # the steps' own time, compilation apart
    assert 0 < record["seconds_per_step"] < record["wall_s"] / 6 and record["compile_s"] >= 0
    assert record["load_s"] > 0


def test_images_and_a_bound_file(tmp_path, small_classifier):
    """--images (an .npz): the real mean is each neuron's mean over them, read before any
    nonlinearity; --bounds FILE: the reference's upper bounds, lower 0, the codes inside them."""
    c = jaxprobe.load(str(small_classifier))
    x = np.random.default_rng(0).uniform(size=(7, 24, 24, 1)).astype(np.float32)
    np.savez(tmp_path / "real.npz", images=x)
    bound = np.linspace(0.5, 2.0, 128)
    (tmp_path / "fc.txt").write_text(" ".join(repr(float(v)) for v in bound) + " \n")
    out = tmp_path / "run"
    assert main(["dgn-am", "--classifier", str(small_classifier), "--neuron", "out:2", "--steps", "5",
                 "--images", str(tmp_path / "real.npz"), "--bounds", str(tmp_path / "fc.txt"),
                 "--out", str(out)]) == 0
    record = json.loads((out / "dgn_am.json").read_text())
    logits = np.asarray(c.forward(c.params, jnp.asarray(x)))
    np.testing.assert_allclose(record["neurons"][0]["real_mean"], logits[:, 2].mean(), rtol=1e-5)
    saved = np.load(out / "codes.npz")
    np.testing.assert_allclose(saved["upper"], bound, rtol=1e-6)
    np.testing.assert_array_equal(saved["lower"], 0.0)
    assert np.all(saved["codes"] <= saved["upper"] + 1e-6) and np.all(saved["codes"] >= 0)
    (tmp_path / "short.txt").write_text("1 2 3")
    assert main(["dgn-am", "--neuron", "logits:1", "--steps", "2", "--bounds", str(tmp_path / "short.txt"),
                 "--out", str(tmp_path / "y")]) == 2
    (tmp_path / "big.txt").write_text(" ".join(["1e39"] * 128))
    assert main(["dgn-am", "--neuron", "logits:1", "--steps", "2", "--bounds", str(tmp_path / "big.txt"),
                 "--out", str(tmp_path / "z")]) == 2
