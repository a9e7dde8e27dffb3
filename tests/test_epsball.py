"""Eps-ball baselines: equal volumes (closed form, log space vs scipy), eps_L2 by brute force,
uniformity of the draws (Kolmogorov-Smirnov against the exact radial / marginal laws)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special, stats

from jaxprobe.gbas.epsball import eps_l2, eps_linf, log_ball_volume, sample_l2_ball, sample_linf_ball
from jaxprobe.errors import JaxprobeError


def test_equal_volume_closed_form_d2():
    # d = 2: pi eps^2 = (2a)^2, a = eps sqrt(pi) / 2 = 0.8862 eps.
    for eps in (0.01, 0.3, 2.0):
        a = float(eps_linf(eps, 2))
        np.testing.assert_allclose(a / eps, math.sqrt(math.pi) / 2, rtol=1e-6)
        np.testing.assert_allclose((2 * a) ** 2, math.pi * eps**2, rtol=1e-6)
    assert round(float(eps_linf(1.0, 2)), 3) == 0.886


def test_equal_volume_log_space_d100_and_others():
    # d = 100: the volumes (~1e-40 eps^100) are beyond float32; compare their logs with scipy.
    eps = 1.7
    a = float(eps_linf(eps, 100))
    assert round(a / eps, 4) == 0.2008
    log_cube = 100 * math.log(2 * a)
    log_ball = 50 * math.log(math.pi) - special.gammaln(51) + 100 * math.log(eps)
    np.testing.assert_allclose(log_cube, log_ball, rtol=1e-5)
    np.testing.assert_allclose(float(log_ball_volume(eps, 100)), log_ball, rtol=1e-5)
    for d in (1, 3, 7, 50, 512):  # d = 1: the "ball" is the segment itself, a = eps
        a = float(eps_linf(0.5, d))
        want = 0.5 * math.exp((0.5 * d * math.log(math.pi) - special.gammaln(0.5 * d + 1)) / d) / 2
        np.testing.assert_allclose(a, want, rtol=2e-6)
    np.testing.assert_allclose(float(eps_linf(0.5, 1)), 0.5, rtol=1e-6)


def test_eps_l2_matches_brute_force_with_buffers():
    rng = np.random.default_rng(0)
    acc = rng.normal(size=(10, 6)).astype(np.float32)
    rej = (rng.normal(size=(12, 6)) * 3).astype(np.float32)
    z_avg = acc[:7].astype(np.float64).mean(0)
    dist = np.linalg.norm(rej[:5] - z_avg, axis=1)
    want = 0.5 * (dist.max() + dist.min())
    got = jax.jit(lambda a, r, na, nr: eps_l2(a, r, n_accepted=na, n_rejected=nr))(acc, rej, 7, 5)
    np.testing.assert_allclose(float(got), want, rtol=1e-5)
    full = np.linalg.norm(rej - acc.astype(np.float64).mean(0), axis=1)
    np.testing.assert_allclose(float(eps_l2(acc, rej)), 0.5 * (full.max() + full.min()), rtol=1e-5)
    assert np.isnan(float(eps_l2(acc, rej, n_rejected=0)))  # undefined without rejected candidates


def test_l2_ball_draws_are_uniform():
    d, eps, n = 5, 0.7, 4000
    center = jnp.arange(d, dtype=jnp.float32)
    x = np.asarray(sample_l2_ball(jax.random.PRNGKey(0), center, eps, n), np.float64) - np.asarray(center)
    r = np.linalg.norm(x, axis=1)
    assert x.shape == (n, d) and r.max() <= eps * (1 + 1e-6)
    # Uniform in the ball: (r / eps)^d ~ U(0, 1), directions uniform (each coordinate of the unit
    # vector has mean 0 and second moment 1/d). Fixed key: p-values are deterministic.
    assert stats.kstest((r / eps) ** d, "uniform").pvalue > 1e-3
    u = x / r[:, None]
    assert np.abs(u.mean(0)).max() < 4 / math.sqrt(n)
    np.testing.assert_allclose((u**2).mean(0), 1 / d, atol=4 * math.sqrt(2 / d**2 / n))


def test_linf_ball_draws_are_uniform():
    d, a, n = 4, 0.3, 4000
    center = jnp.asarray([1.0, -2.0, 0.5, 0.0])
    x = np.asarray(sample_linf_ball(jax.random.PRNGKey(1), center, a, n), np.float64) - np.asarray(center)
    assert x.shape == (n, d) and np.abs(x).max() <= a * (1 + 1e-6)
    for k in range(d):
        assert stats.kstest(x[:, k], "uniform", args=(-a, 2 * a)).pvalue > 1e-3
    assert abs(np.corrcoef(x.T)[0, 1]) < 4 / math.sqrt(n)


def test_bad_input():
    key = jax.random.PRNGKey(0)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(JaxprobeError, match=r"eps: expected a positive radius"):
            sample_l2_ball(key, jnp.zeros(3), bad, 4)
        with pytest.raises(JaxprobeError, match=r"a: expected a positive radius"):
            sample_linf_ball(key, jnp.zeros(3), bad, 4)
    with pytest.raises(JaxprobeError, match=r"n: expected an integer >= 0, got -1"):
        sample_l2_ball(key, jnp.zeros(3), 1.0, -1)
    with pytest.raises(JaxprobeError, match=r"d: expected an integer >= 1, got 0"):
        eps_linf(1.0, 0)
