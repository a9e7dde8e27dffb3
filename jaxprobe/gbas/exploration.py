"""How far a GB-RRT tree explored its generative region (E-GBAS, Jeon et al. 2020, section 4.1).

Jeon et al. 2020's Figures 3 and 6-7 show trees that spread through the query's region; a tree whose
nodes stay a few steps from z0 samples one image many times. Two measures, both in latent units:

* the region's extent along random directions: for a unit direction u, the distance t*(u) from
  z0 to the first point of the ray z0 + t u outside GR_V* (a non-convex region may continue
  past it; the first exit is what a tree growing from z0 along u meets first);
* the tree's reach: the distances ||z - z0|| of its nodes.

`exploration` compares them (and eps_L2, the baselines' radius). `default_delta` derives GB-RRT's
step size from the extent, the one default rule of the library, the command and the tables.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxprobe.gbas.boundaries import region_membership
from jaxprobe.gbas.gbrrt import min_delta

# The ray grid: GRID_POINTS distances geometric from t_max / 2^GRID_OCTAVES to t_max.
GRID_POINTS, GRID_OCTAVES = 48, 8
# default_delta: steps per median extent. Chosen by the exploration measure alone (no table):
# on the shipped dcgan, 3 pilot queries (key 999) x layers 1-4, 1024 candidates, interval 1,
# the 90% node distance over the median extent ("reach") was 0.56-0.63 at 8 steps (some trees
# rejected nothing), 0.91-1.10 at 4 and 1.35-1.66 at 2: 2 is the largest count at which every
# tree reached the walls in a typical direction (reach >= 1) and rejected candidates.
STEPS_PER_EXTENT = 2


def ray_grid(t_max: float) -> np.ndarray:
    """The distances tested along each ray: GRID_POINTS geometric from t_max / 256 to t_max."""
    return t_max * 2.0 ** np.linspace(-GRID_OCTAVES, 0.0, GRID_POINTS)


@functools.partial(jax.jit, static_argnums=(0, 4, 6))
def _extent(model, params, key, z0, layer, v, directions, t):
    d = z0.size
    u = jax.random.normal(key, (directions, d))
    u = u / jnp.linalg.norm(u, axis=1, keepdims=True)
    z = z0.reshape(1, 1, d) + t[None, :, None] * u[:, None, :]
    inside = region_membership(model, params, z.reshape((-1,) + z0.shape), layer, v).reshape(directions, -1)
    first_out = jnp.argmin(jnp.concatenate([inside, jnp.zeros((directions, 1), bool)], axis=1), axis=1)
    return jnp.where(first_out > 0, t[jnp.maximum(first_out - 1, 0)], 0.0)


def region_extent(key, model, params, z0, layer, v_star, *, t_max: float, directions: int = 32) -> np.ndarray:
    """The distance from z0 to the region's first exit along `directions` random unit directions.

    Args:
      key: PRNG key of the directions (uniform on the sphere: normalized Gaussians).
      model, params: the generator; layer its layer (number or name); v_star the indicator (D_l,).
      z0: the query, shape `model.input_shape`.
      t_max: the farthest distance tested (e.g. the sampling box's half-diagonal).
      directions: number of rays.

    Returns:
      (directions,) float64: per ray the largest grid distance t (`ray_grid`, geometric, so the
      resolution is relative: 12.5% of t) with every grid point up to t inside GR_V*; t_max when
      the ray never leaves within t_max, 0 when it leaves before t_max / 256. One batched
      membership pass of directions * GRID_POINTS points.
    """
    layer = model.layer(layer)
    t = jnp.asarray(ray_grid(t_max), jnp.float32)
    v = jnp.asarray(v_star, jnp.float32).reshape(-1)
    return np.asarray(_extent(model, params, key, jnp.asarray(z0, jnp.float32), layer, v, directions, t),
                      np.float64)


def box_reach(z0, interval) -> float:
    """The sampling box's half-diagonal ||I||_2 (sqrt(d) I for a scalar): the extent's t_max."""
    iv = np.broadcast_to(np.abs(np.asarray(interval, np.float64)), np.shape(np.asarray(z0)))
    return float(np.linalg.norm(iv))


def default_delta(extent, z0, interval) -> float:
    """GB-RRT's default step size: the region's median extent / STEPS_PER_EXTENT (= 2).

    A tree then reaches the region's walls in a couple of steps along a typical direction, so it
    both spreads through the region and meets its boundary (eps_L2 needs rejected candidates),
    at every layer: extents differ by an order of magnitude between dcgan's layers 1 and 4, and a
    fixed delta was too small for one (no rejection, eps undefined) and too large for the other.
    The step never drops below twice what float32 resolves at the query's scale
    (`gbrrt.min_delta(z0, interval)`), e.g. when the median ray leaves the region at once.
    """
    return max(float(np.median(extent)) / STEPS_PER_EXTENT, 2.0 * min_delta(z0, interval))


def exploration(tree_nodes, z0, extent, eps_l2=float("nan")) -> dict:
    """How far a tree reached in its region: JSON-ready numbers in latent units.

    Args:
      tree_nodes: (n, *latent_shape) the accepted nodes (query first).
      z0: the query; extent: `region_extent` of the same region; eps_l2: the baselines' radius.

    Returns:
      {"node_distance": quantiles (median, 90%, max) of ||z - z0|| over the nodes but the query,
      "extent": quantiles (min, median, max) of the region's extent, "reach": the 90% node
      distance over the median extent (about 1 when the tree reached the walls in a typical
      direction; well below 1 when it stayed near z0), "eps_l2": eps_L2 and "eps_over_extent"}.
    """
    nodes = np.asarray(tree_nodes, np.float64).reshape(len(tree_nodes), -1)[1:]
    dist = np.linalg.norm(nodes - np.asarray(z0, np.float64).reshape(1, -1), axis=1)
    ext = np.asarray(extent, np.float64)

    def q(a, p):
        return float(np.quantile(a, p)) if a.size else float("nan")

    med = q(ext, 0.5)
    return {
        "node_distance": {"median": q(dist, 0.5), "q90": q(dist, 0.9), "max": q(dist, 1.0)},
        "extent": {"min": q(ext, 0.0), "median": med, "max": q(ext, 1.0)},
        "reach": q(dist, 0.9) / med if med > 0 else float("nan"),
        "eps_l2": float(eps_l2),
        "eps_over_extent": float(eps_l2) / med if med > 0 and math.isfinite(eps_l2) else float("nan"),
    }
