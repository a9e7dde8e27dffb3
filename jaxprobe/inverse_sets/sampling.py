"""The fast sampler of an inverse set (Hada & Carreira-Perpiñán 2019, section 3.5, eq. 9-10), as a kernel.

lambda*, mu* fixed at their final seed values; from C = seeds, each step takes one gradient step on

    L_sample(C) = -D(C) - sum_i sum_{y in C0} ||e_i - a_y||^2 + sum of the constraint terms,

giving C'; the rows of C inside every range are accepted and replace C0 (the paper's step 4: C0
is the rows accepted at the latest step; `repel="all"` makes it the union of every accepted row
instead); C <- C' (all rows). C0 is kept as sums (count, sum of features, sum of squared norms),
so the cross term costs O(K) too. Each code is accepted once: a row is judged again only after
its gradient step changed it, so a row at rest in the range (eq. 14, whose gradient vanishes
there) is not copied into the samples at every step. The accepted codes go into fixed-capacity
buffers of n plus a count.

Step length beta (our choice; the paper gives none). With mu* at 1e4-1e5 the raw gradient of a
row that leaves the region is 4-5 orders of magnitude larger than one inside, so no fixed beta
suits both. Each row's gradient is therefore normalized: c_i <- c_i - beta * rho * grad_i/||grad_i||,
rho = the mean norm of the seed codes (`step_length`), so every code moves by beta * rho per step
whatever mu* is, in the direction that separates it from the others and from the accepted set, or
back towards the range when it has left it.

`build(...)` returns a `jaxprobe.driver.Kernel`; run it with `jaxprobe.driver.run(kernel, key,
kernel.init(seeds), max_steps + 1, until=done)`: the first step judges the seeds, and `done` stops
when n are accepted, when nothing was accepted by the first step (no seed reached the ranges), or
at a fixed point (a step that moved no row and accepted nothing: nothing new can ever be accepted;
stop reason "stalled").
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxprobe.driver import Kernel
from jaxprobe.inverse_sets.auglag import slack_terms
from jaxprobe.inverse_sets.problem import InverseProblem, features
from jaxprobe.sharding import constrain_batch

# The set C0 the sampler repels from: the rows accepted at the latest step (the paper's step 4),
# or every row accepted so far.
REPEL = ("new", "all")


class SampleState(NamedTuple):
    """State of the fast sampler (eq. 9-10).

    Attributes:
      codes: (K, *code) the current codes C (the seeds before the first step).
      fresh: (K,) bool, True where the row of C has not been judged yet: the seeds, and the rows
        the latest step changed (a row at rest is never accepted twice).
      buf_codes: (n, *code) accepted codes; rows >= count are unused.
      buf_values: (n, p) their neuron values (the very values the acceptance test saw).
      buf_embed: (n, d) their E embeddings (for diversity statistics).
      count: () int32 accepted so far (<= n).
      rep_count: () the number of rows in C0, the accepted rows the sampler repels from.
      sum_a: (d_div,) sum of C0's diversity features.
      sumsq_a: () sum of their squared norms.
      steps: () int32 gradient steps taken; codes is the result of `steps` steps from the seeds.
      progress: () bool, False when the latest step neither accepted nor moved a row: the state is
        then a fixed point of the step and nothing new can be accepted.
    """

    codes: jax.Array
    fresh: jax.Array
    buf_codes: jax.Array
    buf_values: jax.Array
    buf_embed: jax.Array
    count: jax.Array
    rep_count: jax.Array
    sum_a: jax.Array
    sumsq_a: jax.Array
    steps: jax.Array
    progress: jax.Array


class SampleInfo(NamedTuple):
    """What one sampling step reports.

    Attributes:
      accepted: () int32 rows accepted by this step.
      moved: () int32 rows its gradient step changed.
    """

    accepted: jax.Array
    moved: jax.Array


def done(state: SampleState):
    """The sampler's stopping rule (for `jaxprobe.driver.run`'s `until`): n accepted, nothing
    accepted by the first step (no seed reached the ranges), or a fixed point."""
    n = state.buf_codes.shape[0]
    unreachable = (state.steps >= 1) & (state.count == 0)
    return (state.count >= n) | unreachable | ~state.progress


def build(problem: InverseProblem, n: int, lam, mu, step_length, repel: str = "new", *, mesh=None) -> Kernel:
    """The sampler of eq. 9-10 as a kernel.

    Args:
      problem: from `jaxprobe.inverse_sets.problem.make_problem`.
      n: buffer capacity, the samples wanted (static).
      lam, mu: lambda* (K q,) and mu* () from the seeds, fixed.
      step_length: beta * rho, the distance every code moves (see the module doc).
      repel: "new": C0 = the rows accepted now (step 4: C0 is replaced); "all": C0 = every row
        accepted so far. Static.
      mesh: None, or a mesh whose "batch" axis the K codes stay split over.

    Returns:
      `Kernel(init(seeds (K, *code)) -> SampleState, step(key, state) -> (SampleState,
      SampleInfo))`; the step is deterministic (the key is unused).
    """

    def init(seeds) -> SampleState:
        """Empty buffers of capacity n and C = seeds; the first step judges the seeds."""
        v, e = jax.eval_shape(problem.forward, seeds)
        d_div = e.shape[1] if problem.diversity == "embedding" else math.prod(seeds.shape[1:])
        dt = seeds.dtype
        return SampleState(seeds, jnp.ones((seeds.shape[0],), bool), jnp.zeros((n,) + seeds.shape[1:], dt),
                           jnp.zeros((n,) + v.shape[1:], v.dtype), jnp.zeros((n,) + e.shape[1:], e.dtype),
                           jnp.zeros((), jnp.int32), jnp.zeros((), dt), jnp.zeros((d_div,), dt), jnp.zeros((), dt),
                           jnp.zeros((), jnp.int32), jnp.ones((), bool))

    def step(key, state: SampleState):
        """Judge C (accept its unjudged rows inside every range), then one normalized gradient step
        of L_sample (eq. 10 and sampling steps 2-5). One forward and one backward pass of G, the
        classifier and E: the forward serves both the acceptance test of C and the gradient at C,
        which repels from the C0 that includes C's own accepted rows (the paper's order: accept
        into C0, then step from C' with the new C0)."""
        del key  # deterministic
        c = constrain_batch(state.codes, mesh)
        k = c.shape[0]
        use_e = problem.diversity == "embedding"
        if use_e:
            (v, e), vjp = jax.vjp(problem.forward, c)
        else:
            v, vjp = jax.vjp(problem.values, c)
            e = problem.forward(c)[1]  # statistics only; no gradient through E
        feats = features(problem, c, e)

        accepted = _accept(problem, state, c, v, e, feats, repel)
        kept, (rep_count, sum_a, sumsq_a) = accepted.kept, accepted.c0

        def l_sample(v, feats):
            penalty = jnp.sum(slack_terms(problem.constraints(v), lam, mu))
            if problem.diversity == "none":
                return penalty
            return penalty - problem.spread(feats) - problem.repulsion(feats, sum_a, sumsq_a, rep_count)

        g_v, g_f = jax.grad(l_sample, argnums=(0, 1))(v, feats)
        if use_e:
            (grad,) = vjp((g_v, g_f))
        else:
            (grad,) = vjp(g_v)
            grad = grad + g_f.reshape(c.shape)  # eq. 13: the diversity acts on the codes directly
        g2 = grad.reshape(k, -1)
        norm = jnp.sqrt(jnp.sum(g2 * g2, axis=1, keepdims=True))
        # Per-row normalized step; a zero gradient (eq. 14 inside the range) leaves the row in place.
        direction = jnp.where(norm > 0, g2 / jnp.where(norm > 0, norm, 1.0), 0.0)
        new_c = c - step_length * direction.reshape(c.shape)
        moved = jnp.any((new_c != c).reshape(k, -1), axis=1)
        out = SampleState(new_c, moved, *accepted.buffers, rep_count, sum_a, sumsq_a, state.steps + 1,
                          jnp.any(kept) | jnp.any(moved))
        return out, SampleInfo(jnp.sum(kept.astype(jnp.int32)), jnp.sum(moved.astype(jnp.int32)))

    return Kernel(init, step)


class _Accepted(NamedTuple):
    kept: jax.Array  # (K,) bool, the rows accepted now
    buffers: tuple  # (buf_codes, buf_values, buf_embed, count) with them
    c0: tuple  # (rep_count, sum_a, sumsq_a): the set C0 the step repels from


def _accept(problem: InverseProblem, state: SampleState, c, v, e, feats, repel: str) -> _Accepted:
    """Accept the unjudged rows of C inside every range into the next free slots (dropped beyond n),
    and the sums of the C0 the next gradient step repels from."""
    n = state.buf_codes.shape[0]
    ok = problem.in_range(v) & state.fresh
    slot = state.count + jnp.cumsum(ok.astype(jnp.int32)) - 1
    kept = ok & (slot < n)
    slot = jnp.where(kept, slot, n)
    buf_codes = state.buf_codes.at[slot].set(c, mode="drop")
    buf_values = state.buf_values.at[slot].set(v, mode="drop")
    buf_embed = state.buf_embed.at[slot].set(e, mode="drop")
    count = state.count + jnp.sum(kept.astype(jnp.int32))
    w = kept.astype(feats.dtype)[:, None]
    new = (jnp.sum(w), jnp.sum(w * feats, axis=0), jnp.sum(w * feats * feats))
    if repel == "all":
        rep_count, sum_a, sumsq_a = (x + y for x, y in zip((state.rep_count, state.sum_a, state.sumsq_a), new))
    else:
        rep_count, sum_a, sumsq_a = new
    return _Accepted(kept, (buf_codes, buf_values, buf_embed, count), (rep_count, sum_a, sumsq_a))


def step_length(seeds, beta):
    """beta * rho, rho the mean norm of the seed codes (K, *code); sqrt(code size) when all are 0."""
    k = seeds.shape[0]
    rho = jnp.mean(jnp.sqrt(jnp.sum(seeds.reshape(k, -1) ** 2, axis=1)))
    return beta * jnp.where(rho > 0, rho, jnp.sqrt(jnp.asarray(seeds[0].size, seeds.dtype)))
