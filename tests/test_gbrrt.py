"""GB-RRT: region validity by an independent forward pass, delta separation, batched == sequential,
convexity at layer 1, the empty-region and full-tree stops, and bad input."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprobe.gbas.boundaries import halfspace, region_margin
from jaxprobe.errors import JaxprobeError
from jaxprobe import driver
from jaxprobe.gbas.gbrrt import (CANDIDATE_BUDGET, CAPACITY_FULL, REJECTED_CAPACITY, REL_TOL, GBRRTNets, GBRRTOptions,
                                 build, check_arguments, gbrrt, gbrrt_kernel, gbrrt_queries, gbrrt_run, min_delta,
                                 stop_reason_name)
from conftest import tiny_generator
from gbrrt_reference import candidate_draws, gbrrt_sequential
from test_boundaries import one_layer, perturbed

D = 8  # latent dimension of the tiny generator
# Float tolerance of the independent membership check: the tree decided membership in a batched
# forward pass, the check recomputes it at another batch size, which may round the last bit of a
# pre-activation differently; 1e-5 of the layer's scale is far below any real violation.
MARGIN_TOL = 1e-5


@pytest.fixture(scope="module")
def gen():
    return perturbed(tiny_generator(latent_dim=D))


def queries(model, l, n, seed, frac=0.05):
    """n queries z0 ~ N(0, I), each with V* = sign(h(z0)) on a random ~frac of the units."""
    z0s = jax.random.normal(jax.random.PRNGKey(seed), (n, D))
    signs = np.asarray(halfspace(model, model.params, z0s, l))
    keep = np.random.default_rng(seed).random(signs.shape) < frac
    return z0s, jnp.asarray(np.where(keep, signs, 0), jnp.int32), jax.random.split(jax.random.PRNGKey(seed + 1), n)


def run_many(fn, model, l, keys, z0s, vs, **kw):
    """`fn` (the jitted `gbrrt` or `gbrrt_sequential`) over queries: one compilation, a loop of
    cheap calls (a vmapped while_loop compiled 2-3x slower here than the loop costs to run)."""
    return [jax.tree.map(np.asarray, fn(k, model, model.params, z, l, v, **kw)) for k, z, v in zip(keys, z0s, vs)]


@functools.lru_cache(maxsize=None)
def _up_to(model, l):
    return jax.jit(lambda x: model.up_to(model.params, x, l))


def flat_pre(model, l, x):
    """Layer l's pre-activation of a fixed-size buffer (one compilation per shape), flattened."""
    return np.asarray(_up_to(model, l)(jnp.asarray(x, jnp.float32))).reshape(len(x), -1)


def check_tree(model, l, v, r, delta):
    """Independent checks of one tree: membership (model.up_to + numpy signs), separation,
    parents, rejected set, accounting. Returns the number of nodes."""
    v = np.asarray(v)
    sel = v != 0
    n = int(r.count)
    nodes = np.asarray(r.nodes)[:n].astype(np.float64)
    h = flat_pre(model, l, np.asarray(r.nodes))[:n]
    scale = 1.0 + np.abs(h).max()
    assert np.all(v[sel] * h[:, sel] >= -MARGIN_TOL * scale), "a node outside the region"
    # Pairwise separation (float64 distances; the tree decided in float32 -> 1e-6 slack).
    dist = np.sqrt(((nodes[:, None] - nodes[None]) ** 2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    assert dist.min() >= delta * (1 - REL_TOL) * (1 - 1e-6)
    # Parents: the query is the root, every other node is one step of length delta from an
    # earlier node.
    parents = np.asarray(r.parents)[:n]
    assert parents[0] == -1 and np.all((parents[1:] >= 0) & (parents[1:] < np.arange(1, n)))
    if n > 1:
        np.testing.assert_allclose(np.linalg.norm(nodes[1:] - nodes[parents[1:]], axis=1), delta, rtol=1e-5)
    # Rejected candidates fail membership; they are one step from some node as well.
    m = min(int(r.n_rejected), r.rejected.shape[0])
    if m:
        hr = flat_pre(model, l, np.asarray(r.rejected))[:m]
        assert np.all(np.min(np.where(sel, v * hr, np.inf), axis=1) < MARGIN_TOL * scale)
    assert int(r.n_candidates) == (n - 1) + int(r.n_rejected) + int(r.n_close)
    return n


# One static configuration shared by several tests, so the jitted driver compiles once per layer.
BASE = dict(delta=0.1, interval=1.0, capacity=16, max_candidates=160, batch=8, rejected_capacity=64)


def assert_between_members(model, nodes, v, rng, n=300):
    """Points on segments between accepted nodes are members (the layer-1 region is convex)."""
    i, j = rng.integers(0, len(nodes), (2, n))
    t = rng.random((n, 1))
    between = t * nodes[i] + (1 - t) * nodes[j]
    h = flat_pre(model, 1, between)
    assert np.all((v == 0) | (v * h >= -MARGIN_TOL * (1 + np.abs(h).max())))


def test_every_node_in_region_for_52_queries_over_layers_1_to_4(gen):
    total, full = 0, 0
    rng = np.random.default_rng(0)
    for l in range(1, 5):
        z0s, vs, keys = queries(gen, l, 13, seed=10 * l)
        for z0, v, r in zip(z0s, vs, run_many(gbrrt, gen, l, keys, z0s, vs, **BASE)):
            np.testing.assert_array_equal(r.nodes[0], z0)
            n = check_tree(gen, l, v, r, BASE["delta"])
            total += n
            full += int(r.stop_reason) == CAPACITY_FULL
            assert int(r.stop_reason) in (CAPACITY_FULL, CANDIDATE_BUDGET)
            assert int(r.n_candidates) <= BASE["max_candidates"]
            if l == 1 and n > 3:  # the fc layer is affine in z: its regions are convex
                assert_between_members(gen, r.nodes[:n].astype(np.float64), np.asarray(v), rng)
    # The property is not vacuous: the trees grew.
    assert total > 52 * 6 and full > 10, (total, full)


def test_batched_b1_reproduces_sequential_node_for_node(gen):
    kw = dict(BASE, capacity=12, max_candidates=120, rejected_capacity=40)
    kw.pop("batch")
    grown = 0
    for l in (1, 3):
        z0s, vs, keys = queries(gen, l, 8, seed=100 + l)
        seq = run_many(gbrrt_sequential, gen, l, keys, z0s, vs, **kw)
        bat = run_many(gbrrt, gen, l, keys, z0s, vs, batch=1, **kw)
        for s, b in zip(seq, bat):
            for name in ("count", "parents", "n_rejected", "n_close", "n_candidates", "stop_reason"):
                np.testing.assert_array_equal(getattr(b, name), getattr(s, name), err_msg=name)
            # Same operations on the same draws; 1e-6 allows a last-bit difference between two
            # separately compiled programs.
            np.testing.assert_allclose(b.nodes, s.nodes, rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(b.rejected, s.rejected, rtol=1e-6, atol=1e-6)
            grown += int(s.count) > 2
    assert grown >= 8


def test_top_k_fallback_is_exact(gen):
    """The screen (k nearest tested directly, the rest ruled out by a rigorous bound, else the
    direct fallback) decides exactly: top_k = 1 (no neighbour tested directly: bound or fallback
    only) gives the same tree as top_k = 16, and a dense tree (small delta, big batch) stresses
    in-batch separation."""
    l, delta = 2, 0.03
    z0s, vs, keys = queries(gen, l, 3, seed=7, frac=0.02)
    kw = dict(delta=delta, interval=0.2, capacity=48, max_candidates=256, batch=32, rejected_capacity=256)
    a = run_many(functools.partial(gbrrt, top_k=1), gen, l, keys, z0s, vs, **kw)
    b = run_many(functools.partial(gbrrt, top_k=16), gen, l, keys, z0s, vs, **kw)
    for ra, rb, v in zip(a, b, vs):
        for name in ("count", "parents", "n_rejected", "n_close"):
            np.testing.assert_array_equal(getattr(ra, name), getattr(rb, name), err_msg=name)
        np.testing.assert_array_equal(ra.nodes, rb.nodes)
        assert int(rb.n_close) > 0 and int(rb.count) > 10
        check_tree(gen, l, v, rb, delta)


def replay(w, b, v, z0, key, *, delta, interval, capacity, max_candidates, batch):
    """GB-RRT replayed in numpy float64 on a one-layer generator (closed-form membership), from
    the same candidate draws (step t's B candidates from `fold_in(key, t)`): B candidates per
    step, nearest nodes against the tree at the step's start, then one by one, each kept
    delta * (1 - 1e-4) from every node but its parent and from the batch's accepted candidates.
    batch = 1 is Algorithm 2 itself."""
    d = len(z0)
    draws = np.asarray(candidate_draws(key, max_candidates, batch, jnp.asarray(z0), interval), np.float64)
    nodes, parents, rejected, n_close, used = [np.asarray(z0, np.float64)], [-1], [], 0, 0
    thr = delta * (1 - REL_TOL)
    while used < max_candidates and len(nodes) < capacity:
        tree = np.array(nodes)
        start = len(nodes)
        for z in draws[used:used + batch]:
            if used >= max_candidates or len(nodes) >= capacity:
                break
            used += 1
            q = int(np.argmin(np.linalg.norm(tree - z, axis=1)))
            zp = tree[q] + delta * (z - tree[q]) / np.linalg.norm(z - tree[q])
            pre = zp @ w + b
            if not np.all((v == 0) | (v * pre >= 0)):
                rejected.append(zp)
                continue
            others = np.array(nodes[:q] + nodes[q + 1:start] + nodes[start:]).reshape(-1, d)
            if len(others) and np.linalg.norm(others - zp, axis=1).min() < thr:
                n_close += 1
                continue
            nodes.append(zp)
            parents.append(q)
    return np.array(nodes), np.array(parents), np.array(rejected).reshape(-1, d), n_close


@pytest.mark.parametrize("batch", [1, 8])
def test_matches_numpy_replay_in_a_dense_2d_tree(batch):
    """In 2-D the tree soon covers the box, so most candidates land near nodes: the delta test
    decides often, through the direct tests of the k nearest, the bound, and the fallback
    (top_k = 1 forces the fallback whenever z is within delta of its nearest node)."""
    rng = np.random.default_rng(11)
    w, b = rng.normal(size=(2, 6)), rng.normal(size=6)
    model = one_layer(w, b)
    w, b = w.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64)
    z0 = np.float32([0.3, -0.2])
    v = np.where(np.arange(6) < 3, np.sign(z0 @ w + b), 0).astype(np.int32)
    key = jax.random.PRNGKey(5)
    kw = dict(delta=0.05, interval=0.4, capacity=96, max_candidates=500)
    nodes, parents, rejected, n_close = replay(w, b, v, z0, key, batch=batch, **kw)
    assert n_close > 50 and len(rejected) > 20 and len(nodes) > 40  # the test is not vacuous
    for top_k in (1, 4):
        r = gbrrt(key, model, model.params, jnp.asarray(z0), 1, v, batch=batch, top_k=top_k, **kw)
        np.testing.assert_array_equal(r.accepted_parents(), parents)
        np.testing.assert_allclose(r.accepted_nodes(), nodes, atol=1e-5)
        np.testing.assert_allclose(r.rejected_candidates(), rejected, atol=1e-5)
        assert int(r.n_close) == n_close
    if batch == 1:
        s = gbrrt_sequential(key, model, model.params, jnp.asarray(z0), 1, v, **kw)
        np.testing.assert_array_equal(s.accepted_parents(), parents)
        np.testing.assert_allclose(s.accepted_nodes(), nodes, atol=1e-5)


def test_layer1_region_is_convex_and_one_layer_tree_valid():
    """One-layer generator (linear + ReLU): every node satisfies the closed-form halfspaces, and
    points between accepted nodes are members (the layer-1 region is a convex polytope)."""
    rng = np.random.default_rng(5)
    d, units = 4, 24
    w, b = rng.normal(size=(d, units)), rng.normal(size=units)
    model = one_layer(w, b)
    z0 = jnp.asarray(rng.normal(size=d), jnp.float32)
    v = np.where(rng.random(units) < 0.4, np.asarray(halfspace(model, model.params, z0, 1)), 0)
    r = gbrrt(jax.random.PRNGKey(0), model, model.params, z0, 1, v, delta=0.05, interval=1.0,
              capacity=64, max_candidates=2000, batch=16)
    nodes = r.accepted_nodes().astype(np.float64)
    assert len(nodes) > 20
    pre = nodes @ w.astype(np.float32) + b.astype(np.float32)  # the closed form, float64
    assert np.all((v == 0) | (v * pre >= -1e-5))
    i, j = rng.integers(0, len(nodes), (2, 400))
    t = rng.random((400, 1))
    between = jnp.asarray(t * nodes[i] + (1 - t) * nodes[j], jnp.float32)
    margin = np.asarray(region_margin(model, model.params, between, 1, v))
    assert np.all(margin >= -1e-5)
    # The rejected candidates violate a selected closed-form halfspace.
    rej = r.rejected_candidates().astype(np.float64)
    assert len(rej) > 0
    assert np.all(np.any((v != 0) & (v * (rej @ w.astype(np.float32) + b.astype(np.float32)) < 1e-5), axis=1))


def test_tiny_region_returns_the_query_alone():
    """Region |z_i| <= 0.01 (W = [I, -I], b = 0.01) around z0 = 0, delta = 1: no step stays in it."""
    d = 3
    model = one_layer(np.concatenate([np.eye(d), -np.eye(d)], axis=1), np.full(2 * d, 0.01))
    z0, v = jnp.zeros(d), np.ones(2 * d, np.int32)
    for fn, extra in ((gbrrt, dict(batch=8)), (gbrrt_sequential, {})):
        r = fn(jax.random.PRNGKey(1), model, model.params, z0, 1, v, delta=1.0, capacity=10,
               max_candidates=50, rejected_capacity=20, **extra)
        assert int(r.count) == 1 and int(r.stop_reason) == CANDIDATE_BUDGET
        assert r.stop_reason_name() == "candidate_budget"
        np.testing.assert_array_equal(r.accepted_nodes(), np.zeros((1, d)))
        assert int(r.n_rejected) == 50 and int(r.n_candidates) == 50 and r.rejected_candidates().shape == (20, d)
        assert np.all(np.abs(r.rejected_candidates()).max(axis=1) > 0.01)  # each is outside the cube
    # The rejected buffer's default holds at most REJECTED_CAPACITY rows, however many candidates
    # (n_rejected counts past the stored rows: 50 above, 20 stored).
    for n, rows in ((10, 10), (REJECTED_CAPACITY + 100, REJECTED_CAPACITY), (10 ** 7, REJECTED_CAPACITY)):
        args = check_arguments(model, model.params, z0, 1, v, GBRRTOptions(delta=1.0, capacity=10, max_candidates=n))
        assert args.options.rejected_capacity == rows


def test_capacity_stop_and_kernel_steps(gen):
    z0s, vs, keys = queries(gen, 1, 1, seed=4, frac=0.05)
    z0, v, key = z0s[0], vs[0], keys[0]
    r = gbrrt(key, gen, gen.params, z0, 1, v, **dict(BASE, capacity=1))
    assert int(r.count) == 1 and int(r.n_candidates) == 0 and r.stop_reason_name() == "capacity_full"
    r = gbrrt(key, gen, gen.params, z0, 1, v, **BASE)
    assert int(r.count) == BASE["capacity"] and int(r.stop_reason) == CAPACITY_FULL
    # The step-by-step pair on the run's key: one step draws `batch` candidates; stepping it until
    # the tree is full grows the tree `gbrrt` grew through the driver.
    kernel = gbrrt_kernel(gen, gen.params, z0, 1, jnp.asarray(v, jnp.float32), **BASE)
    step = jax.jit(kernel.step)
    state = step(key, kernel.init())
    assert int(state.n_candidates) == BASE["batch"]
    while int(state.count) < BASE["capacity"]:
        state = step(key, state)
    np.testing.assert_allclose(state.nodes, np.asarray(r.nodes), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(state.parents, np.asarray(r.parents))
    assert int(state.n_candidates) == int(r.n_candidates)
    assert [stop_reason_name(c) for c in (0, 1, 2)] == ["running", "capacity_full", "candidate_budget"]
    # delta, interval and max_candidates are arguments of the compiled loop, not constants in it:
    # changing them (the budget within the same power of two of steps, 160 -> 140 candidates at
    # B = 8: 32 steps) compiles no new program.
    before = set(driver._CACHE)
    gbrrt(key, gen, gen.params, z0, 1, v, **dict(BASE, delta=0.05, interval=0.5, max_candidates=140))
    assert set(driver._CACHE) <= before


_run_jit = jax.jit(gbrrt_run, static_argnames=("model", "layer", "capacity", "batch", "rejected_capacity"))


def test_nan_parameters_accept_nothing(gen, batch=64):
    """The unchecked batched kernel (what `jax.vmap(gbrrt_run)` runs) with NaN parameters: every
    candidate's pre-activation is NaN, so none is a member (at batch 64, where XLA's min drops NaN
    at this width; membership itself is tested at batch 1, 8 and 64 in test_boundaries)."""
    leaves, tree = jax.tree.flatten(gen.params)
    nan_params = jax.tree.unflatten(tree, [jnp.full_like(x, jnp.nan) for x in leaves])
    z0, l = jnp.zeros(D), 4  # the deepest layer: every parameter reaches it
    v = jnp.asarray(halfspace(gen, gen.params, z0, l), jnp.float32)
    r = _run_jit(jax.random.PRNGKey(0), gen, nan_params, z0, l, v, delta=0.1, interval=jnp.ones(D),
                 capacity=16, max_candidates=64, batch=batch, rejected_capacity=64)
    assert int(r.count) == 1 and int(r.n_rejected) == 64, int(r.count)
    # The checked driver refuses the query's NaN pre-activation instead.
    with pytest.raises(JaxprobeError, match=r"params: expected parameters under which the query's pre-activation"):
        gbrrt(jax.random.PRNGKey(0), gen, nan_params, z0, l, v, delta=0.1, batch=batch, capacity=16,
              max_candidates=64)


def test_tiny_delta_is_refused_and_never_copies_the_query():
    """At z0 ~ 100 a step of 1e-6 rounds back onto its parent in float32: the checked driver
    refuses such a delta (below sqrt(d) eps32 max(|z0| + I) / REL_TOL), and the unchecked kernel
    accepts no copy of the query (steer's "moved" is z' != q)."""
    d = 3
    model = one_layer(np.concatenate([np.eye(d), -np.eye(d)], axis=1), np.full(2 * d, 1e3))
    z0 = jnp.full(d, 100.0)
    v = np.zeros(2 * d, np.int32)  # every point is a member: only the delta tests can refuse
    floor = np.sqrt(d) * np.finfo(np.float32).eps * 101.0 / REL_TOL
    np.testing.assert_allclose(min_delta(z0, 1.0), floor, rtol=1e-12)
    for delta in (1e-6, 1e-21, 0.9 * floor):
        with pytest.raises(JaxprobeError, match=r"delta: expected a step size float32 resolves at the query's scale"):
            gbrrt(jax.random.PRNGKey(0), model, model.params, z0, 1, v, delta=delta, capacity=8, max_candidates=32)
    # At the floor the checked driver accepts the step, the tree grows and its nodes keep their
    # separation; below it the unchecked kernel copies nothing.
    assert check_arguments(model, model.params, z0, 1, v,
                           GBRRTOptions(delta=floor, capacity=8, max_candidates=32)).options.delta == floor
    for delta in (1e-6, 1e-21, floor):
        r = _run_jit(jax.random.PRNGKey(0), model, model.params, z0, 1, jnp.asarray(v, jnp.float32), delta=delta,
                     interval=jnp.ones(d), capacity=32, max_candidates=32, batch=8, rejected_capacity=8)
        nodes = np.asarray(r.nodes)[: int(r.count)].astype(np.float64)
        if delta < floor:
            assert len(np.unique(nodes, axis=0)) == len(nodes) and int(r.count) == 1, (delta, int(r.count))
    dist = np.linalg.norm(nodes[:, None] - nodes[None], axis=-1) + np.eye(len(nodes))
    assert len(nodes) > 3 and dist.min() >= floor * (1 - REL_TOL)


def test_separation_threshold_is_strict_and_below_delta():
    """1-D, z0 = 0, delta = 1, every point a member, the tree {0, n}: a candidate in (0, n/2) steps
    from 0 to z' = 1 exactly. With n - 1 = delta (1 - REL_TOL) exactly in float32 (the threshold
    itself, below delta) z' is not too close and joins the tree; one float32 step nearer it is
    turned away. Both through the k nearest tested directly (top_k = 4) and through the direct
    fallback (top_k = 1), from a hand-made state."""
    model = one_layer(np.zeros((1, 1)), np.ones(1))
    v = jnp.zeros(1, jnp.float32)  # no unit selected: the region is the whole line
    thr = np.float32(1.0) * np.float32(1.0 - REL_TOL)
    at = np.float32(1.0) + thr
    assert at - np.float32(1.0) == thr and thr < 1.0  # exact in float32: |z' - n| is the threshold
    key, z0 = jax.random.PRNGKey(2), jnp.zeros(1)
    z = np.asarray(candidate_draws(key, 64, 1, z0, at))[:, 0]
    j = int(np.flatnonzero((z > 0.05) & (z < at / 2 - 0.05))[0])  # nearest node 0, step to z' = 1
    for top_k in (4, 1):
        options = GBRRTOptions(delta=1.0, interval=at, capacity=8, max_candidates=1000, batch=1, rejected_capacity=4,
                               top_k=top_k)
        kernel = build(GBRRTNets(model, model.params), options, 1)
        step = jax.jit(kernel.step)
        for n, joins in ((at, True), (np.nextafter(at, np.float32(0)), False)):
            state = kernel.init(z0, v)
            state = state._replace(nodes=state.nodes.at[1, 0].set(n), count=jnp.int32(2), n_candidates=jnp.int32(j))
            state, info = step(jax.random.fold_in(key, j), state)  # step j draws candidate j
            assert int(info.accepted) == joins and int(info.close) == (not joins)
            assert int(state.count) == 2 + joins and int(state.n_close) == (not joins), (top_k, n)
            if joins:
                assert float(state.nodes[2, 0]) == 1.0 and int(state.parents[2]) == 0


@pytest.mark.parametrize("fn", [gbrrt, gbrrt_sequential])
def test_bad_input(gen, fn):
    z0 = jnp.zeros(D)
    v = np.asarray(halfspace(gen, gen.params, z0, 2))
    ok = dict(delta=0.1, interval=1.0, capacity=8, max_candidates=10)
    key = jax.random.PRNGKey(0)

    def call(z=z0, layer=2, v_star=v, **kw):
        return fn(key, gen, gen.params, z, layer, v_star, **{**ok, **kw})

    with pytest.raises(JaxprobeError, match=r"layer: expected 1..4"):
        call(layer=5)
    with pytest.raises(JaxprobeError, match=r"layer: expected 1..4"):
        call(layer=0)
    with pytest.raises(JaxprobeError, match=r"layer: .* has no layer 'conv9'"):
        call(layer="conv9")
    for bad in (0.0, -0.5, float("nan")):
        with pytest.raises(JaxprobeError, match=r"delta: expected a positive step size"):
            call(delta=bad)
    for bad in (0.0, -1.0, np.r_[np.ones(D - 1), 0.0]):
        with pytest.raises(JaxprobeError, match=r"interval: expected positive half-widths"):
            call(interval=bad)
    with pytest.raises(JaxprobeError, match=r"interval: expected a scalar or one half-width per latent"):
        call(interval=np.ones(3))
    for bad in (0, -3):
        with pytest.raises(JaxprobeError, match=r"capacity: expected an integer >= 1"):
            call(capacity=bad)
    with pytest.raises(JaxprobeError, match=r"max_candidates: expected an integer >= 0"):
        call(max_candidates=-1)
    with pytest.raises(JaxprobeError, match=r"z0: expected finite values, got NaN"):
        call(z=z0.at[3].set(jnp.nan))
    with pytest.raises(JaxprobeError, match=r"z0: expected one latent vector of shape \(8,\)"):
        call(z=jnp.zeros(D + 1))
    with pytest.raises(JaxprobeError, match=r"z0: expected one latent vector of shape \(8,\)"):
        call(z=jnp.zeros((1, D)))
    with pytest.raises(JaxprobeError, match=r"v_star: expected a halfspace indicator of shape"):
        call(v_star=v[:-1])
    with pytest.raises(JaxprobeError, match=r"v_star: the query z0 is not in the region"):
        call(v_star=-v)
    if fn is gbrrt:
        with pytest.raises(JaxprobeError, match=r"batch: expected an integer >= 1"):
            call(batch=0)
        with pytest.raises(JaxprobeError, match=r"top_k: expected an integer >= 1"):
            call(top_k=0)
        with pytest.raises(JaxprobeError, match=r"^dleta: not a setting of GBRRTOptions \(expected one of delta, "):
            call(dleta=0.1)
        with pytest.raises(JaxprobeError, match=r"delta: expected a positive step size, got None"):
            call(delta=None)
        with pytest.raises(JaxprobeError, match=r"options: expected a GBRRTOptions or None, got dict"):
            fn(key, gen, gen.params, z0, 2, v, {"delta": 0.1})
    with pytest.raises(JaxprobeError, match=r"rejected_capacity: expected an integer >= 1"):
        call(rejected_capacity=0)


def test_progress_callback_ticks_without_changing_the_tree(gen):
    """`progress` receives (candidates drawn so far, budget), about 20 times, never above what was
    drawn, and last (n_candidates, n_candidates) when the tree filled first: the bar ends at its
    real total; the tree is the one grown without it."""
    l = 2
    z0s, vs, keys = queries(gen, l, 1, seed=5)
    kw = dict(BASE, capacity=24, max_candidates=256)
    seen = []

    def tick(done, total):
        seen.append((int(done), int(total)))

    with_bar = gbrrt(keys[0], gen, gen.params, z0s[0], l, vs[0], progress=tick, **kw)
    jax.effects_barrier()
    plain = gbrrt(keys[0], gen, gen.params, z0s[0], l, vs[0], **kw)
    ticks = [int(t) for t, _ in seen]
    drawn = int(plain.n_candidates)
    assert plain.stop_reason_name() == "capacity_full" and drawn < kw["max_candidates"]
    assert ticks == sorted(ticks) and max(ticks) == drawn and seen[-1] == (drawn, drawn), seen
    assert {total for _, total in seen[:-1]} == {kw["max_candidates"]}
    assert 3 <= len(ticks) <= 25, ticks
    # A tree that spends its budget ends at (budget, budget).
    seen.clear()
    gbrrt(keys[0], gen, gen.params, z0s[0], l, vs[0], progress=tick, **dict(kw, max_candidates=40))
    assert seen[-1] == (40, 40), seen
    for name in ("count", "parents", "n_rejected", "n_candidates", "nodes"):
        np.testing.assert_array_equal(np.asarray(getattr(with_bar, name)), np.asarray(getattr(plain, name)),
                                      err_msg=name)


def test_queries_in_one_program_equal_one_tree_at_a_time(gen):
    """`gbrrt_queries` (the driver's vmap over queries) gives tree i = gbrrt(fold_in(key, i), query i)
    node for node."""
    l = 2
    z0s, vs, _ = queries(gen, l, 3, seed=7)
    kw = BASE  # the settings of the first test: its compiled `gbrrt` serves here
    many = gbrrt_queries(jax.random.PRNGKey(3), gen, gen.params, z0s, l, vs, **kw)
    assert many.nodes.shape == (3, BASE["capacity"], D) and many.count.shape == (3,)
    keys = [jax.random.fold_in(jax.random.PRNGKey(3), i) for i in range(3)]
    one_by_one = run_many(gbrrt, gen, l, keys, z0s, vs, **kw)
    for i, one in enumerate(one_by_one):
        tree = jax.tree.map(lambda a: np.asarray(a)[i], many)
        for name in ("count", "parents", "n_rejected", "n_close", "n_candidates", "stop_reason"):
            np.testing.assert_array_equal(getattr(tree, name), getattr(one, name), err_msg=name)
        # the same operations on the same draws; 1e-6 allows a last bit between two programs
        np.testing.assert_allclose(tree.accepted_nodes(), one.accepted_nodes(), rtol=1e-6, atol=1e-6)
    assert sum(int(t.count) > 2 for t in one_by_one) >= 2  # the trees grew


def test_queries_bad_input(gen):
    l = 2
    z0s, vs, _ = queries(gen, l, 2, seed=7)
    kw = dict(delta=0.1, capacity=4, max_candidates=8)
    key = jax.random.PRNGKey(0)
    with pytest.raises(JaxprobeError, match=r"z0s: expected queries of shape \(Q, 8\), Q >= 1, got \(8,\)"):
        gbrrt_queries(key, gen, gen.params, z0s[0], l, vs, **kw)
    with pytest.raises(JaxprobeError, match=r"v_stars: expected one halfspace indicator per query \(2\)"):
        gbrrt_queries(key, gen, gen.params, z0s, l, vs[:1], **kw)
    with pytest.raises(JaxprobeError, match=r"query 1 \(z0s\[1\], v_stars\[1\]\): v_star: the query z0 is not in"):
        gbrrt_queries(key, gen, gen.params, z0s, l, vs.at[1].set(-vs[1]), **kw)
    with pytest.raises(JaxprobeError, match=r"query 0 \(z0s\[0\], v_stars\[0\]\): z0: expected finite values"):
        gbrrt_queries(key, gen, gen.params, z0s.at[0, 0].set(jnp.nan), l, vs, **kw)
    with pytest.raises(JaxprobeError, match=r"^capacity: expected an integer >= 1"):
        gbrrt_queries(key, gen, gen.params, z0s, l, vs, **{**kw, "capacity": 0})
    with pytest.raises(JaxprobeError, match=r"mesh: expected a jax.sharding.Mesh"):
        gbrrt_queries(key, gen, gen.params, z0s, l, vs, mesh="cpu", **kw)


def test_kernel_composes_with_vmap_scan_and_jit_from_user_code_and_traces_once(gen):
    """The protocol's kernel in user code, as blackjax's: `jax.jit` of `jax.vmap` over queries of a
    `lax.scan` over steps (step t of tree i on fold_in(fold_in(key, i), t)) grows, node for node,
    the trees `gbrrt_queries` grows through the driver; the step is traced once for two calls."""
    import chex

    l = 2
    z0s, vs, _ = queries(gen, l, 3, seed=7)
    options = GBRRTOptions(**BASE)
    kernel = build(GBRRTNets(gen), options, l)
    step = chex.assert_max_traces(kernel.step, n=1)

    @jax.jit
    def user(key, z0s, vs):
        def tree(i, z0, v):
            k = jax.random.fold_in(key, i)
            return jax.lax.scan(lambda s, t: step(jax.random.fold_in(k, t), s), kernel.init(z0, v),
                                jnp.arange(BASE["max_candidates"] // BASE["batch"]))
        return jax.vmap(tree)(jnp.arange(len(z0s)), z0s, vs)

    states, infos = user(jax.random.PRNGKey(3), z0s, vs)
    again, _ = user(jax.random.PRNGKey(3), z0s, vs)  # a second call: no new trace (chex counts them)
    np.testing.assert_array_equal(np.asarray(again.nodes), np.asarray(states.nodes))
    ref = gbrrt_queries(jax.random.PRNGKey(3), gen, gen.params, z0s, l, vs, options)
    np.testing.assert_array_equal(np.asarray(states.count), np.asarray(ref.count))
    np.testing.assert_array_equal(np.asarray(states.parents), np.asarray(ref.parents))
    np.testing.assert_allclose(np.asarray(states.nodes), np.asarray(ref.nodes).reshape(3, BASE["capacity"], D),
                               rtol=1e-6, atol=1e-6)
    # The infos account for every node, rejection and close candidate.
    np.testing.assert_array_equal(np.asarray(infos.accepted).sum(1) + 1, np.asarray(states.count))
    np.testing.assert_array_equal(np.asarray(infos.rejected).sum(1), np.asarray(states.n_rejected))
    np.testing.assert_array_equal(np.asarray(infos.close).sum(1), np.asarray(states.n_close))
    assert int(np.sum(np.asarray(states.count) > 2)) >= 2  # the trees grew
