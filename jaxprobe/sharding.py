"""Sharding batches (of chains, seeds, candidates) over all devices along their leading axis."""

from __future__ import annotations

import jax
from jax.sharding import NamedSharding, PartitionSpec

from jaxprobe.errors import JaxprobeError


def batch_mesh(devices=None) -> jax.sharding.Mesh:
    """A 1-D mesh named "batch" over `devices` (default: all), with automatic propagation."""
    devices = list(devices) if devices is not None else jax.devices()
    return jax.make_mesh((len(devices),), ("batch",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices)


def shard_batch(tree, mesh=None):
    """Place every array of `tree` with its leading axis split over the mesh's "batch" axis.

    The leading axis must be divisible by the number of devices; parameters are left replicated
    (pass them separately). Under jit, computations on the result run data-parallel.
    """
    mesh = mesh or batch_mesh()
    n = mesh.shape["batch"]

    def put(x):
        if x.shape[0] % n:
            raise JaxprobeError(f"batch: expected a leading axis divisible by {n} devices, got shape {x.shape}")
        return jax.device_put(x, NamedSharding(mesh, PartitionSpec("batch")))

    return jax.tree.map(put, tree)


def replicate(tree, mesh=None):
    """Place every array of `tree` whole on every device of the mesh."""
    mesh = mesh or batch_mesh()
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


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

