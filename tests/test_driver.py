"""The one driver (`jaxprobe.run`): the same draws whichever way a run is made (one program, chunks,
inside the user's jit, the user's own lax.scan), chains independent of their number, `until`,
save buffers, progress, closed-over arrays passed as arguments and cached programs, canonical
convolution kernels in every compiled loop, and chains split over a mesh."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprobe import JaxprobeError, Kernel, run
from jaxprobe import driver


class Walk(NamedTuple):
    x: jax.Array
    n: jax.Array


class WalkInfo(NamedTuple):
    x: jax.Array
    noise: jax.Array


def ar1(a: float, scale) -> Kernel:
    """x_{t+1} = a x_t + scale * N(0, I): a kernel closing over an array (`scale`)."""
    scale = jnp.asarray(scale, jnp.float32)

    def init(x):
        return Walk(jnp.asarray(x, jnp.float32), jnp.zeros((), jnp.int32))

    def step(key, state):
        noise = jax.random.normal(key, state.x.shape)
        x = a * state.x + scale * noise
        return Walk(x, state.n + 1), WalkInfo(x, noise)

    return Kernel(init, step)


def replay(a, scale, key, x0, steps):
    """The AR(1) recursion in numpy, with step t's noise drawn from fold_in(key, t)."""
    x, xs = np.asarray(x0, np.float64), []
    for t in range(steps):
        noise = np.asarray(jax.random.normal(jax.random.fold_in(key, t), np.shape(x0)), np.float64)
        x = a * x + np.asarray(scale, np.float64) * noise
        xs.append(x)
    return x, np.stack(xs)


KEY = jax.random.key(7)
SCALE = np.linspace(0.5, 1.5, 5).astype(np.float32)


def test_every_way_of_running_gives_the_numpy_replay():
    k = ar1(0.8, SCALE)
    state = k.init(np.ones(5))
    want_x, want_xs = replay(0.8, SCALE, KEY, np.ones(5), 12)
    whole = run(k, KEY, state, 12)
    chunks = run(ar1(0.8, SCALE), KEY, state, 12, chunk=5)
    in_jit = jax.jit(lambda key, s: run(k, key, s, 12))(KEY, state)

    def user_scan(key, s):  # a user's own loop over the kernel, blackjax-style
        def body(s, t):
            s, info = k.step(jax.random.fold_in(key, t), s)
            return s, info.x
        return jax.lax.scan(body, s, jnp.arange(12))

    last, xs = jax.jit(user_scan)(KEY, state)
    for r in (whole, chunks, in_jit):
        np.testing.assert_allclose(r.state.x, want_x, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(r.trace.x, want_xs, rtol=1e-5, atol=1e-5)
        assert int(r.steps) == 12 and int(r.saved) == 12 and int(r.state.n) == 12
    np.testing.assert_allclose(last.x, want_x, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(xs, want_xs, rtol=1e-5, atol=1e-5)


def test_chains_draw_the_same_whatever_their_number():
    k = ar1(0.5, 1.0)
    four = run(k, KEY, jax.vmap(k.init)(np.zeros((4, 3))), 6, vmap=True)
    two = run(k, KEY, jax.vmap(k.init)(np.zeros((2, 3))), 6, vmap=True)
    np.testing.assert_allclose(four.state.x[:2], two.state.x, rtol=1e-6)
    assert four.trace.x.shape == (6, 4, 3)
    # chain i is the single-chain run keyed fold_in(key, i)
    one = run(k, jax.random.fold_in(KEY, 3), k.init(np.zeros(3)), 6)
    np.testing.assert_allclose(four.state.x[3], one.state.x, rtol=1e-6)
    assert len({tuple(np.asarray(c)) for c in four.state.x}) == 4  # the chains differ
    with pytest.raises(JaxprobeError, match="state: with vmap=True"):
        run(k, KEY, Walk(jnp.zeros((4, 3)), jnp.zeros((2,))), 3, vmap=True)


@pytest.mark.parametrize("chunk", [None, 3])
def test_until_stops_at_the_first_step_where_it_holds_and_save_every_keeps_rows(chunk):
    k = ar1(0.9, 1.0)
    r = run(k, KEY, k.init(np.zeros(2)), 20, until=lambda s: s.n >= 7, save_every=3, chunk=chunk)
    assert int(r.steps) == 7 and int(r.state.n) == 7
    assert r.trace.x.shape == (7, 2)  # ceil(20 / 3) rows
    assert int(r.saved) == 3  # after steps t = 0, 3, 6
    _, xs = replay(0.9, 1.0, KEY, np.zeros(2), 7)
    np.testing.assert_allclose(r.trace.x[:3], xs[[0, 3, 6]], rtol=1e-5, atol=1e-6)
    assert np.all(np.asarray(r.trace.x[3:]) == 0)
    nothing = run(k, KEY, k.init(np.zeros(2)), 5, trace=None)
    assert nothing.trace is None and int(nothing.steps) == 5


@pytest.mark.parametrize("chunk", [None, 4])
def test_progress_ends_at_the_total(chunk):
    seen = []
    k = ar1(0.5, 1.0)
    run(k, KEY, k.init(np.zeros(2)), 50, progress=lambda done, total: seen.append((int(done), int(total))),
        chunk=chunk)
    assert seen[-1] == (50, 50)
    done = [d for d, _ in seen]
    assert done == sorted(done) and len(seen) <= driver.PROGRESS_TICKS + 2 + (50 // 4 if chunk else 0)


def test_closed_over_arrays_are_arguments_and_programs_are_cached():
    big = np.random.default_rng(0).normal(size=(512, 512)).astype(np.float32)  # 1 MB

    def build():
        w = jnp.asarray(big)

        def step(key, x):
            return jnp.tanh(w @ x + jax.random.normal(key, x.shape)), ()
        return Kernel(lambda x: x, step)

    g, consts, text = driver.hoist(build().step, KEY, jnp.zeros(512))
    assert any(c.shape == (512, 512) for c in consts) and len(text) < 10_000
    before = set(driver._CACHE)
    a = run(build(), KEY, jnp.zeros(512), 4)
    b = run(build(), KEY, jnp.zeros(512), 4)  # a new kernel object, the same computation: no new program
    assert len(set(driver._CACHE) - before) == 1
    np.testing.assert_array_equal(a.state, b.state)
    program = next(reversed(driver._CACHE.values()))
    hlo = program.lower((consts, None, None), KEY, jnp.zeros(512), None, jnp.int32(0)).as_text()
    assert len(hlo) < 200_000  # the 1 MB matrix is a parameter, not a constant folded into the program


def test_the_step_is_traced_once_under_a_jitted_scan():
    calls = {"n": 0}
    k = ar1(0.5, 1.0)
    step = chex.assert_max_traces(k.step, n=1)
    kernel = Kernel(k.init, step)
    f = jax.jit(lambda key, s: run(kernel, key, s, 5).state)
    f(KEY, k.init(np.zeros(3)))
    f(jax.random.key(1), k.init(np.ones(3)))
    calls["n"] += 1


def _conv_ascent(w):
    """A kernel taking gradient steps on an image through a convolution: its loop body holds the
    gradient's convolution, whose kernel JAX hands over in the swapped (01oi) layout."""
    def f(x):
        y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.sum(jnp.tanh(y))

    def step(key, x):
        return x + 0.1 * jax.grad(f)(x), f(x)

    return Kernel(lambda x: x, step)


def test_no_compiled_loop_keeps_a_non_canonical_kernel():
    w = jax.random.normal(jax.random.key(0), (3, 3, 4, 5)) * 0.3
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 4))
    k = _conv_ascent(w)
    pure = jax.jit(lambda key, x: run(k, key, x, 3).state).lower(KEY, x).compile().as_text()
    assert pure.count("_01oi->") == 0
    s = driver._Settings(3, 1, False, None, None, False)
    program, consts, buffers = driver._compiled_loop(k.step, None, lambda st, inf: inf, None, s, KEY, x)
    compiled = program(3).lower(consts, KEY, x, buffers, jnp.int32(0)).compile().as_text()
    assert compiled.count("_01oi->") == 0
    # the rewrite is what removes them: a plain scan of the same step keeps the swapped layout on XLA CPU
    plain = jax.jit(lambda x: jax.lax.scan(lambda x, t: (k.step(KEY, x)[0], None), x, jnp.arange(3))[0])
    if jax.default_backend() == "cpu":
        assert plain.lower(x).compile().as_text().count("_01oi->") > 0
    np.testing.assert_allclose(run(k, KEY, x, 3).state, plain(x), rtol=1e-5, atol=1e-5)


def test_bad_settings_are_one_line_errors():
    k = ar1(0.5, 1.0)
    s = k.init(np.zeros(2))
    with pytest.raises(JaxprobeError, match="steps: expected an integer >= 1, got 0"):
        run(k, KEY, s, 0)
    with pytest.raises(JaxprobeError, match="save_every: expected an integer >= 1"):
        run(k, KEY, s, 3, save_every=0)
    with pytest.raises(JaxprobeError, match="chunk: expected None or an integer >= 1"):
        run(k, KEY, s, 3, chunk=0)


MESH_SCRIPT = textwrap.dedent("""
    import jax, numpy as np, sys
    sys.path.insert(0, {tests!r})
    from test_driver import ar1, KEY
    from jaxprobe import run, batch_mesh
    assert jax.device_count() == 8
    k = ar1(0.7, np.float32(1.3))
    s = jax.vmap(k.init)(np.zeros((16, 3)))
    one = run(k, KEY, s, 5, vmap=True)
    many = run(k, KEY, s, 5, vmap=True, mesh=batch_mesh())
    assert len(many.state.x.sharding.device_set) == 8 and not many.state.x.sharding.is_fully_replicated
    np.testing.assert_allclose(np.asarray(many.state.x), np.asarray(one.state.x), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(many.trace.x), np.asarray(one.trace.x), rtol=1e-6)
    print("ok")
""")


def test_chains_split_over_a_mesh_give_the_single_device_run():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    tests = os.path.dirname(os.path.abspath(__file__))
    r = subprocess.run([sys.executable, "-c", MESH_SCRIPT.format(tests=tests)], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]


def test_convolutions_in_loops_nested_in_a_step_are_rewritten_too():
    """A step that runs its own inner loop of gradient steps (as the augmented Lagrangian's inner
    optimizer does): the inner scan's convolutions get the canonical kernel as well."""
    w = jax.random.normal(jax.random.key(0), (3, 3, 4, 5)) * 0.3
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 4))
    inner = _conv_ascent(w)

    def step(key, x):
        x, values = jax.lax.scan(lambda x, t: inner.step(key, x), x, jnp.arange(2))
        return x, values[-1]

    k = Kernel(lambda x: x, step)
    compiled = jax.jit(lambda key, x: run(k, key, x, 2).state).lower(KEY, x).compile().as_text()
    assert compiled.count("_01oi->") == 0
    plain = jax.jit(lambda x: jax.lax.scan(lambda x, t: (step(KEY, x)[0], None), x, jnp.arange(2))[0])
    np.testing.assert_allclose(run(k, KEY, x, 2).state, plain(x), rtol=1e-5, atol=1e-5)


def test_a_run_in_chunks_compiles_one_program():
    k = ar1(0.6, SCALE)
    state = k.init(np.ones(5))
    before = set(driver._CACHE)
    r = run(k, KEY, state, 11, chunk=4)  # chunks of 4, 4 and 3 steps: one program
    assert len(set(driver._CACHE) - before) == 1
    want_x, want_xs = replay(0.6, SCALE, KEY, np.ones(5), 11)
    np.testing.assert_allclose(r.state.x, want_x, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(r.trace.x, want_xs, rtol=1e-5, atol=1e-5)
    assert int(r.steps) == 11 and int(r.state.n) == 11
    calls = []
    compiled = driver._CACHE[next(reversed(driver._CACHE))]
    compiled_size = compiled._cache_size() if hasattr(compiled, "_cache_size") else None
    run(k, KEY, state, 11, chunk=4, progress=lambda d, t: calls.append(d))
    assert calls == [4, 8, 11]
    if compiled_size is not None:
        assert compiled._cache_size() == compiled_size  # no retrace for the later chunks either
