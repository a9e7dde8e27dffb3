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

