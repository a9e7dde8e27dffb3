"""Data-parallel forward passes, DGN-AM chains, GB-RRT trees and inverse sets over 8 host devices
equal single-device ones, with parameters committed to one device as `jaxprobe.load` leaves them;
PPGN's chains are bit-identical across device counts at the same per-device layout.

XLA_FLAGS must be set before jax is imported, so the check runs in a subprocess.
(tests/test_distributed.py runs every sampler on loaded models across two processes.)
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
    # DGN-AM: 8 chains split over the mesh give the single-device codes
    from test_dgn_am import tiny_models
    from jaxprobe import batch_mesh, dgn_am
    g, c = tiny_models()
    w = np.random.default_rng(0).normal(size=(8, 3)).astype(np.float32)
    one = dgn_am(jax.random.PRNGKey(1), g, c, ["logits:0", "logits:1", "logits:2"], weights=w, steps=10)
    # committed to device 0, as jaxprobe.load leaves parameters: dgn_am places them on the mesh
    gp, cp = jax.device_put((g.params, c.params), jax.devices()[0])
    many = dgn_am(jax.random.PRNGKey(1), g, c, ["logits:0", "logits:1", "logits:2"], weights=w, steps=10,
                  gen_params=gp, cls_params=cp, mesh=batch_mesh())
    assert len(many.codes.sharding.device_set) == 8 and not many.codes.sharding.is_fully_replicated, many.codes.sharding
    np.testing.assert_allclose(np.asarray(many.codes), np.asarray(one.codes), atol=1e-5, rtol=1e-5)
    try:
        dgn_am(jax.random.PRNGKey(1), g, c, ["logits:0"], weights=np.ones((4, 1)), steps=1, mesh=batch_mesh())
        raise SystemExit("4 chains over 8 devices accepted")
    except JaxprobeError as e:
        assert "weights: expected a multiple of the mesh's 8 devices" in str(e), e
    print("ok")
""")


def test_sharded_forward_matches_single_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    tests = str(Path(__file__).resolve().parent)
    r = subprocess.run([sys.executable, "-c", SCRIPT.format(tests=tests)], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]



GBRRT_SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np, sys
    sys.path.insert(0, {tests!r})
    from conftest import tiny_generator
    from test_boundaries import perturbed
    from jaxprobe import JaxprobeError, batch_mesh, halfspace
    from jaxprobe.gbas.gbrrt import gbrrt_queries
    assert jax.device_count() == 8, jax.device_count()
    g = perturbed(tiny_generator())
    z0s = jax.random.normal(jax.random.PRNGKey(0), (8, 8))
    signs = np.asarray(halfspace(g, g.params, z0s, 2))
    vs = jnp.asarray(np.where(np.random.default_rng(0).random(signs.shape) < 0.05, signs, 0), jnp.float32)
    kw = dict(delta=0.3, capacity=12, max_candidates=48, batch=8, rejected_capacity=48)
    params = jax.device_put(g.params, jax.devices()[0])  # committed, as jaxprobe.load leaves them
    sharded = gbrrt_queries(jax.random.PRNGKey(1), g, params, z0s, 2, vs, mesh=batch_mesh(), **kw)
    assert len(sharded.nodes.sharding.device_set) == 8, sharded.nodes.sharding
    ref = gbrrt_queries(jax.random.PRNGKey(1), g, g.params, z0s, 2, vs, **kw)
    np.testing.assert_array_equal(np.asarray(sharded.count), np.asarray(ref.count))
    np.testing.assert_array_equal(np.asarray(sharded.parents), np.asarray(ref.parents))
    np.testing.assert_allclose(np.asarray(sharded.nodes), np.asarray(ref.nodes), atol=1e-6)
    assert int(np.sum(np.asarray(ref.count) > 1)) >= 4, np.asarray(ref.count)  # most trees grew
    try:
        gbrrt_queries(jax.random.PRNGKey(1), g, params, z0s[:4], 2, vs[:4], mesh=batch_mesh(), **kw)
        raise SystemExit("4 queries over 8 devices accepted")
    except JaxprobeError as e:
        assert "z0s: expected a multiple of the mesh's 8 devices, got 4" in str(e), e
    print("ok")
""")


def test_gbrrt_trees_of_many_queries_shard_over_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    tests = str(Path(__file__).resolve().parent)
    r = subprocess.run([sys.executable, "-c", GBRRT_SCRIPT.format(tests=tests)], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]


INVSET_SCRIPT = textwrap.dedent("""
    import importlib, jax, numpy as np, sys
    from flax import nnx
    # the module; the package re-exports the function
    inv = importlib.import_module("jaxprobe.inverse_sets.inverse_set")
    from jaxprobe import JaxprobeError
    from jaxprobe.models.neurons import neuron_values
    from jaxprobe.models.pixels import PixelConvention, convert_pixels
    from jaxprobe.models.probe import Model
    from jaxprobe.sharding import batch_mesh
    from jaxprobe.models.zoo import dcgan_generator, mnist_classifier
    assert jax.device_count() == 8, jax.device_count()
    cls = Model.from_module("cls", mnist_classifier(widths=(4, 4), hidden=16, rngs=nnx.Rngs(1)), (28, 28, 1),
                            "classifier", PixelConvention(0.0, 1.0, "gray"))
    gen = Model.from_module("gen", dcgan_generator(latent_dim=8, widths=(8, 4, 2), rngs=nnx.Rngs(0)), (8,),
                            "generator", PixelConvention(-1.0, 1.0, "gray"),
                            {{"latent": {{"dim": 8, "prior": "normal"}}}})
    # Parameters committed to device 0, as jaxprobe.load leaves them: inverse_set places them itself.
    cls, gen = (m.replace(params=jax.device_put(m.params, jax.devices()[0])) for m in (cls, gen))

    # Record, as XLA partitions the program, how the seeds' codes and the sampler's codes are placed.
    seen = {{}}
    def spy(name, fn, pick):
        def wrapped(*a, **kw):
            jax.debug.inspect_array_sharding(pick(*a), callback=lambda s: seen.setdefault(name, s))
            return fn(*a, **kw)
        return wrapped
    sampling = importlib.import_module("jaxprobe.inverse_sets.sampling")
    real_build = sampling.build
    def build(*a, **kw):
        k = real_build(*a, **kw)
        return k._replace(init=spy("seeds", k.init, lambda seeds: seeds),
                          step=spy("sampler", k.step, lambda key, state: state.codes))
    sampling.build = build

    codes = gen.sample_prior(jax.random.key(100), 256)
    images = convert_pixels(gen.forward(gen.params, codes), gen.pixels, cls.pixels)
    vals = np.asarray(neuron_values(cls, cls.params, images, ["logits:3"]))[:, 0]
    rng = tuple(float(q) for q in np.quantile(vals, [0.4, 0.6]))
    # Adam turns float32 reassociation noise in near-zero gradients into full-size steps, so long
    # seed runs can part ways: with 25 inner steps one seed of eight ended 0.13 away on one CPU
    # and not on another. With 10 the seeds still become feasible, and every code agrees to 5e-6.
    run = dict(n=40, k=8, inner_steps=10, max_outer=5)
    sharded = inv.inverse_set(jax.random.key(0), gen, cls, "logits:3", rng, mesh=batch_mesh(), **run)
    for name in ("seeds", "sampler"):
        s = seen[name]
        assert len(s.device_set) == 8 and s.shard_shape((8, 8)) == (1, 8), (name, s)
    seen.clear()
    single = inv.inverse_set(jax.random.key(0), gen, cls, "logits:3", rng, **run)
    assert len(seen["seeds"].device_set) == 1, seen
    # The same samples: only the order of float32 sums over the K codes differs. Each sampling step
    # moves a code by beta * rho (about 0.1 here), so 1e-4 tells the same trajectory from another.
    assert sharded.n_accepted == single.n_accepted == 40, (sharded.n_accepted, single.n_accepted)
    assert sharded.sampling_steps == single.sampling_steps
    np.testing.assert_allclose(sharded.codes, single.codes, atol=1e-4, rtol=0)
    again = convert_pixels(gen.forward(gen.params, sharded.codes), gen.pixels, cls.pixels)
    again = np.asarray(neuron_values(cls, cls.params, again, ["logits:3"]))[:, 0]
    assert np.all((again >= rng[0] - 1e-5) & (again <= rng[1] + 1e-5)), (again.min(), again.max(), rng)
    for bad, msg in ((dict(k=6, n=40), "k: expected a multiple of the mesh's 8 devices"),
                     (dict(mesh="devices"), "mesh: expected a jax.sharding.Mesh")):
        kw = {{**run, "mesh": batch_mesh(), **bad}}
        try:
            inv.inverse_set(jax.random.key(0), gen, cls, "logits:3", rng, **kw)
            raise SystemExit(f"accepted {{bad}}")
        except JaxprobeError as e:
            assert msg in str(e), e
    print("ok")
""")


def test_inverse_set_codes_shard_over_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    r = subprocess.run([sys.executable, "-c", INVSET_SCRIPT.format()], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]


PPGN_LAYOUT_SCRIPT = textwrap.dedent("""
    import jax, numpy as np, sys
    sys.path.insert(0, {tests!r})
    from test_ppgn import D, run_tiny
    from jaxprobe import batch_mesh
    assert jax.device_count() == 8, jax.device_count()
    init = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (8, D)), np.float32)
    # Two chains on each device, on 1, 2 and 4 devices: chain i draws fold_in(fold_in(key, i), t)
    # whatever the chains beside it, and every device runs the same two-chain program, so the
    # chains the runs share are equal bit for bit.
    runs = {{k: run_tiny(jax.random.PRNGKey(3), chains=2 * k, init=init[:2 * k], mesh=batch_mesh(jax.devices()[:k]))
            for k in (1, 2, 4)}}
    for small, big in ((1, 2), (2, 4), (1, 4)):
        a, b = runs[small], runs[big]
        for field in ("samples", "probs", "labels", "codes", "prob"):
            x, y = np.asarray(getattr(a, field)), np.asarray(getattr(b, field))
            np.testing.assert_array_equal(y[: len(x)], x, err_msg=f"{{field}}: {{small}} vs {{big}} devices")
    assert len(runs[4].samples.sharding.device_set) == 4
    print("ok")
""")


def test_ppgn_chains_are_equal_across_device_counts_at_the_same_per_device_layout():
    """docs/sharding.md's rule: results equal across device counts when each device holds the same
    chains' layout (here two PPGN chains per device on 1, 2 and 4 devices)."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    tests = str(Path(__file__).resolve().parent)
    r = subprocess.run([sys.executable, "-c", PPGN_LAYOUT_SCRIPT.format(tests=tests)], env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]
