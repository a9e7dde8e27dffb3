"""Neuron addresses: parsing, resolution against a model, and reading values (SPEC section 0)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxprobe.errors import JaxprobeError
from jaxprobe.models.neurons import Neuron, neuron_name, neuron_values, parse_neuron, resolve_neuron, resolve_neurons
from jaxprobe.models.pixels import PixelConvention
from jaxprobe.models.probe import Model
from jaxprobe.models.zoo import mnist_classifier


@pytest.fixture(scope="module")
def classifier():
    net = mnist_classifier(widths=(4, 4), hidden=16, rngs=nnx.Rngs(0))
    return Model.from_module("cls", net, (28, 28, 1), "classifier", PixelConvention(0.0, 1.0, "gray"))


@pytest.fixture(scope="module")
def images():
    return jax.random.uniform(jax.random.key(1), (5, 28, 28, 1))


def test_parse_forms():
    assert parse_neuron("logits:3") == Neuron("logits:3", "logits", 3, None)
    assert parse_neuron("conv2:5@3,4") == Neuron("conv2:5@3,4", "conv2", 5, (3, 4))
    assert parse_neuron(" 2 : 1 @ 0 , 7 ") == Neuron(" 2 : 1 @ 0 , 7 ", "2", 1, (0, 7))


@pytest.mark.parametrize("text", ["logits", "logits:", ":3", "logits:-1", "logits:a", "conv1:1@2",
                                  "logits:3@1,2,3", "conv1:1@-1,2", "a:b:c", ""])
def test_bad_syntax_names_the_neuron(text):
    with pytest.raises(JaxprobeError, match="expected 'layer:unit' or 'layer:unit@y,x'"):
        parse_neuron(text)


def test_not_a_string():
    with pytest.raises(JaxprobeError, match="neuron: expected a string"):
        parse_neuron(3)


@pytest.mark.parametrize("text, message", [
    ("fc9:0", r"neuron 'fc9:0': .*no layer 'fc9'"),
    ("0:1", r"neuron '0:1': .*expected 1\.\.4"),
    ("5:1", r"neuron '5:1': .*expected 1\.\.4"),
    ("logits:10", r"neuron 'logits:10': unit 10 out of range .* units 0\.\.9"),
    ("conv1:4", r"neuron 'conv1:4': unit 4 out of range"),
    ("conv1:0@28,0", r"neuron 'conv1:0@28,0': position \(28, 0\) is off .* 28x28 grid"),
    ("conv2:0@3,14", r"neuron 'conv2:0@3,14': position \(3, 14\) is off .* 14x14 grid"),
    ("fc1:0@1,1", r"neuron 'fc1:0@1,1': layer 'fc1' is fully connected"),
])
def test_resolution_errors_name_the_neuron(classifier, text, message):
    with pytest.raises(JaxprobeError, match=message):
        resolve_neuron(classifier, text)
    with pytest.raises(JaxprobeError, match=message):  # also through neuron_values, before any work
        neuron_values(classifier, classifier.params, jnp.zeros((1, 28, 28, 1)), ["logits:0", text])


def test_empty_list(classifier):
    with pytest.raises(JaxprobeError, match="at least one neuron"):
        resolve_neurons(classifier, [])


def test_resolve_fills_layer_number_and_centre(classifier):
    # Layer by name or number gives the same neuron; a conv unit without position is read at the
    # centre (H // 2, W // 2) of its own layer's grid (conv1: 28x28 before pooling).
    assert resolve_neuron(classifier, "conv1:2")[1:] == (1, 2, (14, 14))
    assert resolve_neuron(classifier, "2:3")[1:] == (2, 3, (7, 7))
    assert resolve_neuron(classifier, "fc1:15")[1:] == (3, 15, None)
    assert resolve_neuron(classifier, "4:9")[1:] == (4, 9, None)
    n = resolve_neuron(classifier, "conv2:1@0,13")
    assert neuron_name(classifier, n) == "conv2:1@0,13"
    assert resolve_neuron(classifier, n) == n  # resolving twice is harmless


@pytest.mark.parametrize("nonlinear", [True, False])
def test_values_match_brute_force_indexing(classifier, images, nonlinear):
    p = classifier.params
    rng = np.random.default_rng(0)
    texts, expected = [], []
    for _ in range(12):  # random neurons in every layer, by name or number, in mixed order
        l = int(rng.integers(1, 5))
        shape = classifier.layer_shape(l)
        unit = int(rng.integers(shape[-1]))
        layer = classifier.layer_names[l - 1] if rng.random() < 0.5 else str(l)
        full = classifier.up_to(p, images, l)
        if nonlinear and l < 4:
            full = jax.nn.relu(full)  # conv1, conv2, fc1 are ReLU layers; logits has none
        if len(shape) == 3:
            if rng.random() < 0.3:
                y, x = shape[0] // 2, shape[1] // 2
                texts.append(f"{layer}:{unit}")
            else:
                y, x = int(rng.integers(shape[0])), int(rng.integers(shape[1]))
                texts.append(f"{layer}:{unit}@{y},{x}")
            expected.append(full[:, y, x, unit])
        else:
            texts.append(f"{layer}:{unit}")
            expected.append(full[:, unit])
    got = neuron_values(classifier, p, images, texts, nonlinear=nonlinear)
    assert got.shape == (5, 12)
    np.testing.assert_allclose(np.asarray(got), np.stack(expected, 1), rtol=1e-6, atol=1e-6)
    jitted = jax.jit(lambda p, x: neuron_values(classifier, p, x, texts, nonlinear=nonlinear))(p, images)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(got), rtol=1e-5, atol=1e-5)


def test_post_nonlinearity_is_relu_of_pre(classifier, images):
    texts = ["conv2:1@3,4", "fc1:7", "logits:2"]
    post = np.asarray(neuron_values(classifier, classifier.params, images, texts))
    pre = np.asarray(neuron_values(classifier, classifier.params, images, texts, nonlinear=False))
    np.testing.assert_allclose(post[:, :2], np.maximum(pre[:, :2], 0), atol=1e-7)
    np.testing.assert_allclose(post[:, 2], pre[:, 2], atol=1e-7)  # logits: no nonlinearity


def test_one_pass_per_distinct_layer(classifier, images, monkeypatch):
    calls = []
    original = Model.activation

    def counting(self, params, x, l, *, nonlinear=True):
        calls.append(l)
        return original(self, params, x, l, nonlinear=nonlinear)

    monkeypatch.setattr(Model, "activation", counting)
    neuron_values(classifier, classifier.params, images, ["logits:1", "fc1:2", "logits:5", "fc1:0", "logits:1"])
    assert sorted(calls) == [3, 4]
