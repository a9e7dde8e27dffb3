"""The sequential GB-RRT reference (Jeon et al. 2020, Algorithm 2): the tests' oracle for the
batched kernel `jaxprobe.gbas.gbrrt` and the baseline of the GB-RRT benchmark.

One candidate per iteration, exactly as the algorithm reads: the delta test over every node by
direct differences. Candidate j is drawn from `fold_in(key, j)` as candidate 0 of that key, which
is what the batched kernel with B = 1 draws at step j (`jaxprobe.driver`'s step keys), so the two
agree node for node. Its own `lax.while_loop`: an oracle shares no code path with the driver
beyond the pieces of one step (nearest node, steer, membership) whose own tests are elsewhere.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxprobe.gbas.boundaries import region_membership
from jaxprobe.gbas.gbrrt import (GBRRTOptions, GBRRTResult, _flat, _threshold2, _too_close_direct, check_arguments,
                                 done, draw_candidates, init, nearest_nodes, result, steer)


def gbrrt_sequential_run(key, model, params, z0, layer, v_star, *, delta, interval, capacity: int,
                         max_candidates, rejected_capacity: int) -> GBRRTResult:
    """Algorithm 2 one candidate per iteration (pure, unchecked; see `gbrrt_sequential`)."""
    layer = model.layer(layer)
    z0f = _flat(z0)
    interval = jnp.broadcast_to(jnp.asarray(interval, jnp.float32), z0f.shape)
    v_star = jnp.asarray(v_star, jnp.float32).reshape(-1)
    thr2 = _threshold2(delta)
    rows = jnp.arange(capacity)

    def body(s):
        z = draw_candidates(jax.random.fold_in(key, s.n_candidates), 0, 1, z0f, interval)  # line 3
        q = nearest_nodes(z, s.nodes, s.count, z0f)                           # line 4
        zp, moved = steer(z, s.nodes[q], delta)                               # line 5
        member = region_membership(model, params, zp.reshape((1,) + tuple(model.input_shape)),
                                   layer, v_star)[0]                          # line 6, first half
        close = _too_close_direct(s.nodes, (rows < s.count) & (rows != q[0]), zp[0], thr2) | ~moved[0]
        accept, reject = member & ~close, ~member                             # line 7
        i = jnp.minimum(s.count, capacity - 1)
        r = jnp.minimum(s.n_rejected, rejected_capacity - 1)
        store = reject & (s.n_rejected < rejected_capacity)
        return s._replace(
            nodes=s.nodes.at[i].set(jnp.where(accept, zp[0], s.nodes[i])),
            parents=s.parents.at[i].set(jnp.where(accept, q[0], s.parents[i])),
            count=s.count + accept.astype(jnp.int32),
            rejected=s.rejected.at[r].set(jnp.where(store, zp[0], s.rejected[r])),
            n_rejected=s.n_rejected + reject.astype(jnp.int32),
            n_close=s.n_close + (member & close).astype(jnp.int32),
            n_candidates=s.n_candidates + 1)

    state = jax.lax.while_loop(lambda s: ~done(s, max_candidates), body,
                               init(z0, v_star, capacity=capacity, rejected_capacity=rejected_capacity))
    return result(state, model.input_shape, max_candidates)


_sequential_jit = jax.jit(gbrrt_sequential_run, static_argnames=("model", "layer", "capacity", "rejected_capacity"))


def gbrrt_sequential(key, model, params, z0, layer, v_star, *, delta: float, interval=1.0,
                     capacity: int = 256, max_candidates: int = 4096,
                     rejected_capacity: int | None = None) -> GBRRTResult:
    """GB-RRT one candidate per iteration, as Algorithm 2 reads: the reference for `gbrrt`.

    Same arguments (checked by `jaxprobe.gbas.gbrrt.check_arguments`) and result as `gbrrt`,
    without `batch` and `top_k`; jitted, `lax.while_loop`.
    """
    a = check_arguments(model, params, z0, layer, v_star,
                        GBRRTOptions(delta=delta, interval=interval, capacity=capacity,
                                     max_candidates=max_candidates, rejected_capacity=rejected_capacity))
    o = a.options
    return _sequential_jit(key, model, params, a.z0, a.layer, a.v_star, delta=o.delta, interval=o.interval,
                           capacity=o.capacity, max_candidates=jnp.int32(o.max_candidates),
                           rejected_capacity=o.rejected_capacity)


@functools.lru_cache(maxsize=None)
def _draws(n_steps: int, batch: int, d: int):
    def f(key, z0f, interval):
        keys = jax.vmap(lambda t: jax.random.fold_in(key, t))(jnp.arange(n_steps))
        return jax.vmap(lambda k: draw_candidates(k, 0, batch, z0f, interval))(keys).reshape(n_steps * batch, d)
    return jax.jit(f)


def candidate_draws(key, n: int, batch: int, z0, interval):
    """The first n candidates a batched run with B = `batch` draws from `key`, in order: (n, d).

    Step t draws candidates 0..B-1 of `fold_in(key, t)` (the driver's step keys)."""
    z0f = _flat(z0)
    interval = jnp.broadcast_to(jnp.asarray(interval, jnp.float32), z0f.shape)
    n_steps = -(-n // batch)
    return _draws(n_steps, batch, z0f.shape[0])(key, z0f, interval)[:n]
