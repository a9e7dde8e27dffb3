"""Rows for the code-space samplers: one DGN-AM step and one PPGN step (chains 1..256 on the
shipped models; the paper-scale rows reuse these builders) and one excitation training step
(Despraz et al. 2017), each the step of the method's public kernel (`build(...).step`, under
`jax.vmap` where chains are batched), against eager PyTorch on the same weights, with the floor of
the bare forward+backward of the models each step uses."""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import jaxprobe
from benchmarks import common
from benchmarks import torch_baselines as tb
from jaxprobe.codespace import dgn_am, ppgn
from jaxprobe.codespace.dgn_am import DGNAMNets, DGNAMOptions, NeuronReadout
from jaxprobe.codespace.ppgn import Condition, Denoiser, PPGNNets, PPGNOptions
from jaxprobe.models.pixels import adapt_images

DGN_STEP_SIZE, DGN_DECAY = 8.0, 0.99  # the reference's first step (t = 0) and L2 decay


def taps(model, params, x, ls, nonlinear=True):
    """jaxprobe's network in one pass up to max(ls): layer l's value (after its act) for l in ls."""
    net = nnx.merge(model.graphdef, params)
    out, last = {}, max(ls)
    for i, layer in enumerate(net.layers[:last], 1):
        x = layer.pre(x)
        if nonlinear or i != last:
            x = layer.act(x)
        if i in ls:
            out[i] = x
        if i < last:
            for op in layer.after:
                x = op(x)
    return out


def floor_fn(generator, classifier, read_layers, *, extra=None, nonlinear=True):
    """The bare forward+backward of G then the classifier up to `read_layers` (one pass; the last
    read after its nonlinearity unless `nonlinear` is False), with random cotangents on what is
    read; `extra(params, images)` adds a forward the step also runs (a prior) without gradient.
    Returns jitted f(gp, cp, codes)."""
    def f(gp, cp, codes, cots):
        def fwd(c):
            x = generator.forward(gp, c)
            xa = adapt_images(x, generator.pixels, classifier.pixels, classifier.input_shape)
            out = taps(classifier, cp, xa, read_layers, nonlinear)
            return sum(jnp.sum(out[l] * cots[l]) for l in out), x
        (_, x), g = jax.value_and_grad(fwd, has_aux=True)(codes)
        return g if extra is None else (g, extra(cp, jax.lax.stop_gradient(x)))
    return jax.jit(f)


def cotangents(generator, classifier, read_layers, c, key=1):
    """Random N(0, 1) cotangents for `floor_fn`'s taps at c images, from numpy seed `key`."""
    shapes = jax.eval_shape(lambda x: taps(classifier, classifier.params, x, read_layers),
                            jax.ShapeDtypeStruct((c,) + tuple(classifier.input_shape), jnp.float32))
    rng = np.random.default_rng(key)
    return {l: jnp.asarray(rng.standard_normal(s.shape, np.float32)) for l, s in shapes.items()}


def close(name, before, a, b, *, median_tol=1e-3, max_tol=5e-2):
    """Assert jaxprobe's update (a - before) and the baseline's (b - before) agree chain by chain:
    relative L2 error at most `median_tol` for the median chain and `max_tol` for every chain.

    Not every chain to float32 rounding: a piecewise-linear network's gradient jumps where rounding
    moves an input across a ReLU kink or changes a max-pooling argmax, and a normalized step
    (DGN-AM, PPGN, the inverse set) magnifies the jump in a chain whose gradient is small. Returns
    the figures for results.json.
    """
    before = np.asarray(before, np.float64)
    da = (np.asarray(a, np.float64) - before).reshape(before.shape[0], -1)
    db = (np.asarray(b, np.float64) - before).reshape(before.shape[0], -1)
    err = np.linalg.norm(da - db, axis=1) / np.maximum(np.linalg.norm(da, axis=1), 1e-30)
    err = np.where(np.linalg.norm(da, axis=1) == 0, np.linalg.norm(db, axis=1), err)
    med, worst = float(np.median(err)), float(np.max(err))
    assert med <= median_tol and worst <= max_tol, (
        f"{name}: baseline disagrees with jaxprobe: per-chain relative error of the update median {med:.2e} "
        f"(tolerance {median_tol}), max {worst:.2e} (tolerance {max_tol})")
    return {"median_rel_err": med, "max_rel_err": worst, "median_tol": median_tol, "max_tol": max_tol}


def close_values(name, a, b, rtol=1e-3):
    """Assert forward values agree within `rtol` of their scale."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol * max(1e-30, float(np.max(np.abs(a)))),
                               err_msg=f"{name}: baseline values disagree with jaxprobe")


# ---------------------------------------------------------------- DGN-AM


class DGNAMStep(NamedTuple):
    """The suite's DGN-AM step: `step(*args)` jitted, for `codes` (chains, *code_shape) maximizing
    neuron `flat` of layer number `layer` with `weights` (chains, 1) under `options`."""

    step: Callable
    args: tuple
    codes: jax.Array
    weights: np.ndarray
    layer: int
    flat: np.ndarray
    options: DGNAMOptions


def dgn_am_step(generator, classifier, layer_name, unit, chains) -> DGNAMStep:
    """The public one-chain kernel (`jaxprobe.codespace.dgn_am.build`, the reference's first step
    size and decay, the neuron read before its layer's nonlinearity as by default) under `jax.vmap`,
    jitted with the networks' parameters as arguments; its arguments (gp, cp, keys, state) at
    N(0, I) codes (`benchmarks.profile_step` profiles this same step)."""
    layer = classifier.layer(layer_name)
    flat = np.array([unit], np.int32)
    w = np.ones((chains, 1), np.float32)
    options = DGNAMOptions(step_size=(DGN_STEP_SIZE, 1e-10), decay=DGN_DECAY)
    readout = NeuronReadout((layer,), flat)

    def kernel(gp, cp):
        return dgn_am.build(DGNAMNets(generator, classifier, gp, cp), options, readout)

    @jax.jit
    def step(gp, cp, keys, state):
        return jax.vmap(kernel(gp, cp).step)(keys, state)[0]

    gp, cp = generator.params, classifier.params
    codes = jax.random.normal(jax.random.PRNGKey(chains), (chains,) + tuple(generator.input_shape))
    state = jax.vmap(kernel(gp, cp).init)(codes, jnp.asarray(w))
    keys = jax.random.split(jax.random.PRNGKey(0), chains)  # the step is deterministic: unused
    return DGNAMStep(step, (gp, cp, keys, state), codes, w, layer, flat, options)


def dgn_am_row(name, generator, classifier, layer_name, unit, chains, *, repeats, peak, torch_ok, group="codespace",
               series=None, extra_fields=None, tol=(1e-3, 5e-2), loop_steps=None):
    """One DGN-AM step for `chains` chains all maximizing neuron `layer_name:unit`: the public
    one-chain kernel (`jaxprobe.codespace.dgn_am.build`, the reference's first step size and decay,
    the neuron read before its layer's nonlinearity as by default) under `jax.vmap`, the networks'
    parameters as jit arguments; with `loop_steps`, also `jaxprobe.dgn_am` run for that many steps
    from the same codes (`common.loop_fields`)."""
    s = dgn_am_step(generator, classifier, layer_name, unit, chains)
    layer, flat, w, options, step, codes = s.layer, s.flat, s.weights, s.options, s.step, s.codes
    gp, cp, keys, state = s.args
    compile_s = common.first_call(lambda: step(gp, cp, keys, state))
    floor = floor_fn(generator, classifier, (layer,), nonlinear=options.nonlinear)
    cots = cotangents(generator, classifier, (layer,), chains)
    fns = {"jax": lambda: step(gp, cp, keys, state).code, "floor": lambda: floor(gp, cp, codes, cots)}
    if loop_steps:  # as users run it: the public function, the reference's step size and decay (its defaults)
        common.loop_pair(fns, lambda n: lambda: jaxprobe.dgn_am(
            jax.random.PRNGKey(0), generator, classifier, f"{layer_name}:{unit}", weights=w, steps=n, init=codes).codes,
            loop_steps)
    agree = None
    if torch_ok:
        tstep = tb.dgn_am_step(tb.TorchNet(generator), tb.TorchNet(classifier), generator, classifier, layer, flat,
                               w, DGN_STEP_SIZE, DGN_DECAY, nonlinear=options.nonlinear)
        y0 = tb.t(codes)
        # The update compared is y' - decay y (decay scales the code itself).
        agree = close(name, DGN_DECAY * np.asarray(codes), step(gp, cp, keys, state).code, tstep(y0).numpy(),
                      median_tol=tol[0], max_tol=tol[1])
        fns["baseline"] = lambda: tstep(y0)
    timing = common.interleaved(fns, repeats)
    flops = common.compiled_flops(step, gp, cp, keys, state)
    r = common.row(name, group, timing, compile_s=compile_s, flops=flops, peak=peak, agreement=agree, chains=chains,
                   baseline="torch eager" if torch_ok else "skipped (not CPU)", series=series, size=chains,
                   size_name="chains", **(extra_fields or {}))
    return common.loop_fields(r, timing, loop_steps, max(1, loop_steps // 2)) if loop_steps else r


# ---------------------------------------------------------------- PPGN


def ppgn_row(name, generator, classifier, layer_name, unit, prior: Denoiser, prior_params, chains, *, repeats, peak,
             torch_ok, group="codespace", series=None, tol=(1e-3, 5e-2), loop_steps=None):
    """One PPGN step (eq. 11) for `chains` chains conditioned on unit `unit` of `layer_name`'s softmax
    (`layer_name` the classifier's output layer): the public one-chain kernel
    (`jaxprobe.codespace.ppgn.build` with `PPGNOptions()`, the reference's settings) under
    `jax.vmap`, the networks' parameters as jit arguments; each chain draws its noise from its own
    step key inside the step, and the baseline replays it (`ppgn.draw_noise`). With `loop_steps`,
    also `jaxprobe.ppgn` run for that many steps (steps + 1 updates) from the same codes
    (`common.loop_fields`)."""
    layer = classifier.layer(layer_name)
    n_ch = int(np.prod(classifier.layer_shape(layer)))
    channels = np.arange(n_ch, dtype=np.int32)
    gp, cp = generator.params, classifier.params
    options = PPGNOptions()
    condition = Condition(layer, jnp.asarray(channels), jnp.asarray(unit, jnp.int32))

    def kernel(gp, cp, pp):
        return ppgn.build(PPGNNets(generator, classifier, prior, gp, cp, pp), options, condition)

    init = jax.jit(lambda gp, cp, pp, h: jax.vmap(kernel(gp, cp, pp).init)(h))

    @jax.jit
    def step(gp, cp, pp, keys, state):
        return jax.vmap(kernel(gp, cp, pp).step)(keys, state)[0]

    key = jax.random.PRNGKey(chains)
    codes = jnp.abs(jax.random.normal(key, (chains,) + tuple(generator.input_shape)))
    keys = jax.random.split(jax.random.fold_in(key, 1), chains)
    noise = jax.vmap(ppgn.draw_noise)(keys, codes)  # what each chain's step draws, for the baseline
    state = jax.block_until_ready(init(gp, cp, prior_params, codes))
    compile_s = common.first_call(lambda: step(gp, cp, prior_params, keys, state))

    if prior.layer is None:
        def extra(_, x, pp=prior_params):
            return None
        prior_fn = jax.jit(lambda pp, h: prior.model.forward(pp, h))
    else:
        def extra(_, x, pp=prior_params):
            e = prior.model
            return e.activation(pp, adapt_images(x, generator.pixels, e.pixels, e.input_shape), prior.layer)
        prior_fn = None
    floor = floor_fn(generator, classifier, (layer,), extra=extra, nonlinear=options.nonlinear)
    cots = cotangents(generator, classifier, (layer,), chains)
    if prior_fn is None:
        floor_call = lambda: floor(gp, cp, codes, cots)  # noqa: E731
    else:  # a DAE prior on codes: its forward is part of the step's models
        floor_call = lambda: (floor(gp, cp, codes, cots), prior_fn(prior_params, codes))  # noqa: E731
    fns = {"jax": lambda: step(gp, cp, prior_params, keys, state).code, "floor": floor_call}
    if loop_steps:  # as users run it: the public function with its defaults (the reference's)
        common.loop_pair(fns, lambda n: lambda: jaxprobe.ppgn(key, generator, classifier, prior, label=unit,
                                                             chains=chains, steps=n, init=codes).codes, loop_steps)
    agree = None
    if torch_ok:
        g_t, c_t = tb.TorchNet(generator), tb.TorchNet(classifier)
        if prior.layer is None:
            terms = tb.ppgn_terms(g_t, c_t, generator, classifier, layer, channels, unit,
                                  prior=tb.TorchNet(prior.model, prior_params), nonlinear=options.nonlinear)
        else:
            p_t = c_t if prior.model is classifier else tb.TorchNet(prior.model, prior_params)
            terms = tb.ppgn_terms(g_t, c_t, generator, classifier, layer, channels, unit, prior=p_t,
                                  prior_layer=prior.layer, prior_model=prior.model, nonlinear=options.nonlinear)
        tstep = tb.ppgn_step(terms, step_size=float(ppgn.step_size_at(options, 0)), eps1=options.eps1,
                             eps2=options.eps2, eps3=options.eps3)
        args = tuple(tb.t(a) for a in (state.code, state.drift, state.grad, noise))
        out_j = step(gp, cp, prior_params, keys, state)
        out_t = tstep(*args)
        agree = close(name, state.code, out_j.code, out_t[0].numpy(), median_tol=tol[0], max_tol=tol[1])
        close_values(name + " (prob)", out_j.prob, out_t[3].numpy())
        fns["baseline"] = lambda: tstep(*args)
    timing = common.interleaved(fns, repeats)
    flops = common.compiled_flops(step, gp, cp, prior_params, keys, state)
    r = common.row(name, group, timing, compile_s=compile_s, flops=flops, peak=peak, agreement=agree,
                   chains=chains,
                   baseline="torch eager" if torch_ok else "skipped (not CPU)", series=series, size=chains,
                   size_name="chains")
    # jaxprobe.ppgn's `steps` = n makes n + 1 updates (the reference's loop): per update
    return common.loop_fields(r, timing, loop_steps + 1, max(1, loop_steps // 2) + 1) if loop_steps else r


def excite_available():
    """(module, None) when jaxprobe.codespace.excite imports, else (None, the reason)."""
    try:
        from jaxprobe.codespace import excite
    except Exception as e:  # noqa: BLE001 - any import failure leaves the row out
        return None, f"jaxprobe.codespace.excite does not import ({type(e).__name__}: {e})"
    if not hasattr(excite, "problem_kernel"):
        return None, "jaxprobe.codespace.excite has no problem_kernel"
    return excite, None


def rows(ctx):
    """The code-space rows on the shipped models: DGN-AM and PPGN steps at each chain count."""
    from benchmarks.models import small_models
    gen, cls, dae = small_models()
    for i, c in enumerate(ctx.chains):
        yield lambda c=c, i=i: dgn_am_row(f"dgn_am step, {c} chains", gen, cls, "logits", 3, c, repeats=ctx.repeats,
                                          peak=ctx.peak, torch_ok=ctx.torch_ok, series="dgn_am_chains",
                                          loop_steps=ctx.loop_steps if i == 0 or not ctx.quick else None)
    for c in ctx.chains[:1] if ctx.quick else ctx.chains:
        yield lambda c=c: ppgn_row(f"ppgn step, {c} chains", gen, cls, "logits", 3, Denoiser(dae, None), dae.params, c,
                                   repeats=ctx.repeats, peak=ctx.peak, torch_ok=ctx.torch_ok, series="ppgn_chains",
                                   loop_steps=None if ctx.quick else ctx.loop_steps)
    excite, _ = excite_available()
    if excite is not None:
        # 10x the steps: a call builds a fresh default generator (about 0.6 s), which 10 and 5 steps'
        # difference (60 ms) drowned in the calls' spread.
        yield lambda: excite_row(excite, repeats=ctx.repeats, peak=ctx.peak, torch_ok=ctx.torch_ok,
                                 loop_steps=None if ctx.quick else 10 * ctx.loop_steps)


def breakdown(ctx, chains: int) -> dict:
    """The shipped DGN-AM models per layer at `chains` codes (`rows_paper.layer_breakdown`)."""
    from benchmarks.models import small_models
    from benchmarks.rows_paper import layer_breakdown
    gen, cls, _ = small_models()
    code = jax.random.normal(jax.random.PRNGKey(0), (chains,) + tuple(gen.input_shape))
    res = layer_breakdown(ctx, gen, cls, code, lambda x: x, max_layers=1 if ctx.quick else None)
    return {**res, "what": f"DGN-AM on the shipped {gen.name} + {cls.name}"}


def _flat(tree, prefix=""):
    """A nested dict of arrays (nnx.to_pure_dict) as {"layers/0/linear/alpha": numpy array}."""
    out = {}
    for k, v in tree.items():
        path = f"{prefix}{k}"
        out.update(_flat(v, path + "/") if isinstance(v, dict) else {path: np.asarray(v, np.float64)})
    return out


def _rel(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-30))


def excite_agreement(excite, problem, gen, cls, state, fixed, f0, keys, tstep, tgen, *,
                     loss_tol=1e-4, grad_tol=1e-4, update_tol=1e-4, noise_tol=1e-4):
    """Run jaxprobe's excitation kernel (`excite.problem_kernel`'s step; `state` holds the target's
    `weights` and `lam`) and the torch transcription for len(keys) steps from `state` on the same
    jitter draws and assert they agree: the loss at every step (relative error <= loss_tol),
    the first step's gradient leaf by leaf (relative L2 <= grad_tol) and G's total update after
    the last step leaf by leaf (relative L2 <= update_tol).

    Left out of the gradient and update comparison: the biases of convolutions followed by a batch
    norm. Batch norm with the image's own statistics subtracts their effect exactly, so their
    gradient is 0 in exact arithmetic and float32 rounding noise in both implementations; AdaMax
    divides the gradient by its own magnitude (+1e-8), turning that noise into steps of up to lr
    in arbitrary directions (seen: relative error ~1). Their gradients are checked to be noise
    instead: at most `noise_tol` of the largest gradient norm of any leaf, on both sides."""
    variant = problem.variant
    before = _flat(nnx.to_pure_dict(state.params))
    dead = {k for k in before if k.endswith("linear/bias")
            and f"{k.rsplit('/', 2)[0]}/norm/scale" in before}
    kernel_step = excite.problem_kernel(problem, None, fixed, cls.params, f0).step

    @jax.jit
    def step(k, s):
        """The kernel's step, its loss, the jitter it drew and the gradient of eq. 2 it followed
        (one compiled program: eager gradients of G cost seconds of op-by-op dispatch)."""
        x = excite.jitter(k, f0, variant)
        grad = jax.grad(excite.excite_loss)(s.params, fixed, x, problem, cls.params, s.weights, s.lam)
        new, info = kernel_step(k, s)
        return new, info.loss, x, grad

    loss_err, grad_err, noise = 0.0, 0.0, 0.0
    s = state
    for n, key in enumerate(keys):
        s, lj, x, grad = step(key, s)
        if n == 0:
            gj = _flat(nnx.to_pure_dict(grad))
        lt = float(tstep(tb.t(x)[None]))
        loss_err = max(loss_err, abs(lt - float(lj)) / max(abs(float(lj)), 1e-30))
        if n == 0:
            gt = {k: np.asarray(v.grad.detach().permute(2, 3, 1, 0) if v.ndim == 4 else v.grad.detach(), np.float64)
                  for k, v in tgen.params.items()}
            big = max(np.linalg.norm(g) for g in gj.values())
            grad_err = max(_rel(gj[k], gt[k]) for k in gj if k not in dead)
            noise = max(max(np.linalg.norm(gj[k]), np.linalg.norm(gt[k])) / big for k in dead) if dead else 0.0
    after_j = _flat(nnx.to_pure_dict(s.params))
    after_t = {k: np.asarray(v, np.float64) for k, v in tgen.jax_layout().items()}
    upd_err = max(_rel(after_j[k] - before[k], after_t[k] - before[k]) for k in before if k not in dead)
    agree = {"steps": len(keys), "loss_rel_err": loss_err, "loss_tol": loss_tol, "grad_rel_err": grad_err,
             "grad_tol": grad_tol, "update_rel_err": upd_err, "update_tol": update_tol,
             "bn_bias_grad_over_max": noise, "noise_tol": noise_tol, "excluded": sorted(dead),
             # the summary every torch row reports: the worst of the three, against the tightest tolerance
             "max_rel_err": max(loss_err, grad_err, upd_err), "max_tol": min(loss_tol, grad_tol, update_tol)}
    assert loss_err <= loss_tol and grad_err <= grad_tol and upd_err <= update_tol and noise <= noise_tol, (
        f"excitation step: baseline disagrees with jaxprobe: {agree}")
    return agree


def excite_row(excite, *, repeats, peak, torch_ok=True, loop_steps=None):
    """One excitation-training step (Despraz et al. 2017: the step of the public one-target kernel
    `jaxprobe.codespace.excite.problem_kernel`, the scratch variant, target logits:3 of the shipped
    classifier; its parameters as jit arguments). Floor: the bare forward+backward
    of G and the classifier with respect to G's trained parameters. Baseline: the step transcribed
    in eager torch (`tb.excite_scratch_step`, torch.optim.Adamax), checked against jaxprobe's over
    two steps on the same jitter draws (`excite_agreement`) before timing. With `loop_steps`, also
    `jaxprobe.excite` training one generator for that many steps (`common.loop_fields`)."""
    from benchmarks.models import small_models
    _, cls, _ = small_models()
    gen = excite.default_generator(cls, jax.random.PRNGKey(0))
    variant = excite.SCRATCH
    trained, fixed = excite.split_params(gen, gen.params, variant)
    f0 = jnp.ones(gen.input_shape, jnp.float32)
    target = excite.parse_target(cls, "logits:3")
    problem, weights = excite.training_problem(gen, cls, [target], variant)
    weights = jax.tree.map(lambda a: a[0], weights)
    key = jax.random.PRNGKey(1)
    lam = np.float32(excite.DEFAULT_LAMBDA)
    state = excite.problem_kernel(problem, trained, fixed, cls.params, f0).init(weights, lam)

    @jax.jit
    def step(key, state, fixed, cp):
        return excite.problem_kernel(problem, None, fixed, cp, f0).step(key, state)[0].params

    compile_s = common.first_call(lambda: step(key, state, fixed, cls.params))
    x = excite.jitter(key, f0, variant)
    images = jax.eval_shape(lambda t: excite.generate(problem, nnx.merge_state(t, fixed), x), trained)
    out_shape = jax.eval_shape(lambda im: cls.forward(cls.params, adapt_images(im, gen.pixels, cls.pixels,
                                                                               cls.input_shape)), images)
    cot = jnp.asarray(np.random.default_rng(0).standard_normal(out_shape.shape, np.float32))

    @jax.jit
    def floor(trained, fixed, cp):
        def f(t):
            im = excite.generate(problem, nnx.merge_state(t, fixed), x)
            return jnp.sum(cls.forward(cp, adapt_images(im, gen.pixels, cls.pixels, cls.input_shape)) * cot)
        return jax.grad(f)(trained)

    fns = {"jax": lambda: step(key, state, fixed, cls.params), "floor": lambda: floor(trained, fixed, cls.params)}
    if loop_steps:  # as users run it: the public function, the same target and classifier
        common.loop_pair(fns, lambda n: lambda: jaxprobe.excite(key, "logits:3", classifier=cls, steps=n).loss,
                         loop_steps)
    agree = None
    if torch_ok:
        tgen = tb.TorchExciteGenerator(gen)
        tstep = tb.excite_scratch_step(tgen, tb.TorchNet(cls), gen, cls, target.readout.layer, target.units,
                                       float(lam), variant.reg_weight, variant.lr)
        agree = excite_agreement(excite, problem, gen, cls, state, fixed, f0, [key, jax.random.PRNGKey(2)], tstep,
                                 tgen)
        x_t = tb.t(x)[None]
        fns["baseline"] = lambda: tstep(x_t)  # G keeps training from step 3 on: the cost of a step is the same
    timing = common.interleaved(fns, repeats)
    flops = common.compiled_flops(step, key, state, fixed, cls.params)
    r = common.row("excitation training step (scratch, logits:3)", "codespace", timing, compile_s=compile_s,
                   flops=flops, peak=peak, agreement=agree,
                   baseline="torch eager" if torch_ok else "skipped (not CPU)")
    return common.loop_fields(r, timing, loop_steps, max(1, loop_steps // 2)) if loop_steps else r
