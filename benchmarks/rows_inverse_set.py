"""Rows for the inverse set (Hada & Carreira-Perpiñán 2019): one augmented-Lagrangian inner step of
the seeds, the seeds' whole solve, one sampling step (scaling with K) and sampling n = 500, against
eager PyTorch on the same weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

from benchmarks import common
from benchmarks import torch_baselines as tb
from benchmarks.rows_codespace import close, close_values, cotangents, floor_fn
from jaxprobe.inverse_sets import auglag
from jaxprobe.inverse_sets.inverse_set import (default_embedding, make_problem, sample, sample_init, sample_step,
                                               seed_solver)

SEED_LR, BETA, MU0, GROWTH = 0.02, 0.05, 10.0, 10.0  # inverse_set's defaults
INNER = 100  # inner steps per outer iteration (inverse_set's default; --quick uses 5)


class Setup:
    """One inverse-set problem at K codes: jaxprobe's Problem built as `inverse_set` builds it (initial
    codes from random images through E, normalized objective), and its torch counterpart."""

    def __init__(self, generator, classifier, layer_name, unit, k, ranges=None, torch_ok=True):
        self.gen, self.cls, self.k = generator, classifier, k
        self.layer = classifier.layer(layer_name)
        self.flat = np.array([unit], np.int32)
        self.emb = default_embedding(generator, classifier)
        self.emb_layer = classifier.layer(self.emb.layer)
        cp = classifier.params
        key = jax.random.PRNGKey(k)
        x0 = jax.random.uniform(key, (k,) + tuple(classifier.input_shape))
        if classifier.pixels is not None:
            x0 = classifier.pixels.from_canonical(x0)
        h = classifier.activation(cp, x0, self.emb_layer)
        self.c0 = h.reshape((k,) + tuple(generator.input_shape))
        self.ranges = np.asarray([[0.0, 1.0]] if ranges is None else ranges, np.float32).reshape(1, 2)
        if ranges is None:  # a range the initial codes' values straddle: seeds and sampling both have work
            v0 = np.asarray(jax.jit(lambda c: self.problem(1.0).values(c))(self.c0))[:, 0]
            lo, hi = float(np.min(v0)), float(np.max(v0))
            width = max(hi - lo, 1e-3 * max(1.0, abs(hi)))
            ranges = [[lo + 0.25 * width, lo + 1.25 * width]]
        self.ranges = np.asarray(ranges, np.float32).reshape(1, 2)
        feats = jax.jit(lambda c: self.problem(1.0).forward(c)[1])(self.c0)
        s0 = float(jnp.mean(jnp.sum(feats * feats, axis=1)))
        self.scale = s0 if s0 > 0 else 1.0
        self.rms = float(jnp.sqrt(jnp.mean(self.c0 * self.c0))) or 1.0
        self.torch_ok = torch_ok
        if torch_ok:
            self.t_forward = tb.inverse_forward(tb.TorchNet(generator), tb.TorchNet(classifier), generator, classifier,
                                                self.layer, self.flat, self.emb_layer)

    def problem(self, scale, gp=None, cp=None):
        gp = self.gen.params if gp is None else gp
        cp = self.cls.params if cp is None else cp
        return make_problem(self.gen, gp, self.cls, cp, (self.layer,), self.flat, jnp.asarray(self.ranges),
                            self.emb._replace(layer=self.emb_layer), cp, feature_scale=scale)

    def floor(self):
        f = floor_fn(self.gen, self.cls, tuple(sorted({self.layer, self.emb_layer})))
        cots = cotangents(self.gen, self.cls, tuple(sorted({self.layer, self.emb_layer})), self.k)
        return lambda c: f(self.gen.params, self.cls.params, c, cots)


def _tstate(st):
    return {"codes": tb.t(st.codes), "fresh": torch.from_numpy(np.array(st.fresh)),
            "buf_codes": tb.t(st.buf_codes), "buf_values": tb.t(st.buf_values), "buf_embed": tb.t(st.buf_embed),
            "count": torch.tensor(int(st.count))}


def sample_step_row(name, s: Setup, *, repeats, peak, group="inverse_set", series=None, n=500, tol=(1e-3, 5e-2)):
    """One sampling step (eq. 9-10) from the initial codes with lambda = 0, mu = mu0."""
    gp, cp = s.gen.params, s.cls.params
    lam = jnp.zeros((2 * s.k,), jnp.float32)
    step_length = BETA * s.rms * np.sqrt(np.prod(s.gen.input_shape))

    @jax.jit
    def step(gp, cp, st):
        return sample_step(s.problem(s.scale, gp, cp), st, lam, MU0, step_length)

    st0 = sample_init(s.problem(s.scale), s.c0, n)
    compile_s = common.first_call(lambda: step(gp, cp, st0))
    floor = s.floor()
    fns = {"jax": lambda: step(gp, cp, st0).codes, "floor": lambda: floor(s.c0)}
    agree = None
    if s.torch_ok:
        tstep = tb.inverse_sample_step(s.t_forward, s.ranges, s.scale, lam, MU0, step_length)
        ts0 = _tstate(st0)
        out_j, out_t = step(gp, cp, st0), tstep(ts0)
        agree = close(name, s.c0, out_j.codes, out_t["codes"].numpy(), median_tol=tol[0], max_tol=tol[1])
        assert int(out_j.count) == int(out_t["count"]), f"{name}: accepted counts differ"
        agree["accepted"] = int(out_j.count)
        fns["baseline"] = lambda: tstep(ts0)
    timing = common.interleaved(fns, repeats)
    flops = common.compiled_flops(step, gp, cp, st0)
    return common.row(name, group, timing, compile_s=compile_s, flops=flops, peak=peak, agreement=agree, k=s.k,
                      series=series,
                      size=s.k, size_name="K", baseline="torch eager" if s.torch_ok else "skipped (not CPU)",
                      sampler=True)


def al_step_row(name, s: Setup, *, repeats, peak):
    """One augmented-Lagrangian inner step of the seeds: value and gradient of psi (the seeds'
    Lagrangian with the slacks eliminated), then Adam (optax.adam; the torch side writes its formula)."""
    gp, cp = s.gen.params, s.cls.params
    lr = SEED_LR * s.rms
    tx = optax.adam(lr)
    lam = jnp.zeros((2 * s.k,), jnp.float32)

    @jax.jit
    def step(gp, cp, x, opt_state):
        solver = seed_solver(s.problem(s.scale, gp, cp), tx, inner_steps=INNER, growth=GROWTH)
        value, grad = jax.value_and_grad(lambda x: solver.lagrangian(x, lam, MU0)[0])(x)
        updates, opt_state = tx.update(grad, opt_state, x)
        return optax.apply_updates(x, updates), opt_state, value

    opt0 = tx.init(s.c0)
    compile_s = common.first_call(lambda: step(gp, cp, s.c0, opt0))
    floor = s.floor()
    fns = {"jax": lambda: step(gp, cp, s.c0, opt0)[0], "floor": lambda: floor(s.c0)}
    agree = None
    if s.torch_ok:
        tstep, _ = tb.seed_inner_step(s.t_forward, s.ranges, s.scale, lr)
        c, z = tb.t(s.c0), torch.zeros_like(tb.t(s.c0))
        tl = torch.zeros(2 * s.k)
        out_j, out_t = step(gp, cp, s.c0, opt0), tstep(c, z, z, 0, tl, MU0)
        agree = close(name, s.c0, out_j[0], out_t[0].numpy())
        close_values(name + " (psi)", out_j[2], out_t[4].numpy())
        fns["baseline"] = lambda: tstep(c, z, z, 0, tl, MU0)
    timing = common.interleaved(fns, repeats)
    flops = common.compiled_flops(step, gp, cp, s.c0, opt0)
    return common.row(name, "inverse_set", timing, compile_s=compile_s, flops=flops, peak=peak, agreement=agree,
                      k=s.k, baseline="torch eager" if s.torch_ok else "skipped (not CPU)", sampler=True)


def seeds(s: Setup, max_outer=6, inner=INNER):
    """The seeds' jitted solve (auglag.run until every seed is feasible), one per setting."""
    cache = s.__dict__.setdefault("_solvers", {})
    if (max_outer, inner) not in cache:
        cache[(max_outer, inner)] = _seeds(s, max_outer, inner)
    return cache[(max_outer, inner)]


def _seeds(s: Setup, max_outer, inner):
    tx = optax.adam(SEED_LR * s.rms)

    @jax.jit
    def solve(gp, cp, c0):
        solver = seed_solver(s.problem(s.scale, gp, cp), tx, inner_steps=inner, growth=GROWTH)
        return auglag.run(solver, solver.init(c0, mu0=MU0), max_outer)

    return solve


def seed_row(name, s: Setup, *, repeats, peak, max_outer=6, inner=INNER):
    """The seeds' whole augmented-Lagrangian solve; the baseline runs the same number of outer and
    inner iterations in eager torch (its own trajectory: float32 rounding differs)."""
    gp, cp = s.gen.params, s.cls.params
    solve = seeds(s, max_outer, inner)
    compile_s = common.first_call(lambda: solve(gp, cp, s.c0))
    res = solve(gp, cp, s.c0)
    outer = int(res.outer)
    fns = {"jax": lambda: solve(gp, cp, s.c0).x}
    if s.torch_ok:
        lr = SEED_LR * s.rms
        tstep, constraints = tb.seed_inner_step(s.t_forward, s.ranges, s.scale, lr)

        def torch_seeds():
            c, lam, mu = tb.t(s.c0), torch.zeros(2 * s.k), MU0
            for _ in range(outer):
                m = v = torch.zeros_like(c)
                for i in range(inner):
                    c, m, v, _, _ = tstep(c, m, v, i, lam, mu)
                with torch.no_grad():
                    g = constraints(s.t_forward(c)[0])
                    lam = torch.clamp(lam - mu * g, min=0.0)
                mu = mu * GROWTH
            return c

        fns["baseline"] = torch_seeds
    timing = common.interleaved(fns, max(1, repeats // 2), warm=False)
    per_step = common.compiled_flops(
        lambda gp, cp, x: jax.grad(lambda x: seed_solver(s.problem(s.scale, gp, cp), optax.adam(0.1))
                                   .lagrangian(x, jnp.zeros((2 * s.k,)), MU0)[0])(x), gp, cp, s.c0)
    flops = None if per_step is None else per_step * outer * inner
    return common.row(name, "inverse_set", timing, compile_s=compile_s, flops=flops, peak=peak, k=s.k, outer=outer,
                      inner=outer * inner,
                      seeds_feasible=bool(auglag.feasible(res)),
                      baseline=("torch eager, same iteration counts" if s.torch_ok else "skipped (not CPU)"))


def sampling_row(name, s: Setup, n, *, repeats, peak, max_outer=6, inner=INNER, max_steps=2000):
    """Sampling n codes (eq. 9-10) from the seeds until n are accepted; the baseline runs the same
    number of torch sampling steps."""
    gp, cp = s.gen.params, s.cls.params
    res = seeds(s, max_outer, inner)(gp, cp, s.c0)
    c = res.x
    rho = float(jnp.mean(jnp.sqrt(jnp.sum(c.reshape(s.k, -1) ** 2, axis=1)))) or 1.0
    step_length = BETA * rho

    @jax.jit
    def run(gp, cp, c, lam, mu):
        p = s.problem(s.scale, gp, cp)
        return sample(p, sample_init(p, c, n), lam, mu, step_length, max_steps)

    compile_s = common.first_call(lambda: run(gp, cp, c, res.lam, res.mu))
    st = run(gp, cp, c, res.lam, res.mu)
    steps, count = int(st.steps), int(st.count)
    fns = {"jax": lambda: run(gp, cp, c, res.lam, res.mu).count}
    if s.torch_ok:
        tstep = tb.inverse_sample_step(s.t_forward, s.ranges, s.scale, res.lam, float(res.mu), step_length)
        ts0 = _tstate(sample_init(s.problem(s.scale), c, n))

        def torch_sampling():
            t_s = ts0
            for _ in range(steps):
                t_s = tstep(t_s)
            return t_s["count"]

        fns["baseline"] = torch_sampling
    timing = common.interleaved(fns, max(1, repeats // 2), warm=False)
    per_step = common.compiled_flops(
        lambda gp, cp, stt: sample_step(s.problem(s.scale, gp, cp), stt, res.lam, res.mu, step_length),
        gp, cp, sample_init(s.problem(s.scale), c, n))
    return common.row(name, "inverse_set", timing, compile_s=compile_s,
                      flops=None if per_step is None else per_step * steps, peak=peak,
                      k=s.k, n=n, accepted=count, sampling_steps=steps,
                      baseline=("torch eager, same step count" if s.torch_ok else "skipped (not CPU)"))


def rows(ctx):
    from benchmarks.models import small_models
    gen, cls, _ = small_models()
    setups = {}

    def setup(k):
        if k not in setups:
            setups[k] = Setup(gen, cls, "logits", 3, k, ranges=[[4.0, 6.0]], torch_ok=ctx.torch_ok)
        return setups[k]

    yield lambda: al_step_row("inverse_set AL inner step, K=10", setup(10), repeats=ctx.repeats, peak=ctx.peak)
    outer, inner = (1, 5) if ctx.quick else (6, INNER)
    if ctx.quick:  # the smoke test: the whole-run rows reuse the step rows' pieces, and cost compiles
        for k in ctx.ks:
            yield lambda k=k: sample_step_row(f"inverse_set sample step, K={k}", setup(k), repeats=ctx.repeats,
                                              peak=ctx.peak, series="inverse_set_K")
        return
    yield lambda: seed_row("inverse_set seeds, K=10", setup(10), repeats=ctx.repeats, peak=ctx.peak, max_outer=outer,
                           inner=inner)
    yield lambda: sampling_row(f"inverse_set sampling n={ctx.n_samples}, K=10", setup(10), ctx.n_samples,
                               repeats=ctx.repeats, peak=ctx.peak, max_outer=outer, inner=inner)
    for k in ctx.ks:
        yield lambda k=k: sample_step_row(f"inverse_set sample step, K={k}", setup(k), repeats=ctx.repeats,
                                          peak=ctx.peak, series="inverse_set_K")
