"""The probe protocol: up_to/from_ identity for every model and layer, jit == no-jit, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprobe import JaxprobeError, SHIPPED, load
from jaxprobe.models.store import WEIGHTS_DIR
from conftest import tiny_classifier, tiny_critic, tiny_generator

TINY = {
    "generator": lambda: tiny_generator(),
    "generator_leaky": lambda: tiny_generator(latent_dim=5, slope=0.3),
    "classifier": lambda: tiny_classifier(),
    "critic": lambda: tiny_critic(),
}

# Shipped models are tested wherever they are installed (always, in a clean checkout).
AVAILABLE = [n for n in SHIPPED if (WEIGHTS_DIR / n / "manifest.json").exists()]


def _inputs(model, n=3, seed=0):
    return jax.random.normal(jax.random.PRNGKey(seed), (n,) + model.input_shape)


def _identity_holds(model):
    x = _inputs(model)

    @jax.jit  # one program for every split (a compile per layer cost seconds per model)
    def splits(params, x):
        hs = [model.up_to(params, x, l) for l in range(1, model.n_layers + 1)]
        return model.forward(params, x), hs, [model.from_(params, h, l) for l, h in enumerate(hs, 1)]

    full, hs, rests = splits(model.params, x)
    for l, (h, rest) in enumerate(zip(hs, rests), 1):
        assert h.shape[1:] == model.layer_shape(l)
        np.testing.assert_allclose(rest, full, atol=1e-5, rtol=1e-5, err_msg=f"{model.name} layer {l}")


@pytest.mark.parametrize("kind", sorted(TINY))
def test_split_identity_tiny(kind):
    _identity_holds(TINY[kind]())


@pytest.mark.parametrize("name", AVAILABLE)
def test_split_identity_shipped(name):
    _identity_holds(load(name))


@pytest.mark.parametrize("kind", sorted(TINY))
def test_jit_equals_no_jit(kind):
    model = TINY[kind]()
    x = _inputs(model, seed=1)
    np.testing.assert_allclose(jax.jit(model.forward)(model.params, x), model.forward(model.params, x),
                               atol=1e-5, rtol=1e-5)
    for l in range(1, model.n_layers + 1):
        np.testing.assert_allclose(jax.jit(model.up_to, static_argnums=2)(model.params, x, l),
                                   model.up_to(model.params, x, l), atol=1e-5, rtol=1e-5)


def test_layer_by_name_equals_by_number():
    g = tiny_generator()
    x = _inputs(g)
    for i, name in enumerate(g.layer_names, 1):
        assert g.layer(name) == i and g.layer(str(i)) == i
        np.testing.assert_array_equal(g.up_to(g.params, x, name), g.up_to(g.params, x, i))


def test_generator_layer1_preactivation_is_the_dense_map():
    """Layer 1's pre-activation is W z + b (closed form), and from_ applies ReLU then the rest."""
    g = tiny_generator()
    x = _inputs(g)
    dense = g.params["layers"][0]["linear"]
    expected = np.asarray(x) @ np.asarray(dense["kernel"][...]) + np.asarray(dense["bias"][...])
    np.testing.assert_allclose(g.up_to(g.params, x, 1), expected, atol=1e-5, rtol=1e-5)


def test_activation_reads_after_nonlinearity():
    c = tiny_classifier()
    x = jax.random.uniform(jax.random.PRNGKey(3), (4, 28, 28, 1))
    pre = c.activation(c.params, x, "fc1", nonlinear=False)
    np.testing.assert_allclose(c.activation(c.params, x, "fc1"), np.maximum(pre, 0))
    np.testing.assert_allclose(c.activation(c.params, x, "logits"), c.forward(c.params, x), atol=1e-6)


def test_layer_shapes_shape_only():
    g = tiny_generator(widths=(6, 4, 2))
    assert g.layer_shapes() == {"fc": (294,), "deconv1": (14, 14, 4), "deconv2": (28, 28, 2), "out": (28, 28, 1)}
    assert g.output_shape() == (28, 28, 1)


@pytest.mark.parametrize("bad, message", [
    ("nope", r"layer: 'tiny_gen' has no layer 'nope'; its layers are fc, deconv1, deconv2, out"),
    (0, r"layer: expected 1..4 for 'tiny_gen', got 0"),
    (5, r"layer: expected 1..4 for 'tiny_gen', got 5"),
    (1.5, r"layer: expected a layer name or a number 1..4, got 1.5"),
])
def test_bad_layer(bad, message):
    g = tiny_generator()
    with pytest.raises(JaxprobeError, match=message):
        g.up_to(g.params, _inputs(g), bad)


def test_wrong_input_shape_and_dtype():
    g = tiny_generator()
    with pytest.raises(JaxprobeError, match=r"x: expected shape \(batch, 8\) for model 'tiny_gen', got \(3, 7\)"):
        g.forward(g.params, jnp.zeros((3, 7)))
    with pytest.raises(JaxprobeError, match=r"x: expected shape \(batch, 8\).*got \(8,\)"):
        g.forward(g.params, jnp.zeros((8,)))
    with pytest.raises(JaxprobeError, match=r"x: expected a floating dtype .*got int32"):
        g.forward(g.params, jnp.zeros((3, 8), jnp.int32))
    with pytest.raises(JaxprobeError, match=r"h: expected shape \(batch, 14, 14, 4\) for layer 'deconv1'"):
        g.from_(g.params, jnp.zeros((3, 14, 14, 5)), 2)


def test_shape_errors_raise_under_jit_too():
    g = tiny_generator()
    with pytest.raises(JaxprobeError, match="x: expected shape"):
        jax.jit(g.forward)(g.params, jnp.zeros((2, 9)))


def test_layer_output_shapes_match_running_the_layers_one_by_one():
    import jax.numpy as jnp
    from flax import nnx

    for model in (tiny_classifier(), tiny_generator()):
        x = jnp.zeros((2,) + model.input_shape, jnp.float32)
        net = nnx.merge(model.graphdef, model.params)
        for l, layer in enumerate(net.layers, 1):
            x = layer(x)  # pre, nonlinearity, then the parameter-free ops that follow
            assert model.layer_output_shape(l) == x.shape[1:], (model.name, l)
        assert model.layer_output_shape(model.n_layers) == model.output_shape()
