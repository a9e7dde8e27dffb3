"""GB-RRT's checks at the API boundary (Jeon et al. 2020, Algorithm 2): the step size float32
resolves, the sampling box, the counts, the query inside its own region.

Every check runs before any compilation, so that bad input fails at once with one line naming the
argument.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxprobe.checks import check_count, check_number
from jaxprobe.errors import JaxprobeError
from jaxprobe.gbas.boundaries import check_indicator, check_query, region_margin

REL_TOL = 1e-4  # nodes keep delta * (1 - REL_TOL) from each other (docs/methods/egbas.md)
EPS32 = float(np.finfo(np.float32).eps)
# The rejected buffer's default rows: at most this many (8 MiB at d = 512), however many candidates.
REJECTED_CAPACITY = 4096


def min_delta(z0, interval) -> float:
    """The smallest step size float32 resolves at the query's scale: sqrt(d) eps32 s / REL_TOL.

    s = max_i (|z0_i| + I_i) bounds the coordinates of the sampling box. Rounding a step
    z' = q + delta u to float32 moves z' by at most sqrt(d) eps32 s / 2, so with delta at least
    this bound the step's length is delta to within REL_TOL / 2 and the tree's separation
    "nodes >= delta (1 - REL_TOL) apart" means what it says (at z0 ~ 100 in 100-d, 1.2; at a
    N(0, I) query with I = 1, about 0.05). Below it a step can round back onto q (a copy of the
    query) or to a point much nearer to q than delta.
    """
    z0 = np.abs(np.asarray(z0, np.float64)).reshape(-1)
    scale = float(np.max(z0 + np.abs(np.asarray(interval, np.float64)).reshape(-1)))
    return math.sqrt(z0.size) * EPS32 * scale / REL_TOL


def check_delta(name: str, delta, z0, interval) -> float:
    """Refuse a step size that is not positive or below `min_delta(z0, interval)`; returns it.

    `name` is the argument named in the error ("delta" in the library, "--delta" on the command
    line).
    """
    if delta is None:
        raise JaxprobeError(f"{name}: expected a positive step size, got None")
    delta = check_number(name, delta, low=0, low_open=True, what="a positive step size")
    floor = min_delta(z0, interval)
    if delta < floor:
        raise JaxprobeError(f"{name}: expected a step size float32 resolves at the query's scale, >= {floor:.3g} "
                            f"(sqrt(d) eps32 max(|z0| + I) / {REL_TOL:g}), got {delta:g}")
    return delta


def check_interval(model, interval) -> np.ndarray:
    """Validate the sampling box's half-width I (a scalar or one per latent dimension, each
    finite and > 0) and return it as (d,) float64."""
    d = math.prod(model.input_shape)
    iv = np.asarray(interval, dtype=np.float64)
    if iv.shape not in ((), (d,), tuple(model.input_shape)):
        raise JaxprobeError(f"interval: expected a scalar or one half-width per latent dimension ({d}), "
                            f"got shape {iv.shape}")
    if not (np.all(np.isfinite(iv)) and np.all(iv > 0)):
        raise JaxprobeError(f"interval: expected positive half-widths, got {iv.min() if iv.size else iv}")
    return np.broadcast_to(iv.reshape(-1) if iv.ndim else iv, (d,))


def check_settings(options):
    """The settings every query shares, checked (GBRRTOptions without delta): returns `options` with
    interval as a (d,)-broadcastable float32 array left to the caller, the counts as ints and the
    rejected buffer's default resolved."""
    capacity = check_count("capacity", options.capacity, 1)
    max_candidates = check_count("max_candidates", options.max_candidates, 0)
    batch = check_count("batch", options.batch, 1)
    top_k = check_count("top_k", options.top_k, 1)
    # Default: room for every candidate up to REJECTED_CAPACITY rows (a buffer needs one row).
    rejected_capacity = (min(max(max_candidates, 1), REJECTED_CAPACITY) if options.rejected_capacity is None
                         else check_count("rejected_capacity", options.rejected_capacity, 1))
    return options._replace(capacity=capacity, max_candidates=max_candidates, batch=batch, top_k=top_k,
                            rejected_capacity=rejected_capacity)


class GBRRTArguments(NamedTuple):
    """GB-RRT's arguments, checked and normalized.

    Attributes:
      layer: the layer number l (1..L).
      z0: the query, float32 of the model's input shape.
      v_star: the halfspace indicator V*, float32 (D_l,).
      options: the `GBRRTOptions` with delta a float, interval a (d,) float32 array, the counts
        ints and `rejected_capacity` resolved (never None).
    """

    layer: int
    z0: jax.Array
    v_star: jax.Array
    options: tuple


_margin_jit = jax.jit(region_margin, static_argnums=(0, 3))


def check_arguments(model, params, z0, layer, v_star, options) -> GBRRTArguments:
    """Validate GB-RRT's arguments at the API boundary (`options`: a `GBRRTOptions`).

    Raises `JaxprobeError` naming the argument for: a layer out of range, a query of the wrong
    shape or with NaN, an indicator of the wrong shape or values, a query outside its own region,
    parameters giving the query a NaN pre-activation, delta <= 0 or below `min_delta`, an
    interval <= 0 (or of the wrong shape), capacity < 1, max_candidates < 0, batch < 1,
    rejected_capacity < 1, top_k < 1.
    """
    layer = model.layer(layer)
    z0 = check_query(model, z0)
    v = check_indicator(model, layer, v_star).astype(jnp.float32)
    iv = check_interval(model, options.interval)
    delta = check_delta("delta", options.delta, z0, iv)
    options = check_settings(options)._replace(delta=delta, interval=jnp.asarray(iv, jnp.float32))
    margin = float(_margin_jit(model, params, z0[None], layer, v)[0])
    if math.isnan(margin):
        raise JaxprobeError(f"params: expected parameters under which the query's pre-activation at layer "
                            f"{model.layer_names[layer - 1]!r} is finite, got NaN")
    if margin < 0:
        raise JaxprobeError(f"v_star: the query z0 is not in the region it defines "
                            f"(min V_i h_i(z0) = {margin:.3g} < 0)")
    return GBRRTArguments(layer, z0, v, options)


def check_queries(model, params, z0s, layer, v_stars, options) -> GBRRTArguments:
    """`check_arguments` for Q queries at once: z0s (Q, *input_shape), v_stars (Q, D_l) or
    (Q, *layer shape). The shared settings are checked first (their errors name no query), then
    query by query (errors prefixed "query i (z0s[i], v_stars[i]): "). Returns the stacked queries
    and indicators with the checked options."""
    shape, got = tuple(model.input_shape), tuple(np.shape(z0s))
    if len(got) != len(shape) + 1 or got[1:] != shape or got[0] < 1:
        raise JaxprobeError(f"z0s: expected queries of shape (Q, {', '.join(map(str, shape))}), Q >= 1, got {got}")
    q = got[0]
    layer = model.layer(layer)
    v_shape = tuple(getattr(v_stars, "shape", np.shape(v_stars)))
    if not v_shape or v_shape[0] != q:
        raise JaxprobeError(f"v_stars: expected one halfspace indicator per query ({q}), got shape {v_shape}")
    check_interval(model, options.interval)
    check_settings(options)
    checked = []
    for i in range(q):
        try:
            checked.append(check_arguments(model, params, z0s[i], layer, v_stars[i], options))
        except JaxprobeError as e:
            raise JaxprobeError(f"query {i} (z0s[{i}], v_stars[{i}]): {e}") from None
    return GBRRTArguments(layer, jnp.stack([c.z0 for c in checked]), jnp.stack([c.v_star for c in checked]),
                          checked[0].options)
