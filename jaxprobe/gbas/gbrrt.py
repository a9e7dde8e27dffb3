"""GB-RRT: exploring a generative region with a rapidly-exploring random tree (Jeon et al. 2020, Alg. 2).

The tree starts at the query, Q = {z0}. Each candidate draws z ~ U(z0 - I, z0 + I) per
dimension, finds its nearest node q, steps to z' = q + delta (z - q) / ||z - q||, and joins the tree
(with parent q) if z' lies in the region GR_V* and no node other than q is closer to z' than
delta * (1 - 1e-4) (docs/methods/egbas.md, "Choices the paper leaves open": the paper's printed
test "||z' - nearest(Q, z')|| > delta" can never hold, since z' is exactly delta from q).
Candidates that fail membership form the rejected set (used by the eps-ball baselines);
candidates turned away only for closeness lie inside the region and are merely counted.

The kernel (`build(nets, options, layer)`, the protocol of `jaxprobe.driver`): `init(z0, v_star)`
is the tree {z0}, and `step(key, state)` takes B candidates, drawn from the step's key: their
nearest nodes by one squared-distance matrix against the fixed-capacity tree buffer, their
membership in one batched forward pass, and then a sequential pass in `lax.scan` so that
candidates keep delta from the tree and from the candidates accepted earlier in the same batch
(when no candidate's test depends on an earlier one's outcome, a cumulative sum gives the same
result without the scan). With B = 1 it is Algorithm 2 one candidate per step (the sequential
reference under tests/ agrees node for node). `gbrrt`, `gbrrt_run` and `gbrrt_queries` run it
through `jaxprobe.driver.run` until the tree is full or the candidate budget is spent.

The delta test is exact (docs/methods/egbas.md, "distances in the delta test"): every decision that
matters is taken on direct differences, never on the expansion ||a||^2 + ||b||^2 - 2ab. The kernel
uses the expansion (in coordinates centred on z0) only to find each candidate's `top_k` nearest
nodes, tests z' against those directly, and rules out all other nodes with the triangle
inequality and a rigorous float32 bound on the expansion's error; where the bound cannot rule them
out, it falls back to direct differences against every node. The same holds within a batch
(candidate against candidate). The outcome equals the direct test on every node.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxprobe import driver
from jaxprobe.driver import Kernel
from jaxprobe.errors import JaxprobeError
from jaxprobe.gbas.boundaries import region_membership
from jaxprobe.gbas.gbrrt_checks import (EPS32, REJECTED_CAPACITY, REL_TOL, GBRRTArguments, check_arguments,
                                        check_delta, check_interval, check_queries, min_delta)
from jaxprobe.checks import with_settings
from jaxprobe.sharding import check_mesh

RUNNING, CAPACITY_FULL, CANDIDATE_BUDGET = 0, 1, 2
STOP_REASONS = ("running", "capacity_full", "candidate_budget")


def stop_reason_name(code) -> str:
    """The stop reason's name: 0 "running", 1 "capacity_full", 2 "candidate_budget"."""
    code = int(code)
    if not 0 <= code < len(STOP_REASONS):
        raise JaxprobeError(f"stop_reason: expected 0, 1 or 2, got {code}")
    return STOP_REASONS[code]


class GBRRTOptions(NamedTuple):
    """GB-RRT's settings (Jeon et al. 2020, Algorithm 2, batched).

    Attributes:
      delta: the step size, at least `min_delta(z0, interval)` (what float32 resolves at the
        query's scale); nodes end up pairwise >= delta * (1 - 1e-4) apart. No default (None is
        refused): E-GBAS picks one from the region's extent (`jaxprobe.gbas.exploration`).
      interval: I, the half-width of the sampling box U(z0 - I, z0 + I): a scalar or one per
        latent dimension, > 0. Default 1.0, one standard deviation of the N(0, I) latent prior.
      capacity: N, the tree's capacity (nodes wanted, the query included), >= 1. Default 256.
      max_candidates: the paper's iteration count, the most candidates drawn, >= 0. Default 4096.
      batch: B, candidates per step, >= 1. Default 64. Throughput grows with B while the forward
        pass dominates; candidates drawn after the tree fills are wasted, at most B - 1.
      rejected_capacity: R, rejected candidates stored, the first R in draw order. Default None:
        min(max_candidates, REJECTED_CAPACITY = 4096), so the buffer stays small however many
        candidates; `n_rejected` counts them all.
      top_k: k, per candidate the nodes (and earlier candidates of the batch) nearest by the
        expansion that are tested by direct differences; the rest are ruled out by a bound or,
        rarely, by the direct fallback. The result does not depend on k, only the speed. Default
        4, the fastest of 2, 4, 8, 16 (step at B = 256 on XLA's CPU).
    """

    delta: Any = None
    interval: Any = 1.0
    capacity: int = 256
    max_candidates: int = 4096
    batch: int = 64
    rejected_capacity: int | None = None
    top_k: int = 4


class GBRRTNets(NamedTuple):
    """The network GB-RRT uses.

    Attributes:
      generator: the generator (a probe-able `Model`) whose layer's regions the tree explores.
      params: its parameters (default None: `generator.params`).
    """

    generator: Any
    params: Any = None


class GBRRTState(NamedTuple):
    """The tree while it grows; every buffer has a fixed capacity, rows past the count are unused.

    Attributes:
      nodes: (N, d) accepted latent vectors, flattened; node 0 is the query.
      parents: (N,) int32, the index of each node's parent (-1 for the query and unused rows).
      count: () int32, number of nodes (1 <= count <= N).
      rejected: (R, d) candidates z' that failed membership, in the order they were drawn.
      n_rejected: () int32, all candidates that failed membership (only the first R are stored).
      n_close: () int32, candidates inside the region turned away for closeness (not stored).
      n_candidates: () int32, candidates drawn and used so far.
      v_star: (D_l,) float32, the halfspace indicator V* of the region explored.
    """

    nodes: jax.Array
    parents: jax.Array
    count: jax.Array
    rejected: jax.Array
    n_rejected: jax.Array
    n_close: jax.Array
    n_candidates: jax.Array
    v_star: jax.Array


class GBRRTInfo(NamedTuple):
    """What one step did, each () int32: candidates `accepted`, `rejected` (outside the region)
    and turned away as too `close` to a node."""

    accepted: jax.Array
    rejected: jax.Array
    close: jax.Array


class GBRRTResult(NamedTuple):
    """A finished tree: buffers at their capacity plus counts (trim with the methods, outside jit).

    Attributes:
      nodes: (N, *input_shape); rows [0, count) are the accepted nodes, row 0 the query.
      parents: (N,) int32 parent index of each node (-1 for the query).
      count: () number of nodes, the query included.
      rejected: (R, *input_shape); rows [0, min(n_rejected, R)) are rejected candidates.
      n_rejected: () candidates that failed membership (may exceed R).
      n_close: () candidates in the region turned away for being within delta of a node.
      n_candidates: () candidates drawn; n_candidates = (count - 1) + n_rejected + n_close.
      stop_reason: () int32, CAPACITY_FULL (1) or CANDIDATE_BUDGET (2); see `stop_reason_name`.
    """

    nodes: jax.Array
    parents: jax.Array
    count: jax.Array
    rejected: jax.Array
    n_rejected: jax.Array
    n_close: jax.Array
    n_candidates: jax.Array
    stop_reason: jax.Array

    def accepted_nodes(self) -> np.ndarray:
        """The accepted nodes, query first: (count, *input_shape)."""
        return np.asarray(self.nodes)[: int(self.count)]

    def accepted_parents(self) -> np.ndarray:
        """Each accepted node's parent index, (count,) int: -1 for the query, else an earlier node."""
        return np.asarray(self.parents)[: int(self.count)]

    def rejected_candidates(self) -> np.ndarray:
        """The stored rejected candidates: (min(n_rejected, R), *input_shape)."""
        return np.asarray(self.rejected)[: min(int(self.n_rejected), self.rejected.shape[0])]

    def stop_reason_name(self) -> str:
        """Why the tree stopped: "capacity_full" or "candidate_budget" (`stop_reason_name`)."""
        return stop_reason_name(self.stop_reason)


# ------------------------------------------------------------------ pieces of a step (the reference shares them)


def _threshold2(delta):
    return (jnp.asarray(delta, jnp.float32) * (1.0 - REL_TOL)) ** 2


def draw_candidates(key, first, n: int, z0f, interval):
    """Candidates first..first+n-1 of a key: z_j = z0 + I * U(-1, 1)^d from `fold_in(key, j)`. (n, d).

    A step draws its batch as candidates 0..B-1 of its step key."""
    def one(j):
        u = jax.random.uniform(jax.random.fold_in(key, j), z0f.shape, z0f.dtype, -1.0, 1.0)
        return z0f + interval * u

    return jax.vmap(one)(first + jnp.arange(n, dtype=jnp.int32))


def _sq_dist_expansion(xa, xb):
    na = jnp.sum(xa * xa, axis=-1)
    nb = jnp.sum(xb * xb, axis=-1)
    g = jnp.matmul(xa, xb.T, precision=jax.lax.Precision.HIGHEST)
    return na[:, None] + nb[None, :] - 2.0 * g, na, nb


def _sizes(n_cap: int, k: int, block: int = 128):
    """Static prefix lengths of the tree buffer: multiples of `block` growing by about a quarter.

    block, 2 block, ..., 8 block, 10 block, 12 block, 15 block, ..., n_cap: a prefix holding
    `count` nodes reads at most about 1.25 count + block rows, with O(log n_cap) branches.
    (Doubling read up to 2 count rows: 4% more layer-1 GB-RRT time at 2048 nodes.)
    """
    sizes, size = [], max(block, k)
    while size < n_cap:
        sizes.append(size)
        size += max(block, (size // 4) // block * block)
    return sizes + [n_cap]


def _smallest(d2, k: int, block: int = 32):
    """The k smallest entries of each row and their columns, nearest first: (idx, values).

    Two stages when the row splits into blocks: the k blocks with the smallest minima hold the k
    smallest entries (each of those lies in a block whose minimum is no larger), so top_k over
    block minima, then over those k blocks' entries. Same result as one `top_k` (up to the order
    of exact ties), 2.8x faster on XLA's CPU backend at 256 x 1024, k = 4.
    """
    rows, n = d2.shape
    if n % block or n // block < k:
        neg, idx = jax.lax.top_k(-d2, k)
        return idx.astype(jnp.int32), -neg
    _, blocks = jax.lax.top_k(-jnp.min(d2.reshape(rows, n // block, block), axis=2), k)
    cols = (blocks[:, :, None] * block + jnp.arange(block)).reshape(rows, k * block)
    neg, j = jax.lax.top_k(-jnp.take_along_axis(d2, cols, axis=1), k)
    return jnp.take_along_axis(cols, j, axis=1).astype(jnp.int32), -neg


def tree_knn(z, nodes, count, z0f, k: int):
    """The k nodes nearest to each row of z (n, d) among the first `count`, by the expansion.

    One squared-distance matrix ||x||^2 + ||y||^2 - 2 x.y in coordinates centred on z0 (centring
    keeps the norms, hence the rounding, small), then `top_k`. Only the filled part of the buffer
    is read: `lax.switch` picks the smallest static prefix (128, 256, 384, ..., N; see `_sizes`)
    holding `count` nodes, so the cost follows the tree's size rather than its capacity.

    Returns:
      idx (n, k) int32 (nearest first; ties to the lower index), d2 (n, k) their expansion
      squared distances (inf past `count`), and bound (n,): |x|^2 + max |y|^2 over the nodes, the
      scale of the expansion's rounding error.
    """
    n_cap = nodes.shape[0]
    sizes = _sizes(n_cap, k)

    def prefix(size):
        def run():
            d2, na, nb = _sq_dist_expansion(z - z0f, nodes[:size] - z0f)
            valid = jnp.arange(size) < count
            idx, d2k = _smallest(jnp.where(valid[None, :], d2, jnp.inf), k)
            return idx, d2k, na + jnp.max(jnp.where(valid, nb, 0.0))
        return run

    level = jnp.sum(jnp.asarray(sizes[:-1], jnp.int32) < count)
    return jax.lax.switch(level, [prefix(size) for size in sizes])


def nearest_nodes(z, nodes, count, z0f):
    """Index of the nearest of the first `count` nodes for each row of z (n, d): (n,) int32.

    By the expansion (`tree_knn` with k = 1). A float near-tie may pick either node: the tree's
    shape changes, never its validity. The sequential reference (tests) uses this matrix too, so the two agree.
    """
    return tree_knn(z, nodes, count, z0f, 1)[0][:, 0]


def steer(z, q, delta):
    """z' = q + delta (z - q) / ||z - q|| row by row; also whether z' moved off q.

    "Moved" is z' != q in float32 (some coordinate differs), not ||z - q|| > 0: a step below
    float32's resolution at q's scale rounds back to q, and that copy of q must be refused.
    """
    v = z - q
    n = jnp.sqrt(jnp.sum(v * v, axis=-1, keepdims=True))
    zp = q + delta * v / jnp.maximum(n, jnp.finfo(z.dtype).tiny)
    return zp, jnp.any(zp != q, axis=-1)


def _too_close_direct(points, valid, zp, thr2):
    """Whether some valid row of `points` is closer to zp than sqrt(thr2), by direct differences."""
    diff = points - zp
    return jnp.any(valid & (jnp.sum(diff * diff, axis=-1) < thr2))


def _rounding_bound(scale, thr2, d: int):
    """A rigorous bound on |expansion - exact squared distance| near the threshold, doubled.

    With u = eps/2 and `scale` = |x_a|^2 + |x_b|^2 (z0-centred coordinates): centring perturbs each
    coordinate by u relatively; the expansion's three sums err by at most gamma_d ~ d u of their
    absolute terms; the direct test it stands in for errs by (d + 3) u of the squared distance.
    Altogether below u ((2d + 8) scale + (d + 4) thr2); we use twice that.
    """
    return 2.0 * EPS32 * (d + 4) * (2.0 * scale + thr2)


def _flat(z0):
    return jnp.asarray(z0, jnp.float32).reshape(-1)


# ------------------------------------------------------------------ the kernel


def init(z0, v_star, *, capacity: int, rejected_capacity: int) -> GBRRTState:
    """The tree {z0} for the region of `v_star`: buffers of `capacity` nodes and `rejected_capacity`
    rejected candidates."""
    z0f = _flat(z0)
    d = z0f.shape[0]
    zero = jnp.zeros((), jnp.int32)
    return GBRRTState(
        nodes=jnp.zeros((capacity, d), jnp.float32).at[0].set(z0f),
        parents=jnp.full((capacity,), -1, jnp.int32),
        count=jnp.ones((), jnp.int32),
        rejected=jnp.zeros((rejected_capacity, d), jnp.float32),
        n_rejected=zero, n_close=zero, n_candidates=zero,
        v_star=jnp.asarray(v_star, jnp.float32).reshape(-1))


def _step(key, state: GBRRTState, *, model, params, layer, delta, interval, batch: int, max_candidates,
          top_k: int):
    """One batched GB-RRT step (see `build`): (state, GBRRTInfo)."""
    n_cap, d = state.nodes.shape
    r_cap = state.rejected.shape[0]
    z0f = state.nodes[0]  # node 0 is the query
    thr2 = _threshold2(delta)
    count0, ncand0 = state.count, state.n_candidates

    z = draw_candidates(key, 0, batch, z0f, interval)
    idx, d2k, scale = tree_knn(z, state.nodes, count0, z0f, min(top_k, n_cap))
    q = idx[:, 0]
    zp, moved = steer(z, state.nodes[q], delta)
    member = region_membership(model, params, zp.reshape((batch,) + tuple(model.input_shape)), layer,
                                state.v_star)

    # The delta test against the tree. The k - 1 other nodes nearest to z are tested directly.
    # Every node n outside them is at least as far from z as the k-th, and
    # ||z' - n|| >= ||z - n|| - ||z - z'||: if that bound clears the threshold for the k-th (with
    # `_rounding_bound`), no node outside can be close; otherwise
    # (`tree_over`, rare) the scan tests every node directly. When z is at least delta from q,
    # the ball of radius delta around z' lies inside the empty ball ||y - z|| < ||z - q||, so the
    # bound nearly always clears.
    diff = zp[:, None, :] - state.nodes[idx[:, 1:]]
    tree_close = jnp.any(jnp.isfinite(d2k[:, 1:]) & (jnp.sum(diff * diff, axis=-1) < thr2), axis=1)
    rel = 2.0 * (d + 4) * 0.5 * EPS32  # relative error of a direct float32 distance, doubled
    step_back = jnp.sqrt(jnp.sum((z - zp) ** 2, axis=-1)) * (1.0 + rel)
    kth = jnp.max(d2k, axis=1)  # the k-th smallest (inf when fewer than k nodes)
    bound = jnp.sqrt(jnp.maximum(kth - _rounding_bound(scale, thr2, d), 0.0)) - step_back
    tree_over = bound < jnp.sqrt(thr2) * (1.0 + rel)
    rows = jnp.arange(n_cap)
    # The delta test within the batch: candidates whose expansion distance is not certainly
    # beyond the threshold (rigorous bound, as for the tree) are tested directly in the scan,
    # against the candidates accepted before them.
    cols = jnp.arange(batch)
    d2l, nl, _ = _sq_dist_expansion(zp - z0f, zp - z0f)
    local_maybe = ((d2l < thr2 + _rounding_bound(nl[:, None] + nl[None, :], thr2, d))
                   & (cols[None, :] < cols[:, None]))

    def tree_direct(qb, zpb, accepted):  # every node of the tree but q
        return _too_close_direct(state.nodes, (rows < count0) & (rows != qb), zpb, thr2)

    def local_direct(qb, zpb, accepted):  # every candidate accepted earlier in this batch
        return _too_close_direct(zp, accepted, zpb, thr2)

    false = lambda *_: jnp.zeros((), bool)  # noqa: E731

    def body(carry, x):
        count, ncand, accepted = carry
        b, qb, zpb, mem, movb, tclose, tover, maybe = x
        active = (ncand < max_candidates) & (count < n_cap)
        open_ = active & mem & ~(tclose | ~movb)  # still undecided
        close = tclose | ~movb
        close = close | jax.lax.cond(open_ & tover, tree_direct, false, qb, zpb, accepted)
        close = close | jax.lax.cond(open_ & ~close & jnp.any(maybe & accepted), local_direct, false,
                                     qb, zpb, accepted)
        accept = active & mem & ~close
        accepted = accepted.at[b].set(accept)
        carry = (count + accept.astype(jnp.int32), ncand + active.astype(jnp.int32), accepted)
        return carry, (accept, active & ~mem, active & mem & close)

    def sequential_pass():
        xs = (cols, q, zp, member, moved, tree_close, tree_over, local_maybe)
        (count, ncand, _), out = jax.lax.scan(body, (count0, ncand0, jnp.zeros((batch,), bool)), xs)
        return (count, ncand) + out

    def vectorized_pass():
        # Every decision is already taken (no fallback, no possible conflict within the batch):
        # the scan reduces to a prefix of active candidates, computed with a cumulative sum.
        ok = member & ~close_now
        before = jnp.cumsum(ok) - ok  # accepted among the earlier candidates
        active = (ncand0 + cols < max_candidates) & (count0 + before < n_cap)
        acc = active & ok
        return (count0 + jnp.sum(acc, dtype=jnp.int32), ncand0 + jnp.sum(active, dtype=jnp.int32),
                acc, active & ~member, active & member & close_now)

    # The scan costs ~0.5 ms at B = 256 on 2 CPU cores (a quarter of a layer-1 forward pass), so
    # it runs only when some candidate's delta test depends on the batch's earlier decisions.
    close_now = tree_close | ~moved
    undecided = member & ~close_now
    depends = jnp.any(undecided & tree_over) | jnp.any(local_maybe & undecided[:, None] & undecided[None, :])
    count, ncand, acc, rej, close = jax.lax.cond(depends, sequential_pass, vectorized_pass)

    # Write the batch's accepted and rejected candidates in order, as the sequential loop would.
    pos = jnp.where(acc, count0 + jnp.cumsum(acc) - 1, n_cap)
    rpos = state.n_rejected + jnp.cumsum(rej) - 1
    rpos = jnp.where(rej & (rpos < r_cap), rpos, r_cap)
    n_acc, n_rej, n_close = (jnp.sum(x, dtype=jnp.int32) for x in (acc, rej, close))
    new = GBRRTState(
        nodes=state.nodes.at[pos].set(zp, mode="drop"),
        parents=state.parents.at[pos].set(q, mode="drop"),
        count=count,
        rejected=state.rejected.at[rpos].set(zp, mode="drop"),
        n_rejected=state.n_rejected + n_rej,
        n_close=state.n_close + n_close,
        n_candidates=ncand,
        v_star=state.v_star)
    return new, GBRRTInfo(accepted=n_acc, rejected=n_rej, close=n_close)


def build(nets: GBRRTNets, options: GBRRTOptions, layer) -> Kernel:
    """GB-RRT's kernel (Jeon et al. 2020, Algorithm 2, B = `options.batch` candidates a step).

    `init(z0, v_star) -> GBRRTState` is the tree {z0} (z0 of the generator's input shape, v_star
    (D_l,) or the layer's shape); `step(key, state) -> (GBRRTState, GBRRTInfo)` draws candidates
    0..B-1 of `key` (`draw_candidates`) and takes the batch's candidates n_candidates ..
    n_candidates + B - 1. Candidates past `max_candidates`, or after the tree is full, are drawn
    but not used (and not counted), so a run uses exactly the candidates Algorithm 2 would.
    The state carries the query (node 0) and V*, so one kernel serves many queries
    (`jax.vmap(kernel.init)`, `jax.vmap(kernel.step)`). No checks here: `gbrrt` checks.

    Args:
      nets: `GBRRTNets(generator, params)`.
      options: `GBRRTOptions` (delta required; `rejected_capacity` None resolves as in `gbrrt`).
      layer: the layer l (name or number).
    """
    model = nets.generator
    params = model.params if nets.params is None else nets.params
    layer = model.layer(layer)
    d = math.prod(model.input_shape)
    capacity = int(options.capacity)
    max_candidates = int(options.max_candidates) if _concrete(options.max_candidates) else options.max_candidates
    rejected = (int(options.rejected_capacity) if options.rejected_capacity is not None
                else min(max(max_candidates, 1), REJECTED_CAPACITY) if isinstance(max_candidates, int)
                else REJECTED_CAPACITY)
    # Arrays, not Python numbers: the driver passes arrays a kernel closes over to its compiled
    # loop as arguments, so another delta, interval or budget reuses the program.
    settings = dict(delta=jnp.asarray(options.delta, jnp.float32),
                    interval=jnp.broadcast_to(jnp.asarray(options.interval, jnp.float32).reshape(-1), (d,)),
                    max_candidates=jnp.asarray(max_candidates, jnp.int32), batch=int(options.batch),
                    top_k=min(int(options.top_k), capacity))

    def init_fn(z0, v_star):
        return init(z0, v_star, capacity=capacity, rejected_capacity=rejected)

    def step_fn(key, state):
        return _step(key, state, model=model, params=params, layer=layer, **settings)

    return Kernel(init=init_fn, step=step_fn)


def _concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def done(state: GBRRTState, max_candidates):
    """Whether the tree stopped: full, or `max_candidates` candidates used (elementwise over trees)."""
    return (state.count >= state.nodes.shape[-2]) | (state.n_candidates >= max_candidates)


def result(state: GBRRTState, input_shape, max_candidates) -> GBRRTResult:
    """The `GBRRTResult` of a final state (or of a batch of them, trees on the leading axes)."""
    n_cap = state.nodes.shape[-2]
    reason = jnp.where(state.count >= n_cap, CAPACITY_FULL,
                       jnp.where(state.n_candidates >= max_candidates, CANDIDATE_BUDGET, RUNNING))
    shape = tuple(input_shape)
    return GBRRTResult(
        nodes=state.nodes.reshape(state.nodes.shape[:-1] + shape), parents=state.parents, count=state.count,
        rejected=state.rejected.reshape(state.rejected.shape[:-1] + shape), n_rejected=state.n_rejected,
        n_close=state.n_close, n_candidates=state.n_candidates, stop_reason=reason.astype(jnp.int32))


# ------------------------------------------------------------------ runs through the driver


def steps_bound(max_candidates, batch: int) -> int:
    """The run's step count for the driver: ceil(max_candidates / B) rounded up to a power of two
    (`until` stops the run at the budget, so budgets within one power of two share one compiled
    loop); for a traced budget, enough steps for any int32 budget."""
    if not _concrete(max_candidates):
        return -(-(2 ** 31 - 1) // batch)
    need = max(1, -(-int(max_candidates) // batch))
    return 1 << (need - 1).bit_length()


class _Candidates:
    """The driver's progress(steps done, steps) as progress(candidates drawn, max_candidates) for one
    caller's hook: the same object for the same hook, so the compiled loop (which calls the object
    it was traced with) is reused. Steps before the last one drew whole batches, so the count it
    reports is never above the candidates drawn."""

    def __init__(self, target):
        self.target, self.batch, self.budget = target, 1, 0

    def __call__(self, steps, _total) -> None:
        self.target(min(max(int(steps) - 1, 0) * self.batch, self.budget), self.budget)


_ADAPTERS: dict = {}


def _progress(progress, batch: int, budget: int):
    if progress is None:
        return None
    adapter = _ADAPTERS.get(id(progress))
    if adapter is None or adapter.target is not progress:
        if len(_ADAPTERS) > 64:
            _ADAPTERS.clear()
        adapter = _ADAPTERS[id(progress)] = _Candidates(progress)
    adapter.batch, adapter.budget = batch, budget
    return adapter


def gbrrt_run(key, model, params, z0, layer, v_star, options: GBRRTOptions | None = None, *, progress=None,
              **settings) -> GBRRTResult:
    """The batched GB-RRT without checks: a pure function (jit-able, vmap-able over queries).

    `build` + `init` + `jaxprobe.driver.run` until the tree holds `capacity` nodes or
    `max_candidates` candidates were used; step t's key is `fold_in(key, t)`. `settings` are
    `GBRRTOptions` fields replacing those of `options`; `capacity`, `batch`, `rejected_capacity`
    and `top_k` must be Python ints (static), delta, interval and max_candidates may be traced.
    `progress`: as in `gbrrt`. See `gbrrt` for the arguments.
    """
    options = with_settings(GBRRTOptions, options, settings)
    kernel = build(GBRRTNets(model, params), options, layer)
    mc = options.max_candidates
    budget = jnp.asarray(mc, jnp.int32)  # an argument of the compiled loop, not a constant in it
    state = driver.call(kernel.init, jnp.asarray(z0, jnp.float32), jnp.asarray(v_star, jnp.float32))
    run = driver.run(kernel, key, state, steps_bound(mc, int(options.batch)), trace=None,
                     until=lambda s: done(s, budget), progress=_progress(progress, int(options.batch), mc))
    return result(run.state, model.input_shape, budget)


def _final_tick(progress, tree: GBRRTResult, budget: int) -> None:
    """The bar's last tick: the candidates drawn out of the budget, or, when the tree filled first,
    out of what was drawn (the bar ends full, at its real total). None when nothing was drawn (a
    tree full at once, a budget of 0): no work, no bar."""
    if progress is None:
        return
    jax.effects_barrier()  # the loop's ticks first
    drawn = int(np.max(np.asarray(tree.n_candidates)))
    full = bool(np.all(np.asarray(tree.stop_reason) == CAPACITY_FULL))
    if drawn:
        progress(drawn, drawn if full else budget)


def gbrrt(key, model, params, z0, layer, v_star, options: GBRRTOptions | None = None, *, progress=None,
          **settings) -> GBRRTResult:
    """Batched GB-RRT (Jeon et al. 2020, Algorithm 2, B candidates per step), checked, one compiled loop.

    Args:
      key: PRNG key; step t draws its B candidates from `fold_in(key, t)` (with B = 1, the
        sequential algorithm's candidate t).
      model, params: the generator and its parameters.
      z0: the query, shape `model.input_shape`; it must lie in the region of v_star.
      layer: the layer l (name or number).
      v_star: the halfspace indicator V*, (D_l,) or the layer's shape (e.g. `BerOptResult.v_star`).
      options: `GBRRTOptions` (None: its defaults; `delta` has none and must be given).
      progress: None, or progress(candidates drawn, max_candidates) called on the host about 20
        times a run; last with the final count, out of itself when the tree filled first.
      **settings: `GBRRTOptions` fields (delta, interval, capacity, max_candidates, batch,
        rejected_capacity, top_k) replacing those of `options`.

    Returns:
      `GBRRTResult`; a region too small for any step returns the query alone with stop reason
      CANDIDATE_BUDGET (never an exception).
    """
    options = with_settings(GBRRTOptions, options, settings)
    a: GBRRTArguments = check_arguments(model, params, z0, layer, v_star, options)
    o = a.options  # delta and interval as arrays: another step size reuses the compiled program
    o = o._replace(delta=jnp.asarray(o.delta, jnp.float32), interval=jnp.asarray(o.interval, jnp.float32))
    tree = driver.compiled(gbrrt_run, key, model, params, a.z0, a.layer, a.v_star, o, progress=progress)
    _final_tick(progress, tree, a.options.max_candidates)
    return tree


def gbrrt_queries(key, model, params, z0s, layer, v_stars, options: GBRRTOptions | None = None, *, mesh=None,
                  progress=None, **settings) -> GBRRTResult:
    """Batched GB-RRT for Q queries at once, one tree each, in one program (`jaxprobe.driver.run` with
    `vmap=True`: the kernel's state carries each tree's query and indicator).

    Tree i is `gbrrt(jax.random.fold_in(key, i), model, params, z0s[i], layer, v_stars[i], ...)`
    with the same settings, node for node. The trees grow in lockstep: the loop runs until every
    tree stopped, finished trees taking no more candidates.

    Args:
      key: PRNG key; tree i's steps draw from `fold_in(fold_in(key, i), t)`.
      model, params: the generator and its parameters.
      z0s: (Q, *model.input_shape) the queries, each in its own region.
      layer: the layer l (name or number 1..L) whose regions the trees explore.
      v_stars: (Q, D_l) or (Q, *layer shape) the halfspace indicators V*, one per query.
      options, **settings: as in `gbrrt`; delta at least `min_delta` of every query.
      mesh: None, or a `jax.sharding.Mesh` with a "batch" axis (`jaxprobe.batch_mesh()`): the
        trees are split over its devices, Q a multiple of their number, the parameters
        replicated. A mesh may span processes (`jax.distributed`): every process then makes the
        same call and gets every tree back.
      progress: as in `gbrrt`, over the slowest tree's candidates.

    Returns:
      `GBRRTResult` with the Q trees on the leading axis of every field. Tree i alone, with its
      trimming methods: `jax.tree.map(lambda a: a[i], result)`.
    """
    options = with_settings(GBRRTOptions, options, settings)
    a = check_queries(model, params, z0s, layer, v_stars, options)
    check_mesh(mesh, a.z0.shape[0], "z0s", "the queries")
    opts = a.options
    kernel = build(GBRRTNets(model, params), opts, a.layer)
    states = driver.call(jax.vmap(kernel.init), a.z0, a.v_star)
    budget = jnp.asarray(opts.max_candidates, jnp.int32)
    run = driver.run(kernel, key, states, steps_bound(opts.max_candidates, opts.batch), trace=None, vmap=True,
                     mesh=mesh, until=lambda s: jnp.all(done(s, budget)),
                     progress=_progress(progress, opts.batch, opts.max_candidates))
    tree = result(run.state, model.input_shape, opts.max_candidates)
    _final_tick(progress, tree, opts.max_candidates)
    return tree


# ------------------------------------------------------------------ the step-by-step pair of release 0.1


GBRRT = Kernel  # `gbrrt_kernel`'s pair: the driver's `Kernel`


def gbrrt_kernel(model, params, z0, layer, v_star, options: GBRRTOptions | None = None, **settings) -> Kernel:
    """A step-by-step pair for one query, on the run's key: `state = init()`, `state = step(key, state)`.

    `step` passes step t = n_candidates // batch the key `fold_in(key, t)` and keeps only the state,
    so calling it with the same `key` until the tree stops grows the tree `gbrrt(key, ...)` grows.
    (The protocol's kernel, whose step takes the step's own key and returns (state, info), is
    `build`.) `settings`: `GBRRTOptions` fields, unchecked.
    """
    options = with_settings(GBRRTOptions, options, settings)
    kernel = build(GBRRTNets(model, params), options, layer)
    batch = int(options.batch)

    def step(key, state):
        return kernel.step(jax.random.fold_in(key, state.n_candidates // batch), state)[0]

    return Kernel(init=lambda: kernel.init(jnp.asarray(z0, jnp.float32), jnp.asarray(v_star, jnp.float32)),
                  step=step)


__all__ = ["CANDIDATE_BUDGET", "CAPACITY_FULL", "GBRRT", "GBRRTInfo", "GBRRTNets", "GBRRTOptions", "GBRRTResult",
           "GBRRTState", "REJECTED_CAPACITY", "REL_TOL", "RUNNING", "STOP_REASONS", "build", "check_arguments",
           "check_delta", "check_interval", "draw_candidates", "gbrrt", "gbrrt_kernel", "gbrrt_queries", "gbrrt_run",
           "init", "min_delta", "nearest_nodes", "result", "steer", "stop_reason_name", "tree_knn"]
