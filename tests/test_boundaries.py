"""Halfspace indicators and region membership against numpy sign checks and closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxprobe

from jaxprobe.gbas.boundaries import (check_indicator, halfspace, layer_size, region_margin,
                                 region_membership)
from jaxprobe.errors import JaxprobeError
from jaxprobe.models.layers import Act, Layer, Network
from jaxprobe.models.probe import Model
from conftest import tiny_generator


def perturbed(model, seed=0, scale=0.1):
    """The model with every parameter jittered, so that biases are nonzero (generic regions)."""
    rng = np.random.default_rng(seed)  # numpy noise: no per-shape XLA compilation
    leaves, tree = jax.tree.flatten(model.params)
    leaves = [jnp.asarray(np.asarray(x) + scale * rng.normal(size=x.shape), x.dtype) for x in leaves]
    return model.replace(params=jax.tree.unflatten(tree, leaves))


def one_layer(w, b, name="one_layer"):
    """A generator with one layer: z -> relu(W z + b), W given as (d_in, d_out) like nnx.Linear."""
    d_in, d_out = w.shape
    lin = nnx.Linear(d_in, d_out, rngs=nnx.Rngs(0))
    lin.kernel[...] = jnp.asarray(w, jnp.float32)
    lin.bias[...] = jnp.asarray(b, jnp.float32)
    return Model.from_module(name, Network([Layer(lin, Act("relu"))], ("fc",)), (d_in,), "generator")


@pytest.fixture(scope="module")
def gen():
    return perturbed(tiny_generator())


def test_halfspace_is_sign_of_preactivation(gen):
    z = jax.random.normal(jax.random.PRNGKey(1), (5, 8))
    for l in range(1, 5):
        h = np.asarray(gen.up_to(gen.params, z, l)).reshape(5, -1)
        np.testing.assert_array_equal(halfspace(gen, gen.params, z, l), np.sign(h))
        np.testing.assert_array_equal(halfspace(gen, gen.params, z[2], l), np.sign(h[2]))
        assert layer_size(gen, l) == h.shape[1]


def test_membership_matches_numpy_sign_check(gen):
    rng = np.random.default_rng(0)
    z = jax.random.normal(jax.random.PRNGKey(2), (64, 8))
    for l in range(1, 5):
        h = np.asarray(gen.up_to(gen.params, z, l)).reshape(64, -1).astype(np.float64)
        z0_signs = np.sign(h[0])
        for frac in (0.01, 0.05, 0.3):
            v = np.where(rng.random(h.shape[1]) < frac, z0_signs, 0).astype(np.int32)
            want = np.all((v == 0) | (v * h >= 0), axis=1)
            got = np.asarray(jax.jit(region_membership, static_argnums=(0, 3))(gen, gen.params, z, l, v))
            np.testing.assert_array_equal(got, want)
            assert got[0]  # the query is in its own region
            margin = np.asarray(region_margin(gen, gen.params, z, l, v))
            np.testing.assert_array_equal(margin >= 0, want)
        # No selected unit: the region is the whole latent space.
        assert bool(jnp.all(region_membership(gen, gen.params, z, l, np.zeros(h.shape[1], np.int32))))


def test_one_layer_membership_equals_closed_form_halfspaces():
    rng = np.random.default_rng(3)
    d, units = 5, 12
    w, b = rng.normal(size=(d, units)), rng.normal(size=units)
    model = one_layer(w, b)
    z = rng.normal(size=(500, d)).astype(np.float32)
    pre = z.astype(np.float64) @ w.astype(np.float32).astype(np.float64) + b.astype(np.float32)
    v = np.where(rng.random(units) < 0.3, np.sign(pre[0]), 0).astype(np.int32)  # a side of ~4 units
    want = np.all((v == 0) | (v * pre >= 0), axis=1)
    decided = np.min(np.where(v != 0, np.abs(pre), np.inf), axis=1) > 1e-4  # away from float ties
    got = np.asarray(region_membership(model, model.params, jnp.asarray(z), 1, v))
    assert decided.sum() > 450 and 0.02 < want.mean() < 0.98
    np.testing.assert_array_equal(got[decided], want[decided])


def test_nan_preactivation_is_not_a_member(gen):
    z = jnp.full((1, 8), jnp.nan)
    v = np.ones(layer_size(gen, 1), np.int32)
    assert not bool(region_membership(gen, gen.params, z, 1, v)[0])


# Jitted once for the three batch sizes (op-by-op forward passes of dcgan cost seconds).
member, margin, signs = (jax.jit(f, static_argnums=(0, 3)) for f in (region_membership, region_margin, halfspace))


@pytest.mark.parametrize("batch", [1, 8, 64])
def test_nan_is_never_a_member_at_any_shape_of_dcgan(batch):
    """XLA's CPU backend drops NaN from a jitted min for some shapes (from 8 rows at width 784,
    from one row at 4704): at every layer of the shipped dcgan (widths 4704, 9408, 18816, 784),
    rows of NaN queries and rows with one NaN-biased unit or channel are never members, while
    the same rows without NaN are (the query's own sign pattern)."""
    g = jaxprobe.load("dcgan")
    z0 = g.sample_prior(jax.random.PRNGKey(0), 1)
    z = jnp.repeat(z0, batch, axis=0)
    z_nan = z.at[::2].set(jnp.nan)  # every other row (the only row at batch 1)
    leaves, tree = jax.tree.flatten(g.params)
    biases = [i for i, x in enumerate(leaves) if x.ndim == 1]  # one bias per layer, in order
    for l in range(1, g.n_layers + 1):
        v = signs(g, g.params, z0[0], l)
        np.testing.assert_array_equal(member(g, g.params, z, l, v), True)
        want = np.ones(batch, bool)
        want[::2] = False
        np.testing.assert_array_equal(member(g, g.params, z_nan, l, v), want, err_msg=f"layer {l}, NaN rows")
        np.testing.assert_array_equal(member(g, g.params, z_nan, l, np.zeros_like(v)), want,
                                      err_msg=f"layer {l}, NaN rows, no unit selected")
        # A NaN bias in one unit (fc) or channel (convolutions) of layer l: every row breaks.
        b = biases[l - 1]
        bad = [x.at[x.shape[0] // 2].set(jnp.nan) if i == b else x for i, x in enumerate(leaves)]
        got = member(g, jax.tree.unflatten(tree, bad), z, l, v)
        np.testing.assert_array_equal(got, False, err_msg=f"layer {l}, NaN bias")
        assert np.isnan(np.asarray(margin(g, jax.tree.unflatten(tree, bad), z[:1], l, v))).all()


def test_bad_indicator_and_layer(gen):
    size = layer_size(gen, 2)
    z = jnp.zeros((2, 8))
    with pytest.raises(JaxprobeError, match=r"v_star: expected a halfspace indicator of shape \(784,\)"):
        check_indicator(gen, 2, np.zeros(size + 1))
    with pytest.raises(JaxprobeError, match=r"v_star: expected values in \{-1, 0, \+1\}"):
        check_indicator(gen, 2, np.full(size, 2))
    assert check_indicator(gen, 2, np.zeros(gen.layer_shape(2))).shape == (size,)
    with pytest.raises(JaxprobeError, match=r"layer: expected 1..4"):
        region_membership(gen, gen.params, z, 5, np.zeros(size))
    with pytest.raises(JaxprobeError, match=r"layer: expected 1..4"):
        halfspace(gen, gen.params, z[0], 0)
    with pytest.raises(JaxprobeError, match=r"x: expected shape \(batch, 8\)"):
        halfspace(gen, gen.params, jnp.zeros(7), 1)
