"""Issue 26, "Real images as data", for the inverse set: `--images PATH` on `jaxprobe inverse-set`
and `jaxprobe reproduce inverse-set` chooses the reference ranges from real images.

The real images are MNIST-like digits drawn here with Pillow's own font (white on black, 28 x 28),
written as an .npz of uint8 NHWC arrays and as a folder of PNGs. Every range and reference value
a JSON reports is recomputed here from the same pixels by a forward pass of its own: the codes
E(x) = the classifier's fc1 read by `neuron_values`, G(codes), the generator-to-classifier pixel
conversion, the neuron, then numpy's quantiles. A small converted Caffe pair that reads 16 x 16
BGR images with the reference's mean (not MNIST) stands in for a paper-scale classifier.
"""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

import jaxprobe
from jaxprobe.cli import inverse_set as cmd
from jaxprobe.cli import main
from jaxprobe.experiments import inverse_set_repro as repro
from jaxprobe.models.neurons import neuron_values
from jaxprobe.models.pixels import convert_pixels
from test_convert_roundtrip import write_caffemodel

N, K = 2, 2  # tiny: the point is the range, not the sampler (the seeds are the samples)

# A classifier that reads 16 x 16 BGR images in 0..255 less the reference's mean, and a generator
# whose codes are its fc1 (8 units, no prior), so E(x) = fc1 gives the generator's codes.
CLASSIFIER = '''name: "tiny_rgb"
input: "data"
input_shape { dim: 1 dim: 3 dim: 16 dim: 16 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "fc1" type: "InnerProduct" bottom: "conv1" top: "fc1" inner_product_param { num_output: 8 } }
layer { name: "relu2" type: "ReLU" bottom: "fc1" top: "fc1" }
layer { name: "fc2" type: "InnerProduct" bottom: "fc1" top: "fc2" inner_product_param { num_output: 5 } }
'''
GENERATOR = '''name: "tiny_rgb_generator"
input: "z"
input_shape { dim: 1 dim: 8 }
layer { name: "ip1" type: "InnerProduct" bottom: "z" top: "ip1" inner_product_param { num_output: 32 } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2" inner_product_param { num_output: 768 } }
layer { name: "reshape" type: "Reshape" bottom: "ip2" top: "img"
        reshape_param { shape { dim: 1 dim: 3 dim: 16 dim: 16 } } }
'''
PIXELS = ["--channels", "BGR", "--mean", "104,117,123", "--range", "0,255"]


def _digits(count: int = 12) -> np.ndarray:
    """(count, 28, 28) uint8: digits 0-9 in Pillow's default font, white on black, shifted about."""
    font = ImageFont.load_default(size=22)
    out = []
    for i in range(count):
        im = Image.new("L", (28, 28))
        ImageDraw.Draw(im).text((5 + i % 5, i % 3), str(i % 10), fill=255, font=font)
        out.append(np.asarray(im))
    return np.stack(out)


def _run(argv):
    """(exit status, stdout, stderr) of `jaxprobe ARGV` in this process."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def _error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("jaxprobe")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """{"x": (m, 28, 28, 1) canonical digits, "npz", "pngs": the same digits as files}."""
    root = tmp_path_factory.mktemp("images")
    digits = _digits()
    np.savez(root / "digits.npz", images=digits[..., None])
    (root / "pngs").mkdir()
    for i, d in enumerate(digits):
        Image.fromarray(d, "L").save(root / "pngs" / f"{i:03d}.png")
    (root / "pngs" / "README.txt").write_text("not an image: skipped")
    return {"x": digits[..., None].astype(np.float32) / 255.0, "npz": root / "digits.npz", "pngs": root / "pngs",
            "root": root}


@pytest.fixture(scope="module")
def shipped():
    return jaxprobe.load("fc_generator"), jaxprobe.load("classifier")


@pytest.fixture(scope="module")
def rgb_pair(tmp_path_factory):
    """(generator dir, classifier dir): the 16 x 16 BGR pair, converted by `jaxprobe convert caffe`."""
    from jaxprobe.models import caffe_spec

    root = tmp_path_factory.mktemp("rgb")
    rng = np.random.default_rng(0)
    for name, text, extra in (("C", CLASSIFIER, []), ("G", GENERATOR, ["--role", "generator"])):
        (root / f"{name}.prototxt").write_text(text)
        write_caffemodel(root / f"{name}.caffemodel", caffe_spec.parse_prototxt(text), rng)
        code, _, err = _run(["convert", "caffe", "--prototxt", root / f"{name}.prototxt", "--caffemodel",
                             root / f"{name}.caffemodel", "--out", root / name] + PIXELS + extra)
        assert code == 0, err
    return str(root / "G"), str(root / "C")


def _reference_values(gen, clf, x, neuron, code_layer, nonlinear=True):
    """The neuron's values over G(E(x)), E = `code_layer` of the classifier after its ReLU: (m,)."""
    x_in = clf.pixels.from_canonical(jnp.asarray(x))
    units = [f"{code_layer}:{j}" for j in range(gen.input_shape[0])]
    codes = neuron_values(clf, clf.params, x_in, units)
    images = convert_pixels(gen.forward(gen.params, codes), gen.pixels, clf.pixels)
    return np.asarray(neuron_values(clf, clf.params, images, [neuron], nonlinear=nonlinear), np.float64)[:, 0]


def _assert_reference(ref, values, q=(0.75, 0.95)):
    np.testing.assert_allclose(ref["values"], values, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ref["range"], np.quantile(values, q), rtol=1e-4, atol=1e-4)
    assert ref["count"] == len(values) and ref["quantiles"] == list(q)


def test_the_parser_default_quantiles_are_the_reproductions():
    assert cmd.DEFAULT_QUANTILES == repro.CLASS_RANGES["high"]


def test_reproduce_with_an_npz_takes_its_range_from_those_images(data, shipped, tmp_path):
    gen, clf = shipped
    out = tmp_path / "rep"
    code, stdout, err = _run(["reproduce", "inverse-set", "--neuron", "logits:3", "--n", N, "--k", K,
                              "--images", data["npz"], "--out", out])
    assert code == 0, err
    rep = json.loads((out / cmd.REPRO_JSON).read_text())
    values = _reference_values(gen, clf, data["x"], "logits:3", "fc1")
    _assert_reference(rep["reference"], values)
    assert rep["range"] == rep["reference"]["range"] and rep["skipped"] == []
    assert str(data["npz"]) in rep["images"] and f"E(x) for {len(data['x'])} real images" in rep["range_source"]
    assert rep["image_bridge"]["generator_pixels"]["low"] == -1.0 and rep["image_bridge"]["center_crop"] is None
    for r in rep["runs"].values():
        assert r["all_in_range_fresh_forward"] is True and r["n_accepted"] >= 1
    assert "range of logits:3" in stdout


def test_inverse_set_with_a_folder_of_pngs_chooses_each_range_from_them(data, shipped, tmp_path):
    gen, clf = shipped
    out = tmp_path / "inv"
    code, stdout, err = _run(["inverse-set", "--neuron", "logits:3", "--n", N, "--k", K, "--images", data["pngs"],
                              "--out", out])
    assert code == 0, err
    rec = json.loads((out / cmd.OUT_FILE).read_text())
    values = _reference_values(gen, clf, data["x"], "logits:3", "fc1")
    (ref,) = rec["reference"]
    _assert_reference(ref, values)
    assert rec["ranges"] == [ref["range"]] and rec["skipped"] == [] and str(data["pngs"]) in rec["images"]
    # every sample the file holds lies in the chosen range by a forward pass from its code
    fresh = _recompute(gen, clf, rec["codes"], "logits:3")
    assert rec["n_accepted"] >= 1 and np.all((fresh >= ref["range"][0]) & (fresh <= ref["range"][1]))
    assert f"range of logits:3: [{ref['range'][0]:.6g}, {ref['range'][1]:.6g}]" in stdout
    assert (out / cmd.SAMPLES_PNG).is_file() and (out / cmd.HISTOGRAM_PNG).is_file()


def _recompute(gen, clf, codes, neuron):
    codes = jnp.asarray(np.asarray(codes, np.float32).reshape((-1,) + tuple(gen.input_shape)))
    images = convert_pixels(gen.forward(gen.params, codes), gen.pixels, clf.pixels)
    return np.asarray(neuron_values(clf, clf.params, images, [neuron]), np.float64)[:, 0]


def test_the_npz_and_the_pngs_give_one_reference_and_hidden_neurons_use_every_image(data, shipped):
    import jax

    gen, clf = shipped
    refs = [repro.reference_range(jax.random.key(0), gen, clf, "fc1:5", images=p, quantiles=(0.5, 0.9))
            for p in (data["npz"], data["pngs"])]
    np.testing.assert_array_equal(refs[0].values, refs[1].values)
    _assert_reference(repro.reference_record("fc1:5", refs[0], (0.5, 0.9)),
                      _reference_values(gen, clf, data["x"], "fc1:5", "fc1"), q=(0.5, 0.9))


def test_mnist_stays_the_default_for_the_shipped_models(shipped):
    import jax

    gen, clf = shipped
    digits = repro.reference_images(3, 40)
    if digits is None:
        pytest.skip("MNIST is not installed")
    ref = repro.reference_range(jax.random.key(0), gen, clf, "logits:3", count=40)
    assert ref.skipped == [] and "MNIST test digits of class 3" in ref.source
    np.testing.assert_allclose(ref.values, _reference_values(gen, clf, digits, "logits:3", "fc1"), rtol=1e-4,
                               atol=1e-4)
    # a hidden neuron has no class: the digits of every class
    assert "(all classes)" in repro.reference_range(jax.random.key(0), gen, clf, "fc1:5", count=40).source


def _bad_npz(root: Path, name: str, array) -> Path:
    path = root / name
    np.savez(path, images=array)
    return path


@pytest.mark.parametrize("command", ["inverse-set", "reproduce"])
@pytest.mark.parametrize("make, message", [
    (lambda d: _bad_npz(d["root"], "two_channels.npz", np.zeros((3, 28, 28, 2), np.uint8)),
     "--images: expected NHWC images with 1 or 3 channels"),
    (lambda d: _bad_npz(d["root"], "flat.npz", np.zeros((3, 784), np.float32)),
     "--images: expected NHWC images with 1 or 3 channels"),
    (lambda d: _bad_npz(d["root"], "over_one.npz", np.full((3, 28, 28, 1), 2.0, np.float32)),
     "--images: expected floating images in [0, 1]"),
    (lambda d: (d["root"] / "garbage.npz").write_bytes(b"not a zip") and d["root"] / "garbage.npz",
     "is not a readable .npz"),
    (lambda d: (d["root"] / "empty").mkdir(exist_ok=True) or d["root"] / "empty", "--images: found no readable image"),
    (lambda d: d["root"] / "missing", "--images: cannot read path"),
    (lambda d: d["root"] / "pngs" / "README.txt", "--images: expected a folder of image files or an .npz"),
])
def test_unreadable_or_misshapen_images_are_one_line_and_nothing_is_written(data, tmp_path, command, make,
                                                                           message):
    path = make(data)
    argv = (["inverse-set", "--neuron", "logits:3"] if command == "inverse-set"
            else ["reproduce", "inverse-set"])
    code, _, err = _run(argv + ["--n", N, "--k", K, "--images", path, "--out", tmp_path / "sub" / "out"])
    assert code == 2 and message in _error_line(err), err
    assert not (tmp_path / "sub").exists()


@pytest.mark.parametrize("argv", [
    ["inverse-set", "--neuron", "logits:3", "--range", "0", "1"],
    ["reproduce", "inverse-set", "--range", "0", "1"],
])
def test_images_with_a_given_range_are_refused(data, tmp_path, argv):
    code, _, err = _run(argv + ["--images", data["npz"], "--out", tmp_path / "out"])
    assert code == 2 and "--images: real images choose the range" in _error_line(err), err
    assert not (tmp_path / "out").exists()


def test_ranges_for_some_neurons_only_or_bad_quantiles_are_refused(tmp_path):
    code, _, err = _run(["inverse-set", "--neuron", "logits:3", "--neuron", "logits:4", "--range", "0", "1",
                         "--out", tmp_path / "a"])
    assert code == 2 and "one --range Z1 Z2 per --neuron" in _error_line(err)
    code, _, err = _run(["inverse-set", "--neuron", "logits:3", "--quantiles", "0.9", "0.5", "--out", tmp_path / "b"])
    assert code == 2 and "--quantiles: expected 0 <= Q1 < Q2 <= 1" in _error_line(err), err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_non_mnist_classifier_without_images_runs_and_says_what_it_skipped(rgb_pair, tmp_path):
    gen_dir, clf_dir = rgb_pair
    out = tmp_path / "rep"
    code, stdout, err = _run(["reproduce", "inverse-set", "--generator", gen_dir, "--classifier", clf_dir,
                              "--neuron", "fc2:1", "--n", N, "--k", K, "--out", out])
    assert code == 0, err
    rep = json.loads((out / cmd.REPRO_JSON).read_text())
    (skip,) = rep["skipped"]
    assert skip["comparison"] == "real_image_range"
    assert "(16, 16, 3) images, not MNIST digits" in skip["reason"] and "--images" in skip["reason"]
    assert "uniform random images" in skip["reason"] and rep["images"] is None
    assert rep["reference"]["count"] == 500 and set(rep["runs"]) == {"eq5", "eq13", "eq14"}
    assert (out / cmd.REPRO_MD).is_file() and f"skipped real_image_range: {skip['reason']}" in stdout
    assert "Skipped real_image_range" in (out / cmd.REPRO_MD).read_text()


def test_a_non_mnist_classifier_reads_colour_images_through_its_pixel_convention(rgb_pair, data):
    """RGB PNGs of 20 x 24 are resized and centre-cropped to 16 x 16 and brought to the classifier's
    BGR 0..255 less the mean; the range is recomputed here from the cropped pixels."""
    import jax

    gen, clf = (jaxprobe.load(d) for d in rgb_pair)
    assert clf.pixels.channels == "BGR" and clf.pixels.mean == (104.0, 117.0, 123.0)
    rng = np.random.default_rng(1)
    folder = data["root"] / "rgb"
    folder.mkdir()
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8), "RGB").save(folder / f"{i}.png")
    ref = repro.reference_range(jax.random.key(0), gen, clf, "fc2:1", images=folder, quantiles=(0.25, 0.75))
    crops = []
    for i in range(10):  # shorter side 20 -> 16: 16 x 19 (bilinear), then the centre 16 x 16
        im = Image.open(folder / f"{i}.png").resize((19, 16), Image.Resampling.BILINEAR)
        crops.append(np.asarray(im.crop((1, 0, 17, 16)), np.float32) / 255.0)
    values = _reference_values(gen, clf, np.stack(crops), "fc2:1", "fc1")
    _assert_reference(repro.reference_record("fc2:1", ref, (0.25, 0.75)), values, q=(0.25, 0.75))
    assert ref.skipped == [] and f"E(x) for 10 real images from {folder}" in ref.source
