"""Data-parallel forward passes over 8 host devices equal single-device ones.

XLA_FLAGS must be set before jax is imported, so the check runs in a subprocess.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path


SCRIPT = textwrap.dedent("""
    import jax, numpy as np, sys
    sys.path.insert(0, {tests!r})
    from conftest import tiny_generator
    from jaxprobe.sharding import shard_batch, replicate
    assert jax.device_count() == 8, jax.device_count()
    g = tiny_generator()
    z = jax.random.normal(jax.random.PRNGKey(0), (16, 8))
    zs = shard_batch(z)
    out = jax.jit(lambda p, z: g.up_to(p, z, 2))(replicate(g.params), zs)
    assert len(out.sharding.device_set) == 8, out.sharding
    ref = jax.jit(lambda p, z: g.up_to(p, z, 2))(g.params, z)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5, rtol=1e-5)
    from jaxprobe import JaxprobeError
    try:
        shard_batch(np.zeros((9, 2), np.float32))
        raise SystemExit("indivisible batch accepted")
    except JaxprobeError as e:
        assert "batch: expected a leading axis divisible by 8 devices, got shape (9, 2)" in str(e), e
    print("ok")
""")


def test_sharded_forward_matches_single_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    tests = str(Path(__file__).resolve().parent)
    r = subprocess.run([sys.executable, "-c", SCRIPT.format(tests=tests)], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]



GBRRT_SCRIPT = textwrap.dedent("""
    import functools, jax, jax.numpy as jnp, numpy as np, sys
    sys.path.insert(0, {tests!r})
    from conftest import tiny_generator
    from test_boundaries import perturbed
    from jaxprobe import gbrrt_run, halfspace
    from jaxprobe.sharding import replicate, shard_batch
    assert jax.device_count() == 8, jax.device_count()
    g = perturbed(tiny_generator())
    z0s = jax.random.normal(jax.random.PRNGKey(0), (8, 8))
    signs = np.asarray(halfspace(g, g.params, z0s, 2))
    vs = jnp.asarray(np.where(np.random.default_rng(0).random(signs.shape) < 0.05, signs, 0), jnp.float32)
    keys = jax.random.split(jax.random.PRNGKey(1), 8)
    run = functools.partial(gbrrt_run, model=g, layer=2, delta=0.3, interval=jnp.ones((8,), jnp.float32),
                            capacity=12, max_candidates=jnp.int32(48), batch=8, rejected_capacity=48)
    trees = jax.jit(jax.vmap(lambda p, k, z, v: run(k, params=p, z0=z, v_star=v), in_axes=(None, 0, 0, 0)))
    sharded = trees(replicate(g.params), *shard_batch((keys, z0s, vs)))
    assert len(sharded.nodes.sharding.device_set) == 8, sharded.nodes.sharding
    ref = trees(g.params, keys, z0s, vs)
    np.testing.assert_array_equal(np.asarray(sharded.count), np.asarray(ref.count))
    np.testing.assert_array_equal(np.asarray(sharded.parents), np.asarray(ref.parents))
    np.testing.assert_allclose(np.asarray(sharded.nodes), np.asarray(ref.nodes), atol=1e-6)
    assert int(np.sum(np.asarray(ref.count) > 1)) >= 4, np.asarray(ref.count)  # most trees grew
    print("ok")
""")


def test_gbrrt_trees_of_many_queries_shard_over_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    tests = str(Path(__file__).resolve().parent)
    r = subprocess.run([sys.executable, "-c", GBRRT_SCRIPT.format(tests=tests)], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]
