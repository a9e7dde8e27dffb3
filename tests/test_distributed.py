"""Every sampler on a mesh of loaded models, in one process and across two, equals the one-device run.

`run_samplers(mesh)` runs GB-RRT over queries, an inverse set, DGN-AM and PPGN (one compiled
scan, and in chunks) on the shipped models (`jaxprobe.load`, whose parameters sit committed on
one device) at tiny sizes. The reference is the same call with `mesh=None` in this (one-device)
pytest process; the sharded runs happen in subprocesses, since XLA_FLAGS must be set before jax is
imported:

* one process with two host devices and `mesh=batch_mesh()`;
* two processes joined by `jax.distributed` on the loopback address, two host devices each, the
  mesh over all four global devices; each process must get every result whole (gathered).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

TESTS = str(Path(__file__).resolve().parent)
TIMEOUT = 240  # seconds per process: these runs take about 20 s each on 2 shared cores


def save_models(directory: Path) -> tuple:
    """A small DCGAN generator (16-d codes) and MNIST classifier (fc1 of 16 units, the codes'
    encoder for PPGN's prior R(h) = E(G(h))) with He-scaled random weights, saved as model
    directories for `jaxprobe.load`; returns the range of logit 3 the inverse set samples: its
    middle fifth on prior samples."""
    import jax
    from flax import nnx

    from jaxprobe import convert_pixels, neuron_values, save_model
    from jaxprobe.models.store import new_model

    rng = np.random.default_rng(0)
    pixels = {"generator": {"low": -1.0, "high": 1.0, "channels": "gray"},
              "classifier": {"low": 0.0, "high": 1.0, "channels": "gray"}}
    manifests = {
        "gen": {"architecture": {"builder": "dcgan_generator", "kwargs": {"latent_dim": 16, "widths": [8, 4, 2]}},
                "role": "generator", "input_shape": [16], "latent": {"dim": 16, "prior": "normal"},
                "pixels": pixels["generator"]},
        "cls": {"architecture": {"builder": "mnist_classifier", "kwargs": {"widths": [4, 4], "hidden": 16}},
                "role": "classifier", "input_shape": [28, 28, 1], "pixels": pixels["classifier"]}}
    models = []
    for name, manifest in manifests.items():
        # Shape-only, then filled from NumPy: running the initializers compiles for seconds.
        model = new_model(name, manifest, shape_only=True)
        params = jax.tree.map(lambda a: a, model.params)
        nnx.replace_by_pure_dict(params, jax.tree_util.tree_map_with_path(
            lambda path, a: (rng.normal(size=a.shape) * (np.sqrt(2.0 / np.prod(a.shape[:-1])) if "kernel" in
                             jax.tree_util.keystr(path) else 0.1)).astype(np.float32),
            nnx.to_pure_dict(model.params)))
        models.append(model.replace(params=params))
        save_model(models[-1], directory / name)
    g, c = models
    logit = jax.jit(lambda z: neuron_values(c, c.params, convert_pixels(g.forward(g.params, z), g.pixels, c.pixels),
                                            ["logits:3"]))(g.sample_prior(jax.random.PRNGKey(5), 64))
    return tuple(float(q) for q in np.quantile(np.asarray(logit)[:, 0], [0.4, 0.6]))


def run_samplers(mesh, directory, logit_range) -> dict:
    """{name: numpy array} of the four samplers' results on `mesh` (None: one device), on the
    models `save_models` wrote to `directory`, loaded."""
    import jax

    import jaxprobe
    from jaxprobe.codespace.ppgn import encoder_prior
    from jaxprobe.gbas.gbrrt import gbrrt_queries

    g, c = jaxprobe.load(Path(directory) / "gen"), jaxprobe.load(Path(directory) / "cls")
    out = {}
    # GB-RRT: four queries, each in the region of a random 20% of its layer-1 signs.
    z0s = g.sample_prior(jax.random.PRNGKey(0), 4)
    signs = np.asarray(jaxprobe.halfspace(g, g.params, z0s, 1))
    v = np.where(np.random.default_rng(0).random(signs.shape) < 0.2, signs, 0).astype(np.float32)
    t = gbrrt_queries(jax.random.PRNGKey(1), g, g.params, z0s, 1, v, delta=0.3, capacity=8, max_candidates=32,
                      batch=8, mesh=mesh)
    out.update(tree_nodes=t.nodes, tree_parents=t.parents, tree_count=t.count, tree_rejected=t.n_rejected)
    # The inverse set of logit 3: seeds (augmented Lagrangian) and sampling, K = 4.
    s = jaxprobe.inverse_set(jax.random.PRNGKey(2), g, c, "logits:3", logit_range, n=8, k=4, inner_steps=5,
                             max_outer=2, mesh=mesh)
    out.update(inv_codes=s.codes, inv_values=s.activations, inv_count=np.int32(s.n_accepted),
               inv_outer=np.int32(s.outer_iterations), inv_steps=np.int32(s.sampling_steps))
    # DGN-AM, step 1 -> 0.1: the default 8 drives these codes to 30 within 5 steps, where tanh
    # saturates and the normalised step magnifies float32 noise in near-zero gradients: there,
    # one chain at a time already differs from four in one batch by 1.5e-2 on one device.
    a = jaxprobe.dgn_am(jax.random.PRNGKey(3), g, c, [f"logits:{j}" for j in range(4)], steps=5, lower=0.0,
                        step_size=(1.0, 0.1), mesh=mesh)
    out.update(dgn_codes=a.codes, dgn_values=a.values, dgn_best=a.best_values, dgn_history=a.history)
    # PPGN, step 0.2: one chain per device (the mesh) against four on one device is another
    # per-device layout, so float32 sums may round apart (docs/sharding.md); at step 1 the
    # normalised step magnifies their 8e-7 after two updates to 1.4 after six on these models.
    p = jaxprobe.ppgn(jax.random.PRNGKey(4), g, c, encoder_prior(g, c, "fc1"), label=3, chains=4, steps=6,
                      step_size=0.2, save_every=2, lower=0.0, eps1=0.1, mesh=mesh)
    out.update(ppgn_samples=p.samples, ppgn_probs=p.probs, ppgn_labels=p.labels, ppgn_codes=p.codes)
    return {k: np.asarray(v) for k, v in out.items()}


WORKER = textwrap.dedent("""
    import json, sys
    import jax
    port, pid, out, logit_range = sys.argv[1:5]
    jax.distributed.initialize(coordinator_address="127.0.0.1:" + port, num_processes=2, process_id=int(pid),
                               initialization_timeout=60)
    sys.path.insert(0, {tests!r})
    import numpy as np
    from jaxprobe import batch_mesh
    from test_distributed import run_samplers
    mesh = batch_mesh()
    assert mesh.devices.size == jax.device_count() == 4 and jax.process_count() == 2, mesh
    assert len(jax.local_devices()) == 2
    np.savez(out, **run_samplers(mesh, {models!r}, tuple(json.loads(logit_range))))
    print("ok")
""")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple:
    directory = tmp_path_factory.mktemp("models")
    return directory, save_models(directory)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_same(got: dict, ref: dict, who: str) -> None:
    assert sorted(got) == sorted(ref), (who, sorted(got))
    for k, want in ref.items():
        if want.dtype.kind in "iub":
            np.testing.assert_array_equal(got[k], want, err_msg=f"{who}: {k}")
        else:
            # Sharding changes only the order of float32 sums over the K codes of an inverse set
            # (and nothing in the per-chain samplers): 1e-4 is far below a step (about 0.1).
            np.testing.assert_allclose(got[k], want, atol=1e-4, rtol=1e-4, err_msg=f"{who}: {k}")


def test_samplers_across_two_processes_equal_one_process(tmp_path, models):
    """Two processes joined by jax.distributed, two host devices each, every sampler on the mesh
    over all four; the one-device reference runs here meanwhile."""
    directory, logit_range = models
    script = WORKER.format(tests=TESTS, models=str(directory))
    port = str(_free_port())
    outs = [tmp_path / f"process{i}.npz" for i in range(2)]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    procs = [subprocess.Popen([sys.executable, "-c", script, port, str(i), str(out), json.dumps(logit_range)],
                              env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i, out in enumerate(outs)]
    try:
        ref = run_samplers(None, directory, logit_range)
    finally:
        logs = []
        for p in procs:
            try:
                logs.append(p.communicate(timeout=TIMEOUT)[0])
            except subprocess.TimeoutExpired:  # the other process may wait on this one: end both
                for q in procs:
                    q.kill()
                logs.append(p.communicate()[0] + "\n[killed: timeout]")
    for i, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0 and log.strip().endswith("ok"), f"process {i} of 2:\n{log[-3000:]}"
    # the runs are not trivial: most trees grew, the inverse set accepted codes
    assert np.sum(ref["tree_count"] > 1) >= 3 and ref["inv_count"] > 4, (ref["tree_count"], ref["inv_count"])
    for i, out in enumerate(outs):
        _assert_same(dict(np.load(out)), ref, f"process {i} of 2")
