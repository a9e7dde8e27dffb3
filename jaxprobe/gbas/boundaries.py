"""Generative boundaries, halfspace indicators and region membership (E-GBAS, Jeon et al. 2020, sec. 3.2).

The i-th generative boundary of layer l is the zero set of unit i of the layer's pre-activation
h(z) = f_{l:1}(z) (`Model.up_to`), flattened to D_l units. A halfspace indicator V in
{-1, 0, +1}^{D_l} selects a side of each boundary (0: the unit is free), and the generative region
GR_V is the set of latent vectors with V_i * h_i(z) >= 0 for every i with V_i != 0 (Definitions
2-3). Membership of a batch of latent vectors costs one forward pass through layers 1..l.

All functions are pure functions of (params, input) and jit-able with the layer static.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from jaxprobe.checks import check_finite
from jaxprobe.errors import JaxprobeError


def layer_size(model, l) -> int:
    """D_l, the number of units of layer l's pre-activation (all positions and channels)."""
    return int(math.prod(model.layer_shape(l)))


def preactivation(model, params, z, l):
    """Layer l's pre-activation for a batch of latent vectors, flattened: (batch, D_l)."""
    h = model.up_to(params, z, l)
    return h.reshape(h.shape[0], -1)


def halfspace(model, params, z0, l):
    """The halfspace indicator of z0 itself: sign(f_{l:1}(z0)) in {-1, 0, +1}^{D_l}.

    Args:
      model: a probe-able `Model` (usually a generator).
      params: its parameters.
      z0: one latent vector of shape `model.input_shape`, or a batch (n, *input_shape).
      l: the layer (name or number 1..L).

    Returns:
      int32 array (D_l,) for one vector, (n, D_l) for a batch: the sign pattern of the layer's
      pre-activation (0 only where the pre-activation is exactly zero). With every unit selected it
      is the region of the paper's Definition 4 (neural representation sharing).
    """
    l = model.layer(l)
    z0 = jnp.asarray(z0)
    single = tuple(z0.shape) == tuple(model.input_shape)
    h = preactivation(model, params, z0[None] if single else z0, l)
    v = jnp.sign(h).astype(jnp.int32)
    return v[0] if single else v


def check_indicator(model, l, v, *, name: str = "v_star"):
    """Validate a halfspace indicator for layer l and return it flattened to (D_l,).

    Accepts the flat (D_l,) form or the layer's own shape. Values must be -1, 0 or +1 (checked
    when `v` is concrete).
    """
    l = model.layer(l)
    size = layer_size(model, l)
    shape = getattr(v, "shape", None)
    if shape is None:
        v = np.asarray(v)
        shape = v.shape
    if tuple(shape) not in ((size,), tuple(model.layer_shape(l))):
        raise JaxprobeError(
            f"{name}: expected a halfspace indicator of shape ({size},) or {tuple(model.layer_shape(l))} "
            f"for layer {model.layer_names[l - 1]!r}, got {tuple(shape)}")
    v = jnp.asarray(v).reshape(size)
    try:
        values = np.asarray(v)
    except Exception:  # a tracer: its values are checked where it was made
        return v
    if not np.all(np.isin(values, (-1, 0, 1))):
        raise JaxprobeError(f"{name}: expected values in {{-1, 0, +1}}, got {np.unique(values)[:6].tolist()}")
    return v


def region_margin(model, params, z, l, v):
    """min over selected units of V_i * h_i(z) for a batch z: (batch,); +inf when no unit is selected.

    z is in GR_V iff its margin is >= 0. NaN when h(z) holds a NaN anywhere (or an infinity at a
    free unit, 0 * inf): such a z is not a member (`region_membership`). One forward pass through
    layers 1..l.
    """
    h = preactivation(model, params, z, l)
    v = jnp.asarray(v).reshape(-1).astype(h.dtype)
    vh = v * h
    # Decided apart from the min: XLA's CPU min drops NaN for some shapes (see region_membership).
    broken = jnp.any(jnp.isnan(vh), axis=1)
    return jnp.where(broken, jnp.nan, jnp.min(jnp.where(v != 0, vh, jnp.inf), axis=1))


def region_membership(model, params, z, l, v):
    """Whether each latent vector of a batch lies in the generative region GR_V of layer l.

    Args:
      model: a probe-able `Model`.
      params: its parameters.
      z: latent vectors, (batch, *model.input_shape).
      l: the layer (static under jit).
      v: halfspace indicator, (D_l,) (or the layer's shape) with values in {-1, 0, +1}.

    Returns:
      bool (batch,): V_i * h_i(z) >= 0 for every i with V_i != 0 (Jeon et al. 2020, Definitions 2-3),
      computed in one batched forward pass of layers 1..l. A row whose pre-activation holds a NaN
      (anywhere, selected unit or not) is never a member, at any batch size and width.
    """
    h = preactivation(model, params, z, l)
    vh = jnp.asarray(v).reshape(-1).astype(h.dtype) * h
    # min_i V_i h_i >= 0 covers the free units (V_i h_i = 0) and is one float reduction. A NaN
    # (from a NaN pre-activation, or an infinite one times a free unit's 0) must make the row a
    # non-member, but XLA's CPU backend drops NaN from a jitted min for some shapes (from 8 rows
    # at width 784, from one row at 4704): NaN is mapped to -1 before the min, not left to it.
    return jnp.min(jnp.where(jnp.isnan(vh), -1.0, vh), axis=1) >= 0


def check_query(model, z0, *, name: str = "z0"):
    """Validate one latent query (shape `model.input_shape`, finite) and return it as float32."""
    shape = getattr(z0, "shape", None)
    if shape is None:
        z0 = np.asarray(z0, dtype=np.float32)
        shape = z0.shape
    if tuple(shape) != tuple(model.input_shape):
        raise JaxprobeError(
            f"{name}: expected one latent vector of shape {tuple(model.input_shape)} (the input shape of "
            f"{model.name!r}), got {tuple(shape)}")
    z0 = jnp.asarray(z0, dtype=jnp.float32)
    check_finite(name, z0)
    return z0
