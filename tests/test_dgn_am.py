"""DGN-AM (SPEC section 3): the update against a NumPy replay with hand-derived gradients, chains
against single runs, the shipped models, paper-scale shapes, bad input."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxprobe
from jaxprobe.models import archs_paper
from jaxprobe.errors import JaxprobeError
from jaxprobe.models.layers import Act, Layer, Network, Reshape
from jaxprobe.models.neurons import flat_index
from jaxprobe.models.pixels import PixelConvention
from jaxprobe.models.probe import Model

# The module, not the function `jaxprobe.codespace.dgn_am` that the package re-exports under its name.
dg = importlib.import_module("jaxprobe.codespace.dgn_am")

D, H, IMG, P = 6, 10, (4, 4, 1), 3


def tiny_models(seed=0):
    """G(y) = reshape(W2 relu(W1 y + b1) + b2) to (4, 4, 1); the classifier's logits are one 4x4
    VALID convolution, i.e. W3 . flatten(x) + b3 at the single position (0, 0)."""
    rngs = nnx.Rngs(seed)
    gen = Network([Layer(nnx.Linear(D, H, rngs=rngs), Act("relu")),
                   Layer(nnx.Linear(H, 16, rngs=rngs), Act("identity"), after=(Reshape(IMG),))], ("fc1", "fc2"))
    cls = Network([Layer(nnx.Conv(1, P, (4, 4), padding="VALID", rngs=rngs), Act("identity"))], ("logits",))
    return Model.from_module("tiny-gen", gen, (D,), "generator"), Model.from_module("tiny-cls", cls, IMG, "classifier")


def numpy_weights(g, c):
    lin = lambda i, name: np.asarray(g.params["layers"][i]["linear"][name][...], np.float64)  # noqa: E731
    conv = c.params["layers"][0]["linear"]
    w3 = np.asarray(conv["kernel"][...], np.float64).reshape(16, P)  # (y, x, c) row-major, as the image
    return lin(0, "kernel"), lin(0, "bias"), lin(1, "kernel"), lin(1, "bias"), w3, np.asarray(conv["bias"][...])


def numpy_dgn_am(y0, w, params, *, steps, s0, s1, decay, lower, upper):
    """The reference loop (act_max.py) in float64, gradients written out by hand."""
    w1, b1, w2, b2, w3, b3 = params
    y = np.array(y0, np.float64)
    history, best_v, best_y = [], np.full(len(y), -np.inf), y.copy()

    def logits(y):
        return (np.maximum(y @ w1 + b1, 0) @ w2 + b2) @ w3 + b3

    for t in range(steps):
        pre = y @ w1 + b1
        v = np.sum(logits(y) * w, axis=1)
        # dF_i/dy = W1 [1(pre > 0) * (W2 W3 w_i)]
        g = ((w @ (w2 @ w3).T) * (pre > 0)) @ w1.T
        step = s0 + (s1 - s0) * t / steps
        scale = np.abs(g).mean(axis=1, keepdims=True)
        better = v > best_v
        best_y[better], best_v[better] = y[better], v[better]
        y = decay * np.clip(y + step * g / scale, lower, upper)
        history.append(v)
    return y, np.array(history), best_y, best_v, logits(y)


def test_update_matches_numpy_reference_with_bounds_and_a_weighted_sum():
    g, c = tiny_models()
    w = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.5, -1.0, 2.0]], np.float32)
    y0 = np.random.default_rng(0).normal(size=(3, D)).astype(np.float32)
    opts = dict(steps=25, decay=0.97, lower=-0.5, upper=np.linspace(0.5, 1.5, D))
    r = dg.dgn_am(None, g, c, ["logits:0", "logits:1", "logits:2"], weights=w, init=y0, step_size=(0.4, 0.01), **opts)
    y, hist, best_y, best_v, act = numpy_dgn_am(y0, w, numpy_weights(g, c), s0=0.4, s1=0.01, **opts)
    np.testing.assert_allclose(r.history, hist, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(r.codes, y, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(r.activations, act, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(r.values, np.sum(act * w, axis=1), rtol=1e-4, atol=1e-4)
    assert np.all(r.best_values >= np.maximum(best_v, r.values) - 1e-5)
    # the bounds were active: some unit sits at a bound (times the decay)
    assert np.any(np.isclose(np.asarray(r.codes), 0.97 * opts["upper"], atol=1e-6))
    assert np.all(np.asarray(r.codes) <= opts["upper"] + 1e-6) and np.all(np.asarray(r.codes) >= -0.5)
    assert r.neurons == ("logits:0@0,0", "logits:1@0,0", "logits:2@0,0")  # a conv layer: its one position


def test_kernel_on_a_linear_objective_in_closed_form():
    """F_i(y) = a_i . y: every step adds s_t a_i / mean|a_i|, then clips and decays; a chain whose
    gradient is zero (or NaN) takes no step; best keeps the highest evaluated code, never a NaN."""
    a = np.array([[1.0, -2.0, 4.0], [0.0, 0.0, 0.0], [np.nan, 1.0, 1.0]], np.float32)
    kernel = dg.dgn_am_kernel(lambda y: jnp.sum(y * a, axis=1), steps=4, step_size=(2.0, 0.0), decay=0.5,
                              lower=-1.0, upper=3.0)
    y0 = np.zeros((3, 3), np.float32)
    state, values = kernel.step(kernel.init(y0))
    y1 = 0.5 * np.clip(2.0 * a[0] / (7 / 3), -1, 3)  # s_0 = 2, mean |a_0| = 7/3
    np.testing.assert_allclose(state.code[0], y1, rtol=1e-6)
    np.testing.assert_array_equal(state.code[1:], 0.0)
    np.testing.assert_array_equal(np.asarray(values)[:2], [0.0, 0.0])
    state, values = kernel.step(state)  # s_1 = 2 - 2/4 = 1.5
    np.testing.assert_allclose(state.code[0], 0.5 * np.clip(y1 + 1.5 * a[0] / (7 / 3), -1, 3), rtol=1e-6)
    assert float(state.best_value[0]) == float(values[0]) > 0 and np.isneginf(float(state.best_value[2]))
    np.testing.assert_allclose(dg.step_sizes(4, 2.0, 0.0), [2.0, 1.5, 1.0, 0.5])


def test_chains_match_single_runs_and_best_is_the_maximum():
    g, c = tiny_models(3)
    y0 = np.random.default_rng(1).normal(size=(P, D)).astype(np.float32)
    neurons = [f"logits:{j}" for j in range(P)]
    both = dg.dgn_am(None, g, c, neurons, init=y0, steps=15, step_size=(2.0, 0.1))
    for j in range(P):
        one = dg.dgn_am(None, g, c, neurons[j], init=y0[j:j + 1], steps=15, step_size=(2.0, 0.1))
        np.testing.assert_allclose(both.codes[j], one.codes[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(both.history[:, j], one.history[:, 0], rtol=1e-5, atol=1e-5)
    h = np.asarray(both.history)
    np.testing.assert_allclose(both.best_values, np.maximum(h.max(axis=0), both.values), rtol=1e-6)
    # the best code is the evaluated code with the best value: re-evaluating it gives that value
    again = dg.dgn_am(None, g, c, neurons, init=np.asarray(both.best_codes), steps=1, step_size=0.0 + 1e-30)
    np.testing.assert_allclose(again.history[0], both.best_values, rtol=1e-5, atol=1e-5)
    # the key draws N(0, I) codes: the same key gives the same run, another key another one
    a = dg.dgn_am(jax.random.PRNGKey(4), g, c, neurons, steps=3)
    b = dg.dgn_am(jax.random.PRNGKey(4), g, c, neurons, steps=3)
    d = dg.dgn_am(jax.random.PRNGKey(5), g, c, neurons, steps=3)
    np.testing.assert_array_equal(a.codes, b.codes)
    assert not np.allclose(a.codes, d.codes)


def test_shipped_fc_generator_excites_every_logit():
    """Each of 10 chains ends with its own class as the classifier's top logit, far above its start."""
    g, c = jaxprobe.load("fc_generator"), jaxprobe.load("classifier")
    neurons = [f"logits:{j}" for j in range(10)]
    r = jaxprobe.dgn_am(jax.random.PRNGKey(0), g, c, neurons, steps=40, step_size=(1.0, 1e-10), lower=0.0)
    act = np.asarray(r.activations)
    assert np.array_equal(act.argmax(axis=1), np.arange(10)), act.argmax(axis=1)
    assert np.all(np.asarray(r.values) > np.asarray(r.history[0]) + 5.0)
    assert np.all(np.asarray(r.codes) >= 0.0) and r.images.shape == (10, 28, 28, 1)
    # an independent read of the neurons on the returned images
    fresh = jaxprobe.neuron_values(c, c.params, jaxprobe.convert_pixels(r.images, g.pixels, c.pixels), neurons)
    np.testing.assert_allclose(np.diag(np.asarray(fresh)), r.values, rtol=1e-4, atol=1e-3)


CAFFE_PX = PixelConvention(0.0, 255.0, "BGR", (104.0, 117.0, 123.0), 1.0)


def abstract_model(builder, shape, role):
    """A paper-scale model with shape-only parameters (nothing allocated)."""
    net = nnx.eval_shape(lambda: builder(rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(net)
    return Model(builder.__name__, graphdef, state, net.names, shape, role, CAFFE_PX)


def test_paper_scale_fc6_generator_and_caffenet_by_shape():
    """DeePSim fc6 (4096 -> 256x256 BGR minus mean) into CaffeNet (227 centre crop), shape-only,
    for DGN-AM and for the inverse set's forward pass (which shares the pixel map)."""
    gen = abstract_model(archs_paper.deepsim_fc6, (4096,), "generator")
    net = abstract_model(archs_paper.caffenet, (227, 227, 3), "classifier")
    neurons = jaxprobe.resolve_neurons(net, ["fc8:945", "conv5:3"])
    layers, flat = tuple(n.layer for n in neurons), np.array([flat_index(net, n) for n in neurons], np.int32)
    y = jax.ShapeDtypeStruct((2, 4096), jnp.float32)
    out = jax.eval_shape(lambda gp, cp, y: dg.dgn_am_run(gen, gp, net, cp, layers, flat, jnp.eye(2), y, steps=2,
                                                         lower=0.0, upper=1.0), gen.params, net.params, y)
    assert out.codes.shape == (2, 4096) and out.activations.shape == (2, 2) and out.history.shape == (2, 2)
    assert out.images.shape == (2, 256, 256, 3)
    inv = importlib.import_module("jaxprobe.inverse_sets.inverse_set")
    emb = inv.Embedding(net, "fc6")
    ranges = np.array([[0.0, 1.0]] * 2)
    values, feats = jax.eval_shape(
        lambda gp, cp, y: inv.make_problem(gen, gp, net, cp, layers, flat, ranges, emb, cp).forward(y),
        gen.params, net.params, y)
    assert values.shape == (2, 2) and feats.shape == (2, 4096)


@pytest.mark.parametrize("kwargs, message", [
    (dict(neurons="nope:1"), "nope:1"),
    (dict(neurons="logits:3"), "unit 3 out of range"),
    (dict(init=np.full((3, D), np.nan, np.float32)), "init: expected finite"),
    (dict(init=np.zeros((2, D), np.float32)), "init: expected codes of shape (3, 6)"),
    (dict(weights=np.ones((2, 2))), "weights: expected shape (chains, 3)"),
    (dict(weights=np.full((1, 3), np.inf)), "weights: expected finite"),
    (dict(lower=1.0, upper=0.0), "lower <= upper"),
    (dict(upper=np.ones(5)), "upper: expected a scalar or an array broadcasting"),
    (dict(steps=0), "steps: expected an integer >= 1"),
    (dict(decay=0.0), "decay"),
    (dict(decay=1.5), "decay"),
    (dict(step_size=-1.0), "step_size"),
    (dict(step_size=(1.0, 2.0, 3.0)), "step_size"),
    (dict(swap=True), "generator: expected a generator"),
    (dict(mesh="cpu"), "mesh: expected a jax.sharding.Mesh"),
])
def test_bad_input_names_the_argument(kwargs, message):
    g, c = tiny_models()
    kwargs = dict(kwargs)
    neurons = kwargs.pop("neurons", ["logits:0", "logits:1", "logits:2"])
    if kwargs.pop("swap", False):
        g = c
    with pytest.raises(JaxprobeError) as err:
        dg.dgn_am(jax.random.PRNGKey(0), g, c, neurons, steps=kwargs.pop("steps", 2), **kwargs)
    assert message in str(err.value), str(err.value)


def test_adam_first_steps_on_a_linear_objective_in_closed_form():
    """optimizer=optax.adam(lr) on F_i(y) = a_i . y: the gradient is constant, so Adam's bias-corrected
    moments are m = a, v = a^2 and every step adds lr a / (|a| + eps) before the clip and the decay."""
    optax = pytest.importorskip("optax")
    a = np.array([[1.0, -2.0, 4.0], [0.5, 0.0, -3.0]], np.float32)
    lr, eps = 0.3, 1e-8
    kernel = dg.dgn_am_kernel(lambda y: jnp.sum(y * a, axis=1), steps=3, decay=0.9, lower=-1.0, upper=0.5,
                              optimizer=optax.adam(lr, eps=eps))
    state = kernel.init(np.zeros((2, 3), np.float32))
    y = np.zeros((2, 3))
    for _ in range(3):
        state, _ = kernel.step(state)
        y = 0.9 * np.clip(y + lr * a / (np.abs(a) + eps), -1.0, 0.5)
        np.testing.assert_allclose(state.code, y, rtol=1e-5, atol=1e-7)


def test_real_bounds_are_a_multiple_of_the_encoder_on_real_images():
    g, c = jaxprobe.load("fc_generator"), jaxprobe.load("classifier")
    x = np.random.default_rng(0).uniform(size=(20, 28, 28, 1)).astype(np.float32)
    lower, upper = dg.real_bounds(g, x, multiple=2.0)
    fc1 = np.maximum(np.asarray(c.up_to(c.params, c.pixels.from_canonical(jnp.asarray(x)), "fc1")), 0.0)
    np.testing.assert_allclose(upper, 2.0 * fc1.max(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(lower, 0.0)
    with pytest.raises(JaxprobeError, match="images: expected real images of shape"):
        dg.real_bounds(g, x[:, :27])
    with pytest.raises(JaxprobeError, match="multiple"):
        dg.real_bounds(g, x, multiple=0.0)


def test_class_neurons_beat_real_images_and_codes_stay_in_real_bounds():
    """The reference update (200 steps) with real-data bounds on the 10 class neurons: the codes lie
    in [lower, upper] after every step, >= 9 of 10 neurons end above their class's real mean, and
    >= 9 of 10 images are classified as their target (recomputed from the codes)."""
    from jaxprobe.experiments.codespace import class_neurons, code_bounds, real_class_means

    g, c = jaxprobe.load("fc_generator"), jaxprobe.load("classifier")
    neurons = class_neurons(c)
    lower, upper = code_bounds(g, "real")
    resolved = jaxprobe.resolve_neurons(c, neurons)
    layers, flat = tuple(n.layer for n in resolved), np.array([flat_index(c, n) for n in resolved], np.int32)
    objective = dg.neuron_objective(g, g.params, c, c.params, layers, flat, jnp.eye(10))
    kernel = dg.dgn_am_kernel(lambda y: objective(y)[0], steps=200, lower=lower, upper=upper)

    @jax.jit
    def run(y0):
        return jax.lax.scan(lambda s, _: (kernel.step(s)[0],) * 2, kernel.init(y0), None, length=200)

    last, states = run(jax.random.normal(jax.random.PRNGKey(0), (10,) + tuple(g.input_shape)))
    codes = np.asarray(states.code)
    assert np.all(codes >= lower - 1e-6) and np.all(codes <= upper + 1e-6)
    images = jaxprobe.convert_pixels(g.forward(g.params, last.code), g.pixels, c.pixels)
    logits = np.asarray(c.forward(c.params, images))
    final = np.diag(logits)
    assert np.sum(final > real_class_means(c, neurons)) >= 9, final
    assert np.sum(logits.argmax(-1) == np.arange(10)) >= 9, logits.argmax(-1)
