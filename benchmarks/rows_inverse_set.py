"""Rows for the inverse set (Hada & Carreira-Perpiñán 2019): one augmented-Lagrangian inner step of
the seeds, the seeds' whole solve, one sampling step (scaling with K) and sampling n = 500, against
eager PyTorch on the same weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

import jaxprobe
from benchmarks import common
from benchmarks import torch_baselines as tb
from benchmarks.rows_codespace import close, close_values, cotangents, floor_fn
from jaxprobe import driver
from jaxprobe.inverse_sets import auglag, sampling
from jaxprobe.inverse_sets.problem import Embedding, InverseSetNets, Targets, default_embedding, make_problem
from jaxprobe.inverse_sets.seeds import seed_solver
from jaxprobe.models.pixels import adapt_images

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
        """`make_problem` as `inverse_set` builds it (defaults: post-nonlinearity, two-sided, embedding
        diversity, normalized); E is the classifier's own layer, read in the classifier's pass."""
        gp = self.gen.params if gp is None else gp
        cp = self.cls.params if cp is None else cp
        nets = InverseSetNets(self.gen, self.cls, Embedding(self.cls, self.emb_layer, self.emb.nonlinear), gp, cp)
        return make_problem(nets, Targets((self.layer,), self.flat, jnp.asarray(self.ranges)), feature_scale=scale)

    def floor(self):
        f = floor_fn(self.gen, self.cls, tuple(sorted({self.layer, self.emb_layer})))
        cots = cotangents(self.gen, self.cls, tuple(sorted({self.layer, self.emb_layer})), self.k)
        return lambda c: f(self.gen.params, self.cls.params, c, cots)


def sampler(problem, n, lam, mu, step_length):
    """The public sampler kernel (`jaxprobe.inverse_sets.sampling.build`, repel "new", `inverse_set`'s default)."""
    return sampling.build(problem, n, lam, mu, step_length)


def _tstate(st):
    return {"codes": tb.t(st.codes), "fresh": torch.from_numpy(np.array(st.fresh)),
            "buf_codes": tb.t(st.buf_codes), "buf_values": tb.t(st.buf_values), "buf_embed": tb.t(st.buf_embed),
            "count": torch.tensor(int(st.count))}


def sample_step_row(name, s: Setup, *, repeats, peak, group="inverse_set", series=None, n=500, tol=(1e-3, 5e-2)):
    """One sampling step (eq. 9-10) from the initial codes with lambda = 0, mu = mu0: the public
    sampler kernel's step (`jaxprobe.inverse_sets.sampling.build`), parameters as jit arguments."""
    gp, cp = s.gen.params, s.cls.params
    lam = jnp.zeros((2 * s.k,), jnp.float32)
    step_length = BETA * s.rms * np.sqrt(np.prod(s.gen.input_shape))
    key = jax.random.PRNGKey(0)  # the step is deterministic: unused

    @jax.jit
    def step(gp, cp, st):
        return sampler(s.problem(s.scale, gp, cp), n, lam, MU0, step_length).step(key, st)[0]

    st0 = sampler(s.problem(s.scale), n, lam, MU0, step_length).init(s.c0)
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
        kernel = sampler(s.problem(s.scale, gp, cp), n, lam, mu, step_length)
        # inverse_set's loop: the first step judges the seeds, then max_steps sampling steps
        return driver.run(kernel, jax.random.PRNGKey(0), kernel.init(c), max_steps + 1, trace=None,
                          until=sampling.done).state

    compile_s = common.first_call(lambda: run(gp, cp, c, res.lam, res.mu))
    st = run(gp, cp, c, res.lam, res.mu)
    steps, count = int(st.steps), int(st.count)
    fns = {"jax": lambda: run(gp, cp, c, res.lam, res.mu).count}
    if s.torch_ok:
        tstep = tb.inverse_sample_step(s.t_forward, s.ranges, s.scale, res.lam, float(res.mu), step_length)
        ts0 = _tstate(sampler(s.problem(s.scale), n, res.lam, res.mu, step_length).init(c))

        def torch_sampling():
            t_s = ts0
            for _ in range(steps):
                t_s = tstep(t_s)
            return t_s["count"]

        fns["baseline"] = torch_sampling
    timing = common.interleaved(fns, max(1, repeats // 2), warm=False)
    per_step = common.compiled_flops(
        lambda gp, cp, stt: sampler(s.problem(s.scale, gp, cp), n, res.lam, res.mu, step_length).step(None, stt),
        gp, cp, sampler(s.problem(s.scale), n, res.lam, res.mu, step_length).init(c))
    return common.row(name, "inverse_set", timing, compile_s=compile_s,
                      flops=None if per_step is None else per_step * steps, peak=peak,
                      k=s.k, n=n, accepted=count, sampling_steps=steps,
                      baseline=("torch eager, same step count" if s.torch_ok else "skipped (not CPU)"))


def covering_range(generator, classifier, layer_name, unit, codes):
    """A range [lo - w, hi + w] of neuron `layer_name:unit` (post-nonlinearity) over the images of
    `codes`, w = hi - lo: every code starts inside its middle half (the seeds' margin), so the
    seeds are feasible at once and the sampler runs its whole budget."""
    layer = classifier.layer(layer_name)

    @jax.jit
    def value(gp, cp, c):
        x = adapt_images(generator.forward(gp, c), generator.pixels, classifier.pixels, classifier.input_shape)
        return classifier.activation(cp, x, layer).reshape(c.shape[0], -1)[:, unit]

    v = np.asarray(value(generator.params, classifier.params, codes))
    lo, hi = float(v.min()), float(v.max())
    w = max(hi - lo, 1e-3 * max(1.0, abs(hi)))
    return (lo - w, hi + w)


def loop_row(name, generator, classifier, layer_name, unit, k, steps, *, repeats, peak, group="inverse_set",
             ranges=None, inner_steps=5, max_outer=1):
    """The sampler as users run it: `jaxprobe.inverse_set` (K = k, from codes E(random images)),
    called with sampling budgets `steps` and 2 `steps` (one compiled program: budgets are not
    static); seconds per sampling step = the difference of the two calls' medians over the
    difference of their step counts, so the seeds (`inner_steps` x `max_outer`, the same in both)
    and the call's fixed costs cancel. jax_s is that per-step time; the floor is the bare
    forward+backward of G and the classifier at K codes (the neuron's and the embedding's layers)."""
    emb = jaxprobe.default_embedding(generator, classifier)
    emb_layer = classifier.layer(emb.layer) if isinstance(emb.layer, str) else emb.layer
    layer = classifier.layer(layer_name)
    x0 = jax.random.uniform(jax.random.PRNGKey(k), (k,) + tuple(classifier.input_shape))
    if classifier.pixels is not None:
        x0 = classifier.pixels.from_canonical(x0)
    codes = classifier.activation(classifier.params, x0, emb_layer).reshape((k,) + tuple(generator.input_shape))
    ranges = covering_range(generator, classifier, layer_name, unit, codes) if ranges is None else ranges
    n = k * (2 * steps + 2)  # never complete within the budgets: each call runs its budget out

    def run(budget):
        return jaxprobe.inverse_set(jax.random.PRNGKey(0), generator, classifier, f"{layer_name}:{unit}", ranges,
                                    n=n, k=k, init=codes, inner_steps=inner_steps, max_outer=max_outer,
                                    max_sampling_steps=budget)

    s1, s2 = run(steps).sampling_steps, run(2 * steps).sampling_steps
    read = tuple(sorted({layer, emb_layer}))
    f = floor_fn(generator, classifier, read)
    cots = cotangents(generator, classifier, read, k)
    fns = {"short": lambda: run(steps).codes, "long": lambda: run(2 * steps).codes,
           "floor": lambda: f(generator.params, classifier.params, codes, cots)}
    timing = common.interleaved(fns, max(3, repeats))
    diff = timing.median["long"] - timing.median["short"]
    if s2 > s1 and diff > 0:
        per_step, method = diff / (s2 - s1), "difference of the two budgets"
    else:  # load noise swamped a tiny difference: the long call whole, an upper bound
        per_step, method = timing.median["long"] / max(1, int(s2)), "long call / its sampling steps"
    r = common.row(name, group, timing, jax_s=per_step, compile_s=timing.first["short"], peak=peak,
                   baseline="none (the step rows time eager torch)", k=k, sampler=True,
                   sampling_steps=(int(s1), int(s2)), calls_s=(timing.median["short"], timing.median["long"]),
                   loop_method=method, as_users_run_it=True)
    r.update(loop_s=per_step, loop_steps=int(s2 - s1), loop_compile_s=timing.first["short"], loop_ratio=None,
             loop_overhead=r["overhead"])
    return r


def rows(ctx):
    from benchmarks.models import small_models
    gen, cls, _ = small_models()
    if not ctx.quick:
        yield lambda: loop_row("inverse_set sampling loop (jaxprobe.inverse_set), K=10", gen, cls, "logits", 3, 10,
                               ctx.loop_steps, repeats=ctx.repeats, peak=ctx.peak)
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
