"""The region's extent, the default step size and the exploration measures against closed forms:
one-layer generators whose region is a cube or a halfspace, where the exit along a direction u is
known exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprobe.gbas.exploration import box_reach, default_delta, exploration, ray_grid, region_extent
from jaxprobe.gbas.gbrrt import min_delta
from test_boundaries import one_layer

DIRECTIONS = 32


def directions(key, d):
    """The rays `region_extent` documents: normalized standard Gaussians from its key, float64."""
    u = np.asarray(jax.random.normal(key, (DIRECTIONS, d)), np.float64)
    return u / np.linalg.norm(u, axis=1, keepdims=True)


def expected_extent(t_exit, t_max):
    """The largest grid distance not beyond the exit (t_max when the ray never leaves, 0 when the
    first grid point is already out), per ray."""
    grid = ray_grid(t_max).astype(np.float32).astype(np.float64)
    return np.array([t_max if t >= t_max else grid[grid <= t].max() if t >= grid[0] else 0.0 for t in t_exit])


def assert_extent(got, t_exit, t_max):
    want = expected_extent(t_exit, t_max)
    grid = ray_grid(t_max)
    # Exact for rays that never leave and away from a grid point (where float32 rounding of
    # z0 + t u may fall on either side).
    clear = (t_exit > t_max * (1 + 1e-4)) | (np.min(np.abs(t_exit[:, None] / grid[None] - 1.0), axis=1) > 1e-4)
    assert clear.sum() >= DIRECTIONS - 2
    np.testing.assert_allclose(got[clear], want[clear], rtol=1e-6)


def test_extent_of_a_cube_is_c_over_the_largest_direction_cosine():
    """|z_i| <= c (W = [I, -I], b = c, every unit selected) around z0 = 0: the ray z0 + t u leaves
    at t* = c / max_i |u_i|."""
    d, c = 3, 0.5
    model = one_layer(np.concatenate([np.eye(d), -np.eye(d)], axis=1), np.full(2 * d, c))
    key, z0, v = jax.random.PRNGKey(4), np.zeros(d, np.float32), np.ones(2 * d, np.int32)
    t_max = box_reach(z0, 1.0)
    assert t_max == pytest.approx(np.sqrt(d))
    got = region_extent(key, model, model.params, z0, 1, v, t_max=t_max, directions=DIRECTIONS)
    t_exit = c / np.abs(directions(key, d)).max(axis=1)
    assert got.shape == (DIRECTIONS,) and np.all(got <= t_exit * (1 + 1e-6))
    assert_extent(got, t_exit, t_max)
    # The default step: half the median extent (the cube's exit lies in [c, c sqrt(d)]).
    assert default_delta(got, z0, 1.0) == pytest.approx(np.median(got) / 2, rel=1e-12)
    assert c / 2 / 1.13 < default_delta(got, z0, 1.0) <= c * np.sqrt(d) / 2


def test_extent_of_a_halfspace_off_the_query():
    """One unit w.z + b >= 0 with the query at margin m: a ray leaves at t* = m / (-w.u) when it
    points against w, never otherwise (t_max); a wall much closer than t_max / 256 gives 0."""
    rng = np.random.default_rng(1)
    d = 5
    w = rng.normal(size=d)
    z0 = rng.normal(size=d).astype(np.float32)
    key = jax.random.PRNGKey(9)
    u = directions(key, d)
    w32 = w.astype(np.float32).astype(np.float64)
    b = np.float32(0.4 - float(z0.astype(np.float64) @ w32))
    model = one_layer(w[:, None], np.array([b]))
    start = z0
    for m, interval in ((0.4, 1.0), (1e-4, 2.0)):
        # One model (one compilation); the query moved along w to a margin of about m.
        z0 = (start + (m - 0.4) * w32 / (w32 @ w32)).astype(np.float32)
        t_max = box_reach(z0, interval)
        got = region_extent(key, model, model.params, z0, 1, np.ones(1, np.int32), t_max=t_max,
                            directions=DIRECTIONS)
        margin = float(z0.astype(np.float64) @ w32 + np.float32(b))
        along = u @ w32
        t_exit = np.where(along < 0, margin / np.maximum(-along, 1e-300), np.inf)
        assert_extent(got, t_exit, t_max)
        never = np.isclose(got, t_max, rtol=1e-6)
        assert never.any() and not never.all()  # both kinds of ray occur
        if m == 1e-4:  # every ray against w leaves before the grid's first point
            np.testing.assert_array_equal(got[along < -0.05], 0.0)
            # The median ray may leave at once; the step never drops below twice float32's floor.
            assert default_delta(np.zeros(DIRECTIONS), z0, interval) == 2 * min_delta(z0, interval)


def test_exploration_measures_closed_form():
    """Nodes at distances 1..10 from z0 along one axis (the query first), a region whose extent is
    3 along half the rays and 5 along the rest, eps 2: quantiles by their definitions."""
    d = 4
    z0 = np.array([0.5, -1.0, 2.0, 0.0])
    nodes = np.concatenate([z0[None], z0 + np.arange(1, 11)[:, None] * np.eye(d)[1]])
    extent = np.repeat([3.0, 5.0], 16)
    x = exploration(jnp.asarray(nodes), z0, extent, eps_l2=2.0)
    assert x["node_distance"] == pytest.approx({"median": 5.5, "q90": 9.1, "max": 10.0})
    assert x["extent"] == pytest.approx({"min": 3.0, "median": 4.0, "max": 5.0})
    assert x["reach"] == pytest.approx(9.1 / 4.0) and x["eps_over_extent"] == pytest.approx(0.5)
    # The query alone, no eps: every node measure is undefined, not an error.
    x = exploration(nodes[:1], z0, extent)
    assert np.isnan(x["node_distance"]["median"]) and np.isnan(x["reach"]) and np.isnan(x["eps_over_extent"])
    # A region the rays leave at once: no reach ratio.
    assert np.isnan(exploration(nodes, z0, np.zeros(8), 1.0)["reach"])
