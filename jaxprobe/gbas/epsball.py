"""Eps-ball baselines of E-GBAS (Jeon et al. 2020, section 4; docs/methods/egbas.md).

The L2 baseline samples uniformly in the ball ||z - z0||_2 <= eps_L2 with

    eps_L2 = (max_{z in Z_reject} ||z_avg - z|| + min_{z in Z_reject} ||z_avg - z||) / 2,

z_avg the mean of E-GBAS's accepted nodes and Z_reject its rejected candidates. The Linf baseline
samples uniformly in the cube ||z - z0||_inf <= a, a the half-side of the cube with the volume of
that L2 ball: (2a)^d = pi^(d/2) eps^d / Gamma(d/2 + 1), computed in log space,

    log a = log eps + ((d/2) log pi - lgamma(d/2 + 1)) / d - log 2

(a / eps = sqrt(pi)/2 = 0.886 at d = 2 and 0.2008 at d = 100; the volumes themselves under- or
overflow float32 long before d = 100). Both balls are centred at the query z0. Pure, jit-able.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from jaxprobe.checks import check_count, check_number


def _rows(x):
    x = jnp.asarray(x, jnp.float32)
    return x.reshape(x.shape[0], -1)


def _mask(n_rows, count):
    return jnp.ones((n_rows,), bool) if count is None else jnp.arange(n_rows) < count


def eps_l2(accepted, rejected, *, n_accepted=None, n_rejected=None):
    """eps_L2 from E-GBAS's accepted nodes and rejected candidates (Jeon et al. 2020, section 4).

    Args:
      accepted: (n, *latent_shape) accepted nodes (a buffer; only the first `n_accepted` count).
      rejected: (m, *latent_shape) rejected candidates (only the first `n_rejected` count).
      n_accepted, n_rejected: counts for fixed-capacity buffers (default: every row).

    Returns:
      () float32: (max + min)/2 of ||z_avg - z|| over the rejected set, distances by direct
      differences. NaN when there is no rejected candidate (eps is then undefined).
    """
    a, r = _rows(accepted), _rows(rejected)
    wa = _mask(a.shape[0], n_accepted)
    wr = _mask(r.shape[0], n_rejected)
    z_avg = jnp.sum(jnp.where(wa[:, None], a, 0.0), axis=0) / jnp.maximum(jnp.sum(wa), 1)
    dist = jnp.sqrt(jnp.sum((r - z_avg) ** 2, axis=1))
    hi = jnp.max(jnp.where(wr, dist, -jnp.inf))
    lo = jnp.min(jnp.where(wr, dist, jnp.inf))
    return jnp.where(jnp.any(wr), 0.5 * (hi + lo), jnp.nan)


def log_ball_volume(eps, d: int):
    """log of the volume of the d-dimensional L2 ball of radius eps."""
    return 0.5 * d * math.log(math.pi) - gammaln(0.5 * d + 1.0) + d * jnp.log(eps)


def eps_linf(eps, d: int):
    """Half-side a of the d-cube with the volume of the L2 ball of radius eps (log space).

    log a = log eps + ((d/2) log pi - lgamma(d/2 + 1)) / d - log 2.
    """
    check_count("d", d, 1)
    eps = jnp.asarray(eps, jnp.float32)
    return jnp.exp(jnp.log(eps) + (0.5 * d * math.log(math.pi) - gammaln(0.5 * d + 1.0)) / d - math.log(2.0))


def _check_draw(name, radius, n):
    """Refuse a count n < 0 or a concrete radius with a value <= 0 or not finite (a traced radius
    has no value to check)."""
    check_count("n", n, 0)
    if not isinstance(radius, jax.core.Tracer):
        for value in np.asarray(radius, np.float64).reshape(-1):
            check_number(name, float(value), low=0, low_open=True, what="a positive radius")


def sample_l2_ball(key, center, eps, n: int):
    """n points uniform in the L2 ball of radius eps around `center` (any shape): (n, *shape).

    Direction: a normalized standard Gaussian; radius: eps * U^(1/d), so that the radius has the
    ball's density d r^(d-1) / eps^d.
    """
    _check_draw("eps", eps, n)
    center = jnp.asarray(center, jnp.float32)
    d = center.size
    k_dir, k_rad = jax.random.split(key)
    g = jax.random.normal(k_dir, (n, d))
    g = g / jnp.linalg.norm(g, axis=1, keepdims=True)
    r = eps * jax.random.uniform(k_rad, (n, 1)) ** (1.0 / d)
    return (center.reshape(1, d) + r * g).reshape((n,) + center.shape)


def sample_linf_ball(key, center, a, n: int):
    """n points uniform in the cube ||z - center||_inf <= a: (n, *center.shape)."""
    _check_draw("a", a, n)
    center = jnp.asarray(center, jnp.float32)
    return center[None] + a * jax.random.uniform(key, (n,) + center.shape, jnp.float32, -1.0, 1.0)
