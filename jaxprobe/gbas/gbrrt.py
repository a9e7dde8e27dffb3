"""GB-RRT: exploring a generative region with a rapidly-exploring random tree (Jeon et al. 2020, Alg. 2).

The tree starts at the query, Q = {z0}. Each candidate draws z ~ U(z0 - I, z0 + I) per
dimension, finds its nearest node q, steps to z' = q + delta (z - q) / ||z - q||, and joins the tree
(with parent q) if z' lies in the region GR_V* and no node other than q is closer to z' than
delta * (1 - 1e-4) (docs/methods/egbas.md, "Choices the paper leaves open": the paper's printed
test "||z' - nearest(Q, z')|| > delta" can never hold, since z' is exactly delta from q).
Candidates that fail membership form the rejected set (used by the eps-ball baselines);
candidates turned away only for closeness lie inside the region and are merely counted.

Two implementations share the random draws, so that they agree node for node:

* `gbrrt_sequential`: the reference, one candidate per iteration, exactly as the algorithm reads
  (the delta test over every node by direct differences). The oracle of the tests and the
  baseline of the benchmark.
* `gbrrt`: jaxprobe's batched kernel, an `init`/`step` pair over `GBRRTState` driven by
  `lax.while_loop`. Each step takes B candidates: their nearest nodes by one squared-distance
  matrix against the fixed-capacity tree buffer, their membership in one batched forward pass,
  and then a sequential pass in `lax.scan` so that candidates keep delta from the tree and from
  the candidates accepted earlier in the same batch (when no candidate's test depends on an
  earlier one's outcome, a cumulative sum gives the same result without the scan). With B = 1 it
  is the sequential algorithm.

Random draws: candidate j (0-based, counted over the whole run) is drawn from
`fold_in(key, j)`, so every implementation and every batch size sees the same candidates in the
same order. The same key is therefore passed to every `step`.

The delta test is exact (docs/methods/egbas.md, "distances in the delta test"): every decision that matters is taken on
direct differences, never on the expansion ||a||^2 + ||b||^2 - 2ab. The batched kernel uses the
expansion (in coordinates centred on z0) only to find each candidate's `top_k` nearest nodes,
tests z' against those directly, and rules out all other nodes with the triangle inequality and a
rigorous float32 bound on the expansion's error; where the bound cannot rule them out, it falls
back to direct differences against every node. The same holds within a batch (candidate against
candidate). The outcome equals the direct test on every node.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxprobe.gbas.boundaries import check_indicator, check_query, region_margin, region_membership
from jaxprobe.checks import check_count, check_number
from jaxprobe.errors import JaxprobeError
from jaxprobe.sharding import check_mesh, gather, on_mesh

RUNNING, CAPACITY_FULL, ITERATIONS_DONE = 0, 1, 2
STOP_REASONS = ("running", "capacity full", "iterations done")
REL_TOL = 1e-4  # nodes keep delta * (1 - REL_TOL) from each other (docs/methods/egbas.md)
_EPS32 = float(np.finfo(np.float32).eps)
# The rejected buffer's default rows: at most this many (8 MiB at d = 512), however many candidates.
REJECTED_CAPACITY = 4096
PROGRESS_TICKS = 20  # progress calls per run (about; plus one at the end)


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
    return math.sqrt(z0.size) * _EPS32 * scale / REL_TOL


def check_delta(name: str, delta, z0, interval) -> float:
    """Refuse a step size that is not positive or below `min_delta(z0, interval)`; returns it.

    `name` is the argument named in the error ("delta" in the library, "--delta" on the command
    line). Run before any compilation, so that a bad step fails at once.
    """
    delta = check_number(name, delta, low=0, low_open=True, what="a positive step size")
    floor = min_delta(z0, interval)
    if delta < floor:
        raise JaxprobeError(f"{name}: expected a step size float32 resolves at the query's scale, >= {floor:.3g} "
                            f"(sqrt(d) eps32 max(|z0| + I) / {REL_TOL:g}), got {delta:g}")
    return delta


def stop_reason_name(code) -> str:
    """The stop reason's name: 0 running, 1 "capacity full", 2 "iterations done"."""
    code = int(code)
    if not 0 <= code < len(STOP_REASONS):
        raise JaxprobeError(f"stop_reason: expected 0, 1 or 2, got {code}")
    return STOP_REASONS[code]


class GBRRTState(NamedTuple):
    """The tree while it grows; every buffer has a fixed capacity, rows past the count are unused.

    Attributes:
      nodes: (N, d) accepted latent vectors, flattened; node 0 is the query.
      parents: (N,) int32, the index of each node's parent (-1 for the query and unused rows).
      count: () int32, number of nodes (1 <= count <= N).
      rejected: (R, d) candidates z' that failed membership, in the order they were drawn.
      n_rejected: () int32, all candidates that failed membership (only the first R are stored).
      n_close: () int32, candidates inside the region turned away for closeness (not stored).
      n_candidates: () int32, candidates drawn so far; candidate j used `fold_in(key, j)`.
    """

    nodes: jax.Array
    parents: jax.Array
    count: jax.Array
    rejected: jax.Array
    n_rejected: jax.Array
    n_close: jax.Array
    n_candidates: jax.Array


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
      stop_reason: () int32, CAPACITY_FULL (1) or ITERATIONS_DONE (2); see `stop_reason_name`.
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
        """Why the tree stopped: "capacity full" or "iterations done" (`stop_reason_name`)."""
        return stop_reason_name(self.stop_reason)


class GBRRT(NamedTuple):
    """An `init()` / `step(key, state)` pair with every setting fixed (see `gbrrt_kernel`)."""

    init: Callable
    step: Callable


# ------------------------------------------------------------------ pieces shared by both versions


def _threshold2(delta):
    return (jnp.asarray(delta, jnp.float32) * (1.0 - REL_TOL)) ** 2


def draw_candidates(key, first, n: int, z0f, interval):
    """Candidates first..first+n-1: z_j = z0 + I * U(-1, 1)^d from `fold_in(key, j)`. (n, d)."""
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
    shape changes, never its validity. Both implementations use this matrix, so they agree.
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
    return 2.0 * _EPS32 * (d + 4) * (2.0 * scale + thr2)


def _flat(z0):
    return jnp.asarray(z0, jnp.float32).reshape(-1)


# ------------------------------------------------------------------ the batched kernel


def init(z0, *, capacity: int, rejected_capacity: int) -> GBRRTState:
    """The tree {z0}: buffers of `capacity` nodes and `rejected_capacity` rejected candidates."""
    z0f = _flat(z0)
    d = z0f.shape[0]
    zero = jnp.zeros((), jnp.int32)
    return GBRRTState(
        nodes=jnp.zeros((capacity, d), jnp.float32).at[0].set(z0f),
        parents=jnp.full((capacity,), -1, jnp.int32),
        count=jnp.ones((), jnp.int32),
        rejected=jnp.zeros((rejected_capacity, d), jnp.float32),
        n_rejected=zero, n_close=zero, n_candidates=zero)


def step(key, state: GBRRTState, *, model, params, z0, layer, v_star, delta, interval, batch: int,
         max_candidates, top_k: int = 4) -> GBRRTState:
    """One batched GB-RRT step: candidates n_candidates .. n_candidates + batch - 1.

    Candidates past `max_candidates`, or after the tree is full, are drawn but not used (and not
    counted), so that the run consumes exactly the candidates the sequential reference would.

    Args:
      key: the run's key (the same at every step; candidate j uses `fold_in(key, j)`).
      state: the tree.
      model, params: the generator; `layer` (an int, static) and `v_star` ((D_l,)) the region.
      z0: the query (its shape is the model's input shape).
      delta: step size; interval: half-width I of the sampling box, scalar or (d,).
      batch: B, candidates per step (static).
      max_candidates: the run's budget of candidates.
      top_k: nearest nodes tested directly per candidate before the bound or the fallback (static).
    """
    n_cap, d = state.nodes.shape
    r_cap = state.rejected.shape[0]
    z0f = _flat(z0)
    thr2 = _threshold2(delta)
    count0, ncand0 = state.count, state.n_candidates

    z = draw_candidates(key, ncand0, batch, z0f, interval)
    idx, d2k, scale = tree_knn(z, state.nodes, count0, z0f, min(top_k, n_cap))
    q = idx[:, 0]
    zp, moved = steer(z, state.nodes[q], delta)
    member = region_membership(model, params, zp.reshape((batch,) + tuple(model.input_shape)), layer, v_star)

    # The delta test against the tree. The k - 1 other nodes nearest to z are tested directly.
    # Every node n outside them is at least as far from z as the k-th, and
    # ||z' - n|| >= ||z - n|| - ||z - z'||: if that bound clears the threshold for the k-th (with
    # `_rounding_bound`), no node outside can be close; otherwise
    # (`tree_over`, rare) the scan tests every node directly. When z is at least delta from q,
    # the ball of radius delta around z' lies inside the empty ball ||y - z|| < ||z - q||, so the
    # bound nearly always clears.
    diff = zp[:, None, :] - state.nodes[idx[:, 1:]]
    tree_close = jnp.any(jnp.isfinite(d2k[:, 1:]) & (jnp.sum(diff * diff, axis=-1) < thr2), axis=1)
    rel = 2.0 * (d + 4) * 0.5 * _EPS32  # relative error of a direct float32 distance, doubled
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
    return GBRRTState(
        nodes=state.nodes.at[pos].set(zp, mode="drop"),
        parents=state.parents.at[pos].set(q, mode="drop"),
        count=count,
        rejected=state.rejected.at[rpos].set(zp, mode="drop"),
        n_rejected=state.n_rejected + jnp.sum(rej, dtype=jnp.int32),
        n_close=state.n_close + jnp.sum(close, dtype=jnp.int32),
        n_candidates=ncand)


def gbrrt_kernel(model, params, z0, layer, v_star, *, delta, interval, capacity: int, max_candidates,
                 batch: int, rejected_capacity: int, top_k: int = 4) -> GBRRT:
    """`GBRRT(init, step)` with every setting fixed: `state = init()`, `state = step(key, state)`."""
    layer = model.layer(layer)
    z0f = _flat(z0)
    interval = jnp.broadcast_to(jnp.asarray(interval, jnp.float32), z0f.shape)
    return GBRRT(
        init=lambda: init(z0, capacity=capacity, rejected_capacity=rejected_capacity),
        step=lambda key, state: step(key, state, model=model, params=params, z0=z0, layer=layer,
                                     v_star=v_star, delta=delta, interval=interval, batch=batch,
                                     max_candidates=max_candidates, top_k=top_k))


def _finish(state: GBRRTState, input_shape, max_candidates) -> GBRRTResult:
    n_cap, r_cap = state.nodes.shape[0], state.rejected.shape[0]
    reason = jnp.where(state.count >= n_cap, CAPACITY_FULL,
                       jnp.where(state.n_candidates >= max_candidates, ITERATIONS_DONE, RUNNING))
    return GBRRTResult(
        nodes=state.nodes.reshape((n_cap,) + tuple(input_shape)), parents=state.parents, count=state.count,
        rejected=state.rejected.reshape((r_cap,) + tuple(input_shape)), n_rejected=state.n_rejected,
        n_close=state.n_close, n_candidates=state.n_candidates, stop_reason=reason.astype(jnp.int32))


def _running(max_candidates):
    return lambda s: (s.count < s.nodes.shape[0]) & (s.n_candidates < max_candidates)


def _with_progress(step, max_candidates, progress):
    """`step` followed, about PROGRESS_TICKS times a run, by `progress(candidates drawn)` (host
    side, `jax.debug.callback`): a tick when the count crosses a multiple of max_candidates / 20."""
    every = jnp.maximum(max_candidates // PROGRESS_TICKS, 1)

    def ticking(s: GBRRTState) -> GBRRTState:
        new = step(s)
        tick = (new.n_candidates // every != s.n_candidates // every) | ~_running(max_candidates)(new)
        jax.lax.cond(tick, lambda n: jax.debug.callback(progress, n), lambda n: None, new.n_candidates)
        return new
    return ticking


def gbrrt_run(key, model, params, z0, layer, v_star, *, delta, interval, capacity: int, max_candidates,
              batch: int, rejected_capacity: int, top_k: int = 4, progress=None) -> GBRRTResult:
    """The batched GB-RRT as a pure function (no checks, no jit; vmap-able over queries).

    `lax.while_loop` over `step` until the tree holds `capacity` nodes or `max_candidates`
    candidates were drawn. `model`, `layer`, `capacity`, `batch`, `rejected_capacity`, `top_k`
    and `progress` must be static under jit; see `gbrrt` for the arguments.
    """
    kernel = gbrrt_kernel(model, params, z0, layer, v_star, delta=delta, interval=interval,
                          capacity=capacity, max_candidates=max_candidates, batch=batch,
                          rejected_capacity=rejected_capacity, top_k=top_k)
    body = lambda s: kernel.step(key, s)  # noqa: E731
    if progress is not None:  # None compiles no callback: library calls pay nothing
        body = _with_progress(body, max_candidates, progress)
    state = jax.lax.while_loop(_running(max_candidates), body, kernel.init())
    return _finish(state, model.input_shape, max_candidates)


# ------------------------------------------------------------------ the sequential reference


def gbrrt_sequential_run(key, model, params, z0, layer, v_star, *, delta, interval, capacity: int,
                         max_candidates, rejected_capacity: int) -> GBRRTResult:
    """Algorithm 2 one candidate per iteration (pure; see `gbrrt_sequential`)."""
    layer = model.layer(layer)
    z0f = _flat(z0)
    interval = jnp.broadcast_to(jnp.asarray(interval, jnp.float32), z0f.shape)
    thr2 = _threshold2(delta)
    rows = jnp.arange(capacity)

    def body(s: GBRRTState) -> GBRRTState:
        z = draw_candidates(key, s.n_candidates, 1, z0f, interval)             # line 3
        q = nearest_nodes(z, s.nodes, s.count, z0f)                           # line 4
        zp, moved = steer(z, s.nodes[q], delta)                               # line 5
        member = region_membership(model, params, zp.reshape((1,) + tuple(model.input_shape)),
                                   layer, v_star)[0]                          # line 6, first half
        close = _too_close_direct(s.nodes, (rows < s.count) & (rows != q[0]), zp[0], thr2) | ~moved[0]
        accept, reject = member & ~close, ~member                             # line 7
        i = jnp.minimum(s.count, capacity - 1)
        r = jnp.minimum(s.n_rejected, rejected_capacity - 1)
        store = reject & (s.n_rejected < rejected_capacity)
        return GBRRTState(
            nodes=s.nodes.at[i].set(jnp.where(accept, zp[0], s.nodes[i])),
            parents=s.parents.at[i].set(jnp.where(accept, q[0], s.parents[i])),
            count=s.count + accept.astype(jnp.int32),
            rejected=s.rejected.at[r].set(jnp.where(store, zp[0], s.rejected[r])),
            n_rejected=s.n_rejected + reject.astype(jnp.int32),
            n_close=s.n_close + (member & close).astype(jnp.int32),
            n_candidates=s.n_candidates + 1)

    state = jax.lax.while_loop(_running(max_candidates), body,
                               init(z0, capacity=capacity, rejected_capacity=rejected_capacity))
    return _finish(state, model.input_shape, max_candidates)


# ------------------------------------------------------------------ checked, jitted drivers


_margin_jit = jax.jit(region_margin, static_argnums=(0, 3))
_STATIC = ("model", "layer", "capacity", "batch", "rejected_capacity", "top_k")
_gbrrt_jit = jax.jit(gbrrt_run, static_argnames=_STATIC + ("progress",))
_sequential_jit = jax.jit(gbrrt_sequential_run, static_argnames=_STATIC[:3] + ("rejected_capacity",))


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


def check_arguments(model, params, z0, layer, v_star, *, delta, interval, capacity, max_candidates,
                    batch=1, rejected_capacity=None):
    """Validate GB-RRT's arguments at the API boundary; returns them normalized.

    Raises `JaxprobeError` naming the argument for: a layer out of range, a query of the wrong
    shape or with NaN, an indicator of the wrong shape or values, a query outside its own region,
    parameters giving the query a NaN pre-activation, delta <= 0 or below `min_delta`, an
    interval <= 0 (or of the wrong shape), capacity < 1, max_candidates < 0, batch < 1,
    rejected_capacity < 1.
    """
    layer = model.layer(layer)
    z0 = check_query(model, z0)
    v = check_indicator(model, layer, v_star).astype(jnp.float32)
    iv = check_interval(model, interval)
    delta = check_delta("delta", delta, z0, iv)
    capacity = check_count("capacity", capacity, 1)
    max_candidates = check_count("max_candidates", max_candidates, 0)
    batch = check_count("batch", batch, 1)
    # Default: room for every candidate up to REJECTED_CAPACITY rows (a buffer needs one row).
    rejected_capacity = (min(max(max_candidates, 1), REJECTED_CAPACITY) if rejected_capacity is None
                         else check_count("rejected_capacity", rejected_capacity, 1))
    margin = float(_margin_jit(model, params, z0[None], layer, v)[0])
    if math.isnan(margin):
        raise JaxprobeError(f"params: expected parameters under which the query's pre-activation at layer "
                            f"{model.layer_names[layer - 1]!r} is finite, got NaN")
    if margin < 0:
        raise JaxprobeError(f"v_star: the query z0 is not in the region it defines (min V_i h_i(z0) = {margin:.3g} < 0)")
    return layer, z0, v, delta, jnp.asarray(iv, jnp.float32), capacity, max_candidates, batch, rejected_capacity


def gbrrt(key, model, params, z0, layer, v_star, *, delta: float, interval=1.0, capacity: int = 256,
          max_candidates: int = 4096, batch: int = 64, rejected_capacity: int | None = None,
          top_k: int = 4, progress=None) -> GBRRTResult:
    """Batched GB-RRT (Jeon et al. 2020, Algorithm 2, B candidates per step), jitted once per shape.

    Args:
      key: PRNG key; candidate j is drawn from `fold_in(key, j)` (the same draws as
        `gbrrt_sequential` with this key, whatever `batch`).
      model, params: the generator.
      z0: the query, shape `model.input_shape`; it must lie in the region of v_star.
      layer: the layer l (name or number).
      v_star: the halfspace indicator V*, (D_l,) or the layer's shape (e.g. `BerOptResult.v_star`).
      delta: the step size, at least `min_delta(z0, interval)` (what float32 resolves at the
        query's scale); nodes end up pairwise >= delta * (1 - 1e-4) apart.
      interval: I, the half-width of the sampling box U(z0 - I, z0 + I): a scalar or one per
        latent dimension, > 0. Default 1.0, one standard deviation of the N(0, I) latent prior.
      capacity: N, the tree's capacity (nodes wanted, the query included), >= 1.
      max_candidates: the paper's iteration count, the most candidates drawn, >= 0.
      batch: B, candidates per step, >= 1. Throughput grows with B while the forward pass
        dominates; candidates drawn after the tree fills are wasted, at most B - 1.
      rejected_capacity: R, rejected candidates stored, the first R in draw order (default:
        min(max_candidates, REJECTED_CAPACITY = 4096), so the buffer stays small however many
        candidates; `n_rejected` counts them all, and eps from a truncated set says so in E-GBAS).
      top_k: k, per candidate the nodes (and earlier candidates of the batch) nearest by the
        expansion that are tested by direct differences; the rest are ruled out by a bound or,
        rarely, by the direct fallback. The result does not depend on k, only the speed: 4 was
        the fastest of 2, 4, 8, 16 (step at B = 256: top_k's cost grows with k on XLA's CPU).
      progress: None (no callback compiled in) or a function called outside the program
        (`jax.debug.callback`) with the number of candidates drawn, about `PROGRESS_TICKS` times
        a run and once at the end, e.g. to move a progress bar.

    Returns:
      `GBRRTResult`; a region too small for any step returns the query alone with stop reason
      ITERATIONS_DONE (never an exception).
    """
    layer, z0, v, delta, interval, capacity, max_candidates, batch, rejected_capacity = check_arguments(
        model, params, z0, layer, v_star, delta=delta, interval=interval, capacity=capacity,
        max_candidates=max_candidates, batch=batch, rejected_capacity=rejected_capacity)
    top_k = check_count("top_k", top_k, 1)
    return _gbrrt_jit(key, model, params, z0, layer, v, delta=delta, interval=interval, capacity=capacity,
                      max_candidates=jnp.int32(max_candidates), batch=batch,
                      rejected_capacity=rejected_capacity, top_k=top_k, progress=progress)


def _queries_run(keys, model, params, z0s, layer, v_stars, *, delta, interval, capacity: int, max_candidates,
                 batch: int, rejected_capacity: int, top_k: int) -> GBRRTResult:
    """`gbrrt_run` vmapped over (keys, z0s, v_stars); parameters and settings shared."""
    return jax.vmap(lambda k, z, v: gbrrt_run(k, model, params, z, layer, v, delta=delta, interval=interval,
                                              capacity=capacity, max_candidates=max_candidates, batch=batch,
                                              rejected_capacity=rejected_capacity, top_k=top_k))(keys, z0s, v_stars)


_queries_jit = jax.jit(_queries_run, static_argnames=_STATIC)


def gbrrt_queries(key, model, params, z0s, layer, v_stars, *, delta: float, interval=1.0, capacity: int = 256,
                  max_candidates: int = 4096, batch: int = 64, rejected_capacity: int | None = None,
                  top_k: int = 4, mesh=None) -> GBRRTResult:
    """Batched GB-RRT for Q queries at once, one tree each, in one program (`jax.vmap` of `gbrrt_run`).

    Tree i is `gbrrt(jax.random.split(key, Q)[i], model, params, z0s[i], layer, v_stars[i], ...)`
    with the same settings, node for node. The trees grow in lockstep: the program runs until the
    slowest tree stops, finished trees taking no more candidates.

    Args:
      key: PRNG key, split into one key per query.
      model: the generator (a probe-able `Model`), as in `gbrrt`.
      params: its parameters.
      layer: the layer l (name or number 1..L) whose regions the trees explore.
      delta: the step length, shared by every tree (at least `min_delta` of every query).
      interval: as in `gbrrt`.
      capacity: as in `gbrrt`.
      max_candidates: as in `gbrrt`.
      batch: as in `gbrrt`.
      rejected_capacity: as in `gbrrt`.
      top_k: as in `gbrrt`.
      z0s: (Q, *model.input_shape) the queries, each in its own region.
      v_stars: (Q, D_l) or (Q, *layer shape) the halfspace indicators V*, one per query.
      mesh: None, or a `jax.sharding.Mesh` with a "batch" axis (`jaxprobe.batch_mesh()`): the
        queries (with their keys and indicators) are split over its devices, Q a multiple of
        their number, and the parameters replicated. A mesh may span processes
        (`jax.distributed`): every process then makes the same call and gets every tree back
        (`jaxprobe.sharding.gather`).

    Returns:
      `GBRRTResult` with the Q trees on the leading axis of every field. Tree i alone, with its
      trimming methods: `jax.tree.map(lambda a: a[i], result)`.
    """
    shape, got = tuple(model.input_shape), tuple(np.shape(z0s))
    if len(got) != len(shape) + 1 or got[1:] != shape or got[0] < 1:
        raise JaxprobeError(f"z0s: expected queries of shape (Q, {', '.join(map(str, shape))}), Q >= 1, got {got}")
    q = got[0]
    l = model.layer(layer)
    v_shape = tuple(getattr(v_stars, "shape", np.shape(v_stars)))
    if not v_shape or v_shape[0] != q:
        raise JaxprobeError(f"v_stars: expected one halfspace indicator per query ({q}), got shape {v_shape}")
    # The shared settings first (their errors name no query), then query by query.
    check_interval(model, interval)
    for name, value, low in (("capacity", capacity, 1), ("max_candidates", max_candidates, 0), ("batch", batch, 1)):
        check_count(name, value, low)
    if rejected_capacity is not None:
        check_count("rejected_capacity", rejected_capacity, 1)
    checked = []
    for i in range(q):
        try:
            checked.append(check_arguments(model, params, z0s[i], l, v_stars[i], delta=delta, interval=interval,
                                           capacity=capacity, max_candidates=max_candidates, batch=batch,
                                           rejected_capacity=rejected_capacity))
        except JaxprobeError as e:
            raise JaxprobeError(f"query {i} (z0s[{i}], v_stars[{i}]): {e}") from None
    _, _, _, delta, interval, capacity, max_candidates, batch, rejected_capacity = checked[0]
    top_k = check_count("top_k", top_k, 1)
    check_mesh(mesh, q, "z0s", "the queries")
    z = jnp.stack([c[1] for c in checked])
    v = jnp.stack([c[2] for c in checked])
    keys = jax.random.split(key, q)
    (params, interval, max_candidates), (keys, z, v) = on_mesh(
        mesh, (params, interval, np.int32(max_candidates)), (keys, z, v))
    return gather(_queries_jit(keys, model, params, z, l, v, delta=delta, interval=interval, capacity=capacity,
                               max_candidates=max_candidates, batch=batch, rejected_capacity=rejected_capacity,
                               top_k=top_k))


def gbrrt_sequential(key, model, params, z0, layer, v_star, *, delta: float, interval=1.0,
                     capacity: int = 256, max_candidates: int = 4096,
                     rejected_capacity: int | None = None) -> GBRRTResult:
    """GB-RRT one candidate per iteration, as Algorithm 2 reads: the reference for `gbrrt`.

    Same arguments and result as `gbrrt` (without `batch`, `top_k`); jitted, `lax.while_loop`.
    The delta test runs over every node by direct differences at each iteration.
    """
    layer, z0, v, delta, interval, capacity, max_candidates, _, rejected_capacity = check_arguments(
        model, params, z0, layer, v_star, delta=delta, interval=interval, capacity=capacity,
        max_candidates=max_candidates, rejected_capacity=rejected_capacity)
    return _sequential_jit(key, model, params, z0, layer, v, delta=delta, interval=interval,
                           capacity=capacity, max_candidates=jnp.int32(max_candidates),
                           rejected_capacity=rejected_capacity)
