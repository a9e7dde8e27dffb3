"""Inverse set of a neuron: diverse generator samples with z1 <= f(G(c)) <= z2 (Hada & Carreira-Perpiñán 2019).

Target: n codes c whose images G(c) put every constrained neuron f_j (one neuron, or p of them for
an intersection, eq. 11-12, possibly in different layers) in its range [z1_j, z2_j].

1. **Seeds** (eq. 7-8): K codes minimizing -D(C) subject to the range constraints, by the
   augmented Lagrangian of `jaxprobe.inverse_sets.auglag` (slacks eliminated in closed form), stopping as soon
   as every seed is feasible. D is the diversity:
     - "embedding" (eq. 5): D = sum_ij ||E(G(c_i)) - E(G(c_j))||^2,
     - "code" (eq. 13):     D = sum_ij ||c_i - c_j||^2,
     - "none" (eq. 14):     D = 0,
   each sum over ordered pairs computed in O(K) as 2K sum_i ||e_i||^2 - 2 ||sum_i e_i||^2.
2. **Sampling** (eq. 9-10): lambda*, mu* fixed at their final seed values; from C = seeds, each step
   takes one gradient step on
     L_sample(C) = -D(C) - sum_i sum_{y in C0} ||e_i - a_y||^2 + sum of the constraint terms,
   giving C'; the rows of C' inside every range are accepted and replace C0 (the paper's step 4:
   C0 is the rows accepted at the latest step; `repel="all"` makes it the union of every accepted
   row instead); C <- C' (all rows). C0 is kept as sums (count, sum of features, sum of squared
   norms), so the cross term costs O(K) too. Each code is accepted once: a row is judged again
   only after its gradient step changed it, so a row at rest in the range (eq. 14, whose gradient
   vanishes there) is not copied into the samples at every step. The loop (lax.while_loop over
   fixed-capacity buffers of n plus a count) ends when n are accepted, the step budget is spent,
   or the sampler is at a fixed point (a step that moved no row and accepted nothing: nothing new
   can ever be accepted; stop reason "stalled").

Constraints (our choice of form). By default both sides, with a margin m (default (z2 - z1)/4) so seeds
start in the middle half: f >= z1 + m and f <= z2 - m. `one_sided=True` is the paper's form,
f >= z2 - eps0 with eps0 = (z2 - z1)/2. Acceptance has no margin: a code is kept iff
z1 <= f_j(G(c)) <= z2 for every constrained neuron j, evaluated on the same values stored in the
result. The seeds count towards n when they pass that test.

Scale (our choice; `normalize=False` restores the paper's raw form). The paper's raw sums and
raw activation units make mu0 = 10 mean different things for every network, range and embedding
(a tiny random net's logits span 0.01, CaffeNet's fc8 tens). By default constraints are measured
in units of their range's width, (f - (z1 + m)) / (z2 - z1), and the diversity terms are means
in units of S = the mean squared norm of the initial codes' features: D / (K^2 S) and
sum_i sum_y ||e_i - a_y||^2 / (K |A| S). This only rescales the objective and mu, and it weighs the
distance to the accepted set like the spread among the K whatever |A| has grown to (the raw sum
grows with |A| and would push every code out of the range late in a run). lambda* and mu* in the
result are in these units.

Step length beta (our choice; the paper gives none). With mu* at 1e4-1e5 the raw gradient of a
row that leaves the region is 4-5 orders of magnitude larger than one inside, so no fixed beta
suits both. Each row's gradient is therefore normalized: c_i <- c_i - beta * rho * grad_i/||grad_i||,
rho = the mean norm of the seed codes. Every code moves by beta * rho per step whatever mu* is
(default beta = 0.05: 5% of a typical code's length), in the direction that separates it from the
others and from the accepted set, or back towards the range when it has left it; lambda* and mu*
then only set the balance between the two.

Neurons are read through `jaxprobe.models.neurons` (after the nonlinearity by default); the generator's
images reach the classifier and E through `jaxprobe.models.pixels.adapt_images` (pixel convention, then
a centre crop to the model's input side: DeePSim's 256 x 256 into CaffeNet's 227 x 227).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax import lax

from jaxprobe.inverse_sets import auglag
from jaxprobe.models.convs import canonical_convs
from jaxprobe.checks import check_count, check_finite, check_number
from jaxprobe.errors import JaxprobeError
from jaxprobe.models.neurons import flat_index, neuron_name, resolve_neurons, values_at
from jaxprobe.models.pixels import adapt_images
from jaxprobe.sharding import check_mesh, constrain_batch, gather, on_mesh
from jaxprobe.models.probe import Model

DIVERSITY = ("embedding", "code", "none")
STOP_REASONS = ("complete", "stalled", "sampling_budget", "unreachable", "seeds_out_of_range")
# The set C0 the sampler repels from: the rows accepted at the latest step (the paper's step 4),
# or every row accepted so far.
REPEL = ("new", "all")
PROGRESS_TICKS = 20  # progress calls over the sampling phase (about; plus one per outer iteration of the seeds)


class Embedding(NamedTuple):
    """The diversity embedding E: `model`'s value at `layer`, flattened per image.

    Attributes:
      model: a probe-able model taking images (its `pixels` convention says how).
      layer: layer name or number of `model`.
      nonlinear: read after the layer's nonlinearity (default; what the fc6 encoder emits).
    """

    model: Model
    layer: Any
    nonlinear: bool = True


def encoder_layer(generator: Model, model: Model):
    """The layer of `model` that `generator` was trained to invert, or None.

    The generator's manifest records its encoder as {"architecture": builder, "layer": name} (a
    converted architecture, from its table in `weights_convert.mapping`: the DeePSim fc6 generator
    inverts CaffeNet's fc6), matched against `model`'s manifest `architecture.builder`, because a
    converted model is named by its directory; or as {"model": name, "layer": name} (the shipped
    `fc_generator` inverts the shipped classifier's fc1), matched by name.
    """
    enc = generator.manifest.get("encoder") or {}
    if enc.get("layer") is None:
        return None
    if "architecture" in enc:
        built = (model.manifest.get("architecture") or {}).get("builder")
        return enc["layer"] if enc["architecture"] == built else None
    return enc["layer"] if enc.get("model", model.name) == model.name else None


def default_embedding(generator: Model, classifier: Model) -> Embedding:
    """The default diversity embedding E for a generator and a target classifier.

    The encoder the generator was trained to invert when `classifier` is it (`encoder_layer`:
    CaffeNet up to fc6 for the DeePSim fc6 generator, the default classifier up to fc1 for
    `fc_generator`), read after its nonlinearity; otherwise the classifier up to its last hidden
    layer (layer L-1), the counterpart of the paper's "first layers of a classifier".
    """
    layer = encoder_layer(generator, classifier)
    if layer is not None:
        return Embedding(classifier, classifier.layer(layer), True)
    return Embedding(classifier, max(1, classifier.n_layers - 1), True)


# ---------------------------------------------------------------- pure pieces


def pairwise_sq_sum(e):
    """sum_{i,j} ||e_i - e_j||^2 over ordered pairs of the rows of e (K, d), in O(K d)."""
    k = e.shape[0]
    return 2.0 * k * jnp.sum(e * e) - 2.0 * jnp.sum(jnp.square(jnp.sum(e, axis=0)))


def cross_sq_sum(e, sum_a, sumsq_a, m):
    """sum_i sum_y ||e_i - a_y||^2 for rows e (K, d) and a set A given by its count m, its sum
    sum_a = sum_y a_y (d,) and sumsq_a = sum_y ||a_y||^2 (so A itself is never touched)."""
    return m * jnp.sum(e * e) - 2.0 * jnp.dot(jnp.sum(e, axis=0), sum_a) + e.shape[0] * sumsq_a


class Problem(NamedTuple):
    """Pure functions of a batch of codes C (K, *code_shape) for one inverse-set problem.

    Attributes:
      forward: C -> (values (K, p) of the constrained neurons, E(G(C)) (K, d)).
      values: C -> values only (skips E when the diversity does not need it).
      constraints: values (K, p) -> g (K * q,), g >= 0 iff the seed constraints hold
        (q = 2p two-sided, p one-sided); divided by the range widths when normalized.
      in_range: values (K, p) -> (K,) bool, z1 <= f <= z2 for every neuron (no margin).
      spread: features (K, d) -> D, the diversity among the K rows (eq. 5 / 13), normalized or not.
      repulsion: (features (K, d), sum_a (d,), sumsq_a (), m ()) -> the distance of the K rows to
        an accepted set of m rows given by its sums (the second sum of eq. 6), normalized or not.
      diversity: "embedding", "code" or "none".
    """

    forward: Callable
    values: Callable
    constraints: Callable
    in_range: Callable
    spread: Callable
    repulsion: Callable
    diversity: str


def make_problem(generator: Model, gen_params, classifier: Model, cls_params, layers, flat, ranges,
                 embedding: Embedding, emb_params, *, nonlinear: bool = True, one_sided: bool = False,
                 margin=None, diversity: str = "embedding", normalize: bool = True,
                 feature_scale=1.0) -> Problem:
    """Build the `Problem` for neurons (layers: static tuple of layer numbers, flat: (p,) indices
    into each layer's flattened activation, see `jaxprobe.models.neurons.flat_index`) and ranges (p, 2).

    Args:
      margin: (p,) margins of the two-sided seed constraints (default (z2 - z1)/4); ignored when
        `one_sided`.
      normalize: measure constraints in units of each range's width and diversity as means in
        units of `feature_scale` (see `inverse_set`); False gives the paper's raw sums and raw
        activation units.
      feature_scale: S > 0, the mean squared norm of the diversity features of the initial codes.

    Everything array-valued may be traced.
    """
    ranges = jnp.asarray(ranges, jnp.float32)
    z1, z2 = ranges[:, 0], ranges[:, 1]
    margin = (z2 - z1) / 4.0 if margin is None else jnp.asarray(margin, jnp.float32)
    unit = (z2 - z1) if normalize else jnp.ones_like(z1)
    e_layer = embedding.model.layer(embedding.layer)

    def _images(c):
        return generator.forward(gen_params, c)

    def _to(images, model):  # convention, then the centre crop (DeePSim 256 -> CaffeNet 227)
        return adapt_images(images, generator.pixels, model.pixels, model.input_shape)

    def _values(images):
        return values_at(classifier, cls_params, _to(images, classifier), layers, flat, nonlinear=nonlinear)

    def _embed(images):
        h = embedding.model.activation(emb_params, _to(images, embedding.model), e_layer,
                                       nonlinear=embedding.nonlinear)
        return h.reshape(h.shape[0], -1)

    # E read from the classifier itself (the default embedding): one pass of its trunk gives both
    # the neurons and E, so the gradient flows back through the shared layers once, not twice.
    shared = embedding.model is classifier and emb_params is cls_params

    def _values_and_embed(images):
        x = _to(images, classifier)
        ls = tuple(int(l) for l in layers)
        net, pre = _pre_activations(classifier, cls_params, x, set(ls) | {e_layer})

        def value(l, nl):
            h = net.act(pre[l], l) if nl else pre[l]
            return h.reshape(h.shape[0], -1)

        acts = {l: value(l, nonlinear) for l in set(ls)}
        idx = jnp.asarray(flat)
        v = jnp.stack([jnp.take(acts[l], idx[j], axis=1) for j, l in enumerate(ls)], axis=1)
        return v, value(e_layer, embedding.nonlinear)

    def forward(c):
        images = _images(c)
        if shared:
            return _values_and_embed(images)
        return _values(images), _embed(images)

    def values(c):
        return _values(_images(c))

    def constraints(v):
        if one_sided:
            # Paper eq. 7-8: z2 - f <= eps0 with eps0 = (z2 - z1)/2, i.e. f >= the midpoint.
            return ((v - (z2 - (z2 - z1) / 2.0)) / unit).ravel()
        return (jnp.concatenate([(v - (z1 + margin)) / unit, ((z2 - margin) - v) / unit], axis=-1)).ravel()

    def in_range(v):
        return jnp.all((v >= z1) & (v <= z2), axis=-1)

    def spread(feats):
        d = pairwise_sq_sum(feats)
        return d / (feats.shape[0] ** 2 * feature_scale) if normalize else d

    def repulsion(feats, sum_a, sumsq_a, m):
        r = cross_sq_sum(feats, sum_a, sumsq_a, m)
        return r / (feats.shape[0] * jnp.maximum(m, 1.0) * feature_scale) if normalize else r

    return Problem(forward, values, constraints, in_range, spread, repulsion, diversity)


def _pre_activations(model: Model, params, x, wanted):
    """({l: layer l's pre-activation} for the layer numbers in `wanted`, the merged network), from
    one pass of `model` on x: the same operations as `Model.up_to` for each l, shared."""
    net = nnx.merge(model.graphdef, params)
    top, out = max(wanted), {}
    for l, layer in enumerate(net.layers[:top], start=1):
        h = layer.pre(x)
        if l in wanted:
            out[l] = h
        if l < top:
            x = layer.post(h)
    return net, out


def _features(problem: Problem, c, e):
    """The rows whose spread is the diversity: E(G(c)) (eq. 5) or the codes (eq. 13)."""
    if problem.diversity == "embedding":
        return e
    return c.reshape(c.shape[0], -1)


def _seed_fun(problem: Problem):
    """x -> (f, g) for the augmented Lagrangian: f = -D(C) (eq. 7-8), g the range constraints."""

    def fun(c):
        if problem.diversity == "embedding":
            v, e = problem.forward(c)
            div = problem.spread(e)
        else:
            v = problem.values(c)
            div = problem.spread(c.reshape(c.shape[0], -1)) if problem.diversity == "code" else 0.0
        return -div, problem.constraints(v)

    return fun


def seed_solver(problem: Problem, optimizer, *, inner_steps: int = 100, growth=10.0) -> auglag.AugLag:
    """The augmented-Lagrangian solver of eq. 7-8 for K seeds (init/update over AugLagState)."""
    return auglag.augmented_lagrangian(_seed_fun(problem), None, optimizer=optimizer,
                                       inner_steps=inner_steps, growth=growth)


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
        then a fixed point of `sample_step` and nothing new can be accepted.
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


def sample_init(problem: Problem, seeds, n: int) -> SampleState:
    """Empty buffers of capacity n (static) and C = seeds; the first `sample_step` judges the seeds."""
    v, e = jax.eval_shape(problem.forward, seeds)
    d_div = e.shape[1] if problem.diversity == "embedding" else math.prod(seeds.shape[1:])
    return SampleState(
        seeds,
        jnp.ones((seeds.shape[0],), bool),
        jnp.zeros((n,) + seeds.shape[1:], seeds.dtype),
        jnp.zeros((n,) + v.shape[1:], v.dtype),
        jnp.zeros((n,) + e.shape[1:], e.dtype),
        jnp.zeros((), jnp.int32),
        jnp.zeros((), seeds.dtype),
        jnp.zeros((d_div,), seeds.dtype),
        jnp.zeros((), seeds.dtype),
        jnp.zeros((), jnp.int32),
        jnp.ones((), bool),
    )


def sample_step(problem: Problem, state: SampleState, lam, mu, step_length, repel: str = "new") -> SampleState:
    """Judge C (accept its unjudged rows inside every range), then one normalized gradient step of
    L_sample (Hada & Carreira-Perpiñán 2019, eq. 10 and sampling steps 2-5).

    One forward and one backward pass of G, the classifier and E: the forward serves both the
    acceptance test of C and the gradient at C, which repels from the C0 that includes C's own
    accepted rows (the paper's order: accept into C0, then step from C' with the new C0).

    Args:
      problem: from `make_problem`.
      state: the sampler state.
      lam, mu: lambda*, mu* from the seeds, fixed.
      step_length: beta * rho, the distance every code moves (see the module doc).
      repel: "new": C0 = the rows accepted now (step 4: C0 is replaced); "all": C0 = every row
        accepted so far. Static.
    """
    c = state.codes
    k = c.shape[0]
    n = state.buf_codes.shape[0]
    use_e = problem.diversity == "embedding"
    if use_e:
        (v, e), vjp = jax.vjp(problem.forward, c)
    else:
        v, vjp = jax.vjp(problem.values, c)
        e = problem.forward(c)[1]  # statistics only; no gradient through E
    feats = _features(problem, c, e)

    # Accept the unjudged rows of C inside every range into the next free slots (dropped beyond n).
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

    def l_sample(v, feats):
        penalty = jnp.sum(auglag.slack_terms(problem.constraints(v), lam, mu))
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
    return SampleState(new_c, moved, buf_codes, buf_values, buf_embed, count, rep_count, sum_a, sumsq_a,
                       state.steps + 1, jnp.any(kept) | jnp.any(moved))


def sample(problem: Problem, state: SampleState, lam, mu, step_length, max_steps, repel: str = "new", *,
           progress=None, offset=0, total=None) -> SampleState:
    """Run `sample_step` until n are accepted, no seed was accepted, max_steps steps are judged, or
    a step made no progress (`SampleState.progress`).

    On return `state.steps - 1` is the number of sampling steps whose results were judged (the
    first `sample_step` judges the seeds).

    `progress`: None (nothing compiled in) or a host function called through `jax.debug.callback`
    as progress(offset + steps judged, total) about `PROGRESS_TICKS` times a run and when the loop
    ends; `offset` and `total` (default offset + max_steps) may be traced.
    """
    n = state.buf_codes.shape[0]
    max_steps = jnp.asarray(max_steps, jnp.int32)

    def cond(s):
        unreachable = (s.steps >= 1) & (s.count == 0)
        return (s.count < n) & (s.steps <= max_steps) & ~unreachable & s.progress

    # canonical_convs: XLA CPU leaves a loop body's input-gradient convolutions on its slow path
    # otherwise (2x slower per step, see jaxprobe.models.convs).
    body = canonical_convs(lambda s: sample_step(problem, s, lam, mu, step_length, repel))

    if progress is not None:
        body = _ticking(body, cond, progress, max_steps, offset, offset + max_steps if total is None else total)
    return lax.while_loop(cond, body, state)


def _ticking(body, cond, progress, max_steps, offset, total):
    """`body` followed by progress(offset + steps judged, total) on the host when the judged count
    crosses a multiple of max_steps / PROGRESS_TICKS or the loop is about to end: a `lax.cond`
    per step, about PROGRESS_TICKS callbacks a run."""
    every = jnp.maximum(max_steps // PROGRESS_TICKS, 1)

    def ticking(s: SampleState) -> SampleState:
        new = body(s)
        judged = jnp.maximum(new.steps - 1, 0)
        tick = (judged // every != jnp.maximum(s.steps - 1, 0) // every) | ~cond(new)
        lax.cond(tick, lambda d: jax.debug.callback(_as_ints(progress), offset + d, total), lambda d: None, judged)
        return new
    return ticking


def _ticking_update(update, progress, total):
    """The seeds' outer iteration followed by progress(inner steps done, total) on the host."""
    def ticking(state: auglag.AugLagState) -> auglag.AugLagState:
        state = update(state)
        jax.debug.callback(_as_ints(progress), state.inner, total)
        return state
    return ticking


def _as_ints(progress):
    """progress(done, total) with Python ints (the callback receives NumPy scalars)."""
    return lambda done, total: progress(int(done), int(total))


# ---------------------------------------------------------------- the driver


class _Static(NamedTuple):
    generator: Model
    classifier: Model
    embedding: Embedding
    layers: tuple
    nonlinear: bool
    one_sided: bool
    diversity: str
    k: int
    n: int
    inner_steps: int
    optimizer: Any
    init: str  # "images", "prior" or "given"
    normalize: bool
    repel: str
    mesh: Any  # a jax.sharding.Mesh with a "batch" axis over which the K codes are split, or None


def _code_rms(c):
    rms = jnp.sqrt(jnp.mean(c * c))
    return jnp.where(rms > 0, rms, 1.0)


@functools.partial(jax.jit, static_argnames=("static", "progress"))
def _run(key, gen_params, cls_params, emb_params, init_codes, flat, ranges, margin, mu0, growth,
         beta, seed_lr, max_outer, max_steps, *, static: _Static, progress=None):
    gen, emb = static.generator, static.embedding
    k = static.k
    if static.init == "prior":
        c0 = gen.sample_prior(key, k)
    elif static.init == "images":
        # The paper: "initialize C by passing K initial images X0 (we used random values) through E".
        x0 = jax.random.uniform(key, (k,) + tuple(emb.model.input_shape))
        if emb.model.pixels is not None:
            x0 = emb.model.pixels.from_canonical(x0)
        h = emb.model.activation(emb_params, x0, emb.model.layer(emb.layer), nonlinear=emb.nonlinear)
        c0 = h.reshape((k,) + tuple(gen.input_shape))
    else:
        c0 = init_codes
    c0 = constrain_batch(c0.astype(jnp.float32), static.mesh)

    if emb.model is static.classifier:
        emb_params = cls_params  # the same weights: lets make_problem share the trunk's pass

    def build(scale):
        return make_problem(gen, gen_params, static.classifier, cls_params, static.layers, flat, ranges,
                            emb, emb_params, nonlinear=static.nonlinear, one_sided=static.one_sided,
                            margin=margin, diversity=static.diversity, normalize=static.normalize,
                            feature_scale=scale)

    # S: the mean squared norm of the initial codes' diversity features (normalized objective).
    scale = jnp.ones((), jnp.float32)
    if static.normalize and static.diversity != "none":
        feats = build(scale).forward(c0)[1] if static.diversity == "embedding" else c0.reshape(k, -1)
        s0 = jnp.mean(jnp.sum(feats * feats, axis=1))
        scale = jnp.where(s0 > 0, s0, 1.0)
    problem = build(scale)

    # Seeds (eq. 7-8). Default inner optimizer: Adam with a step relative to the codes' scale.
    tx = static.optimizer if static.optimizer is not None else optax.adam(seed_lr * _code_rms(c0))
    solver = seed_solver(problem, tx, inner_steps=static.inner_steps, growth=growth)
    # Progress counts the seeds' inner steps, then the sampling steps, out of both budgets.
    seed_budget = max_outer * static.inner_steps
    if progress is not None:
        solver = solver._replace(update=_ticking_update(solver.update, progress, seed_budget + max_steps))
    seeds = auglag.run(solver, solver.init(c0, mu0=mu0), max_outer)

    # Sampling (eq. 9-10), lambda* and mu* fixed.
    c = constrain_batch(seeds.x, static.mesh)
    norms = jnp.sqrt(jnp.sum(c.reshape(k, -1) ** 2, axis=1))
    rho = jnp.mean(norms)
    rho = jnp.where(rho > 0, rho, jnp.sqrt(jnp.asarray(c[0].size, c.dtype)))
    st = sample(problem, sample_init(problem, c, static.n), seeds.lam, seeds.mu, beta * rho, max_steps,
                static.repel, progress=progress, offset=seed_budget)

    # Images of the accepted codes, K at a time (bounded memory for large generators).
    images = lax.map(lambda z: gen.forward(gen_params, z[None])[0], st.buf_codes, batch_size=k)
    return dict(codes=st.buf_codes, values=st.buf_values, embed=st.buf_embed, images=images,
                count=st.count, progress=st.progress, sampling_steps=st.steps - 1, outer=seeds.outer,
                inner=seeds.inner, seeds_feasible=auglag.feasible(seeds), lam=seeds.lam, mu=seeds.mu)


@dataclasses.dataclass(frozen=True)
class InverseSet:
    """The samples of an inverse set and how they were obtained (arrays trimmed to n_accepted).

    Attributes:
      neurons: canonical addresses (`layer_name:unit[@y,x]`) of the constrained neurons, in order.
      ranges: (p, 2) [z1, z2] per neuron.
      reading: "post-nonlinearity" or "pre-activation".
      codes: (m, *code_shape) accepted codes.
      images: (m, H, W, C) G(codes) in the generator's pixel convention.
      activations: (m, p) every constrained neuron's value for each sample (each in its range).
      embeddings: (m, d) E(G(codes)).
      n_requested, k: n and K.
      n_accepted: m.
      outer_iterations, inner_steps: the seeds' augmented-Lagrangian counts.
      sampling_steps: gradient steps of the sampler whose results were judged.
      seeds_feasible: whether every seed met the (margin) seed constraints within max_outer.
      stop_reason: "complete" (n accepted), "stalled" (fewer than n distinct codes, and a step that
        moved no code and accepted none: nothing new could be accepted, as with eq. 14 once every
        code rests inside the range), "sampling_budget" (fewer than n when max_sampling_steps
        ran out), "unreachable" (no code reached the range(s) within the seeds' outer budget: no
        samples) or "seeds_out_of_range" (one-sided form only: the seeds met f >= (z1 + z2)/2 but
        all overshot z2: no samples).
      stop_message: one sentence saying the same with numbers.
      lam, mu: lambda* and mu*.
      diversity: "embedding" (eq. 5), "code" (eq. 13) or "none" (eq. 14).
      repel: the set C0 the sampler repelled from: "new" (the rows accepted at the latest step,
        the paper's) or "all" (every accepted row).
      stats: mean_pairwise_distance (Euclidean, in E, over distinct pairs of samples),
        mean_pairwise_code_distance, mean_sq_pairwise_distance (in E).
    """

    neurons: tuple
    ranges: np.ndarray
    reading: str
    codes: np.ndarray
    images: np.ndarray
    activations: np.ndarray
    embeddings: np.ndarray
    n_requested: int
    k: int
    n_accepted: int
    outer_iterations: int
    inner_steps: int
    sampling_steps: int
    seeds_feasible: bool
    stop_reason: str
    stop_message: str
    lam: np.ndarray
    mu: float
    diversity: str
    repel: str
    stats: dict


def mean_pairwise_distance(x) -> float:
    """Mean Euclidean distance over distinct pairs of rows of x (m, ...); nan when m < 2."""
    m = len(x)
    if m < 2:
        return float("nan")
    x = np.asarray(x, np.float64).reshape(m, -1)
    sq = np.sum(x * x, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
    iu = np.triu_indices(m, 1)
    return float(np.mean(np.sqrt(d2[iu])))


def _mean_sq_pairwise(x) -> float:
    """Mean squared Euclidean distance over distinct pairs, by the O(m) identity; nan when m < 2."""
    m = len(x)
    if m < 2:
        return float("nan")
    x = np.asarray(x, np.float64).reshape(m, -1)
    total = 2.0 * m * np.sum(x * x) - 2.0 * np.sum(np.sum(x, axis=0) ** 2)  # ordered pairs
    return float(total / (m * (m - 1)))


def _inward_float32(r) -> np.ndarray:
    """Ranges (p, 2) as float32 rounded inwards (z1 up, z2 down), so that a float32 activation the
    sampler accepts satisfies z1 <= f <= z2 in the caller's exact (float64) numbers too."""
    r32 = r.astype(np.float32)
    lo, hi = r32[:, 0], r32[:, 1]
    lo = np.where(lo.astype(np.float64) < r[:, 0], np.nextafter(lo, np.float32(np.inf)), lo)
    hi = np.where(hi.astype(np.float64) > r[:, 1], np.nextafter(hi, np.float32(-np.inf)), hi)
    return np.stack([lo, hi], axis=1).astype(np.float32)


def _float32_ranges(r, texts) -> np.ndarray:
    """`_inward_float32(r)`, refusing a range the float32 sampler cannot hold: an end or the width
    beyond float32's largest value (it would become inf), or fewer than two float32 values between
    z1 and z2 (the range collapses, and its width, the constraints' unit, would be 0)."""
    fmax = float(np.finfo(np.float32).max)
    with np.errstate(all="ignore"):  # the overflowing casts are what this checks
        r32 = _inward_float32(r)
        width = r32[:, 1] - r32[:, 0]
    for (z1, z2), (lo, hi), w, t in zip(r, r32, width, texts):
        if not (abs(z1) <= fmax and abs(z2) <= fmax and np.isfinite(w)):
            raise JaxprobeError(f"ranges: expected z1, z2 and z2 - z1 within float32's range (magnitude at most "
                                f"{fmax:.4g}) for neuron {t!r}, got [{z1}, {z2}]")
        if not lo < hi:
            raise JaxprobeError(f"ranges: expected a range that holds two or more float32 values for neuron {t!r} "
                                f"(activations are float32), got [{z1}, {z2}], which float32 cannot resolve")
    return r32


def _as_ranges(ranges, p: int, texts) -> np.ndarray:
    try:
        r = np.asarray(ranges, dtype=np.float64)
    except (TypeError, ValueError):
        raise JaxprobeError(f"ranges: expected one (z1, z2) pair per neuron, got {ranges!r}") from None
    if r.shape == (2,):
        r = r[None]
    if r.shape != (p, 2):
        raise JaxprobeError(f"ranges: expected {p} (z1, z2) pair(s), one per neuron, got shape {r.shape}")
    for (z1, z2), t in zip(r, texts):
        if not (np.isfinite(z1) and np.isfinite(z2)):
            raise JaxprobeError(f"ranges: expected finite z1, z2 for neuron {t!r}, got [{z1}, {z2}]")
        if not z1 < z2:
            raise JaxprobeError(f"ranges: expected z1 < z2 for neuron {t!r}, got z1={z1} > z2={z2}"
                                if z1 > z2 else f"ranges: expected z1 < z2 for neuron {t!r}, got z1 = z2 = {z1}")
    return r


def init_mode(generator: Model, embedding: Embedding, init: str = "auto") -> str:
    """How `inverse_set` makes its K initial codes for `init` = "auto", "images" or "prior".

    "images": E(uniform random images), E mapping images into the generator's code space (Hada &
    Carreira-Perpiñán 2019, section 3.4: "initialize C by passing K initial images X0 (we used random
    values) through E"); "prior": draws from the generator's latent prior. "auto" is "images" when
    the generator's manifest names E's layer as its encoder, or when it has no prior and E's size
    equals the code size; otherwise "prior". Raises JaxprobeError when the mode cannot be used.
    """
    code_size = math.prod(generator.input_shape)
    e_model, e_layer = embedding.model, embedding.model.layer(embedding.layer)
    e_size = math.prod(e_model.layer_shape(e_layer))
    maps_into_codes = e_size == code_size
    has_prior = bool(generator.manifest.get("latent"))
    if init == "auto":
        enc_layer = encoder_layer(generator, e_model)
        named = enc_layer is not None and maps_into_codes and e_model.layer(enc_layer) == e_layer
        if named or (maps_into_codes and not has_prior):
            return "images"
        if has_prior:
            return "prior"
        raise JaxprobeError(
            f"init: generator {generator.name!r} has no latent prior and E (layer {e_layer} of "
            f"{e_model.name!r}, {e_size} values) does not map into its {code_size}-value code space; "
            "pass init=an array of K codes")
    if init == "prior":
        if not has_prior:
            raise JaxprobeError(f"init: generator {generator.name!r} has no latent prior (manifest 'latent')")
        return "prior"
    if init == "images":
        if not maps_into_codes:
            raise JaxprobeError(
                f"init: E gives {e_size} values per image but generator {generator.name!r} takes "
                f"codes of shape {generator.input_shape}; 'images' needs E to map into the code space")
        return "images"
    raise JaxprobeError(f"init: expected 'auto', 'prior', 'images' or an array of codes, got {init!r}")


def _given_codes(init, generator: Model, k: int) -> np.ndarray:
    """`init` passed as K codes: (k, *code_shape) float32, finite."""
    arr = np.asarray(init, dtype=np.float32)
    if arr.shape != (k,) + tuple(generator.input_shape):
        raise JaxprobeError(f"init: expected codes of shape {(k,) + tuple(generator.input_shape)}, got {arr.shape}")
    check_finite("init", arr)
    return arr


def inverse_set(key, generator: Model, classifier: Model, neurons, ranges, *, n: int = 500, k: int = 10,
                embedding: Embedding | None = None, diversity: str = "embedding", nonlinear: bool = True,
                one_sided: bool = False, margin=None, init="auto", mu0: float = 10.0, growth: float = 10.0,
                inner_steps: int = 100, max_outer: int = 6, optimizer=None, seed_lr: float = 0.02,
                beta: float = 0.05, max_sampling_steps: int | None = None, normalize: bool = True,
                repel: str = "new", mesh=None, progress=None) -> InverseSet:
    """Sample n images of `generator` whose constrained neurons of `classifier` lie in their ranges.

    Args:
      key: PRNG key (only the initial codes are random: same key, same samples).
      generator: a generator `Model` (codes (input_shape) -> images in `generator.pixels`).
      classifier: the network whose neurons are constrained (role "classifier" or "critic": it
        takes images, in `classifier.pixels`).
      neurons: one address `layer:unit[@y,x]` or a list of them (an intersection, eq. 11-12).
      ranges: (z1, z2) for one neuron, or one pair per neuron; each must hold two or more float32
        values and lie within float32's range.
      n: samples wanted (buffer capacity; static). At least k.
      k: K, codes optimized together (paper: 10; static).
      embedding: E for the diversity and the statistics; default `default_embedding`.
      diversity: "embedding" (eq. 5, default), "code" (eq. 13) or "none" (eq. 14).
      nonlinear: read neurons after their layer's nonlinearity (default) or before it.
      one_sided: the paper's constraint f >= z2 - (z2 - z1)/2 instead of the two-sided default.
      margin: seed margin m (scalar or one per neuron), 0 <= m < (z2 - z1)/2; default (z2 - z1)/4.
      init: "auto" (E(random images) when E maps into the generator's code space: the generator's
        manifest names E's layer as its encoder, or it has no prior and the sizes agree; else the
        prior), "images", "prior", or an array (k, *code_shape).
      mu0, growth: initial penalty and its factor a per outer iteration (paper: 10, 10).
      inner_steps: gradient steps per outer iteration (paper: 100).
      max_outer: outer-iteration budget for the seeds (paper: about 4 needed).
      optimizer: inner optax optimizer for the seeds; default Adam with learning rate
        seed_lr * RMS(initial codes), so the step is relative to the codes' scale (the paper used
        plain gradient descent at a scale it does not report).
      beta: sampling step as a fraction of the mean seed-code norm (module doc).
      max_sampling_steps: sampling-step budget; default 10x the minimum, 10 * ceil((n - k) / k).
      normalize: scale-free objective (default, module doc) or the paper's raw sums (False).
      repel: the accepted set C0 of eq. 10 the codes move away from: "new" (default), the rows
        accepted at the latest step (the paper's step 4 replaces C0 with them); "all", every row
        accepted so far (weighed as a mean when normalized, so it does not grow with the count).
      mesh: a `jax.sharding.Mesh` with a "batch" axis (e.g. `jaxprobe.sharding.batch_mesh()`): the
        K codes of the seeds and of the sampler are split over its devices (k must be a multiple
        of their number); the models' parameters are replicated. Default: one device. A mesh may
        span processes (`jax.distributed`): every process then makes the same call and gets the
        whole result.
      progress: None (no callback compiled in) or a function progress(done, total) called on the
        host (`jax.debug.callback`) to move a progress bar: done counts the seeds' inner steps,
        then the sampling steps, out of total = max_outer * inner_steps + max_sampling_steps;
        once per outer iteration, about `PROGRESS_TICKS` times while sampling, and last with
        done == total (what an early stop leaves of a budget is skipped). Static: another
        function compiles another program; the samples do not depend on it.

    Returns:
      An `InverseSet`. Every returned sample has z1 <= f_j <= z2 for every neuron j, and no code
      is returned twice; a range no code reached gives zero samples and stop_reason "unreachable".

    One compiled program per static configuration (models, layers of the neurons, n, k,
    inner_steps, diversity, one_sided, nonlinear, normalize, repel, init mode, optimizer object): other
    units, positions, ranges, keys and budgets reuse it.

    Examples:
      >>> res = inverse_set(jax.random.key(0), generator, classifier, "logits:3", (4.0, 6.0), n=100)
      >>> res.n_accepted, res.stop_reason, res.activations.min() >= 4.0
    """
    # ---- every check before any work
    n = check_count("n", n, 1)
    k = check_count("k", k, 1)
    if n < k:
        raise JaxprobeError(f"n: expected n >= k (the K seeds are the first samples), got n={n} < k={k}")
    if diversity not in DIVERSITY:
        raise JaxprobeError(f"diversity: expected one of {', '.join(DIVERSITY)}, got {diversity!r}")
    if repel not in REPEL:
        raise JaxprobeError(f"repel: expected one of {', '.join(REPEL)}, got {repel!r}")
    for name, model, roles in (("generator", generator, ("generator",)),
                               ("classifier", classifier, ("classifier", "critic"))):
        if not isinstance(model, Model) or model.role not in roles:
            got = f"{model.name!r} ({model.role})" if isinstance(model, Model) else type(model).__name__
            raise JaxprobeError(f"{name}: expected a model with role {' or '.join(map(repr, roles))}, got {got}")
    if not isinstance(neurons, (str, list, tuple)):
        raise JaxprobeError(f"neurons: expected an address 'layer:unit[@y,x]' or a list of them, got {neurons!r}")
    resolved = resolve_neurons(classifier, neurons)
    texts = [r.text for r in resolved]
    r = _as_ranges(ranges, len(resolved), texts)
    r32 = _float32_ranges(r, texts)
    width = r[:, 1] - r[:, 0]
    if margin is None:
        m = width / 4.0
    else:
        m = np.asarray(margin, np.float64)
        if m.ndim > 1 or m.size not in (1, len(width)):
            raise JaxprobeError(f"margin: expected a number or one per neuron ({len(width)}), got {margin!r}")
        m = np.broadcast_to(m.reshape(-1), width.shape).copy()
        if not np.all(np.isfinite(m)) or np.any(m < 0) or np.any(m >= width / 2):
            raise JaxprobeError(f"margin: expected 0 <= margin < (z2 - z1)/2 = {list(width / 2)}, got {list(m)}")
    for name, value in (("mu0", mu0), ("beta", beta), ("seed_lr", seed_lr)):
        check_number(name, value, low=0.0, low_open=True, what="a positive number")
    check_number("growth", growth, low=1.0, low_open=True, what="a factor a")
    inner_steps = check_count("inner_steps", inner_steps, 1)
    max_outer = check_count("max_outer", max_outer, 1)
    if max_sampling_steps is None:
        max_sampling_steps = 10 * max(1, -(-(n - k) // k))
    max_sampling_steps = check_count("max_sampling_steps", max_sampling_steps, 0)
    embedding = default_embedding(generator, classifier) if embedding is None else Embedding(*embedding)
    try:
        embedding.model.layer(embedding.layer)
    except JaxprobeError as err:
        raise JaxprobeError(f"embedding: {err}") from None
    if isinstance(init, str):
        mode = init_mode(generator, embedding, init)
        init_codes = np.zeros((k,) + tuple(generator.input_shape), np.float32)  # unused: _run draws them
    else:
        mode, init_codes = "given", _given_codes(init, generator, k)
    check_mesh(mesh, k, "k", "the K codes")

    # ---- the work (one compiled program per static configuration)
    flat = np.array([flat_index(classifier, x) for x in resolved], np.int32)
    static = _Static(generator, classifier, embedding, tuple(x.layer for x in resolved), bool(nonlinear),
                     bool(one_sided), diversity, k, n, inner_steps, optimizer, mode,
                     bool(normalize), repel, mesh)
    args = (key, generator.params, classifier.params, embedding.model.params, jnp.asarray(init_codes),
            jnp.asarray(flat), jnp.asarray(r32), jnp.asarray(m, jnp.float32),
            jnp.float32(mu0), jnp.float32(growth), jnp.float32(beta), jnp.float32(seed_lr),
            jnp.int32(max_outer), jnp.int32(max_sampling_steps))
    # With a mesh, every input goes on all its devices (parameters committed to one device by
    # `jaxprobe.load` would clash with the program's sharding); the K codes are split inside.
    # A mesh spanning processes gives every process the whole result (`gather`).
    args, _ = on_mesh(mesh, args)
    out = jax.device_get(gather(_run(*args, static=static, progress=progress)))
    if progress is not None:
        jax.effects_barrier()  # every tick of the program first, then the last one
        total = max_outer * inner_steps + max_sampling_steps
        progress(total, total)
    count = int(out["count"])
    steps = int(out["sampling_steps"])
    if count >= n:
        reason = "complete"
        message = f"accepted {count} of {n} samples after {steps} sampling steps"
    elif count == 0 and bool(out["seeds_feasible"]):
        # Only the one-sided form gets here: its seeds met f >= (z1 + z2)/2 but overshot z2, and
        # nothing in L_sample pulls them down.
        reason = "seeds_out_of_range"
        message = ("the seeds met the one-sided constraint f >= (z1 + z2)/2 but none lies in the range "
                   "(they overshoot z2): no samples; the two-sided default constrains both sides")
    elif count == 0:
        reason = "unreachable"
        message = (f"no code reached the range(s) within the seeds' budget of {max_outer} outer iterations "
                   f"x {inner_steps} steps: no samples")
    elif not bool(out["progress"]):
        reason = "stalled"
        message = (f"accepted {count} of {n} samples, each a distinct code; after {steps} sampling steps no code "
                   "moves and none is new, so no other sample can be accepted"
                   + (" (eq. 14 has no force inside the range)" if diversity == "none" else ""))
    else:
        reason = "sampling_budget"
        message = f"accepted {count} of {n} samples; the budget of {max_sampling_steps} sampling steps ran out"
    codes, values, emb = out["codes"][:count], out["values"][:count], out["embed"][:count]
    stats = {
        "mean_pairwise_distance": mean_pairwise_distance(emb),
        "mean_pairwise_code_distance": mean_pairwise_distance(codes),
        "mean_sq_pairwise_distance": _mean_sq_pairwise(emb),
    }
    return InverseSet(
        neurons=tuple(neuron_name(classifier, x) for x in resolved), ranges=r,
        reading="post-nonlinearity" if nonlinear else "pre-activation",
        codes=codes, images=out["images"][:count], activations=values, embeddings=emb,
        n_requested=int(n), k=int(k), n_accepted=count, outer_iterations=int(out["outer"]),
        inner_steps=int(out["inner"]), sampling_steps=steps, seeds_feasible=bool(out["seeds_feasible"]),
        stop_reason=reason, stop_message=message, lam=np.asarray(out["lam"]), mu=float(out["mu"]),
        diversity=diversity, repel=repel, stats=stats,
    )
