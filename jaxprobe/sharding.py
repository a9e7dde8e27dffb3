"""Sharding batches (of chains, seeds, candidates, queries) over all devices along their leading axis.

One process or many: under `jax.distributed` the mesh of `batch_mesh()` spans every process's
devices (`jax.devices()` is global), and every helper here places or reads arrays the same way
in both cases. The samplers call `on_mesh` at their entry (the parameters, keys and settings
replicated, the batch split) and `gather` on their result, so a model from `jaxprobe.load`,
whose parameters sit committed on one device, runs on any mesh as it is.

Across processes, every process runs the same program on the same inputs (SPMD): each passes
the same models, keys and arguments, and each gets the whole result back (`gather`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jaxprobe.errors import JaxprobeError


def batch_mesh(devices=None) -> jax.sharding.Mesh:
    """A 1-D mesh named "batch" over `devices` (default: all, every process's under `jax.distributed`),
    with automatic propagation."""
    devices = list(devices) if devices is not None else jax.devices()
    return jax.make_mesh((len(devices),), ("batch",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices)


def _is_array(x) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic))


def _put(x, sharding: NamedSharding):
    """x placed with `sharding` (every process passing the same value when it spans processes)."""
    if isinstance(x, jax.Array) and x.sharding.is_equivalent_to(sharding, x.ndim):
        return x
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    if isinstance(x, jax.Array) and not x.is_fully_addressable:  # already global: reshard in a program
        return jax.jit(lambda a: a, out_shardings=sharding)(x)
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        # Typed keys have no host form: place their data, then wrap it again.
        return jax.random.wrap_key_data(_put(jax.random.key_data(x), sharding), impl=jax.random.key_impl(x))
    # jax.device_put cannot place a host value on devices of other processes; every process holds
    # the whole value, so each fills its own devices' shards from it.
    host = np.asarray(x)
    host = host.astype(jax.dtypes.canonicalize_dtype(host.dtype), copy=False)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def shard_batch(tree, mesh=None):
    """Place every array of `tree` with its leading axis split over the mesh's "batch" axis.

    The leading axis must be divisible by the number of devices; parameters are left replicated
    (pass them separately). Under jit, computations on the result run data-parallel. With a mesh
    spanning processes, every process passes the same whole value and keeps its devices' rows.
    """
    mesh = mesh or batch_mesh()
    n = mesh.shape["batch"]
    sharding = NamedSharding(mesh, PartitionSpec("batch"))

    def put(x):
        if not _is_array(x):
            return x
        if np.ndim(x) == 0 or np.shape(x)[0] % n:
            raise JaxprobeError(f"batch: expected a leading axis divisible by {n} devices, got shape {np.shape(x)}")
        return _put(x, sharding)

    return jax.tree.map(put, tree)


def replicate(tree, mesh=None):
    """Place every array of `tree` whole on every device of the mesh (in every process); other
    leaves (Python numbers) are left as they are."""
    mesh = mesh or batch_mesh()
    sharding = NamedSharding(mesh, PartitionSpec())
    return jax.tree.map(lambda x: _put(x, sharding) if _is_array(x) else x, tree)


def on_mesh(mesh, replicated, batched=None):
    """A sampler's inputs placed for `mesh`: (replicated, batched).

    Every array of `replicated` (parameters, keys, settings) goes whole on every device, every
    array of `batched` (codes, chains' keys, queries) is split along its leading axis over the
    "batch" axis (`shard_batch`). With `mesh` None both come back unchanged. Arrays committed to
    one device (as `jaxprobe.load` leaves them) would otherwise clash with a program sharded
    over the mesh ("incompatible devices for jitted computation").
    """
    if mesh is None:
        return replicated, batched
    return replicate(replicated, mesh), (None if batched is None else shard_batch(batched, mesh))


def gather(tree):
    """Every array of `tree` readable in this process.

    An array spanning processes (a sampler's result on a multi-process mesh) is all-gathered
    (`jax.experimental.multihost_utils.process_allgather`): every process gets the whole global
    value, as an array on its default device. Arrays this process holds whole (one process, any
    mesh) come back as they are, sharding included. Under several processes every process must
    call it (it is a collective).
    """
    def get(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return x
        if x.is_fully_replicated:
            return jnp.asarray(np.asarray(x))
        from jax.experimental import multihost_utils

        return jnp.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(get, tree)


def constrain_batch(x, mesh):
    """Inside jit: keep x's leading axis split over the mesh's "batch" axis (x itself without a mesh).

    What `shard_batch` does to inputs, for values computed inside a program (e.g. the K codes an
    inverse set starts from): per-row work then runs where its row lives, and reductions over the
    rows become cross-device reductions inserted by XLA.
    """
    if mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, PartitionSpec("batch")))


def check_mesh(mesh, rows: int, name: str, what: str) -> None:
    """Raise unless `mesh` is None or a mesh with a "batch" axis whose device count divides `rows`.

    `name` is the argument that sets the row count and `what` says what the rows are, for the
    message (e.g. "k", "the K codes").
    """
    if mesh is None:
        return
    if not isinstance(mesh, jax.sharding.Mesh) or "batch" not in mesh.axis_names:
        raise JaxprobeError(f"mesh: expected a jax.sharding.Mesh with a 'batch' axis "
                            f"(jaxprobe.sharding.batch_mesh()), got {mesh!r}")
    if rows % mesh.shape["batch"]:
        raise JaxprobeError(f"{name}: expected a multiple of the mesh's {mesh.shape['batch']} devices, "
                            f"got {rows} ({what} are split over them)")
