"""Inverse sets (Hada & Carreira-Perpiñán 2019) on tiny random generators and classifiers.

Two setups: (1) a DCGAN-like generator with a normal prior feeding a
small MNIST classifier; (2) an fc-generator-like setup whose codes live in the classifier's fc1
space (E = the classifier up to fc1 after ReLU, codes initialized from E(random images)).
Ranges are drawn from the empirical distribution of each neuron over random codes, so they are
reachable. Every run uses the same small static configuration per setup so that the many random
neurons, ranges and keys share one compiled program.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import importlib

# The module, not the function `jaxprobe.inverse_sets.inverse_set` that the package re-exports under its name.
inv = importlib.import_module("jaxprobe.inverse_sets.inverse_set")
from jaxprobe.errors import JaxprobeError
from jaxprobe.inverse_sets import problem as prob
from jaxprobe.inverse_sets import sampling
from jaxprobe.models.neurons import neuron_values
from jaxprobe.models.pixels import PixelConvention, convert_pixels
from jaxprobe.models.probe import Model
from jaxprobe.models.zoo import dcgan_generator, mnist_classifier

GEN_PIX = PixelConvention(-1.0, 1.0, "gray")
CLS_PIX = PixelConvention(0.0, 1.0, "gray")
# Small static configuration shared by the property tests (one compile per setup and layer set).
RUN = dict(n=30, k=5, inner_steps=25, max_outer=5)


@pytest.fixture(scope="module")
def classifier():
    net = mnist_classifier(widths=(4, 4), hidden=16, rngs=nnx.Rngs(1))
    return Model.from_module("cls", net, (28, 28, 1), "classifier", CLS_PIX)


@pytest.fixture(scope="module")
def prior_setup(classifier):
    gen = Model.from_module("gen", dcgan_generator(latent_dim=8, widths=(8, 4, 2), rngs=nnx.Rngs(0)), (8,),
                            "generator", GEN_PIX, {"latent": {"dim": 8, "prior": "normal"}})
    return gen, classifier, gen.sample_prior(jax.random.key(100), 256)


@pytest.fixture(scope="module")
def fc_setup(classifier):
    cls = classifier
    gen = Model.from_module("fcgen", dcgan_generator(latent_dim=16, widths=(8, 4, 2), slope=0.3, rngs=nnx.Rngs(0)),
                            (16,), "generator", GEN_PIX, {"encoder": {"model": "cls", "layer": "fc1"}})
    x = jax.random.uniform(jax.random.key(100), (256, 28, 28, 1))
    return gen, cls, cls.activation(cls.params, x, "fc1")  # codes as the sampler initializes them


def _values(gen, cls, codes, neurons, nonlinear=True, as_numpy=True):
    images = convert_pixels(gen.forward(gen.params, jnp.asarray(codes)), gen.pixels, cls.pixels)
    values = neuron_values(cls, cls.params, images, neurons, nonlinear=nonlinear)
    return np.asarray(values, np.float64) if as_numpy else values


def _embed(gen, cls, codes):
    """E(G(codes)) for E = the classifier up to fc1 after its ReLU: (m, 16)."""
    images = convert_pixels(gen.forward(gen.params, jnp.asarray(codes)), gen.pixels, cls.pixels)
    return cls.activation(cls.params, images, "fc1").reshape(len(codes), -1)


def _quantile_range(rng, values):
    lo = rng.uniform(0.05, 0.7)
    return tuple(float(q) for q in np.quantile(values, [lo, lo + rng.uniform(0.1, 0.25)]))


def _check(res, gen, cls, neurons, ranges, n, nonlinear=True, one_sided=False):
    """Every returned sample satisfies every constraint; the record is consistent."""
    r = np.asarray(ranges, np.float64).reshape(-1, 2)
    m = res.n_accepted
    assert res.codes.shape == (m,) + gen.input_shape and res.activations.shape == (m, len(r))
    assert res.images.shape == (m, 28, 28, 1) and res.embeddings.shape[0] == m
    # The stored activations are the values the acceptance test saw: no margin, exact.
    assert np.all(res.activations >= r[:, 0]) and np.all(res.activations <= r[:, 1])
    assert len(np.unique(res.codes.reshape(m, -1), axis=0)) == m  # each code accepted once
    if m < n:
        assert res.stop_reason in (("stalled", "sampling_budget") if m else ("seeds_out_of_range", "unreachable"))
        assert (res.stop_reason == "seeds_out_of_range") == (m == 0 and res.seeds_feasible)
    else:
        assert res.stop_reason == "complete"
    if res.seeds_feasible and m >= res.k:
        # Feasible seeds are the first K samples and meet the seed constraints: inside the middle
        # half [z1 + m, z2 - m] (m = (z2 - z1)/4), or above the midpoint one-sided; float32 slack.
        seeds, width = res.activations[: res.k], r[:, 1] - r[:, 0]
        tol = 1e-5 * np.maximum(1.0, np.abs(r).max(axis=1))
        low = (r[:, 0] + r[:, 1]) / 2 if one_sided else r[:, 0] + width / 4
        assert np.all(seeds >= low - tol), (seeds.min(0), low)
        if not one_sided:
            assert np.all(seeds <= r[:, 1] - width / 4 + tol), (seeds.max(0), r[:, 1] - width / 4)
    if m:
        # Independent recomputation from the returned codes (eager, other batch): equal up to
        # float32 reordering (1e-5 absolute plus 1e-5 relative) ...
        again = _values(gen, cls, res.codes, neurons, nonlinear)
        np.testing.assert_allclose(again, res.activations, rtol=1e-5, atol=1e-5)
        # ... so inside every range up to that tolerance.
        tol = 1e-5 + 1e-5 * np.abs(again)
        assert np.all(again >= r[:, 0] - tol) and np.all(again <= r[:, 1] + tol)
        np.testing.assert_allclose(np.asarray(gen.forward(gen.params, jnp.asarray(res.codes))), res.images,
                                   atol=1e-5)
    assert res.inner_steps == RUN["inner_steps"] * res.outer_iterations
    np.testing.assert_allclose(res.mu, 10.0 * 10.0 ** res.outer_iterations, rtol=1e-6)
    assert np.all(res.lam >= 0)


# ---------------------------------------------------------------- helpers of the objective


def test_pairwise_identity_matches_double_loop():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(7, 5))
    a = rng.normal(size=(11, 5))
    brute = sum(np.sum((e[i] - e[j]) ** 2) for i in range(7) for j in range(7))
    np.testing.assert_allclose(float(prob.pairwise_sq_sum(jnp.asarray(e))), brute, rtol=1e-5)
    cross = sum(np.sum((e[i] - a[y]) ** 2) for i in range(7) for y in range(11))
    got = prob.cross_sq_sum(jnp.asarray(e), jnp.asarray(a.sum(0)), jnp.asarray(np.sum(a * a)), 11.0)
    np.testing.assert_allclose(float(got), cross, rtol=1e-5)
    d = np.sqrt(((e[:, None] - e[None]) ** 2).sum(-1))
    np.testing.assert_allclose(inv.mean_pairwise_distance(e), d[np.triu_indices(7, 1)].mean(), rtol=1e-10)


@pytest.mark.parametrize("diversity, repel", [("embedding", "new"), ("embedding", "all"), ("code", "new"),
                                              ("none", "new")])
def test_sampling_step_follows_the_finite_difference_gradient_of_l_sample(prior_setup, diversity, repel):
    """One `sample_step` (eq. 10, steps 2-5) against central differences of L_sample written out
    here in float64: the slack terms piecewise, D and the distance to C0 as double sums, C0 = the
    rows accepted now (repel "new", the paper's step 4) or those plus an earlier accepted set
    ("all"). K = 5 codes of which three are in range, one of them already judged."""
    gen, cls, _ = prior_setup
    k, d = 5, 8
    rng = np.random.default_rng(0)
    c = np.asarray(gen.sample_prior(jax.random.key(0), k))
    v, e = _values(gen, cls, c, ["logits:3"])[:, 0], np.asarray(_embed(gen, cls, c), np.float64)
    srt = np.sort(v)
    z1, z2 = np.float32((srt[0] + srt[1]) / 2), np.float32((srt[3] + srt[4]) / 2)
    margin = np.float32((z2 - z1) / 4)
    lam, mu = rng.uniform(0.02, 0.1, 2 * k).astype(np.float32), np.float32(1.0)
    feats = e if diversity == "embedding" else c.astype(np.float64)
    scale = np.float32(np.mean(np.sum(feats * feats, axis=1)))
    earlier = rng.normal(size=(3, feats.shape[1])).astype(np.float32)  # an earlier accepted set
    nets = prob.InverseSetNets(gen, cls, prob.Embedding(cls, "fc1"))
    targets = prob.Targets((4,), np.array([3]), np.array([[z1, z2]]), np.array([margin]))
    problem = prob.make_problem(nets, targets, diversity=diversity, feature_scale=scale)
    in_range = (v >= z1) & (v <= z2)
    fresh = ~(in_range & (np.cumsum(in_range) == 1))  # the first in-range row was judged before
    step = 0.01
    kernel = sampling.build(problem, 8, jnp.asarray(lam), mu, step, repel)
    state = kernel.init(jnp.asarray(c))._replace(
        fresh=jnp.asarray(fresh), rep_count=jnp.float32(3), sum_a=jnp.asarray(earlier.sum(0)),
        sumsq_a=jnp.float32(np.sum(earlier * earlier)))
    out, info = jax.jit(kernel.step)(jax.random.key(0), state)
    assert int(info.accepted) == 2

    accepted = in_range & fresh
    assert in_range.sum() == 3 and accepted.sum() == 2 and int(out.count) == 2
    np.testing.assert_array_equal(np.asarray(out.buf_codes)[:2], c[accepted])
    c0 = feats[accepted] if repel == "new" else np.concatenate([earlier, feats[accepted]])
    assert float(out.rep_count) == len(c0)
    np.testing.assert_allclose(np.asarray(out.sum_a), c0.sum(0), rtol=1e-5, atol=1e-5)

    with jax.enable_x64(True):
        c0_64, lam64 = jnp.asarray(c0, jnp.float64), jnp.asarray(lam, jnp.float64)

        def terms(codes):  # (penalty, -D / (K^2 S), -sum_i sum_{y in C0} ||f_i - a_y||^2 / (K |C0| S))
            f = _embed(gen, cls, codes) if diversity == "embedding" else codes
            val = _values(gen, cls, codes, ["logits:3"], as_numpy=False)
            g = jnp.concatenate([(val - (z1 + margin)) / (z2 - z1), ((z2 - margin) - val) / (z2 - z1)], axis=-1).ravel()
            pen = jnp.sum(jnp.where(g <= lam64 / mu, -lam64 * g + mu / 2 * g * g, -lam64 ** 2 / (2 * mu)))
            spread = -jnp.sum((f[:, None] - f[None]) ** 2) / (k * k * scale)
            rep = -jnp.sum((f[:, None] - c0_64[None]) ** 2) / (k * len(c0) * scale)
            on = 0.0 if diversity == "none" else 1.0
            return jnp.stack([pen, on * spread, on * rep])

        h, c64 = 1e-5, jnp.asarray(c, jnp.float64)
        basis = jnp.eye(k * d, dtype=jnp.float64).reshape(k * d, k, d)
        fd = jax.vmap(lambda u: (terms(c64 + h * u) - terms(c64 - h * u)) / (2 * h))(basis)
    fd = np.asarray(fd).reshape(k, d, 3)

    def unit(g):
        return g / np.linalg.norm(g, axis=1, keepdims=True)

    want = unit(fd.sum(-1))
    got = (c - np.asarray(out.codes)) / step  # every row moves by `step` along its gradient's direction
    # float64 differences of a piecewise-smooth function against float32 autodiff: 1e-5 measured.
    np.testing.assert_allclose(got, want, atol=1e-4)
    # The test can fail: without any one term of L_sample the direction moves by 1e-2 or more.
    for j in range(1 if diversity == "none" else 3):
        other = -want if diversity == "none" else unit(fd.sum(-1) - fd[..., j])
        assert np.abs(other - want).max() > 1e-3, j
    np.testing.assert_array_equal(np.asarray(out.fresh), np.any(np.asarray(out.codes) != c, axis=1))


# ---------------------------------------------------------------- every sample in range


def test_samples_in_range_prior_generator_logits(prior_setup):
    gen, cls, codes = prior_setup
    logits = _values(gen, cls, codes, [f"logits:{u}" for u in range(10)])
    rng = np.random.default_rng(1)
    for trial in range(4):
        unit = int(rng.integers(10))
        rg = _quantile_range(rng, logits[:, unit])
        res = inv.inverse_set(jax.random.key(trial), gen, cls, f"logits:{unit}", rg, **RUN)
        _check(res, gen, cls, [f"logits:{unit}"], rg, RUN["n"])
        assert res.stop_reason == "complete", (unit, rg, res.stop_message)
        assert res.sampling_steps >= math.ceil((RUN["n"] - RUN["k"]) / RUN["k"])  # at most K per step
        assert res.neurons == (f"logits:{unit}",) and res.reading == "post-nonlinearity"


def test_eq5_more_diverse_than_eq14_which_accepts_each_code_once_and_stalls(fc_setup):
    # Same key, so the same initial codes E(random images). Eq. 14 has no force on a code inside
    # the range: its codes come to rest and it stops "stalled" with each code once, instead of
    # re-accepting the resting codes until n (the bug: n samples, K distinct codes, "complete").
    # Eq. 5 spreads the samples in E: measured 1.4-3.1x eq. 14's mean E-distance over keys 3, 4
    # and ranges at quantiles (0.3, 0.5) and (0.6, 0.8).
    gen, cls, codes = fc_setup
    rg = tuple(float(q) for q in np.quantile(_values(gen, cls, codes, ["logits:7"])[:, 0], [0.3, 0.5]))
    eq5 = inv.inverse_set(jax.random.key(3), gen, cls, "logits:7", rg, **RUN)
    eq14 = inv.inverse_set(jax.random.key(3), gen, cls, "logits:7", rg, diversity="none", **RUN)
    for res in (eq5, eq14):
        _check(res, gen, cls, ["logits:7"], rg, RUN["n"])
    assert eq5.stop_reason == "complete"
    assert eq14.stop_reason == "stalled" and RUN["k"] <= eq14.n_accepted < RUN["n"], eq14.stop_message
    assert eq14.sampling_steps < math.ceil((RUN["n"] - RUN["k"]) / RUN["k"])
    assert eq5.stats["mean_pairwise_distance"] > 1.25 * eq14.stats["mean_pairwise_distance"]


def test_samples_in_range_prior_generator_hidden_conv_no_diversity(prior_setup):
    # Hidden conv units, random positions (or the centre), read before the ReLU; eq. 14 (no
    # diversity term) shares this compiled program to keep the suite fast.
    gen, cls, codes = prior_setup
    rng = np.random.default_rng(2)
    for trial in range(3):
        unit = int(rng.integers(4))
        neuron = f"conv2:{unit}" if trial == 0 else f"conv2:{unit}@{rng.integers(14)},{rng.integers(14)}"
        rg = _quantile_range(rng, _values(gen, cls, codes, [neuron], nonlinear=False)[:, 0])
        res = inv.inverse_set(jax.random.key(10 + trial), gen, cls, neuron, rg, nonlinear=False,
                              diversity="none", **RUN)
        _check(res, gen, cls, [neuron], rg, RUN["n"], nonlinear=False)
        assert res.n_accepted > 0 and res.reading == "pre-activation"


def test_intersection_of_neurons_in_two_layers(prior_setup):
    # A logit and a live fc1 unit (after ReLU). Ranges are centred on one reference code's values,
    # so the intersection is non-empty; every sample must satisfy both.
    gen, cls, codes = prior_setup
    fc1 = _values(gen, cls, codes, [f"fc1:{u}" for u in range(16)])
    live = [u for u in range(16) if np.quantile(fc1[:, u], 0.2) > 0]
    assert live
    rng = np.random.default_rng(3)
    for trial in range(3):
        neurons = [f"logits:{rng.integers(10)}", f"fc1:{rng.choice(live)}"]
        vals = _values(gen, cls, codes, neurons)
        ref = vals[rng.integers(len(vals))]
        half = 0.2 * (np.quantile(vals, 0.9, axis=0) - np.quantile(vals, 0.1, axis=0))
        ranges = [(float(ref[j] - half[j]), float(ref[j] + half[j])) for j in range(2)]
        res = inv.inverse_set(jax.random.key(20 + trial), gen, cls, neurons, ranges, **RUN)
        _check(res, gen, cls, neurons, ranges, RUN["n"])
        assert res.n_accepted > 0 and res.activations.shape[1] == 2


def test_samples_in_range_fc_generator(fc_setup):
    gen, cls, codes = fc_setup
    assert inv.init_mode(gen, inv.default_embedding(gen, cls)) == "images"
    assert inv.default_embedding(gen, cls).layer == 3  # fc1, the encoder its manifest names
    logits = _values(gen, cls, codes, [f"logits:{u}" for u in range(10)])
    rng = np.random.default_rng(4)
    for trial in range(4):
        unit = int(rng.integers(10))
        rg = _quantile_range(rng, logits[:, unit])
        res = inv.inverse_set(jax.random.key(30 + trial), gen, cls, f"logits:{unit}", rg, **RUN)
        _check(res, gen, cls, [f"logits:{unit}"], rg, RUN["n"])
        assert res.stop_reason == "complete", (unit, rg, res.stop_message)


def test_one_sided_code_diversity_keeps_samples_in_range(prior_setup):
    # The paper's one-sided seeds (f >= midpoint) can overshoot z2: acceptance still checks both
    # sides. High ranges, as in the paper, which random codes start below. Eq. 13 (diversity in
    # code space) shares this compiled program.
    gen, cls, codes = prior_setup
    logits = _values(gen, cls, codes, [f"logits:{u}" for u in range(10)])
    rng = np.random.default_rng(5)
    for trial in range(2):
        unit = int(rng.integers(10))
        rg = tuple(float(q) for q in np.quantile(logits[:, unit], [0.85, 0.97]))
        res = inv.inverse_set(jax.random.key(40 + trial), gen, cls, f"logits:{unit}", rg, one_sided=True,
                              diversity="code", **RUN)
        _check(res, gen, cls, [f"logits:{unit}"], rg, RUN["n"], one_sided=True)
        assert res.n_accepted > 0 and res.diversity == "code"
    # A range below every random code: one-sided seeds are feasible at once, all above z2.
    low = logits[:, 0].min()
    rg = (float(low - 2.0), float(low - 1.0))
    res = inv.inverse_set(jax.random.key(42), gen, cls, "logits:0", rg, one_sided=True, diversity="code", **RUN)
    assert res.n_accepted == 0 and res.stop_reason == "seeds_out_of_range" and res.seeds_feasible
    assert res.outer_iterations == 0


# ---------------------------------------------------------------- stop reasons, determinism


def test_unreachable_range_returns_no_samples(prior_setup):
    gen, cls, codes = prior_setup
    top = _values(gen, cls, codes, ["logits:3"]).max()
    rg = (top + 1e3, top + 1e3 + 1.0)  # tanh images in a tiny net: logits stay O(1)
    res = inv.inverse_set(jax.random.key(0), gen, cls, "logits:3", rg, **RUN)
    assert res.n_accepted == 0 and res.stop_reason == "unreachable"
    assert "no code reached" in res.stop_message and not res.seeds_feasible
    assert res.codes.shape[0] == res.images.shape[0] == res.activations.shape[0] == 0
    assert res.outer_iterations == RUN["max_outer"] and res.sampling_steps == 0


def test_sampling_budget_stop_reason(prior_setup):
    gen, cls, codes = prior_setup
    rg = tuple(float(q) for q in np.quantile(_values(gen, cls, codes, ["logits:3"])[:, 0], [0.4, 0.6]))
    res = inv.inverse_set(jax.random.key(0), gen, cls, "logits:3", rg, max_sampling_steps=1, **RUN)
    assert res.stop_reason == "sampling_budget" and 0 < res.n_accepted <= 2 * RUN["k"]
    assert res.sampling_steps == 1
    _check(res, gen, cls, ["logits:3"], rg, RUN["n"])


def test_progress_ticks_rise_to_the_budget_and_leave_the_samples_unchanged(fc_setup):
    """The progress hook: done never decreases, every tick names the same total (the seeds' budget
    of inner steps plus the sampling budget), the last is (total, total), the sampling phase ticks
    more than once; the samples are those of the same key without progress."""
    gen, cls, codes = fc_setup
    rg = tuple(float(q) for q in np.quantile(_values(gen, cls, codes, ["logits:7"])[:, 0], [0.3, 0.5]))
    ticks = []
    a = inv.inverse_set(jax.random.key(7), gen, cls, "logits:7", rg, progress=lambda *t: ticks.append(t), **RUN)
    b = inv.inverse_set(jax.random.key(7), gen, cls, "logits:7", rg, **RUN)
    total = RUN["max_outer"] * RUN["inner_steps"] + 10 * math.ceil((RUN["n"] - RUN["k"]) / RUN["k"])
    done = [d for d, _ in ticks]
    assert {t for _, t in ticks} == {total} and ticks[-1] == (total, total)
    assert done == sorted(done) and all(type(d) is int for d in done)
    seed_budget = RUN["max_outer"] * RUN["inner_steps"]
    assert len([d for d in done[:-1] if d >= seed_budget]) >= 2  # sampling ticks, not one per phase
    assert len([d for d in done if d < seed_budget]) <= a.outer_iterations  # one per outer iteration
    assert (a.n_accepted, a.sampling_steps, a.outer_iterations, a.stop_reason) == (
        b.n_accepted, b.sampling_steps, b.outer_iterations, b.stop_reason)
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_array_equal(a.activations, b.activations)


def test_same_key_same_samples_other_key_other_samples(fc_setup):
    gen, cls, codes = fc_setup
    rg = tuple(float(q) for q in np.quantile(_values(gen, cls, codes, ["logits:7"])[:, 0], [0.3, 0.5]))
    a = inv.inverse_set(jax.random.key(7), gen, cls, "logits:7", rg, **RUN)
    b = inv.inverse_set(jax.random.key(7), gen, cls, "logits:7", rg, **RUN)
    c = inv.inverse_set(jax.random.key(8), gen, cls, "logits:7", rg, **RUN)
    assert a.n_accepted == b.n_accepted == c.n_accepted == RUN["n"]
    np.testing.assert_array_equal(a.codes, b.codes)
    np.testing.assert_array_equal(a.activations, b.activations)
    assert not np.allclose(a.codes, c.codes)
    # Diversity statistics are computed from the samples themselves.
    e = a.embeddings.reshape(RUN["n"], -1)
    np.testing.assert_allclose(a.stats["mean_pairwise_distance"], inv.mean_pairwise_distance(e))
    assert a.stats["mean_pairwise_distance"] > 0


# ---------------------------------------------------------------- errors, before any work


@pytest.fixture
def no_work(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("work started before the inputs were checked")
    monkeypatch.setattr(inv, "_run", fail)


@pytest.mark.parametrize("kwargs, message", [
    (dict(ranges=(2.0, 1.0)), r"ranges: expected z1 < z2 for neuron 'logits:3', got z1=2.0 > z2=1.0"),
    (dict(ranges=(1.0, 1.0)), r"ranges: expected z1 < z2 for neuron 'logits:3', got z1 = z2"),
    (dict(ranges=(float("nan"), 1.0)), r"ranges: expected finite z1, z2 for neuron 'logits:3'"),
    (dict(ranges=(0.0, float("inf"))), r"ranges: expected finite"),
    (dict(ranges=[(0.0, 1.0), (0.0, 1.0)]), r"ranges: expected 1 \(z1, z2\) pair"),
    (dict(neurons="fc7:3"), r"neuron 'fc7:3': .*no layer 'fc7'"),
    (dict(neurons="logits:12"), r"neuron 'logits:12': unit 12 out of range"),
    (dict(neurons="logits3"), r"neuron 'logits3': expected 'layer:unit'"),
    (dict(n=4, k=5), r"n: expected n >= k .* n=4 < k=5"),
    (dict(k=0), r"k: expected an integer >= 1, got 0"),
    (dict(n=True), r"n: expected an integer >= 1, got True"),
    (dict(inner_steps=2.5), r"inner_steps: expected an integer >= 1, got 2.5"),
    (dict(max_outer=0), r"max_outer: expected an integer >= 1, got 0"),
    (dict(max_sampling_steps=-1), r"max_sampling_steps: expected an integer >= 0, got -1"),
    (dict(mu0=float("nan")), r"mu0: expected a positive number in \(0.0, inf\), got nan"),
    (dict(beta=float("nan")), r"beta: expected a positive number"),
    (dict(growth=1.0), r"growth: expected a factor a in \(1\.0, inf\), got 1\.0"),
    (dict(margin=0.5), r"margin: expected 0 <= margin < \(z2 - z1\)/2"),
    (dict(margin=float("nan")), r"margin: expected 0 <= margin"),
    (dict(diversity="pixels"), r"diversity: expected one of embedding, code, none"),
    (dict(init=np.full((5, 8), np.nan, np.float32)), r"init: expected finite values"),
    (dict(init=np.zeros((4, 8), np.float32)), r"init: expected codes of shape \(5, 8\)"),
    (dict(init="noise"), r"init: expected 'auto', 'prior', 'images'"),
    (dict(init="images"), r"init: E gives 16 values per image but generator 'gen' takes codes of shape \(8,\)"),
    # float32 cannot hold these ranges: one collapses to no value, the others overflow
    (dict(ranges=(1.00000001, 1.00000002)), r"ranges: expected a range that holds two or more float32 values for "
                                            r"neuron 'logits:3' .*got \[1.00000001, 1.00000002\]"),
    (dict(ranges=(1e8, 1e8 + 1)), r"ranges: expected a range that holds two or more float32 values"),
    (dict(ranges=(-1e39, 1e39)), r"ranges: expected z1, z2 and z2 - z1 within float32's range .*'logits:3'"),
    (dict(ranges=(-3e38, 3e38)), r"ranges: expected z1, z2 and z2 - z1 within float32's range"),
    (dict(neurons=3), r"neurons: expected an address 'layer:unit\[@y,x\]' or a list of them, got 3"),
    (dict(neurons=[3]), r"neuron: expected a string 'layer:unit'"),
    (dict(mu0=None), r"mu0: expected a positive number in \(0.0, inf\), got None"),
    (dict(mu0=0.0), r"mu0: expected a positive number in \(0.0, inf\), got 0.0"),
    (dict(beta="big"), r"beta: expected a positive number"),
    (dict(repel="some"), r"repel: expected one of new, all, got 'some'"),
])
def test_bad_inputs_fail_before_any_work(prior_setup, no_work, kwargs, message):
    gen, cls, _ = prior_setup
    args = dict(neurons="logits:3", ranges=(0.0, 1.0), n=10, k=5)
    args.update(kwargs)
    neurons, ranges = args.pop("neurons"), args.pop("ranges")
    with pytest.raises(JaxprobeError, match=message):
        inv.inverse_set(jax.random.key(0), gen, cls, neurons, ranges, **args)


def test_fc_generator_has_no_prior(fc_setup, no_work):
    gen, cls, _ = fc_setup
    with pytest.raises(JaxprobeError, match=r"init: generator 'fcgen' has no latent prior"):
        inv.inverse_set(jax.random.key(0), gen, cls, "logits:1", (0.0, 1.0), n=10, k=5, init="prior")
    with pytest.raises(JaxprobeError, match=r"generator: expected a model with role 'generator'"):
        inv.inverse_set(jax.random.key(0), cls, cls, "logits:1", (0.0, 1.0), n=10, k=5)
    with pytest.raises(JaxprobeError, match=r"classifier: expected a model with role 'classifier' or 'critic', "
                                            r"got 'fcgen' \(generator\)"):
        inv.inverse_set(jax.random.key(0), gen, gen, "logits:1", (0.0, 1.0), n=10, k=5)


# ---------------------------------------------------------------- the kernel protocol


def _tiny_problem(prior_setup):
    """The prior setup's problem for logits:3 in its (0.4, 0.6) quantiles, E = fc1, and 2 x K codes."""
    gen, cls, codes = prior_setup
    rg = np.quantile(_values(gen, cls, codes, ["logits:3"])[:, 0], [0.4, 0.6])
    nets = prob.InverseSetNets(gen, cls, prob.Embedding(cls, "fc1"))
    targets = prob.Targets((4,), jnp.array([3]), jnp.asarray([rg], jnp.float32))
    return prob.make_problem(nets, targets, feature_scale=jnp.float32(1.0)), jnp.asarray(codes[:10]).reshape(2, 5, 8)


def test_seed_kernel_composes_with_vmap_scan_jit_traces_once_and_matches_the_driver(prior_setup):
    import chex
    import optax

    from jaxprobe.inverse_sets import auglag, seeds

    problem, c0 = _tiny_problem(prior_setup)
    solver = seeds.seed_solver(problem, optax.adam(0.01), inner_steps=5)
    step = chex.assert_max_traces(solver.step, n=1)

    @jax.jit
    def solve(c, mu0):  # user code: K seeds, 3 outer iterations in a scan
        def body(s, t):
            s, info = step(jax.random.key(0), s)
            return s, (info, s.x)
        return jax.lax.scan(body, solver.init(c, mu0=mu0), jnp.arange(3))

    try:
        a, (info, xs) = solve(c0[0], jnp.float32(10.0))
        b, _ = solve(c0[1], jnp.float32(3.0))  # other codes and mu0: the same trace
    finally:
        chex.clear_trace_counter()
    assert info.violation.shape == (3,) and int(a.outer) == 3 and int(a.inner) == 15
    np.testing.assert_allclose(np.asarray(info.mu), [10.0, 100.0, 1000.0], rtol=1e-6)
    np.testing.assert_allclose(float(b.mu), 3e3, rtol=1e-6)
    # vmap over the two seed sets: each run equals the one alone.
    both, _ = jax.jit(jax.vmap(lambda c: solve(c, jnp.float32(10.0))))(c0)
    np.testing.assert_allclose(np.asarray(both.x[0]), np.asarray(a.x), rtol=1e-5, atol=1e-5)
    # The driver (through auglag.run) takes the same steps and stops at the first feasible iterate.
    assert not bool(auglag.feasible(solver.init(c0[0], mu0=10.0)))
    stopped = auglag.run(solver, solver.init(c0[0], mu0=10.0), 3)
    first = next((t for t in range(3) if float(info.violation[t]) == 0.0), 2) + 1
    assert int(stopped.outer) == first and bool(auglag.feasible(stopped)) == (float(info.violation[first - 1]) == 0)
    np.testing.assert_allclose(np.asarray(stopped.x), np.asarray(xs[first - 1]), rtol=1e-5, atol=1e-5)


def test_sampler_kernel_composes_with_vmap_scan_jit_traces_once_and_matches_the_driver(prior_setup):
    import chex

    from jaxprobe import driver

    problem, c0 = _tiny_problem(prior_setup)
    lam = jnp.full((10,), 0.05, jnp.float32)
    kernel = sampling.build(problem, 12, lam, jnp.float32(10.0), 0.05)
    step = chex.assert_max_traces(kernel.step, n=1)

    @jax.jit
    def sample(c):  # user code: 6 steps in a scan
        def body(s, t):
            s, info = step(jax.random.fold_in(jax.random.key(0), t), s)
            return s, (info.accepted, s.codes, sampling.done(s))
        return jax.lax.scan(body, kernel.init(c), jnp.arange(6))

    try:
        a, (accepted, codes, done) = sample(c0[0])
        b, _ = sample(c0[1])
    finally:
        chex.clear_trace_counter()
    # Every accepted row is in range, each counted once, recomputed here from its code.
    count = int(a.count)
    assert count == min(12, int(accepted.sum())) and int(a.steps) == 6
    gen, cls, _ = prior_setup
    again = _values(gen, cls, np.asarray(a.buf_codes)[:count], ["logits:3"])
    np.testing.assert_allclose(again, np.asarray(a.buf_values)[:count], rtol=1e-5, atol=1e-5)
    both, _ = jax.jit(jax.vmap(sample))(c0)
    assert int(both.count[1]) == int(b.count)
    np.testing.assert_allclose(np.asarray(both.codes[1]), np.asarray(b.codes), rtol=1e-5, atol=1e-5)
    # The driver with the sampler's stopping rule stops after the first step whose state is done.
    out = driver.run(kernel, jax.random.key(0), kernel.init(c0[0]), 6, trace=None, until=sampling.done)
    steps = next((t + 1 for t in range(6) if bool(done[t])), 6)
    assert int(out.steps) == steps and int(out.state.count) == min(12, int(accepted[:steps].sum()))
    np.testing.assert_allclose(np.asarray(out.state.codes), np.asarray(codes[steps - 1]), rtol=1e-5, atol=1e-5)


def test_composing_the_kernel_docs_example():
    """docs/methods/inverse-set.md's "Composing the kernel" block, run as written on the shipped
    models; what it accepted is in range by a fresh forward pass."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "methods" / "inverse-set.md").read_text()
    after = text[text.index("## Composing the kernel"):]
    start = after.index("```python\n") + len("```python\n")
    ns = {}
    exec(compile(after[start:after.index("```", start)], "inverse-set.md", "exec"), ns)
    samples, state, g, c = ns["samples"], ns["state"], ns["g"], ns["c"]
    assert np.asarray(samples.count).shape == (2,) and np.all(np.asarray(state.outer) == 4)
    assert np.all(np.asarray(state.lam) >= 0) and int(ns["out"].steps) >= 1
    for r in range(2):
        m = int(samples.count[r])
        assert m > 0 and m == min(32, int(ns["accepted"][r].sum()))
        v = _values(g, c, np.asarray(samples.buf_codes[r, :m]), ["logits:3"])[:, 0]
        assert np.all((v >= -1e-5) & (v <= 2.0 + 1e-5)), v
