"""Inverse set of a neuron: diverse generator samples with z1 <= f(G(c)) <= z2 (Hada & Carreira-Perpiñán 2019).

Target: n codes c whose images G(c) put every constrained neuron f_j (one neuron, or p of them for
an intersection, eq. 11-12, possibly in different layers) in its range [z1_j, z2_j].

`inverse_set` composes the pieces, each whole in its own module:
1. checks (`jaxprobe.inverse_sets.options`: `InverseSetOptions`, `check_inputs`);
2. the problem (`jaxprobe.inverse_sets.problem`: the networks as `InverseSetNets`, the
   constraints, the diversity D of eq. 5 / 13 / 14);
3. the seeds (`jaxprobe.inverse_sets.seeds`, eq. 7-8): K codes from `init_mode`'s initial codes,
   driven by the augmented-Lagrangian kernel of `jaxprobe.inverse_sets.auglag` until every seed
   is feasible or `max_outer` outer iterations are spent;
4. the sampling (`jaxprobe.inverse_sets.sampling`, eq. 9-10): the sampler kernel from the seeds,
   lambda* and mu* fixed, until n are accepted or it stalls or its budget is spent;
5. the summary (`jaxprobe.inverse_sets.summary`: `InverseSet`, the stop reason, statistics).
Both loops are `jaxprobe.driver.run`; the one-off parts compile through `jaxprobe.driver.call`.

Constraints (our choice of form). By default both sides, with a margin m (default (z2 - z1)/4) so
seeds start in the middle half; `one_sided=True` is the paper's form. Acceptance has no margin: a
code is kept iff z1 <= f_j(G(c)) <= z2 for every constrained neuron j, evaluated on the same
values stored in the result. The seeds count towards n when they pass that test.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxprobe import driver
from jaxprobe.inverse_sets import auglag, sampling
from jaxprobe.checks import with_settings
from jaxprobe.inverse_sets.options import Checked, InverseSetOptions, check_inputs
from jaxprobe.inverse_sets.problem import (DIVERSITY, Embedding, InverseProblem, InverseSetNets, Targets,
                                           default_embedding, encoder_layer, feature_scale, make_problem)
from jaxprobe.inverse_sets.sampling import REPEL
from jaxprobe.inverse_sets.seeds import default_optimizer, init_mode, initial_codes, seed_solver
from jaxprobe.inverse_sets.summary import (STOP_REASONS, InverseSet, diversity_stats, mean_pairwise_distance,
                                           stop_reason)
from jaxprobe.models.neurons import flat_index, neuron_name
from jaxprobe.models.probe import Model
from jaxprobe.sharding import constrain_batch, gather, on_mesh


def inverse_set(key, generator: Model, classifier: Model, neurons, ranges, options: InverseSetOptions | None = None,
                *, embedding: Embedding | None = None, mesh=None, progress: Callable | None = None,
                **settings) -> InverseSet:
    """Sample n images of `generator` whose constrained neurons of `classifier` lie in their ranges.

    Args:
      key: PRNG key (only the initial codes are random: same key, same samples).
      generator: a generator `Model` (codes (input_shape) -> images in `generator.pixels`).
      classifier: the network whose neurons are constrained (role "classifier" or "critic": it
        takes images, in `classifier.pixels`).
      neurons: one address `layer:unit[@y,x]` or a list of them (an intersection, eq. 11-12).
      ranges: (z1, z2) for one neuron, or one pair per neuron; each must hold two or more float32
        values and lie within float32's range.
      options: `InverseSetOptions` (default: its defaults).
      embedding: E for the diversity and the statistics; default `default_embedding`.
      mesh: a `jax.sharding.Mesh` with a "batch" axis (e.g. `jaxprobe.sharding.batch_mesh()`): the
        K codes of the seeds and of the sampler are split over its devices (k must be a multiple
        of their number); the models' parameters are replicated. A mesh may span processes
        (`jax.distributed`): every process then makes the same call and gets the whole result.
      progress: None (no callback compiled in) or progress(done, total) on the host
        (`jax.debug.callback`): done counts the seeds' inner steps, then the sampling steps, out
        of total = max_outer * inner_steps + max_sampling_steps; once per outer iteration, about
        `jaxprobe.driver.PROGRESS_TICKS` times while sampling, and last with done == total (what
        an early stop leaves of a budget is skipped). Static: another function compiles another
        program; the samples do not depend on it.
      **settings: `InverseSetOptions` fields replacing those of `options` (n=100, k=5, ...).

    Returns:
      An `InverseSet`. Every returned sample has z1 <= f_j <= z2 for every neuron j, and no code
      is returned twice; a range no code reached gives zero samples and stop_reason "unreachable".

    One compiled program per static configuration (models, layers of the neurons, n, k,
    inner_steps, the budgets, diversity, one_sided, nonlinear, normalize, repel, init mode,
    optimizer object): other units, positions, ranges, keys and the numeric settings reuse it.

    Examples:
      >>> res = inverse_set(jax.random.key(0), generator, classifier, "logits:3", (4.0, 6.0), n=100)
      >>> res.n_accepted, res.stop_reason, res.activations.min() >= 4.0
    """
    chk = check_inputs(generator, classifier, neurons, ranges, embedding, with_settings(InverseSetOptions, options, settings), mesh)
    static, args = _program(chk, generator, classifier, mesh)
    # With a mesh, every input goes on all its devices (parameters committed to one device by
    # `jaxprobe.load` would clash with the program's sharding); the K codes are split inside.
    # A mesh spanning processes gives every process the whole result (`gather`).
    args, _ = on_mesh(mesh, (key,) + args)
    out = jax.device_get(gather(_run(*args, static=static, progress=progress)))
    if progress is not None:
        jax.effects_barrier()  # every tick of the program first, then the last one
        o = chk.options
        total = o.max_outer * o.inner_steps + o.max_sampling_steps
        progress(total, total)
    return summarize(chk, classifier, out)


class _Static(NamedTuple):
    """What one compiled program of `inverse_set` is specialised to."""

    nets: InverseSetNets  # the models (their parameters are arguments)
    layers: tuple
    options: InverseSetOptions  # the static settings; numbers and arrays are arguments
    mode: str  # "images", "prior" or "given"
    mesh: object


def _program(chk: Checked, generator: Model, classifier: Model, mesh):
    """(static configuration, array arguments) of `_run` for checked inputs."""
    o = chk.options
    static_options = o._replace(margin=None, init=None, mu0=None, growth=None, seed_lr=None, beta=None)
    static = _Static(InverseSetNets(generator, classifier, chk.embedding), tuple(x.layer for x in chk.neurons),
                     static_options, chk.mode, mesh)
    given = chk.given if chk.given is not None else np.zeros((o.k,) + tuple(generator.input_shape), np.float32)
    flat = np.array([flat_index(classifier, x) for x in chk.neurons], np.int32)
    numbers = tuple(jnp.float32(getattr(o, name)) for name in ("mu0", "growth", "seed_lr", "beta"))
    return static, (generator.params, classifier.params, chk.embedding.model.params, jnp.asarray(given),
                    jnp.asarray(flat), jnp.asarray(chk.ranges32), jnp.asarray(chk.margin, jnp.float32)) + numbers


@functools.partial(jax.jit, static_argnames=("static", "progress"))
def _run(key, gen_params, cls_params, emb_params, given, flat, ranges, margin, mu0, growth, seed_lr, beta, *,
         static: _Static, progress=None):
    """Build, init, the seeds' run, then the sampler's run (both `jaxprobe.driver.run`), then G of
    the accepted codes: one program."""
    o = static.options
    shared = static.nets.embedding.model is static.nets.classifier  # one trunk pass for f and E
    nets = static.nets._replace(gen_params=gen_params, cls_params=cls_params,
                                emb_params=None if shared else emb_params)
    c0 = constrain_batch(initial_codes(key, nets, static.mode, o.k, given), static.mesh)
    targets = Targets(static.layers, flat, ranges, margin)
    problem = build_problem(nets, targets, o, c0)
    tick = _Ticks(progress, o.max_outer * o.inner_steps + o.max_sampling_steps, o.max_outer * o.inner_steps,
                  o.inner_steps)
    tx = o.optimizer if o.optimizer is not None else default_optimizer(c0, seed_lr)
    solver = seed_solver(problem, tx, inner_steps=o.inner_steps, growth=growth, mesh=static.mesh)
    seeds = auglag.run(solver, solver.init(c0, mu0=mu0), o.max_outer, progress=tick.seeds)
    sampler = sampling.build(problem, o.n, seeds.lam, seeds.mu, sampling.step_length(seeds.x, beta), o.repel,
                             mesh=static.mesh)
    st = driver.run(sampler, key, sampler.init(constrain_batch(seeds.x, static.mesh)), o.max_sampling_steps + 1,
                    trace=None, until=sampling.done, progress=tick.sampling).state
    # Images of the accepted codes, K at a time (bounded memory for large generators).
    images = lax.map(lambda z: problem.images(z[None])[0], st.buf_codes, batch_size=o.k)
    return _Outcome(seeds, st, images, auglag.feasible(seeds))


class _Outcome(NamedTuple):
    seeds: auglag.AugLagState
    sampler: sampling.SampleState
    images: jax.Array
    seeds_feasible: jax.Array


def build_problem(nets: InverseSetNets, targets: Targets, o: InverseSetOptions, c0) -> InverseProblem:
    """The `InverseProblem` of `targets` on `nets` with the settings of `o`, its diversity scale S
    (the normalized objective's unit) measured on the initial codes c0."""

    def make(scale):
        return make_problem(nets, targets, nonlinear=bool(o.nonlinear), one_sided=bool(o.one_sided),
                            diversity=o.diversity, normalize=bool(o.normalize), feature_scale=scale)

    scale = jnp.ones((), jnp.float32)
    if o.normalize and o.diversity != "none":
        scale = feature_scale(make(scale), c0)
    return make(scale)


def summarize(chk: Checked, classifier: Model, out: _Outcome) -> InverseSet:
    """The `InverseSet` of a finished run: the accepted samples, the stop reason, statistics."""
    o, seeds, st = chk.options, out.seeds, out.sampler
    count, steps = int(st.count), int(st.steps) - 1
    feasible = bool(out.seeds_feasible)
    reason, message = stop_reason(count, steps, feasible, bool(st.progress), o)
    codes, values, emb = (np.asarray(a)[:count] for a in (st.buf_codes, st.buf_values, st.buf_embed))
    return InverseSet(
        neurons=tuple(neuron_name(classifier, x) for x in chk.neurons), ranges=chk.ranges,
        reading="post-nonlinearity" if o.nonlinear else "pre-activation",
        codes=codes, images=np.asarray(out.images)[:count], activations=values, embeddings=emb,
        n_requested=o.n, k=o.k, n_accepted=count, outer_iterations=int(seeds.outer),
        inner_steps=int(seeds.inner), sampling_steps=steps, seeds_feasible=feasible,
        stop_reason=reason, stop_message=message, lam=np.asarray(seeds.lam), mu=float(seeds.mu),
        diversity=o.diversity, repel=o.repel, stats=diversity_stats(codes, emb))


class _Ticks(NamedTuple):
    """One progress bar over both loops: the seeds' inner steps, then the sampling steps."""

    target: Callable | None
    total: int
    seed_budget: int
    inner_steps: int

    @property
    def seeds(self):
        if self.target is None:
            return None
        return lambda done, _: self.target(int(done) * self.inner_steps, self.total)

    @property
    def sampling(self):
        if self.target is None:
            return None
        # The first sampling step judges the seeds; the steps after it are the budget's.
        return lambda done, _: self.target(self.seed_budget + max(int(done) - 1, 0), self.total)



__all__ = ["DIVERSITY", "REPEL", "STOP_REASONS", "Embedding", "InverseProblem", "InverseSet", "InverseSetNets",
           "InverseSetOptions", "Targets", "build_problem", "default_embedding", "encoder_layer", "init_mode",
           "inverse_set", "make_problem", "mean_pairwise_distance", "summarize"]
