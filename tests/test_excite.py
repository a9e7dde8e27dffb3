"""Generators trained to excite a neuron (Despraz et al. 2017) on the shipped classifier.

The trained runs are module fixtures (one compiled program per variant): every class target of the
default classifier, from scratch and from the shipped DAE's decoder.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxprobe
from jaxprobe.codespace import excite as ex
from jaxprobe.errors import JaxprobeError
from jaxprobe.models import excite_gen
from jaxprobe.models.layers import Act, Flatten, Layer, Network
from jaxprobe.models.pixels import PixelConvention
from jaxprobe.models.probe import Model

CLASSES = [f"logits:{j}" for j in range(10)]
STEPS = {"scratch": 200, "pretrained": 60}


@pytest.fixture(scope="module")
def classifier():
    return jaxprobe.load("classifier")


def _train(classifier, pretrained):
    before = [np.array(a) for a in jax.tree.leaves(classifier.params)]
    res = ex.excite(jax.random.PRNGKey(0), CLASSES, classifier=classifier, pretrained=pretrained,
                    steps=STEPS["pretrained" if pretrained else "scratch"])
    after = [np.array(a) for a in jax.tree.leaves(classifier.params)]
    return res, before, after


@pytest.fixture(scope="module")
def scratch(classifier):
    return _train(classifier, False)


@pytest.fixture(scope="module")
def pretrained(classifier):
    return _train(classifier, True)


def _check_classes(res, classifier, before, after):
    # The loss falls: the last 10 steps' mean below the first 10 steps' for every target (the
    # loss is noisy from step to step: it is measured on the step's jittered input).
    assert np.all(res.loss[:, -10:].mean(1) < res.loss[:, :10].mean(1) - 1.0), res.loss[:, [0, -1]]
    out = np.asarray(res.outputs)
    first = [j for j in range(10) if out[j, j] > np.delete(out[j], j).max()]
    assert len(first) >= 9, (first, out.round(2))
    # The unmodified (softmax) classifier, recomputed here from the images: each image whose
    # target is first is classified as it (the softmax is monotone in the logits).
    logits = np.asarray(classifier.forward(classifier.params, jnp.asarray(res.images)))
    predicted = logits.argmax(-1)
    assert sorted(j for j in range(10) if predicted[j] == j) == first
    # The ReLU'd outputs are the relu of those logits (the classifier with ReLU in place of softmax).
    np.testing.assert_allclose(out, np.maximum(logits, 0), rtol=1e-4, atol=1e-4)
    # The classifier's parameters are bit-identical before and after training.
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    return first


def test_scratch_excites_every_class(scratch, classifier):
    res, before, after = scratch
    first = _check_classes(res, classifier, before, after)
    print("scratch: first for", len(first), "classes")
    # The returned parameters reproduce the image through the probe protocol (batch statistics frozen in).
    g = ex.default_generator(classifier, jax.random.split(jax.random.PRNGKey(0))[0])
    params = jax.tree.map(lambda a: a, g.params)
    nnx.replace_by_pure_dict(params, res.params[3])
    image = g.forward(params, jnp.ones((1,) + g.input_shape))
    np.testing.assert_allclose(np.asarray(image[0]), res.images[3], atol=1e-5)


def test_pretrained_excites_every_class(pretrained, classifier):
    res, before, after = pretrained
    _check_classes(res, classifier, before, after)
    # Only alpha trained: the returned decoder parameters equal the DAE's but for alpha.
    dec = excite_gen.dae_decoder(jaxprobe.load("dae"))
    ref = nnx.to_pure_dict(dec.params)
    got = res.params[0]
    assert not np.array_equal(got["layers"][0]["linear"]["alpha"], ref["layers"][0]["linear"]["alpha"])
    for i in range(1, len(dec.layer_names)):
        for a, b in zip(jax.tree.leaves(got["layers"][i]), jax.tree.leaves(ref["layers"][i])):
            assert np.array_equal(np.asarray(a), np.asarray(b))


TINY = {"grid": (7, 7, 2), "widths": (4, 2), "channels": 1}
TINY_TARGETS = ("logits:3", "conv2:5", "logits:3+logits:8")


def _tiny_problem(classifier):
    g = excite_gen.generator_model(TINY, seed=3)
    targets = [ex.parse_target(classifier, t) for t in TINY_TARGETS]
    problem, weights = ex.training_problem(g, classifier, targets, ex.SCRATCH)
    trained, fixed = ex.split_params(g, g.params, ex.SCRATCH)
    return g, problem, weights, trained, fixed


@pytest.fixture(scope="module")
def tiny_run(classifier):
    """3 targets (a class, a filter, a compound) of a tiny generator, 5 steps by
    `jaxprobe.run(vmap=True)` with the run key `excite(PRNGKey(1), ...)` uses."""
    g = excite_gen.generator_model(TINY, seed=3)
    lam = np.asarray([1.0, 0.0, 0.5], np.float32)
    s = ex.setup(ex.ExciteNets(g, classifier), ex.ExciteOptions(steps=5, lam=lam), TINY_TARGETS)
    key = jax.random.split(jax.random.PRNGKey(1))[1]
    return g, lam, s, key, jaxprobe.run(s.kernel, key, s.states, 5, vmap=True)


def test_targets_together_equal_one_by_one(classifier, tiny_run):
    """vmap over targets changes nothing but float32 rounding: the 3 targets together against the
    last alone, each run without vmap from fold_in(key, i) (so that its step t draws what chain
    i's does). Tolerance 1e-5 absolute on [0, 1] pixels and 1e-4 relative on losses: batched and
    unbatched products may sum in a different order (float32 eps 1.2e-7 per operation, amplified
    by 5 optimizer steps). `excite` is that run."""
    g, lam, s, key, together = tiny_run
    images = s.finish(together.state)[0]
    for i in (2,):
        one = jax.tree.map(lambda a: a[i], s.states)
        alone = jaxprobe.run(s.kernel, jax.random.fold_in(key, i), one, 5)
        np.testing.assert_allclose(np.asarray(alone.trace.loss), np.asarray(together.trace.loss[:, i]), rtol=1e-4,
                                   atol=1e-5)
        im1 = s.finish(jax.tree.map(lambda a: a[None], alone.state))[0]
        np.testing.assert_allclose(np.asarray(im1[0]), np.asarray(images[i]), atol=1e-5)
    res = ex.excite(jax.random.PRNGKey(1), list(TINY_TARGETS), classifier=classifier, generator=g, steps=5,
                    lam=list(lam))
    np.testing.assert_allclose(res.loss, np.asarray(together.trace.loss).T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.images, np.asarray(images), atol=1e-6)


def test_kernel_composes_with_vmap_scan_and_jit_and_traces_once(tiny_run):
    """User code: targets by vmap, steps by scan, under jit, equals the driver; the step traces
    once under a jitted scan called twice."""
    chex = pytest.importorskip("chex")
    _, _, s, key, together = tiny_run
    step = chex.assert_max_traces(s.kernel.step, n=1)

    @jax.jit
    def train(key, states):
        def body(states, t):
            keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(key, i), t))(jnp.arange(3))
            return jax.vmap(step)(keys, states)
        return jax.lax.scan(body, states, jnp.arange(5))

    states, info = train(key, s.states)
    train(jax.random.PRNGKey(3), s.states)
    chex.clear_trace_counter()
    np.testing.assert_allclose(np.asarray(info.loss), np.asarray(together.trace.loss), rtol=1e-5, atol=1e-6)


def test_step_follows_eq2(classifier):
    """One public `excite_step` against eq. 2 evaluated directly: its loss, and its update equals
    AdaMax's on the gradient of that loss."""
    g, problem, weights, trained, fixed = _tiny_problem(classifier)
    f0 = jnp.ones(g.input_shape)
    w = tuple(a[2] for a in weights)  # the compound logits:3+logits:8
    state = ex.excite_init(problem, trained)
    key = jax.random.PRNGKey(1)
    x = f0 + 2.0 * jax.random.normal(key, f0.shape)

    @jax.jit  # one program for the step and the reference
    def both(state):
        new, loss = ex.excite_step(key, state, problem=problem, fixed=fixed, cls_params=classifier.params, f0=f0,
                                   weights=w, lam=0.5)
        params = nnx.merge_state(state.params, fixed)
        logits = classifier.forward(classifier.params, ex.generate(problem, params, x))[0]
        gamma = params["layers"][len(g.layer_names) - 1]["norm"]["scale"][...]
        grads = jax.grad(ex.excite_loss)(state.params, fixed, x, problem, classifier.params, w, 0.5)
        return new, loss, logits, gamma, grads

    new, loss, logits, gamma, grads = both(state)
    logits, gamma = np.asarray(logits), np.asarray(gamma)
    others = np.maximum(np.delete(logits, [3, 8]), 0).sum()
    expect = -(logits[3] + logits[8]) + 0.5 * others + 0.01 * np.abs(gamma).sum()
    np.testing.assert_allclose(float(loss), expect, rtol=1e-4, atol=1e-4)
    # First AdaMax step (optax: m = 0.1 g bias-corrected to g, u = |g|): update = -lr g / (|g| + eps),
    # i.e. -lr sign(g) where |g| is well above float32 noise.
    for p0, p1, gr in zip(jax.tree.leaves(trained), jax.tree.leaves(new.params), jax.tree.leaves(grads)):
        gr, step = np.asarray(gr), np.asarray(p1) - np.asarray(p0)
        big = np.abs(gr) > 1e-4 * np.abs(gr).max() + 1e-6
        np.testing.assert_allclose(step[big], -0.01 * np.sign(gr[big]), rtol=1e-3, atol=1e-6)


def test_errors(classifier):
    key = jax.random.PRNGKey(0)
    with pytest.raises(JaxprobeError, match="target 'logits:12'"):
        ex.excite(key, "logits:12", classifier=classifier)
    with pytest.raises(JaxprobeError, match="target 'nope:1'"):
        ex.excite(key, "nope:1", classifier=classifier)
    with pytest.raises(JaxprobeError, match="one layer"):
        ex.excite(key, "logits:3+conv2:5", classifier=classifier)
    with pytest.raises(JaxprobeError, match="lambda: expected a non-negative"):
        ex.excite(key, "logits:3", classifier=classifier, lam=-0.5)
    with pytest.raises(JaxprobeError, match="lambda: expected one number or one per target"):
        ex.excite(key, ["logits:3", "logits:4"], classifier=classifier, lam=[1.0])
    with pytest.raises(JaxprobeError, match="steps: expected an integer >= 1"):
        ex.excite(key, "logits:3", classifier=classifier, steps=0)
    # float32 at the boundary: finite in float64, inf in float32; or finite, but not times the units
    for lam in (1e39, 1e36, float("nan")):
        with pytest.raises(JaxprobeError, match="lambda: expected a non-negative weight"):
            ex.excite(key, "logits:3", classifier=classifier, lam=lam)
    with pytest.raises(JaxprobeError, match="variant.lr: expected a float32 number"):
        ex.excite(key, "logits:3", classifier=classifier, variant=ex.SCRATCH._replace(lr=1e39))
    with pytest.raises(JaxprobeError, match="lamb: not a setting of ExciteOptions"):
        ex.excite(key, "logits:3", classifier=classifier, lamb=0.5)
    net = Network([Layer(nnx.Conv(1, 2, (3, 3), rngs=nnx.Rngs(0)), Act("relu"), (Flatten(),)),
                   Layer(nnx.Linear(28 * 28 * 2, 10, rngs=nnx.Rngs(0)), Act("tanh"))], ["conv", "out"])
    tanh = Model.from_module("tanh_clf", net, (28, 28, 1), "classifier", PixelConvention(0.0, 1.0, "gray"))
    with pytest.raises(JaxprobeError, match="classifier: the last layer 'out' of 'tanh_clf' has a 'tanh' output"):
        ex.excite(key, "out:3", classifier=tanh)


def test_targets_parse(classifier):
    assert ex.parse_target(classifier, "conv2:5") == ex.Target("conv2:5", ex.Readout(2, "filter"), (5,))
    assert ex.parse_target(classifier, "conv2:5@3,3") == ex.Target("conv2:5@3,3", ex.Readout(2, "position", (3, 3)),
                                                                   (5,))
    assert ex.parse_target(classifier, "4:3+logits:8").units == (3, 8)
    x = jax.random.uniform(jax.random.PRNGKey(0), (2, 28, 28, 1))
    h = np.asarray(classifier.activation(classifier.params, x, 2))
    np.testing.assert_allclose(np.asarray(ex.layer_readout(classifier, classifier.params, x, ex.Readout(2, "filter"))),
                               h.mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(ex.layer_readout(classifier, classifier.params, x, ex.Readout(2, "position", (3, 3)))),
        h[:, 3, 3], rtol=1e-5, atol=1e-6)


def test_default_generator_for_any_input_size():
    """Table 2's pattern sized to the classifier's input, CaffeNet's 227 included (a 256 image
    centre-cropped), at full size by shape: one training step of a filter and a class target."""
    from jaxprobe.models import archs_paper

    assert excite_gen.config_for((28, 28, 1)) == {"grid": (7, 7, 16), "widths": (32, 16), "channels": 1}
    assert excite_gen.config_for((224, 224, 3))["grid"] == (7, 7, 128)
    assert excite_gen.config_for((227, 227, 3))["grid"] == (8, 8, 128)
    assert excite_gen.config_for((40, 40, 3))["grid"] == (10, 10, 16)
    net = nnx.eval_shape(lambda: archs_paper.caffenet(rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(net)
    px = PixelConvention(0.0, 255.0, "BGR", (104.0, 117.0, 123.0), 1.0)
    caffenet = Model("caffenet", graphdef, state, net.names, (227, 227, 3), "classifier", px)
    g = ex.default_generator(caffenet, jax.random.PRNGKey(0), shape_only=True)
    assert g.output_shape() == (256, 256, 3)
    def one_step(gp, cp, keys):
        nets = ex.ExciteNets(g.replace(params=gp), caffenet.replace(params=cp))
        s = ex.setup(nets, ex.ExciteOptions(steps=1), ["fc8:945", "conv5:3"])
        return s.states, jax.vmap(s.kernel.step)(keys, s.states)

    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    start, (new, info) = jax.eval_shape(one_step, g.params, caffenet.params, keys)
    assert info.loss.shape == (2,)
    assert jax.tree.structure(new.params) == jax.tree.structure(start.params)
    assert new.params["layers"][0]["linear"]["alpha"].shape == (2, 8 * 8 * 128)
    with pytest.raises(JaxprobeError, match="no default generator for 'tanh'"):
        ex.default_generator(caffenet.replace(name="tanh", input_shape=(30, 20, 3)), jax.random.PRNGKey(0))


def test_generator_shapes():
    """The 28x28x1 generator, and Table 2's widths at 224x224x3 by shape only."""
    g = excite_gen.generator_model()
    assert g.output_shape() == (28, 28, 1) and g.input_shape == (784,)
    v = excite_gen.generator_model(excite_gen.VGG_CONFIG, shape_only=True)
    out = jax.eval_shape(v.forward, v.params, jax.ShapeDtypeStruct((2, 7 * 7 * 128), jnp.float32))
    assert out.shape == (2, 224, 224, 3)
    assert v.layer_shape("b1c1") == (14, 14, 512) and v.layer_shape("out") == (224, 224, 3)


def test_conv3x3_matches_lax():
    conv = excite_gen.Conv3x3(3, 5, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 6, 7, 3))
    ref = jax.lax.conv_general_dilated(x, conv.kernel[...], (1, 1), "SAME",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC")) + conv.bias[...]
    np.testing.assert_allclose(np.asarray(conv(x)), np.asarray(ref), rtol=1e-5, atol=1e-5)


def test_docs_example_runs():
    """The "Composing the kernel" block of docs/methods/excite.md, run as written: the two
    generators train (the loss falls) and draw [0, 1] images."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "methods" / "excite.md").read_text()
    after = text[text.index("## Composing the kernel"):]
    start = after.index("```python\n") + len("```python\n")
    ns = {}
    exec(compile(after[start:after.index("```", start)], "excite.md", "exec"), ns)
    loss, images = np.asarray(ns["loss"]), np.asarray(ns["images"])
    assert loss.shape == (20, 2) and images.shape == (2, 28, 28, 1)
    assert np.all((images >= 0) & (images <= 1))
    assert np.all(loss[-5:].mean(0) < loss[:5].mean(0))
