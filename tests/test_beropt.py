"""BerOpt: recovers exactly the units that affect the output of a toy generator; V* is the
thresholded theta times sign(h0); lambda's role; a supporting set at the shipped dcgan's output
layer; non-finite features and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxprobe.gbas.beropt import beropt, default_lambda
from jaxprobe.errors import JaxprobeError
from jaxprobe.models.layers import Act, Layer, Network
from jaxprobe.models.probe import Model


def linear(w, b):
    lin = nnx.Linear(w.shape[0], w.shape[1], rngs=nnx.Rngs(0))
    lin.kernel[...] = jnp.asarray(w, jnp.float32)
    lin.bias[...] = jnp.asarray(b, jnp.float32)
    return lin


@pytest.fixture(scope="module")
def toy():
    """z (4,) -> h = W1 z + b1 (8 units, ReLU) -> x = W2 relu(h) (16 outputs) -> tanh.

    Only units 1, 4 and 6 reach the output (the other columns of W2 are zero), and unit 6 is
    negative at the query, so ReLU silences it: the units that affect G(z0) are exactly {1, 4}.
    """
    rng = np.random.default_rng(0)
    z0 = np.array([0.5, -0.3, 0.2, 0.1], np.float32)
    w1 = rng.normal(size=(4, 8)) * 0.3
    b1 = np.full(8, 1.0) - w1.T @ z0  # h(z0) = 1 for every unit ...
    b1[6] = -1.0 - w1[:, 6] @ z0  # ... except unit 6: h_6(z0) = -1
    w2 = np.zeros((8, 16))
    w2[[1, 4, 6]] = rng.normal(size=(3, 16))
    net = Network([Layer(linear(w1, b1), Act("relu")), Layer(linear(w2, np.zeros(16)), Act("tanh"))],
                  ("hidden", "out"))
    return Model.from_module("toy", net, (4,), "generator"), jnp.asarray(z0)


def test_recovers_exactly_the_units_that_affect_the_output(toy):
    model, z0 = toy
    r = beropt(jax.random.PRNGKey(0), model, model.params, z0, "hidden", steps=200)
    theta = np.asarray(r.theta)
    assert np.flatnonzero(r.v_star).tolist() == [1, 4]
    np.testing.assert_array_equal(np.asarray(r.v_star)[[1, 4]], [1, 1])  # sign(h0) = +1 there
    assert theta[[1, 4]].min() > 0.9 and np.delete(theta, [1, 4]).max() < 0.1
    # The loss of equation (1) fell: the masks stopped paying for irrelevant units.
    losses = np.asarray(r.losses)
    assert losses.shape == (200,) and losses[-20:].mean() < 0.5 * losses[:20].mean()


def test_v_star_is_thresholded_theta_times_sign_and_lambda_matters(toy):
    model, z0 = toy
    h0 = np.asarray(model.up_to(model.params, z0[None], 1))[0]
    for p in (0.3, 0.5, 0.7):
        r = beropt(jax.random.PRNGKey(1), model, model.params, z0, 1, steps=100, p=p)
        np.testing.assert_array_equal(r.v_star, (np.asarray(r.theta) > p) * np.sign(h0))
    # lambda's default: ||G(z0) - f_{L:l+1}(0)||^2 / (16 D_l), by hand.
    full = np.asarray(model.forward(model.params, z0[None]), np.float64)[0]
    empty = np.asarray(model.from_(model.params, jnp.zeros((1, 8)), 1), np.float64)[0]
    np.testing.assert_allclose(default_lambda(model, model.params, z0, 1),
                               np.sum((full - empty) ** 2) / 16 / 8, rtol=1e-5)
    # A sparsity weight far above any unit's effect drops everything.
    r = beropt(jax.random.PRNGKey(1), model, model.params, z0, 1, steps=100, lam=100.0)
    assert not np.any(r.v_star) and float(r.lam) == 100.0


def test_selects_a_supporting_set_at_the_output_layer_of_dcgan():
    """At l = L of the shipped dcgan every unit feeds one pixel; the unsquared paper loss slid to
    the empty mask there. For 10 queries the thresholded mask's reconstruction error of G(z0) is
    at most half the empty mask's (docs/methods/egbas.md, lambda)."""
    import jaxprobe

    g = jaxprobe.load("dcgan")
    L = g.n_layers
    z0s = g.sample_prior(jax.random.PRNGKey(7), 10)
    h0 = np.asarray(g.up_to(g.params, z0s, L))
    x0 = np.asarray(g.forward(g.params, z0s), np.float64)
    masks, ratios = [], []
    for q in range(10):
        r = beropt(jax.random.PRNGKey(q), g, g.params, z0s[q], L)
        keep = (np.asarray(r.v_star) != 0).reshape(h0.shape[1:])
        masks.append(h0[q] * keep)
        masks.append(np.zeros_like(h0[q]))
    out = np.asarray(g.from_(g.params, jnp.asarray(np.stack(masks)), L), np.float64)
    for q in range(10):
        kept, empty = (np.linalg.norm(out[2 * q + i] - x0[q]) for i in (0, 1))
        ratios.append(kept / empty)
    assert max(ratios) <= 0.5, ratios


def test_non_finite_features_are_an_error(toy):
    model, z0 = toy
    key = jax.random.PRNGKey(0)
    leaves, tree = jax.tree.flatten(model.params)
    # leaves: hidden bias, hidden kernel, output bias, output kernel
    for i, what in ((0, r"h0 = f_\{l:1\}\(z0\) at layer 'hidden'"), (len(leaves) - 1, r"G\(z0\)")):
        # A NaN in the hidden layer's parameters reaches h0; one in the output layer only G(z0).
        bad = [jnp.full(x.shape, jnp.nan) if j == i else x for j, x in enumerate(leaves)]
        with pytest.raises(JaxprobeError, match=rf"params: expected parameters under which {what} is finite"):
            beropt(key, model, jax.tree.unflatten(tree, bad), z0, "hidden", steps=5)


def test_bad_input(toy):
    model, z0 = toy
    key = jax.random.PRNGKey(0)
    for p in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(JaxprobeError, match=r"p: expected a number in \(0, 1\)"):
            beropt(key, model, model.params, z0, 1, p=p)
    with pytest.raises(JaxprobeError, match=r"layer: expected 1..2"):
        beropt(key, model, model.params, z0, 3)
    with pytest.raises(JaxprobeError, match=r"z0: expected finite values, got NaN"):
        beropt(key, model, model.params, z0.at[0].set(jnp.nan), 1)
    with pytest.raises(JaxprobeError, match=r"z0: expected one latent vector of shape \(4,\)"):
        beropt(key, model, model.params, jnp.zeros(5), 1)
    with pytest.raises(JaxprobeError, match=r"tau: expected a positive temperature"):
        beropt(key, model, model.params, z0, 1, tau=0.0)
    with pytest.raises(JaxprobeError, match=r"steps: expected an integer >= 1"):
        beropt(key, model, model.params, z0, 1, steps=0)
    with pytest.raises(JaxprobeError, match=r"init: expected a number in \(0, 1\)"):
        beropt(key, model, model.params, z0, 1, init=1.0)
    with pytest.raises(JaxprobeError, match=r"lam: expected a non-negative number"):
        beropt(key, model, model.params, z0, 1, lam=-1.0)


def test_kernel_composes_with_vmap_scan_and_jit_from_user_code_and_traces_once(toy):
    """BerOpt's kernel in user code: `jax.jit` of `jax.vmap` over queries of a `lax.scan` over steps
    (step t on fold_in(key_i, t)) gives `beropt(key_i, ...)`'s theta, V* and losses at the same
    lambda; the step is traced once for two calls."""
    import chex

    from jaxprobe.gbas.beropt import BerOptNets, BerOptOptions, build, summary

    model, z0 = toy
    z0s = jnp.stack([z0, z0 + 0.05])
    keys = jax.random.split(jax.random.PRNGKey(5), 2)
    options = BerOptOptions(steps=30, lam=0.02)
    kernel = build(BerOptNets(model), options, "hidden")
    step = chex.assert_max_traces(kernel.step, n=1)

    @jax.jit
    def user(keys, z0s):
        def one(key, z):
            state, info = jax.lax.scan(lambda s, t: step(jax.random.fold_in(key, t), s), kernel.init(z),
                                       jnp.arange(options.steps))
            return summary(state, 0.5) + (info.loss,)
        return jax.vmap(one)(keys, z0s)

    theta, v_star, losses = user(keys, z0s)
    user(keys, z0s)  # a second call: no new trace
    for i in range(2):
        r = beropt(keys[i], model, model.params, z0s[i], "hidden", options)
        np.testing.assert_allclose(theta[i], r.theta, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(v_star[i], r.v_star)
        np.testing.assert_allclose(losses[i], r.losses, rtol=1e-5, atol=1e-6)
    assert not np.allclose(theta[0], theta[1])  # two queries, two masks


def test_default_lambda_is_the_largest_multiple_whose_mask_supports_the_query():
    """With no lambda, `beropt` keeps the largest of MULTIPLES x default_lambda whose V* reproduces
    G(z0) to within SUPPORT of the empty mask's error: replayed here as separate runs (chain i of
    the vmapped run draws from fold_in(key, i)), with the support error computed in numpy."""
    import jaxprobe
    from jaxprobe.gbas.beropt import MULTIPLES, SUPPORT

    g = jaxprobe.load("dcgan")
    key = jax.random.PRNGKey(3)
    for q, layer in ((0, 1),):
        z0 = g.sample_prior(jax.random.PRNGKey(10 + q), 1)[0]
        base = float(default_lambda(g, g.params, z0, layer))
        h0 = np.asarray(g.up_to(g.params, z0[None], layer), np.float64)
        full = np.asarray(g.forward(g.params, z0[None]), np.float64)
        empty = np.asarray(g.from_(g.params, jnp.zeros(h0.shape, jnp.float32), layer), np.float64)
        runs, errors = [], []
        for i, m in enumerate(MULTIPLES):
            r = beropt(jax.random.fold_in(key, i), g, g.params, z0, layer, steps=150, lam=m * base)
            keep = (np.asarray(r.v_star) != 0).reshape(h0.shape[1:])
            out = np.asarray(g.from_(g.params, jnp.asarray(h0 * keep, jnp.float32), layer), np.float64)
            runs.append(r)
            errors.append(np.linalg.norm(out - full) / np.linalg.norm(empty - full))
        ok = [i for i, e in enumerate(errors) if e <= SUPPORT]
        want = runs[max(ok) if ok else int(np.argmin(errors))]
        got = beropt(key, g, g.params, z0, layer, steps=150)
        np.testing.assert_array_equal(got.v_star, want.v_star)
        np.testing.assert_allclose(float(got.lam), float(want.lam), rtol=1e-6)
        np.testing.assert_allclose(got.losses, want.losses, rtol=1e-4, atol=1e-4 * float(np.abs(want.losses).max()))
        assert len(ok) >= 1 and max(ok) >= 1, errors  # some multiple above 1 supports these queries


def test_unknown_setting_is_named(toy):
    model, z0 = toy
    with pytest.raises(JaxprobeError, match=r"^stpes: not a setting of BerOptOptions \(expected one of lam, "):
        beropt(jax.random.PRNGKey(0), model, model.params, z0, 1, stpes=5)
    with pytest.raises(JaxprobeError, match=r"n_masks: expected an integer >= 1"):
        beropt(jax.random.PRNGKey(0), model, model.params, z0, 1, n_masks=0)
