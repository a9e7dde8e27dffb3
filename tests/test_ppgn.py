"""PPGN (Nguyen et al. 2017): the Langevin kernel against the exact stationary law of its linear-Gaussian
recursion, one step in closed form, the reference loop's update and save counts replayed in numpy,
the condition gradient against the softmax's Jacobian formula (hidden neurons read before the
ReLU, as the reference), the kernel composed with vmap/scan/jit from user code (the docs' example)
and traced once, chains under vmap against single runs, seeds, paper-scale shapes, the shipped
models, bad input (float32 overflow included)."""

import functools
import importlib
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from flax import nnx

import jaxprobe
from jaxprobe import driver
from jaxprobe.errors import JaxprobeError
from jaxprobe.models import archs_paper, dae
from jaxprobe.models.layers import Act, Layer, Network, Reshape
from jaxprobe.models.probe import Model

pp = importlib.import_module("jaxprobe.codespace.ppgn")


D = 6  # the tiny generator's code length


def numpy_model(name, build, input_shape, role, seed=0) -> Model:
    """`build()`'s network with N(0, 1 / fan-in) parameters drawn by NumPy: running Flax's
    initializers would compile one program per parameter shape (a second each on a CPU)."""
    graphdef, state = nnx.split(nnx.eval_shape(build))
    rng = np.random.default_rng(seed)
    fan_in = lambda s: int(np.prod(s.shape[:-1])) if len(s.shape) > 1 else 4  # noqa: E731
    params = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape) / np.sqrt(fan_in(s)), s.dtype), state)
    return Model(name, graphdef, params, nnx.merge(graphdef, state).names, tuple(input_shape), role)


def tiny_dae(code_dim=D, hidden=(16,)):
    return numpy_model("tiny_dae", lambda: dae.h_dae(code_dim=code_dim, hidden=hidden, rngs=nnx.Rngs(0)),
                       (code_dim,), dae.ROLE, seed=2)


def tiny_generator(d=D):
    """G(h) = reshape(W2 relu(W1 h)) to a 4x4 image."""
    def build():
        rngs = nnx.Rngs(0)
        return Network([Layer(nnx.Linear(d, 12, rngs=rngs), Act("relu")),
                        Layer(nnx.Linear(12, 16, rngs=rngs), Act("identity"), after=(Reshape((4, 4, 1)),))],
                       ("fc1", "fc2"))

    return numpy_model("tiny-gen", build, (d,), "generator")


@functools.lru_cache(maxsize=None)
def tiny_models():
    """A tiny generator; a classifier with a 2x2 conv layer `hidden` (3x3 grid, 5 channels, ReLU) and
    a 3x3 conv `logits` (4 classes at its one position); an h-DAE. One object each for the module:
    models are static arguments of the jitted driver, so every run shares one compiled program."""
    def build():
        rngs = nnx.Rngs(0)
        return Network([Layer(nnx.Conv(1, 5, (2, 2), padding="VALID", rngs=rngs), Act("relu")),
                        Layer(nnx.Conv(5, 4, (3, 3), padding="VALID", rngs=rngs))], ("hidden", "logits"))

    return tiny_generator(), numpy_model("tiny-cls", build, (4, 4, 1), "classifier", seed=1), tiny_dae()


# ------------------------------------------------------------------ the kernel on a Gaussian target

def gaussian_problem(d=3, seed=0):
    """A prior N(mu, Sigma) whose optimal denoiser for noise sigma is linear, R(h) = A h + b
    (A = Sigma (Sigma + sigma^2 I)^-1), and a quadratic condition log p(y | h) = -(h - m)' Q (h - m) / 2."""
    rng = np.random.default_rng(seed)
    u = np.linalg.qr(rng.normal(size=(d, d)))[0]
    sigma_prior = u @ np.diag(np.linspace(0.4, 1.5, d)) @ u.T
    mu, m = rng.normal(size=d), rng.normal(size=d)
    q = np.diag(np.linspace(0.5, 2.0, d))
    noise = 0.6
    a = sigma_prior @ np.linalg.inv(sigma_prior + noise**2 * np.eye(d))
    return dict(mu=mu, m=m, q=q, a=a, b=mu - a @ mu, smoothed=sigma_prior + noise**2 * np.eye(d), noise=noise)


def test_unnormalized_kernel_matches_the_exact_stationary_law_of_its_recursion():
    """Unnormalized steps with matching noise (eps1 = tau / sigma^2, eps2 = tau, eps3^2 = 2 tau) make
    h' = M h + c + eps3 n with M = I + eps1 (A - I) - eps2 Q, c = eps1 b + eps2 Q m: a stationary mean
    (I - M)^-1 c and a covariance S = M S M' + eps3^2 I (discrete Lyapunov). The mean is the target's,
    the covariance carries the unadjusted step's O(tau) bias: S = (P - tau P^2 / 2)^-1, not P^-1.

    K independent chains run T steps from a far start; their last codes are K independent draws up
    to a contraction ||M^T|| < 1e-8, so the effective sample size is K and the standard errors of the
    sample mean and covariance are sqrt(S_ii / K) and sqrt((S_ii S_jj + S_ij^2) / K)."""
    p = gaussian_problem()
    d, tau, k, steps = 3, 0.15, 8192, 200
    eps1, eps2, eps3 = tau / p["noise"] ** 2, tau, np.sqrt(2 * tau)
    a, b, q, m = (jnp.asarray(p[n], jnp.float32) for n in ("a", "b", "q", "m"))

    def terms(h):
        return pp.Terms(a @ h + b - h, -q @ (h - m), jnp.float32(1.0), jnp.int32(0))

    kernel = pp.ppgn_kernel(terms, steps=steps, eps1=eps1, eps2=eps2, eps3=eps3, normalize=False)
    start = jax.vmap(kernel.init)(jnp.full((k, d), 4.0))
    last = driver.run(kernel, jax.random.PRNGKey(0), start, steps, vmap=True, trace=None).state
    h = np.asarray(last.code, np.float64)

    M = np.eye(d) + eps1 * (p["a"] - np.eye(d)) - eps2 * p["q"]
    assert np.linalg.norm(np.linalg.matrix_power(M, steps), 2) < 1e-8
    mean = np.linalg.solve(np.eye(d) - M, eps1 * p["b"] + eps2 * p["q"] @ p["m"])
    cov = scipy.linalg.solve_discrete_lyapunov(M, eps3**2 * np.eye(d))
    precision = np.linalg.inv(p["smoothed"]) + p["q"]
    np.testing.assert_allclose(cov, np.linalg.inv(precision - tau * precision @ precision / 2), rtol=1e-8)

    z = 4.5  # per entry; 12 entries at about 7e-6 each
    se_mean = np.sqrt(np.diag(cov) / k)
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / k)
    assert np.all(np.abs(h.mean(0) - mean) < z * se_mean), (h.mean(0), mean)
    assert np.all(np.abs(np.cov(h.T) - cov) < z * se_cov), (np.cov(h.T), cov)
    # the test sees the bias: the target's own covariance P^-1 is outside the tolerance
    assert np.any(np.abs(np.cov(h.T) - np.linalg.inv(precision)) > z * se_cov)
    np.testing.assert_allclose(mean, np.linalg.solve(precision, np.linalg.solve(p["smoothed"], p["mu"])
                                                     + p["q"] @ p["m"]), rtol=1e-8)


def test_one_step_in_closed_form_with_its_noise_clip_and_reset():
    """d = eps1 drift + eps2 grad + eps3 n; h' = clip(h + s_t d / mean|d|) with s_t = 2 - 2 t / 4;
    n is the first half of the step key's split (`draw_noise`); zero d: no step; at t =
    reset_every the code is a fresh N(0, I) draw from the key's second half."""
    drift, grad = np.array([1.0, -2.0, 0.5, 0.0], np.float32), np.array([0.5, 0.5, -1.0, 3.0], np.float32)

    def terms(h):
        return pp.Terms(jnp.asarray(drift), jnp.asarray(grad), jnp.sum(h), jnp.int32(0))

    kern = pp.ppgn_kernel(terms, steps=4, step_size=(2.0, 0.0), eps1=0.5, eps2=2.0, eps3=0.1, lower=-1.0,
                          upper=1.5, reset_every=2)
    s0 = kern.init(np.zeros(4, np.float32))
    k0, k1, k2 = (jax.random.PRNGKey(i) for i in (3, 4, 5))
    noise = np.asarray(jax.random.normal(jax.random.split(k0)[0], (4,)))
    np.testing.assert_array_equal(pp.draw_noise(k0, s0.code), noise)
    s1, info = kern.step(k0, s0)
    d = 0.5 * drift + 2.0 * grad + 0.1 * noise
    np.testing.assert_allclose(s1.code, np.clip(2.0 * d / np.abs(d).mean(), -1.0, 1.5), rtol=1e-6)
    assert int(s1.step) == 1 and float(s1.prob) == pytest.approx(float(np.sum(s1.code)))
    np.testing.assert_array_equal(info.code, s0.code)  # the step records the sample it started from
    # step t = 1 (s_1 = 1.5) moves the code; step t = 2 replaces it by the reset draw
    s2, _ = kern.step(k1, s1)
    d2 = 0.5 * drift + 2.0 * grad + 0.1 * np.asarray(pp.draw_noise(k1, s1.code))
    np.testing.assert_allclose(s2.code, np.clip(np.asarray(s1.code) + 1.5 * d2 / np.abs(d2).mean(), -1, 1.5),
                               rtol=1e-6)
    s3, _ = kern.step(k2, s2)
    np.testing.assert_array_equal(s3.code, jax.random.normal(jax.random.split(k2)[1], (4,)))
    # a zero update moves nothing
    still = pp.ppgn_kernel(lambda h: pp.Terms(0 * h, 0 * h, jnp.float32(0), jnp.int32(0)), steps=2, eps3=0.0)
    np.testing.assert_array_equal(still.step(k0, still.init(jnp.ones(4)))[0].code, np.ones(4))


def reference_loop(terms, h, *, n, save_every, lr, lr_end, eps1, eps2, eps3, threshold, noise, lower, upper):
    """Evolving-AI-Lab/ppgn `sampler.py`'s loop in numpy (float64), its terms from `terms`: update
    h at i = 0, 1, ... and stop after i = n; save (i, h_i, p_i) at i % save_every == 0 when
    p_i > threshold. `noise(i)` is iteration i's N(0, I) draw. Returns (updates, saves, last h)."""
    h, i, updates, saves = np.asarray(h, np.float64), 0, 0, []
    while True:
        step_size = lr + ((lr_end - lr) * i) / n
        drift, grad, prob, _ = (np.asarray(v, np.float64) for v in terms(jnp.asarray(h, jnp.float32)))
        d_h = eps1 * drift + eps2 * grad + eps3 * noise(i)
        before = h.copy()
        h = np.clip(h + step_size / np.abs(d_h).mean() * d_h, lower, upper)
        updates += 1
        if save_every > 0 and i % save_every == 0 and prob > threshold:
            saves.append((i, before, float(prob)))
        if i > 0 and i % n == 0:
            break
        i += 1
    return updates, saves, h


def test_update_and_save_counts_replay_the_reference_loop():
    """The reference makes n + 1 updates and, for n = 200 and save_every 5, saves 41 samples (i = 0,
    5, ..., 200); `ppgn` gives the same saved steps, samples and last code as that loop replayed
    in numpy on the same terms and draws (chain 0: step t's noise from fold_in(fold_in(k, 0), t))."""
    counted = reference_loop(lambda h: (0 * h, 0 * h + 1.0, 1.0, 0), np.zeros(2), n=200, save_every=5, lr=1.0,
                             lr_end=1.0, eps1=0.0, eps2=1.0, eps3=0.0, threshold=0.0, noise=lambda i: 0.0,
                             lower=None, upper=None)
    assert counted[0] == 201 and [i for i, _, _ in counted[1]] == list(range(0, 201, 5))
    g, c, r = tiny_models()
    # no resets: the replay has none
    res = run_tiny(jax.random.PRNGKey(11), chains=1, step_size=(1.0, 0.25), reset_every=0)
    assert list(res.saved_steps) == list(range(0, 13, 4)) and res.samples.shape == (1, 4, D)
    resolved, cond = pp.resolve_condition(c, TINY["label"], None)
    terms = pp.condition_terms(pp.PPGNNets(g, c, pp.check_prior(r, g)), cond)
    k_init, k_run = jax.random.split(jax.random.PRNGKey(11))
    h0 = np.asarray(jax.random.normal(k_init, (1, D)))[0]
    noise = lambda i: np.asarray(pp.draw_noise(jax.random.fold_in(jax.random.fold_in(k_run, 0), i), h0))  # noqa: E731
    updates, saves, last = reference_loop(terms, h0, n=12, save_every=4, lr=1.0, lr_end=0.25, eps1=0.3, eps2=1.0,
                                          eps3=0.2, threshold=0.0, noise=noise, lower=0.0, upper=3.0)
    assert updates == 13 and [i for i, _, _ in saves] == list(res.saved_steps)
    np.testing.assert_allclose(res.samples[0], np.stack([h for _, h, _ in saves]), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(res.probs[0], [p for _, _, p in saves], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(res.codes[0], last, rtol=1e-4, atol=1e-4)


def test_saved_buffer_holds_every_save_every_th_state():
    def terms(h):
        return pp.Terms(-h, jnp.sin(h), jnp.tanh(h[0]), jnp.argmax(h).astype(jnp.int32))

    kern = pp.ppgn_kernel(terms, steps=7, step_size=0.3, eps1=0.2, eps3=0.5)
    key, h0 = jax.random.PRNGKey(1), jnp.arange(3.0)
    out = driver.run(kern, key, kern.init(h0), 7, save_every=3)
    state, states = kern.init(h0), []
    for t in range(7):
        states.append(state)
        state, _ = kern.step(jax.random.fold_in(key, t), state)
    assert out.trace.code.shape == (3, 3) and int(out.saved) == 3
    for row, t in enumerate((0, 3, 6)):
        np.testing.assert_allclose(out.trace.code[row], states[t].code, rtol=1e-5, atol=1e-6)
        assert float(out.trace.prob[row]) == pytest.approx(float(states[t].prob))
        assert int(out.trace.top[row]) == int(states[t].top)
    np.testing.assert_allclose(out.state.code, state.code, rtol=1e-5, atol=1e-6)
    # in compiled chunks (a driver showing progress): the same chain
    chunked = driver.run(kern, key, kern.init(h0), 7, save_every=3, chunk=4)
    np.testing.assert_allclose(chunked.trace.code, out.trace.code, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(chunked.state.code, out.state.code, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------ through the models

def test_condition_gradient_exact_and_reference_against_the_jacobian():
    """grad log softmax(a)_c = J_c - sum_j p_j J_j and the reference's (1 - p_c) J_c, with J the
    Jacobian of the classifier's outputs with respect to the code; a hidden neuron's softmax runs
    over its layer's channels at its position, read before the ReLU by default (the reference's
    blob at net.forward(end=layer)) and after it with nonlinear=True; R is the DAE, or E(G(h))."""
    g, c, r = tiny_models()
    nets = pp.PPGNNets(g, c, pp.check_prior(r, g))
    h = jax.random.normal(jax.random.PRNGKey(0), (D,))
    for neuron, nonlinear in (("logits:3", False), ("hidden:1@2,0", False), ("hidden:1@2,0", True)):
        resolved, cond = pp.resolve_condition(c, None, neuron)
        at = "" if resolved.position is None else "@{},{}".format(*resolved.position)
        names = [f"{neuron.split(':')[0]}:{j}{at}" for j in range(len(cond.channels))]

        def channel_values(h):
            return jaxprobe.neuron_values(c, c.params, g.forward(g.params, h[None]), names,
                                          nonlinear=nonlinear)[0]  # no pixel maps

        a, jac = jax.jit(lambda h: (channel_values(h), jax.jacfwd(channel_values)(h)))(h)
        p = np.asarray(jax.nn.softmax(a), np.float64)
        both = jax.jit(lambda h: [pp.condition_terms(nets, cond, pp.PPGNOptions(gradient=grad, nonlinear=nonlinear))(h)
                                  for grad in pp.GRADIENTS])(h)
        for t, want in zip(both, (jac[cond.unit] - p @ jac, (1 - p[cond.unit]) * jac[cond.unit])):
            np.testing.assert_allclose(t.grad, want, rtol=1e-4, atol=1e-6)
            assert float(t.prob) == pytest.approx(p[cond.unit], rel=1e-5) and int(t.top) == int(np.argmax(p))
            np.testing.assert_allclose(t.drift, r.forward(r.params, h[None])[0] - h, rtol=1e-6)
    # the encoder prior: R(h) = E(G(h)), E the classifier up to `hidden` (45 units: codes of 45)
    g45 = tiny_generator(45)
    enc = pp.check_prior(pp.encoder_prior(g45, c, "hidden"), g45)
    h = jnp.linspace(-1.0, 1.0, 45)
    cond = pp.Condition(2, jnp.arange(4), 0)
    t = jax.jit(pp.condition_terms(pp.PPGNNets(g45, c, enc, prior_params=c.params), cond))(h)
    e = c.activation(c.params, g45.forward(g45.params, h[None]), "hidden").reshape(-1)
    np.testing.assert_allclose(t.drift, e - h, rtol=1e-5, atol=1e-6)


def test_hidden_neuron_is_read_before_its_relu_by_default():
    """`ppgn` on hidden:1@2,0 records p = softmax of the layer's pre-activations at the position
    (computed here from `up_to`, independently of the sampler), the reference's reading; the
    post-ReLU softmax, the other reading, is far from it on these codes (some channels < 0)."""
    g, c, r = tiny_models()
    res = pp.ppgn(jax.random.PRNGKey(5), g, c, r, neuron="hidden:1@2,0", chains=3, steps=4, save_every=1)
    codes = np.asarray(res.samples).reshape(-1, D)
    pre = np.asarray(c.up_to(c.params, g.forward(g.params, jnp.asarray(codes)), 1))[:, 2, 0, :]  # (m, 5)
    assert np.any(pre < 0), "the test needs negative pre-activations"

    def softmax(a):
        e = np.exp(a - a.max(-1, keepdims=True))
        return (e / e.sum(-1, keepdims=True))[:, 1]

    got = np.asarray(res.probs).reshape(-1)
    np.testing.assert_allclose(got, softmax(pre), rtol=1e-4, atol=1e-6)
    assert np.max(np.abs(got - softmax(np.maximum(pre, 0)))) > 1e-2
    after = pp.ppgn(jax.random.PRNGKey(5), g, c, r, neuron="hidden:1@2,0", chains=3, steps=4, save_every=1,
                    nonlinear=True)
    np.testing.assert_allclose(np.asarray(after.probs)[:, 0], softmax(np.maximum(pre, 0)).reshape(3, -1)[:, 0],
                               rtol=1e-4, atol=1e-6)


TINY = dict(label=2, steps=12, save_every=4, eps1=0.3, eps3=0.2, lower=0.0, upper=3.0, reset_every=5)


def run_tiny(key, chains=4, **kw):
    g, c, r = tiny_models()
    return pp.ppgn(key, g, c, r, **dict(TINY, chains=chains, **kw))


def test_driver_compiles_once_keys_reproduce_and_vmap_equals_one_by_one():
    a = run_tiny(jax.random.PRNGKey(7))
    size = len(driver._CACHE)
    b = run_tiny(jax.random.PRNGKey(7), label=3, eps1=0.1, eps2=0.5, threshold=0.5)  # arrays of one program
    same, other = run_tiny(jax.random.PRNGKey(7)), run_tiny(jax.random.PRNGKey(8))
    assert len(driver._CACHE) == size
    np.testing.assert_array_equal(a.samples, same.samples)
    np.testing.assert_array_equal(a.probs, same.probs)
    assert not np.allclose(a.samples, other.samples)
    assert a.samples.shape == (4, 4, D) and list(a.saved_steps) == [0, 4, 8, 12] and a.condition == "logits:2@0,0"
    np.testing.assert_array_equal(b.kept, np.asarray(b.probs) > 0.5)
    assert np.all(np.asarray(a.samples)[:, 1:] >= 0.0) and np.all(np.asarray(a.codes) <= 3.0)
    # the same chains one at a time: ppgn draws h_0 from the key's first half and gives chain i
    # the keys fold_in(fold_in(second half, i), t)
    g, c, r = tiny_models()
    opts = pp.PPGNOptions(**{k: TINY[k] for k in ("steps", "save_every", "eps1", "eps3", "lower", "upper",
                                                  "reset_every")})
    kern = pp.build(pp.PPGNNets(g, c, pp.check_prior(r, g)), opts, 2)
    one = jax.jit(lambda k, h: driver.run(kern, k, kern.init(h), 13, save_every=4))
    k_init, k_run = jax.random.split(jax.random.PRNGKey(7))
    h0 = jax.random.normal(k_init, (4, D))
    for i in range(4):
        out = one(jax.random.fold_in(k_run, i), h0[i])
        np.testing.assert_allclose(a.samples[i], out.trace.code, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(a.probs[i], out.trace.prob, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(a.labels[i], out.trace.top)
        np.testing.assert_allclose(a.codes[i], out.state.code, rtol=1e-5, atol=1e-5)


def test_kernel_composes_with_vmap_scan_and_jit_and_traces_once():
    """User code: the one-chain kernel under jax.vmap (chains) inside jax.lax.scan (steps) inside
    jax.jit equals `jaxprobe.driver.run(..., vmap=True)`; the step is traced once for two calls."""
    g, c, r = tiny_models()
    kernel = pp.build(pp.PPGNNets(g, c, r), pp.PPGNOptions(steps=6, eps1=0.3, eps3=0.2, lower=0.0), "logits:1")
    step = chex.assert_max_traces(kernel.step, n=1)

    @jax.jit
    def sample(key, codes):
        def one(states, t):
            keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(key, i), t))(jnp.arange(len(codes)))
            states, info = jax.vmap(step)(keys, states)
            return states, info.prob
        return jax.lax.scan(one, jax.vmap(kernel.init)(codes), jnp.arange(7))

    codes = jax.random.normal(jax.random.PRNGKey(0), (3, D))
    states, probs = sample(jax.random.PRNGKey(1), codes)
    states2, _ = sample(jax.random.PRNGKey(2), codes)  # no second trace
    ref = driver.run(kernel, jax.random.PRNGKey(1), jax.vmap(kernel.init)(codes), 7, vmap=True)
    np.testing.assert_allclose(states.code, ref.state.code, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs, ref.trace.prob, rtol=1e-5, atol=1e-6)
    assert not np.allclose(states2.code, states.code)


def docs_block(page: Path, heading: str) -> str:
    """The first ```python block under `heading` in a docs page."""
    text = page.read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_docs_example_composing_the_kernel_runs():
    """docs/methods/ppgn.md's "Composing the kernel" block, run as written on the shipped models:
    its chains follow the driver's on the same keys (for the first eight steps: the normalised step
    amplifies float32 rounding, and the driver's loop body lays its convolutions out differently)
    and mostly end in the class."""
    code = docs_block(Path(__file__).resolve().parents[1] / "docs" / "methods" / "ppgn.md", "## Composing the kernel")
    scope = {}
    exec(compile(code, "ppgn.md", "exec"), scope)
    kernel, codes, states, probs = (scope[k] for k in ("kernel", "codes", "states", "probs"))
    ref = driver.run(kernel, jax.random.key(0), jax.vmap(kernel.init)(codes), probs.shape[0], vmap=True)
    assert states.code.shape == (4, 128) and probs.shape == (61, 4)
    np.testing.assert_allclose(probs[:8], ref.trace.prob[:8], atol=1e-3)
    assert np.mean(np.asarray(probs)[-1] > 0.5) >= 0.5


def test_paper_scale_deepsim_fc6_and_caffenet_by_shape():
    """Joint PPGN-h at the paper's scale, shape-only: DeePSim fc6 (4096 -> 256x256 BGR) into CaffeNet
    (227 crop), R(h) = CaffeNet up to fc6 of G(h), class fc8:945 and hidden conv5:3 at the centre."""
    px = jaxprobe.PixelConvention(0.0, 255.0, "BGR", (104.0, 117.0, 123.0), 1.0)

    def abstract(builder, shape, role):
        net = nnx.eval_shape(lambda: builder(rngs=nnx.Rngs(0)))
        graphdef, state = nnx.split(net)
        return Model(builder.__name__, graphdef, state, net.names, shape, role, px)

    gen = abstract(archs_paper.deepsim_fc6, (4096,), "generator")
    net = abstract(archs_paper.caffenet, (227, 227, 3), "classifier")
    prior = pp.check_prior(pp.encoder_prior(gen, net, "fc6"), gen)
    opts = pp.PPGNOptions(steps=3, save_every=2, lower=0.0, upper=30.0)
    for label, neuron, units in ((945, None, 1000), (None, "conv5:3", 256)):
        resolved, cond = pp.resolve_condition(net, label, neuron)
        assert cond.channels.shape == (units,)
        out = jax.eval_shape(
            lambda gp, cp, key, h: pp.ppgn_run(pp.PPGNNets(gen, net, prior, gp, cp, cp), opts, cond, key, h),
            gen.params, net.params, jax.random.PRNGKey(0), jax.ShapeDtypeStruct((2, 4096), jnp.float32))
        assert out.samples.shape == (2, 2, 4096) and out.probs.shape == (2, 2) and out.codes.shape == (2, 4096)


def test_shipped_models_sample_the_conditioned_class_with_the_dae_prior():
    """fc_generator + classifier + the shipped h-DAE, the reference's eps and threshold 0 (every saved
    sample kept): after 50 steps of burn-in, at least 80% of the kept samples are classified as the
    class conditioned on; the recorded labels are the classifier's predictions on fresh images."""
    g, c, r = jaxprobe.load("fc_generator"), jaxprobe.load("classifier"), jaxprobe.load("h_dae")
    assert r.manifest["generator"] == "fc_generator" and r.manifest["encoder"] == g.manifest["encoder"]
    for label in (3, 8):
        out = pp.ppgn(jax.random.PRNGKey(label), g, c, r, label=label, chains=4, steps=100, lower=0.0)
        after = np.asarray(out.saved_steps) >= 50
        kept, labels = np.asarray(out.kept)[:, after], np.asarray(out.labels)[:, after]
        assert kept.all() and np.mean(labels == label) >= 0.8, (label, labels)
        images = jaxprobe.convert_pixels(g.forward(g.params, out.samples[0]), g.pixels, c.pixels)
        np.testing.assert_array_equal(np.argmax(c.forward(c.params, images), -1), out.labels[0])


SHARDED = textwrap.dedent("""
    import jax, numpy as np, sys
    sys.path.insert(0, {tests!r})
    assert jax.device_count() == 8, jax.device_count()
    from test_ppgn import run_tiny, tiny_models
    from jaxprobe import batch_mesh
    one = run_tiny(jax.random.PRNGKey(3), chains=8)
    # parameters committed to device 0, as jaxprobe.load leaves them: ppgn places them on the mesh
    committed = dict(zip(("gen_params", "cls_params", "prior_params"),
                         jax.device_put([m.params for m in tiny_models()], jax.devices()[0])))
    for chunk in (None, 4):  # one compiled scan, and in chunks (the step keys placed chunk by chunk)
        many = run_tiny(jax.random.PRNGKey(3), chains=8, mesh=batch_mesh(), chunk=chunk, **committed)
        assert len(many.samples.sharding.device_set) == 8 and not many.samples.sharding.is_fully_replicated
        for a, b in ((one.samples, many.samples), (one.probs, many.probs), (one.codes, many.codes)):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-5, rtol=1e-5)
        np.testing.assert_array_equal(np.asarray(many.labels), np.asarray(one.labels))
    from jaxprobe import JaxprobeError
    try:
        run_tiny(jax.random.PRNGKey(3), chains=4, mesh=batch_mesh())
        raise SystemExit("4 chains over 8 devices accepted")
    except JaxprobeError as e:
        assert "chains: expected a multiple of the mesh's 8 devices, got 4" in str(e), e
    print("ok")
""")


def test_eight_host_devices_give_the_single_device_chains():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    tests = str(Path(__file__).resolve().parent)
    r = subprocess.run([sys.executable, "-c", SHARDED.format(tests=tests)], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]


# ------------------------------------------------------------------ bad input

@pytest.mark.parametrize("kwargs, message", [
    (dict(label=4), "label: expected a class 0..3 of 'tiny-cls', got 4"),
    (dict(label=None, neuron="nope:1"), "nope:1"),
    (dict(label=None, neuron="hidden:5"), "unit 5 out of range"),
    (dict(label=None, neuron="hidden:1@3,0"), "position (3, 0) is off layer 'hidden'"),
    (dict(neuron="hidden:1"), "label, neuron: expected exactly one"),
    (dict(steps=0), "steps: expected an integer >= 1, got 0"),
    (dict(steps=-3), "steps: expected an integer >= 1"),
    (dict(eps1=-1.0), "eps1: expected a non-negative weight"),
    (dict(eps2=-0.5), "eps2: expected a non-negative weight"),
    (dict(eps3=-1e-3), "eps3: expected a non-negative weight"),
    (dict(save_every=0), "save_every: expected an integer >= 1, got 0"),
    (dict(reset_every=-1), "reset_every: expected an integer >= 0"),
    (dict(chains=0), "chains: expected an integer >= 1"),
    (dict(init=np.full((2, D), np.nan, np.float32)), "init: expected finite values"),
    (dict(init=np.zeros((3, D), np.float32)), "init: expected codes of shape (2, 6)"),
    (dict(prior=tiny_dae(code_dim=4)), "prior: the DAE 'tiny_dae' maps codes of shape (4,) to (4,); expected (6,)"),
    (dict(prior="dae"), "prior: expected a DAE model"),
    (dict(prior="the classifier"), "prior: expected a DAE on codes (role 'denoiser'), got 'tiny-cls'"),
    (dict(step_size=0.0), "step_size: expected a step size"),
    (dict(threshold=1.5), "threshold: expected a probability in [0.0, 1.0]"),
    (dict(gradient="approx"), "gradient: expected one of exact, reference"),
    (dict(lower=1.0, upper=0.0), "lower <= upper"),
    (dict(mesh="cpu"), "mesh: expected a jax.sharding.Mesh"),
    # finite in float64, not in float32 (or their products with the noise or the code's units)
    (dict(eps3=1e39), "eps3: expected a non-negative weight whose products stay finite in float32"),
    (dict(eps3=1e38), "eps3: expected a non-negative weight whose products stay finite in float32"),
    (dict(eps1=1e39), "eps1: expected a non-negative weight whose products stay finite in float32"),
    (dict(eps2=float("inf")), "eps2: expected a non-negative weight"),
    (dict(step_size=1e38), "step_size: expected a step size whose products stay finite in float32"),
    (dict(step_size=(1.0, 1e39)), "step_size: expected a final step size whose products stay finite"),
    (dict(upper=1e39), "upper: expected bounds finite in float32"),
    (dict(threshold=float("nan")), "threshold: expected a probability"),
    (dict(stepz=3), "stepz: not a PPGN setting"),
    (dict(options=(1, 2)), "options: expected a PPGNOptions"),
])
def test_bad_input_names_the_argument(kwargs, message):
    kwargs = dict(kwargs)
    g, c, r = tiny_models()
    prior = kwargs.pop("prior", r)
    prior = c if prior == "the classifier" else prior
    opts = dict(label=1, chains=2, steps=2)
    opts.update(kwargs)
    with pytest.raises(JaxprobeError) as err:
        pp.ppgn(jax.random.PRNGKey(0), g, c, prior, **opts)
    assert message in str(err.value), str(err.value)


def test_encoder_prior_needs_a_matching_encoder():
    g, c, _ = tiny_models()  # codes of 6 units; the classifier's hidden layer has 3 x 3 x 5
    with pytest.raises(JaxprobeError, match="generator: 'tiny-gen' records no encoder"):
        pp.encoder_prior(g)
    with pytest.raises(JaxprobeError, match=r"prior: encoder 'tiny-cls' gives codes of shape \(3, 3, 5\) at layer "
                                            r"'hidden'; expected \(6,\)"):
        pp.ppgn(jax.random.PRNGKey(0), g, c, pp.encoder_prior(g, c, "hidden"), label=0)


def test_docs_measured_table_is_the_results_file():
    """docs/methods/ppgn.md quotes benchmarks/results/ppgn/ppgn_classes.md (written with the
    .json by benchmarks/reproduce_ppgn.py) row for row, and the .md is the .json's summary."""
    import json

    root = Path(__file__).resolve().parents[1]
    results = root / "benchmarks" / "results" / "ppgn"
    rows = [line for line in (results / "ppgn_classes.md").read_text().splitlines() if line.startswith("| ")]
    page = (root / "docs" / "methods" / "ppgn.md").read_text()
    assert len(rows) == 3 and all(row in page.splitlines() for row in rows)
    record = json.loads((results / "ppgn_classes.json").read_text())
    assert record["setup"]["chains"] == 8 and record["setup"]["steps"] == 200 and record["setup"]["burn_in"] == 100
    for prior, run in record["runs"].items():
        rates = [r["class_rate"] for r in run["classes"]]
        d = run["diversity"]
        want = (f"| {prior} | {min(rates):.3f} | {sum(rates) / len(rates):.3f} | {d['ppgn']['mean']:.2f} +- "
                f"{d['ppgn']['sd']:.2f} | {d['dgn_am']['mean']:.2f} +- {d['dgn_am']['sd']:.2f} | "
                f"{d['ppgn_more_diverse']} of {d['measured']} |")
        assert want in rows, want
        per_class = [r["diversity"]["ppgn"] for r in run["classes"]]
        assert d["ppgn"]["mean"] == pytest.approx(np.mean(per_class)) and d["ppgn"]["sd"] == pytest.approx(
            np.std(per_class))
