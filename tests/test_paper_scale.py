"""Paper scale from the command line: the DGN-AM reference's own deploy definitions (DeePSim fc6
generator, CaffeNet) at reduced widths with the real layer structure (`paper_nets`), converted by
`jaxprobe convert caffe --prototxt` with the reference's pixel convention, then every method run
on them from the command line; each JSON's activations checked by an independent forward pass of
the saved codes (OpenCV's Caffe importer on the same files). The full-size networks are checked by
`jax.eval_shape`."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from contextlib import redirect_stderr

import jax
import numpy as np
import pytest

import jaxprobe
from jaxprobe.cli import main
from paper_nets import FACTOR, PAPER, PIXELS, write_random_caffemodels

pytestmark = pytest.mark.skipif(not PAPER.is_dir(), reason=f"paper fixtures not found at {PAPER} "
                                "(they live in ../shared/fixtures/paper)")


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """{"root", "G", "C", "files"}: the two networks converted into model directories."""
    root = tmp_path_factory.mktemp("paper")
    files = write_random_caffemodels(root)
    p, w = files["caffenet"]
    assert main(["convert", "caffe", "--prototxt", str(p), "--caffemodel", str(w), "--out", str(root / "C")]
                + PIXELS) == 0
    p, w = files["generator"]
    assert main(["convert", "caffe", "--prototxt", str(p), "--caffemodel", str(w), "--out", str(root / "G"),
                 "--role", "generator", "--latent", f"normal:{4096 // FACTOR}"] + PIXELS) == 0
    return {"root": root, "G": str(root / "G"), "C": str(root / "C"), "files": files}


def opencv_logits(files, codes):
    """fc8 of CaffeNet on G(codes) through OpenCV's Caffe importer: the reference's own pipeline
    (generator output BGR minus the mean at 256, centre crop to 227 at offset 14, CaffeNet)."""
    cv2 = pytest.importorskip("cv2")
    gen = cv2.dnn.readNetFromCaffe(*map(str, files["generator"]))
    clf = cv2.dnn.readNetFromCaffe(*map(str, files["caffenet"]))
    out = []
    for z in np.asarray(codes, np.float32).reshape(len(codes), -1):
        gen.setInput(z[None])
        x = gen.forward()[:, :, 14:241, 14:241]  # (1, 3, 227, 227)
        clf.setInput(np.ascontiguousarray(x))
        out.append(clf.forward("fc8")[0])
    return np.stack(out)


def test_conversion_records_the_generators_convention_and_latent(nets):
    g, c = jaxprobe.load(nets["G"]), jaxprobe.load(nets["C"])
    assert g.pixels is not None and g.pixels.channels == "BGR" and g.pixels.mean == (104.0, 117.0, 123.0)
    assert g.pixels == c.pixels
    assert g.manifest["latent"] == {"dim": 4096 // FACTOR, "prior": "normal"}
    z = jax.random.normal(jax.random.key(0), (2, 4096 // FACTOR))
    images = jaxprobe.adapt_images(g.forward(g.params, z), g.pixels, c.pixels, c.input_shape)
    want = opencv_logits(nets["files"], z)
    got = np.asarray(c.activation(c.params, images, c.layer("fc8")))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_the_full_size_reference_networks_by_shape():
    from jaxprobe.models import caffe_net, caffe_spec
    from flax import nnx

    for name, shape_in, shape_out in (("deepsim_fc6_generator", (4096,), (256, 256, 3)),
                                      ("caffenet", (227, 227, 3), (1000,))):
        spec = caffe_spec.parse_prototxt((PAPER / f"{name}.prototxt").read_text())
        graphdef, state = nnx.split(nnx.eval_shape(lambda: caffe_net.build(spec, rngs=nnx.Rngs(0))))
        out = jax.eval_shape(lambda st, x: nnx.merge(graphdef, st)(x), state,
                             jax.ShapeDtypeStruct((2,) + shape_in, np.float32))
        assert out.shape == (2,) + shape_out


def test_dgn_am_on_converted_networks_writes_and_reports_what_opencv_computes(nets, tmp_path):
    out = tmp_path / "am"
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["dgn-am", "--generator", nets["G"], "--classifier", nets["C"], "--neuron", "fc8:1",
                     "--neuron", "fc8:945", "--steps", "3", "--bounds", str(PAPER / "act_range_3x_fc6.txt")
                     if FACTOR == 1 else "none", "--out", str(out)])
    assert code == 0, err.getvalue()
    record = json.loads((out / "dgn_am.json").read_text())
    saved = np.load(out / "codes.npz")
    want = opencv_logits(nets["files"], saved["codes"])
    got = [r["final_activation"] for r in record["neurons"]]
    np.testing.assert_allclose(got, want[[0, 1], [1, 945]], rtol=1e-3, atol=1e-3 * np.abs(want).max())
    assert "skipped" in json.dumps(record) or "real_mean" not in json.dumps(record)  # no MNIST comparison


def test_dgn_am_bounds_file_is_checked_against_the_code_size(nets, tmp_path):
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["dgn-am", "--generator", nets["G"], "--classifier", nets["C"], "--neuron", "fc8:1",
                     "--steps", "1", "--bounds", str(PAPER / "act_range_3x_fc6.txt"), "--out", str(tmp_path / "b")])
    assert code == 2 and "--bounds" in err.getvalue() and "4096" in err.getvalue(), err.getvalue()
    assert not (tmp_path / "b").exists()


def test_info_into_a_closed_pipe_exits_quietly(nets):
    r = subprocess.run(f"{sys.executable} -m jaxprobe info {nets['C']} | head -1", shell=True, capture_output=True,
                       text=True, timeout=120)
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr


@pytest.mark.parametrize("latent, message", [
    ("normal:7", "latent: normal:7 does not fit the network's input of shape"),
    ("gauss:256", "latent: expected PRIOR:DIM"),
    ("normal:-1", "latent: expected PRIOR:DIM"),
])
def test_a_latent_that_does_not_fit_is_one_line(nets, tmp_path, latent, message):
    p, w = nets["files"]["generator"]
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["convert", "caffe", "--prototxt", str(p), "--caffemodel", str(w), "--out", str(tmp_path / "g"),
                     "--role", "generator", "--latent", latent])
    assert code == 2 and message in err.getvalue() and len(err.getvalue().strip().splitlines()) == 1, err.getvalue()
    assert not (tmp_path / "g").exists()


def test_pixel_flags_on_a_generator_whose_output_is_no_image_are_refused(tmp_path):
    from jaxprobe.models import archs_paper, caffe_spec
    from test_convert_roundtrip import write_caffemodel

    # a "generator" from a code to a code: --channels cannot describe its output
    proto = tmp_path / "g.prototxt"
    proto.write_text('input: "z"\ninput_shape { dim: 1 dim: 8 }\nlayer { name: "fc" type: "InnerProduct" '
                     'bottom: "z" top: "fc" inner_product_param { num_output: 5 } }\n')
    write_caffemodel(tmp_path / "g.caffemodel", caffe_spec.parse_prototxt(proto.read_text()), np.random.default_rng(0))
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["convert", "caffe", "--prototxt", str(proto), "--caffemodel", str(tmp_path / "g.caffemodel"),
                     "--out", str(tmp_path / "out"), "--role", "generator", "--channels", "BGR"])
    assert code == 2 and "channels: the generator's output of shape (5,)" in err.getvalue(), err.getvalue()
    del archs_paper


def test_egbas_runs_on_a_converted_generator_with_its_stated_latent(nets, tmp_path):
    out = tmp_path / "eg"
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(["egbas", "--model", nets["G"], "--layer", "3", "--n", "8", "--iterations", "64",
                     "--beropt-steps", "5", "--batch", "16", "--out", str(out)])
    assert code == 0, err.getvalue()
    record = json.loads((out / "egbas.json").read_text())
    assert record["layer"] == 3 and record["layer_name"] == "defc5" and record["n_accepted"] >= 2
    assert record["model"] == nets["G"] and (out / "egbas.png").stat().st_size > 1000


def _cli(argv):
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


def test_ppgn_with_the_encoders_prior_on_converted_networks(nets, tmp_path):
    out = tmp_path / "pp"
    code, err = _cli(["ppgn", "--generator", nets["G"], "--classifier", nets["C"], "--class", "945", "--prior",
                      "encoder", "--encoder", f"{nets['C']}:fc6", "--chains", "2", "--steps", "2", "--save-every", "1",
                      "--out", str(out)])
    assert code == 0, err
    record = json.loads((out / "ppgn.json").read_text())
    saved = np.load(out / "codes.npz")
    # the probability the JSON reports for the last saved code of chain 0 is softmax(fc8) of OpenCV's forward
    logits = opencv_logits(nets["files"], saved["samples"][:, -1])
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    last = [s for s in record["samples"] if s["step"] == int(saved["saved_steps"][-1])]
    np.testing.assert_allclose([s["prob"] for s in sorted(last, key=lambda s: s["chain"])], p[:, 945], rtol=2e-3,
                               atol=1e-7)


def test_excitation_generator_for_a_227_classifier(nets, tmp_path):
    out = tmp_path / "ex"
    code, err = _cli(["excite", "--classifier", nets["C"], "--target", "fc8:945", "--steps", "2", "--out", str(out)])
    assert code == 0, err
    record = json.loads((out / "excite.json").read_text())
    images = np.load(out / "images.npz")["images"]
    assert images.shape[1:] == (256, 256, 3)  # Table 2's pattern at 256, centre-cropped to CaffeNet's 227
    images = images[:, 14:241, 14:241]
    c = jaxprobe.load(nets["C"])
    # the JSON's final activations are CaffeNet's fc8 with a ReLU in place of the softmax (Despraz et
    # al.'s eq. 2) on the saved image: recomputed from the image alone
    x = c.pixels.from_canonical(jax.numpy.asarray(images))
    fc8 = np.asarray(c.activation(c.params, x, c.layer("fc8"), nonlinear=False))[0]
    got = np.asarray(record["targets"][0]["final_activations"])
    np.testing.assert_allclose(got, np.maximum(fc8, 0), rtol=1e-3, atol=1e-3 * max(1.0, np.abs(fc8).max()))


def test_inverse_set_on_converted_networks_says_what_its_seeds_reached(nets, tmp_path):
    """A range no code reaches within the seeds' budget: one line that says so, status 2, and the
    JSON of what was done (seeds_feasible false), no traceback."""
    out = tmp_path / "inv"
    r = subprocess.run([sys.executable, "-m", "jaxprobe", "inverse-set", "--generator", nets["G"], "--classifier",
                        nets["C"], "--neuron", "fc8:945", "--range", "1e6", "2e6", "--n", "4", "--k", "2",
                        "--max-outer", "1", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    lines = [line for line in r.stderr.splitlines() if line.startswith("jaxprobe")]
    assert len(lines) == 1 and "no code reached the range" in lines[0] and "seeds' budget" in lines[0], lines
    record = json.loads((out / "inverse_set.json").read_text())
    assert record["seeds_feasible"] is False


def test_the_image_bridge_is_recorded_and_refused_when_sizes_cannot_meet(nets, tmp_path):
    from jaxprobe.models.pixels import image_bridge

    g, c = jaxprobe.load(nets["G"]), jaxprobe.load(nets["C"])
    bridge = image_bridge(g, c)
    assert bridge["center_crop"] == {"from": [256, 256], "to": [227, 227], "offset": [14, 14]}
    assert bridge["generator_pixels"]["channels"] == bridge["classifier_pixels"]["channels"] == "BGR"
    # the MNIST generator's 28 x 28 gray digits cannot become CaffeNet's 227 x 227 input
    code, err = _cli(["dgn-am", "--generator", "fc_generator", "--classifier", nets["C"], "--neuron", "fc8:1",
                      "--steps", "1", "--bounds", "none", "--out", str(tmp_path / "x")])
    assert code == 2 and "cannot be centre-cropped" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x").exists()


def test_dgn_am_and_ppgn_json_record_the_bridge(nets, tmp_path):
    code, err = _cli(["dgn-am", "--generator", nets["G"], "--classifier", nets["C"], "--neuron", "fc8:3",
                      "--steps", "1", "--out", str(tmp_path / "am")])
    assert code == 0, err
    record = json.loads((tmp_path / "am" / "dgn_am.json").read_text())
    assert record["image_bridge"]["center_crop"]["offset"] == [14, 14] and record["bounds"] == "none"
