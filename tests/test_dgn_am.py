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

    prev = y
    for t in range(steps):
        prev = y
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
    return y, np.array(history), best_y, best_v, logits(y), prev


def numpy_generator(y, params):
    w1, b1, w2, b2 = params[:4]
    return np.maximum(y @ w1 + b1, 0) @ w2 + b2


def test_update_matches_numpy_reference_with_bounds_and_a_weighted_sum():
    g, c = tiny_models()
    w = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.5, -1.0, 2.0]], np.float32)
    y0 = np.random.default_rng(0).normal(size=(3, D)).astype(np.float32)
    opts = dict(steps=25, decay=0.97, lower=-0.5, upper=np.linspace(0.5, 1.5, D))
    r = dg.dgn_am(None, g, c, ["logits:0", "logits:1", "logits:2"], weights=w, init=y0, step_size=(0.4, 0.01), **opts)
    params = numpy_weights(g, c)
    y, hist, best_y, best_v, act, prev = numpy_dgn_am(y0, w, params, s0=0.4, s1=0.01, **opts)
    np.testing.assert_allclose(r.history, hist, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(r.codes, y, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(r.activations, act, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(r.values, np.sum(act * w, axis=1), rtol=1e-4, atol=1e-4)
    assert np.all(r.best_values >= np.maximum(best_v, r.values) - 1e-5)
    # the bounds were active: some unit sits at a bound (times the decay)
    assert np.any(np.isclose(np.asarray(r.codes), 0.97 * opts["upper"], atol=1e-6))
    assert np.all(np.asarray(r.codes) <= opts["upper"] + 1e-6) and np.all(np.asarray(r.codes) >= -0.5)
    assert r.neurons == ("logits:0@0,0", "logits:1@0,0", "logits:2@0,0")  # a conv layer: its one position
    # The images are G of the last code y_T (the reference's loop returns G(y_{T-1}), the image its
    # last iteration started from, and never renders its last update).
    images = np.asarray(r.images).reshape(3, 16)
    np.testing.assert_allclose(images, numpy_generator(y, params), rtol=1e-4, atol=1e-5)
    assert not np.allclose(images, numpy_generator(prev, params), rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(r.stopped, False)
    np.testing.assert_array_equal(r.steps_taken, 25)


def linear_kernel(a, **settings):
    """The one-chain kernel on F(y) = a_i . y, chains by vmap (a_i each chain's target)."""
    kernel = dg.dgn_am_kernel(lambda y, ai: jnp.dot(y, ai), **settings)
    init = jax.vmap(kernel.init)
    step = jax.jit(jax.vmap(kernel.step))
    keys = jax.random.split(jax.random.PRNGKey(0), len(a))
    return (lambda y0: init(jnp.asarray(y0), jnp.asarray(a))), (lambda s: step(keys, s))


def test_kernel_on_a_linear_objective_in_closed_form():
    """F_i(y) = a_i . y: every step adds s_t a_i / mean|a_i|, then clips and decays; a chain whose
    gradient is zero (or NaN) stops where it is (no decay either); best keeps the highest
    evaluated code, never a NaN."""
    a = np.array([[1.0, -2.0, 4.0], [0.0, 0.0, 0.0], [np.nan, 1.0, 1.0]], np.float32)
    init, step = linear_kernel(a, steps=4, step_size=(2.0, 0.0), decay=0.5, lower=-1.0, upper=3.0)
    y0 = np.array([[0.0, 0.0, 0.0], [1.0, -1.0, 2.0], [0.5, 0.5, 0.5]], np.float32)
    state, info = step(init(y0))
    y1 = 0.5 * np.clip(2.0 * a[0] / (7 / 3), -1, 3)  # s_0 = 2, mean |a_0| = 7/3
    np.testing.assert_allclose(state.code[0], y1, rtol=1e-6)
    np.testing.assert_array_equal(state.code[1:], y0[1:])  # stopped: neither clipped nor decayed
    np.testing.assert_array_equal(np.asarray(info.value)[:2], [0.0, a[1] @ y0[1]])
    np.testing.assert_array_equal(state.stopped, [False, True, True])
    np.testing.assert_array_equal(state.step, [1, 0, 0])
    state, info = step(state)  # s_1 = 2 - 2/4 = 1.5
    np.testing.assert_allclose(state.code[0], 0.5 * np.clip(y1 + 1.5 * a[0] / (7 / 3), -1, 3), rtol=1e-6)
    np.testing.assert_array_equal(state.code[1:], y0[1:])
    assert float(state.best_value[0]) == float(info.value[0]) > 0 and np.isneginf(float(state.best_value[2]))
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
    options = dg.DGNAMOptions(steps=2, lower=0.0, upper=1.0)
    out = jax.eval_shape(lambda gp, cp, y: dg.dgn_am_run(dg.DGNAMNets(gen, net, gp, cp), options,
                                                         dg.NeuronReadout(layers, flat), y, jnp.eye(2)),
                         gen.params, net.params, y)
    assert out.codes.shape == (2, 4096) and out.activations.shape == (2, 2) and out.history.shape == (2, 2)
    assert out.images.shape == (2, 256, 256, 3)
    inv = importlib.import_module("jaxprobe.inverse_sets.problem")
    emb = inv.Embedding(net, "fc6")
    ranges = np.array([[0.0, 1.0]] * 2)
    values, feats = jax.eval_shape(
        lambda gp, cp, y: inv.make_problem(inv.InverseSetNets(gen, net, emb, gp, cp, cp),
                                           inv.Targets(layers, flat, ranges)).forward(y),
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
    (dict(step_size=1e39), "step_size: expected s > 0"),  # finite in float64, inf in float32
    (dict(step_size=1e38), "step_size: expected s > 0"),  # finite in float32, s x code size is not
    (dict(step_size=(1.0, 1e39)), "step_size: expected s > 0"),
    (dict(upper=1e39), "upper: expected bounds finite in float32"),
    (dict(lower=-1e39), "lower: expected bounds finite in float32"),
    (dict(weights=np.full((3, 3), 1e39)), "weights: expected finite"),
    (dict(init=np.full((3, D), 1e39)), "init: expected finite"),
    (dict(decay=1e-50), "decay"),
    (dict(stepz=3), "stepz: not a setting of DGNAMOptions"),
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
    init, step = linear_kernel(a, steps=3, decay=0.9, lower=-1.0, upper=0.5, optimizer=optax.adam(lr, eps=eps))
    state = init(np.zeros((2, 3), np.float32))
    y = np.zeros((2, 3))
    for _ in range(3):
        state, _ = step(state)
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
    kernel = dg.build(dg.DGNAMNets(g, c), dg.DGNAMOptions(lower=lower, upper=upper), dg.NeuronReadout(layers, flat))
    step = jax.vmap(kernel.step)

    @jax.jit
    def run(y0):
        keys = jax.random.split(jax.random.PRNGKey(1), 10)
        return jax.lax.scan(lambda s, _: (step(keys, s)[0],) * 2, jax.vmap(kernel.init)(y0, jnp.eye(10)), None,
                            length=200)

    last, states = run(jax.random.normal(jax.random.PRNGKey(0), (10,) + tuple(g.input_shape)))
    codes = np.asarray(states.code)
    assert np.all(codes >= lower - 1e-6) and np.all(codes <= upper + 1e-6)
    images = jaxprobe.convert_pixels(g.forward(g.params, last.code), g.pixels, c.pixels)
    logits = np.asarray(c.forward(c.params, images))
    final = np.diag(logits)
    assert np.sum(final > real_class_means(c, neurons)) >= 9, final
    assert np.sum(logits.argmax(-1) == np.arange(10)) >= 9, logits.argmax(-1)


def fc1_start(g, c, chains=6, seed=0):
    """N(0, I) codes and, per chain, an fc1 unit whose pre-activation there is negative (0 after
    the ReLU), with those pre-activations: the classifier up to fc1 on G(y0)."""
    y0 = np.asarray(jax.random.normal(jax.random.PRNGKey(seed), (chains,) + tuple(g.input_shape)))
    x = jaxprobe.adapt_images(g.forward(g.params, jnp.asarray(y0)), g.pixels, c.pixels, c.input_shape)
    pre = np.asarray(c.up_to(c.params, x, "fc1"))
    units = [int(np.flatnonzero(row < -0.1)[i]) for i, row in enumerate(pre)]
    return y0, units, pre[np.arange(chains), units]


def test_hidden_neurons_are_read_before_the_relu_and_dead_units_still_move():
    """fc1 units at 0 after their ReLU: read before it (the reference's `net.forward(end=layer)`),
    each chain starts at the unit's negative pre-activation and its first update follows that
    pre-activation's gradient (taken here from the networks alone); read after it, every chain has
    a zero gradient and stops at once, its code untouched (no decay either)."""
    g, c = jaxprobe.load("fc_generator"), jaxprobe.load("classifier")
    y0, units, pre = fc1_start(g, c)
    neurons = [f"fc1:{u}" for u in units]
    r = jaxprobe.dgn_am(None, g, c, neurons, init=y0, steps=3, step_size=1.0)
    np.testing.assert_allclose(r.history[0], pre, rtol=1e-4, atol=1e-4)
    assert np.all(pre < 0) and not np.any(r.stopped) and np.all(r.steps_taken == 3)
    assert np.all(np.asarray(r.history[1]) > pre), (r.history[1], pre)

    @jax.jit
    def grads(y0, units):
        def pre_of(y, u):
            x = jaxprobe.adapt_images(g.forward(g.params, y[None]), g.pixels, c.pixels, c.input_shape)
            return c.up_to(c.params, x, "fc1")[0, u]
        return jax.vmap(jax.grad(pre_of))(y0, units)

    grad = np.asarray(grads(jnp.asarray(y0), jnp.asarray(units)))
    y1 = 0.99 * (y0 + grad / np.abs(grad).mean(axis=1, keepdims=True))  # s_0 = 1, no bounds
    pre1 = np.asarray(c.up_to(c.params, jaxprobe.adapt_images(g.forward(g.params, jnp.asarray(y1)), g.pixels,
                                                                c.pixels, c.input_shape), "fc1"))
    np.testing.assert_allclose(r.history[1], pre1[np.arange(len(units)), units], rtol=1e-3, atol=1e-3)

    post = jaxprobe.dgn_am(None, g, c, neurons, init=y0, steps=3, step_size=1.0, nonlinear=True)
    assert np.all(post.stopped) and np.all(post.steps_taken == 0)
    np.testing.assert_array_equal(post.codes, y0)
    np.testing.assert_array_equal(post.history, 0.0)


def tiny_kernel(steps=5):
    g, c = tiny_models()
    options = dg.DGNAMOptions(steps=steps, step_size=(0.5, 0.01), lower=-2.0, upper=2.0)
    return g, dg.build(dg.DGNAMNets(g, c), options, dg.neuron_readout(c, ["logits:0", "logits:1", "logits:2"]))


def test_kernel_composes_with_vmap_scan_and_jit_and_equals_the_driver():
    """User code: chains by vmap, steps by scan, all under jit, equals `jaxprobe.run(vmap=True)` and
    `dgn_am` on the same codes."""
    g, kernel = tiny_kernel()
    y0 = jax.random.normal(jax.random.PRNGKey(2), (3, D))
    w = jnp.eye(3)

    @jax.jit
    def chains(key, y0):
        def body(state, t):
            keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(key, i), t))(jnp.arange(3))
            return jax.vmap(kernel.step)(keys, state)
        return jax.lax.scan(body, jax.vmap(kernel.init)(y0, w), jnp.arange(5))

    state, info = chains(jax.random.PRNGKey(0), y0)
    out = jaxprobe.run(kernel, jax.random.PRNGKey(0), jax.vmap(kernel.init)(y0, w), 5, vmap=True)
    np.testing.assert_allclose(state.code, out.state.code, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(info.value, out.trace.value, rtol=1e-6, atol=1e-6)
    g_, c_ = tiny_models()
    r = dg.dgn_am(None, g_, c_, ["logits:0", "logits:1", "logits:2"], init=y0, steps=5, step_size=(0.5, 0.01),
                  lower=-2.0, upper=2.0)
    np.testing.assert_allclose(r.codes, state.code, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r.history, info.value, rtol=1e-5, atol=1e-6)


def test_step_traces_once():
    chex = pytest.importorskip("chex")
    _, kernel = tiny_kernel()
    step = chex.assert_max_traces(kernel.step, n=1)

    @jax.jit
    def steps(state):
        keys = jax.random.split(jax.random.PRNGKey(0), 3)
        return jax.lax.scan(lambda s, _: (jax.vmap(step)(keys, s)[0], None), state, None, length=4)[0]

    state = jax.vmap(kernel.init)(jnp.zeros((3, D)), jnp.eye(3))
    steps(state)
    steps(jax.vmap(kernel.init)(jnp.ones((3, D)), jnp.eye(3)))
    chex.clear_trace_counter()


def docs_block(page, heading="## Composing the kernel"):
    """The first ```python block after `heading` in docs/methods/<page>."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "methods" / page).read_text()
    after = text[text.index(heading):]
    start = after.index("```python\n") + len("```python\n")
    return after[start:after.index("```", start)]


def test_docs_example_runs():
    """The "Composing the kernel" block of docs/methods/dgn-am.md, run as written."""
    ns = {}
    exec(compile(docs_block("dgn-am.md"), "dgn-am.md", "exec"), ns)
    history, state, out = np.asarray(ns["history"]), ns["state"], ns["out"]
    assert history.shape == (20, 3) and np.all(history[-1] > history[0])
    assert out.trace.value.shape == (20, 3) and np.all(np.asarray(out.state.code) >= 0.0)
    assert np.all(np.asarray(state.best_value) >= history.max(axis=0) - 1e-5)


def test_real_bounds_need_real_images_for_a_non_mnist_encoder():
    """code_bounds "real" without images for a generator whose encoder does not read MNIST digits."""
    from jaxprobe.experiments.codespace import code_bounds

    g, c = jaxprobe.load("fc_generator"), tiny_models()[1]
    g = g.replace(manifest=dict(g.manifest, encoder={"model": "classifier", "layer": "fc1"}))
    with pytest.raises(JaxprobeError, match="bounds: 'real' needs MNIST|bounds: expected"):
        code_bounds(g, "elsewhere.txt")
    enc_g = g.replace(manifest=dict(g.manifest))
    import jaxprobe.codespace.dgn_am as mod
    orig = mod.recorded_encoder
    try:
        mod.recorded_encoder = lambda gen, e=None, l=None: (c, "logits")
        with pytest.raises(JaxprobeError, match="bounds: 'real' needs real images for 'tiny-cls'"):
            code_bounds(enc_g, "real")
    finally:
        mod.recorded_encoder = orig
