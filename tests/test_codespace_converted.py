"""A converted Caffe classifier (BVLC's LeNet, a real third-party file) serves as the target of
`jaxprobe dgn-am` and `jaxprobe ppgn`; their JSON agrees with a fresh forward pass from the saved
codes through the converted network."""

import json

import jax.numpy as jnp
import numpy as np

import jaxprobe
from jaxprobe.cli import main


def _activations(classifier_dir, codes):
    g, c = jaxprobe.load("fc_generator"), jaxprobe.load(classifier_dir)
    images = jaxprobe.adapt_images(g.forward(g.params, jnp.asarray(codes)), g.pixels, c.pixels, c.input_shape)
    return np.asarray(c.up_to(c.params, images, c.n_layers))  # ip2's logits (the net ends in a Softmax)


def test_converted_lenet_is_a_target_of_dgn_am_and_ppgn(fixtures_dir, tmp_path):
    lenet = tmp_path / "lenet"
    assert main(["convert", "caffe", "--prototxt", str(fixtures_dir / "caffe/lenet/lenet.prototxt"),
                 "--caffemodel", str(fixtures_dir / "caffe/lenet/lenet_iter_10000.caffemodel"),
                 "--out", str(lenet)]) == 0
    out = tmp_path / "dgn_am"
    assert main(["dgn-am", "--classifier", str(lenet), "--neuron", "ip2:3", "--steps", "20", "--out", str(out)]) == 0
    record = json.loads((out / "dgn_am.json").read_text())
    codes = np.load(out / "codes.npz")["codes"]
    np.testing.assert_allclose(record["neurons"][0]["final_activation"], _activations(lenet, codes)[0, 3],
                               rtol=1e-4, atol=1e-3)

    out = tmp_path / "ppgn"
    assert main(["ppgn", "--classifier", str(lenet), "--class", "3", "--chains", "2", "--steps", "20",
                 "--save-every", "5", "--out", str(out)]) == 0
    record = json.loads((out / "ppgn.json").read_text())
    samples = np.load(out / "codes.npz")["samples"]  # (chains, saved, *code)
    logits = _activations(lenet, samples.reshape((-1,) + samples.shape[2:])).reshape(samples.shape[:2] + (-1,))
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    for s in record["samples"]:
        row = s["step"] // 5
        np.testing.assert_allclose(s["prob"], probs[s["chain"], row, 3], rtol=1e-3, atol=1e-4)
        assert s["label"] == int(np.argmax(logits[s["chain"], row]))
