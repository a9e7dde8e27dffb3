"""`jaxprobe.driver.compiled`: the public samplers (`gbrrt`, `dgn_am`, `ppgn`) as one jitted program
keyed by their models and settings. A second call traces nothing in Python, gives what the driver's
own concrete path (chunks) gives, and takes the parameters as arguments, not as constants."""

from __future__ import annotations

import functools
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprobe import driver
from jaxprobe.gbas.beropt import beropt
from jaxprobe.gbas.gbrrt import gbrrt, gbrrt_run

from conftest import tiny_generator
from test_ppgn import tiny_models as ppgn_models

dg = importlib.import_module("jaxprobe.codespace.dgn_am")
pp = importlib.import_module("jaxprobe.codespace.ppgn")
KEY = jax.random.PRNGKey(3)


@pytest.fixture
def traces(monkeypatch):
    """The number of Python traces of a step (`driver.hoist` runs once per trace of a loop)."""
    count = {"n": 0}
    original = driver.hoist

    def counting(*args, **kw):
        count["n"] += 1
        return original(*args, **kw)

    monkeypatch.setattr(driver, "hoist", counting)
    return count


def _leaves_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _scaled(params, factor):
    return jax.tree.map(lambda p: p * factor, params)


def test_compiled_takes_arrays_as_arguments_and_the_rest_as_its_key(traces):
    calls = {"n": 0}

    def f(scale, x, settings):
        calls["n"] += 1  # runs only while jax traces f
        return x * scale + settings["shift"]

    x = jnp.arange(3.0)
    out = driver.compiled(f, jnp.float32(2.0), x, {"shift": 1.0})
    np.testing.assert_array_equal(out, [1.0, 3.0, 5.0])
    np.testing.assert_array_equal(driver.compiled(f, jnp.float32(3.0), x + 1, {"shift": 1.0}), [4.0, 7.0, 10.0])
    assert calls["n"] == 1  # new arrays, same settings: the same program, no trace
    np.testing.assert_array_equal(driver.compiled(f, jnp.float32(3.0), x, {"shift": 2.0}), [2.0, 5.0, 8.0])
    assert calls["n"] == 2  # another setting: another program
    # A leaf that cannot be hashed (a list inside a NamedTuple-free dict is a pytree, a set is not):
    np.testing.assert_array_equal(driver.compiled(lambda a, s: a + len(s), x, {1, 2}), [2.0, 3.0, 4.0])


def test_gbrrt_second_call_traces_nothing_and_equals_the_driver_path(traces):
    g = tiny_generator()
    z0 = jax.random.normal(jax.random.PRNGKey(0), g.input_shape)
    v = beropt(jax.random.PRNGKey(1), g, g.params, z0, 1, steps=5).v_star
    kw = dict(delta=0.05, interval=1.0, capacity=33, max_candidates=64, batch=8)
    first = gbrrt(KEY, g, g.params, z0, 1, v, **kw)
    traces["n"] = 0
    again = gbrrt(KEY, g, g.params, z0, 1, v, **kw)
    assert traces["n"] == 0
    assert _leaves_equal(first, again)
    assert _leaves_equal(first, gbrrt_run(KEY, g, g.params, z0, 1, v, **kw))  # the driver's concrete path
    # Other parameters and another delta through the same program, as the driver path computes them.
    other = _scaled(g.params, 1.1)
    traces["n"] = 0
    moved = gbrrt(KEY, g, other, z0, 1, v, **dict(kw, delta=0.06))
    assert traces["n"] == 0
    assert _leaves_equal(moved, gbrrt_run(KEY, g, other, z0, 1, v, **dict(kw, delta=0.06)))
    assert not _leaves_equal(moved.nodes, first.nodes)
    # The same structure built again (a new Model object, as a model loaded twice): the same program.
    g2 = tiny_generator()
    assert g2 is not g
    traces["n"] = 0
    rebuilt = gbrrt(KEY, g2, g2.params, z0, 1, v, **kw)
    assert traces["n"] == 0
    assert _leaves_equal(rebuilt, first)


def test_dgn_am_second_call_traces_nothing_and_equals_the_chunked_run(traces):
    g, c, _ = ppgn_models()
    first = dg.dgn_am(KEY, g, c, ["logits:1"], steps=6)
    traces["n"] = 0
    again = dg.dgn_am(KEY, g, c, ["logits:1"], steps=6)
    assert traces["n"] == 0
    assert _leaves_equal(first, again)
    assert _leaves_equal(first, dg.dgn_am(KEY, g, c, ["logits:1"], steps=6, chunk=3))
    other = _scaled(c.params, -1.0)  # the classifier's parameters are an argument: the same program
    traces["n"] = 0
    flipped = dg.dgn_am(KEY, g, c, ["logits:1"], steps=6, cls_params=other)
    assert traces["n"] == 0
    chunked = dg.dgn_am(KEY, g, c, ["logits:1"], steps=6, cls_params=other, chunk=3)
    assert _leaves_equal(flipped, chunked) and not _leaves_equal(flipped.codes, first.codes)


def test_ppgn_second_call_traces_nothing_and_equals_the_chunked_run(traces):
    g, c, r = ppgn_models()
    run = functools.partial(pp.ppgn, KEY, g, c, r, label=2, chains=2, steps=5)
    first = run()
    traces["n"] = 0
    again = run()
    assert traces["n"] == 0
    assert _leaves_equal(first, again)
    assert _leaves_equal(first, run(chunk=2))
    traces["n"] = 0
    hotter = run(eps3=1e-3)  # a number of the options is an argument too
    assert traces["n"] == 0
    assert _leaves_equal(hotter, run(eps3=1e-3, chunk=2)) and not _leaves_equal(hotter.codes, first.codes)
