"""PPGN: conditional sampling in a generator's code space (Nguyen et al. 2017; docs/methods/ppgn.md).

Nguyen et al. 2017, eq. 11, the MALA-approx sampler of PPGN-h (no Metropolis correction):

    d       = eps1 (R(h_t) - h_t) + eps2 grad_h log p(y = c | G(h_t)) + eps3 n_t,   n_t ~ N(0, I)
    h_{t+1} = clip(h_t + s_t d / mean|d|, lower, upper)

R is the prior's denoiser, so that eps1 (R(h) - h) is a step along grad log p(h) (Alain & Bengio
2014): a denoising autoencoder on h (PPGN-h), or h -> E(G(h)) with E the encoder the generator
inverts (the released Joint PPGN-h: CaffeNet up to fc6). p(y = c | x) is the softmax over the
classifier's output, or, to condition on a hidden neuron, over the channels of its layer at the
neuron's position, read before the layer's nonlinearity by default. As in the reference
(Evolving-AI-Lab/ppgn, `sampler.py`):

- a hidden layer is read where `net.forward(end=layer)` leaves its blob: Caffe's ReLU runs in
  place as a later layer, so the value, its softmax and the gradient are pre-ReLU
  (`nonlinear=False`, the default; True reads after the nonlinearity).
- the loop `while True: ... if i > 0 and i % n_iters == 0: break; i += 1` updates h at i = 0..n:
  a run of `steps` = n makes n + 1 updates, with s_i = s_start + (s_end - s_start) i / n, and
  saves G(h_i) at every i % save_every == 0 (41 samples for n = 200, save_every 5). The saved
  sample of step i is the code *before* that step's update, with its p(y = c | G(h_i)).
- the step is normalised by the mean |d| of the chain's own update; a chain whose d is zero or
  not finite takes no step (the reference stops there). `normalize=False` takes eq. 11 as
  written, h + s_t d.
- after step t the code is clipped to [lower, upper] (the reference's [0, 30] is for fc6), then,
  when reset_every > 0 and t is a positive multiple of it, replaced by a fresh N(0, I) draw (the
  reference also redraws eps1 then, an experiment jaxprobe leaves out).
- a saved sample is *kept* when its probability exceeds `threshold`.
- the reference's condition gradient is (1 - p_c) grad a_c (it drops the other units' terms);
  jaxprobe's default is the exact grad log p(y = c | x) = grad a_c - sum_j p_j grad a_j.

The kernel protocol (`jaxprobe.driver`): `build(nets, options, condition)` returns a one-chain
`Kernel` whose state caches the terms at its code, so each step evaluates G, the classifier and R
once; `ppgn` runs chains of it through `jaxprobe.driver.run(..., vmap=True)`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxprobe.checks import check_count, check_number, with_settings
from jaxprobe.codespace.dgn_am import recorded_encoder, start_codes
from jaxprobe.driver import Kernel, call, compiled, run
from jaxprobe.errors import JaxprobeError
from jaxprobe.models.dae import ROLE as DENOISER_ROLE
from jaxprobe.models.neurons import flat_index, neuron_name, resolve_neuron
from jaxprobe.models.pixels import adapt_images
from jaxprobe.models.probe import Model
from jaxprobe.sharding import check_mesh

GRADIENTS = ("exact", "reference")
FLOAT32_MAX = float(np.finfo(np.float32).max)
NOISE_BOUND = 10.0  # |n_t| of a N(0, 1) draw in float32 stays below it (the largest is about 5.4)


class PPGNOptions(NamedTuple):
    """Every setting of PPGN (Nguyen et al. 2017, eq. 11), with the reference's defaults.

    Attributes:
      steps: n; the chain makes n + 1 updates (i = 0..n, as the reference's loop). Default 200.
      step_size: s, or (s_start, s_end) ramped linearly over i = 0..n (reference lr, lr_end: 1, 1).
      eps1: prior weight (reference 1e-5).
      eps2: condition weight (reference 1).
      eps3: noise weight (reference 1e-17; the slides' PPGN-h uses 1e-5).
      save_every: save h_i at every i % save_every == 0, i = 0..n (reference 5).
      reset_every: redraw the code from N(0, I) after steps i = k reset_every, k >= 1 (0: never).
      threshold: a saved sample is kept when its probability exceeds it, in [0, 1] (reference 0).
      lower: per-unit lower bound of the code (scalar or array broadcasting to the code shape),
        None: unbounded. The reference clips fc6 codes to [0, 30].
      upper: per-unit upper bound, as `lower`.
      normalize: the reference's step s_t d / mean|d| (True), or eq. 11 as written, h + s_t d.
      gradient: "exact" grad log p(y = c | x), or "reference" (1 - p_c) grad a_c.
      nonlinear: read the conditioned layer after its nonlinearity (True) or before (False, the
        reference's blob at net.forward(end=layer), Caffe's in-place ReLU not yet run).
    """

    steps: int = 200
    step_size: Any = 1.0
    eps1: Any = 1e-5
    eps2: Any = 1.0
    eps3: Any = 1e-17
    save_every: int = 5
    reset_every: int = 0
    threshold: Any = 0.0
    lower: Any = None
    upper: Any = None
    normalize: bool = True
    gradient: str = "exact"
    nonlinear: bool = False


class Denoiser(NamedTuple):
    """The prior's R. `layer` None: a DAE on codes, R(h) = model(h). Otherwise R(h) = E(G(h)), E =
    `model` up to `layer` read after its nonlinearity, on G's images adapted to E's input."""

    model: Model
    layer: int | None = None


class PPGNNets(NamedTuple):
    """The networks PPGN uses, by name (parameters default to each model's own).

    Attributes:
      generator: G, codes -> images.
      classifier: the condition network C.
      prior: a `Denoiser` (R), or a DAE `Model` on codes (R(h) = model(h)).
      gen_params, cls_params, prior_params: parameters of G, C and R's model (None: the model's).
    """

    generator: Model
    classifier: Model
    prior: Denoiser
    gen_params: Any = None
    cls_params: Any = None
    prior_params: Any = None


class Condition(NamedTuple):
    """What p(y = c | x) reads: softmax(a_layer(x)[channels])[unit].

    Attributes:
      layer: the conditioned layer's number (static).
      channels: (C,) int32 flat indices (as `jaxprobe.models.neurons.flat_index` counts) of the
        layer's C channels at the neuron's position.
      unit: () int32, the conditioned one among them.
    """

    layer: int
    channels: Any
    unit: Any


class Terms(NamedTuple):
    """What a step needs at a code h (one chain).

    Attributes:
      drift: R(h) - h, code-shaped (the prior term before eps1).
      grad: grad_h log p(y = c | G(h)) (or the reference's surrogate), code-shaped.
      prob: () p(y = c | G(h)).
      top: () int32, the unit of the softmax with the highest probability (the predicted class).
    """

    drift: jax.Array
    grad: jax.Array
    prob: jax.Array
    top: jax.Array


class PPGNState(NamedTuple):
    """One chain: its code h_t, the terms at h_t (`Terms`' fields) and t."""

    code: jax.Array
    drift: jax.Array
    grad: jax.Array
    prob: jax.Array
    top: jax.Array
    step: jax.Array


class PPGNInfo(NamedTuple):
    """What step t records: the sample h_t it started from (code-shaped), p(y = c | G(h_t)) and
    the softmax's top unit there (what the reference saves at iteration t)."""

    code: jax.Array
    prob: jax.Array
    top: jax.Array


class PPGNResult(NamedTuple):
    """What `ppgn` returns (c chains, n saved steps).

    Attributes:
      samples: (c, n, *code_shape) h_t at the saved steps.
      probs: (c, n) p(y = c | G(h_t)); labels: (c, n) the softmax's top unit at h_t (the
        classifier's prediction when conditioning on a class).
      kept: (c, n) probs > threshold.
      saved_steps: (n,) the t of each saved column: 0, save_every, 2 save_every, ... <= steps.
      codes: (c, *code_shape) the last codes h_{steps + 1}; prob: (c,) their probabilities.
      condition: the neuron conditioned on, canonical (`logits:3` for class 3 of the default
        classifier); None where no neuron name is known.
    """

    samples: jax.Array
    probs: jax.Array
    labels: jax.Array
    kept: jax.Array
    saved_steps: jax.Array
    codes: jax.Array
    prob: jax.Array
    condition: str | None


# ---- the kernel ----------------------------------------------------------------------------------

def draw_noise(key, code):
    """n_t ~ N(0, I) of the step whose key is `key`: the first half of `jax.random.split(key)`
    (the second draws a reset code). Code-shaped, float32: to replay a chain elsewhere."""
    return jax.random.normal(jax.random.split(key)[0], jnp.shape(code), jnp.float32)


def step_size_at(options: PPGNOptions, t):
    """s_t = s_start + (s_end - s_start) t / n for t = 0..n (the reference's `lr + (lr_end - lr) i /
    n_iters`), held at s_end past n."""
    start, end = _pair(options.step_size)
    n = int(options.steps)
    return start + (end - start) * jnp.minimum(t, n).astype(jnp.float32) / n


def ppgn_kernel(terms: Callable, options: PPGNOptions | None = None, **settings) -> Kernel:
    """The MALA-approx update (eq. 11) of one chain over any `terms(h) -> Terms`.

    `init(code) -> PPGNState` (terms at h_0, t = 0); `step(key, state) -> (PPGNState, PPGNInfo)`
    draws n_t from `key` (`draw_noise`) and, at a reset step, the fresh code from its second half.
    Settings: `options` with `settings` (PPGNOptions field names) replaced into it; the networks
    and the condition are in `terms`, so `gradient` and `nonlinear` do not apply here.
    """
    opts = with_settings(PPGNOptions, options, settings, what="a PPGN setting")

    def init(code) -> PPGNState:
        code = jnp.asarray(code, jnp.float32)
        return PPGNState(code, *terms(code), jnp.zeros((), jnp.int32))

    def step(key, state: PPGNState):
        h = state.code
        d = opts.eps1 * state.drift + opts.eps2 * state.grad + opts.eps3 * draw_noise(key, h)
        s = step_size_at(opts, state.step)
        if opts.normalize:
            scale = jnp.mean(jnp.abs(d))
            ok = (scale > 0) & jnp.isfinite(scale)  # the reference stops a chain whose d is zero
            h = h + jnp.where(ok, s * d / jnp.where(ok, scale, 1.0), 0.0)
        else:
            h = h + s * d
        if opts.lower is not None or opts.upper is not None:
            h = jnp.clip(h, opts.lower, opts.upper)
        if opts.reset_every:
            reset = (state.step > 0) & (state.step % opts.reset_every == 0)
            h = jnp.where(reset, jax.random.normal(jax.random.split(key)[1], h.shape, h.dtype), h)
        info = PPGNInfo(state.code, state.prob, state.top)
        return PPGNState(h, *terms(h), state.step + 1), info

    return Kernel(init, step)


def condition_terms(nets: PPGNNets, condition: Condition, options: PPGNOptions | None = None) -> Callable:
    """h -> `Terms` through G, the classifier and R (one chain; G is evaluated once per call).

    p(y = unit | x) = softmax(a(x)[channels])[unit] with a the classifier's `condition.layer`,
    read before its nonlinearity unless `options.nonlinear`; the gradient is exact or the
    reference's as `options.gradient` says.
    """
    opts = PPGNOptions() if options is None else options
    g, c, prior = nets.generator, nets.classifier, nets.prior
    prior = prior if isinstance(prior, Denoiser) else Denoiser(prior)  # a DAE model as such
    gp = g.params if nets.gen_params is None else nets.gen_params
    cp = c.params if nets.cls_params is None else nets.cls_params
    pp = prior.model.params if nets.prior_params is None else nets.prior_params
    exact = opts.gradient == "exact"
    layer, channels, unit = condition

    def log_condition(x):
        images = adapt_images(x, g.pixels, c.pixels, c.input_shape)
        a = c.activation(cp, images, layer, nonlinear=bool(opts.nonlinear))
        a = jnp.take(a.reshape(-1), channels)
        log_p = jax.nn.log_softmax(a)
        p = jnp.exp(log_p[unit])
        objective = log_p[unit] if exact else jax.lax.stop_gradient(1.0 - p) * a[unit]
        return objective, (p, jnp.argmax(a).astype(jnp.int32))

    def denoise(h, x):
        if prior.layer is None:
            return prior.model.forward(pp, h[None])[0]
        e = prior.model
        images = adapt_images(x, g.pixels, e.pixels, e.input_shape)
        return e.activation(pp, images, prior.layer)[0].reshape(h.shape)

    def terms(h):
        x, pull = jax.vjp(lambda h: g.forward(gp, h[None]), h)
        g_x, (p, top) = jax.grad(log_condition, has_aux=True)(x)
        (g_h,) = pull(g_x)
        return Terms(denoise(h, x) - h, g_h, p, top)

    return terms


def build(nets: PPGNNets, options: PPGNOptions, condition) -> Kernel:
    """PPGN's one-chain kernel (eq. 11) on `nets`, conditioned on `condition`: a `Condition`, a
    neuron address `layer:unit[@y,x]` or a class (an int, a unit of the output layer).

    `kernel.init(code)` takes one code (the generator's code shape); `kernel.step(key, state)`
    makes one update. Run chains with `jaxprobe.driver.run(kernel, key, states, options.steps + 1,
    save_every=options.save_every, vmap=True)`, or compose the kernel with `jax.vmap`,
    `jax.lax.scan` and `jax.jit` directly. No checks (`ppgn` checks its arguments).
    """
    if not isinstance(condition, Condition):
        label, neuron = (condition, None) if isinstance(condition, (int, np.integer)) else (None, condition)
        condition = resolve_condition(nets.classifier, label, neuron)[1]
    return ppgn_kernel(condition_terms(nets, condition, options), options)


# ---- settings and checks -------------------------------------------------------------------------

def _pair(step_size):
    return tuple(step_size) if isinstance(step_size, (tuple, list)) else (step_size, step_size)


def check_float32(name: str, value, *, factor: float = 1.0, what: str, **bounds) -> float:
    """`check_number`, then finite as float32 and `factor` x value within float32's range (the
    largest product the method forms with it); raise naming `name` otherwise."""
    v = check_number(name, value, what=what, **bounds)
    if abs(v) * max(factor, 1.0) > FLOAT32_MAX:  # float32(v) itself overflows beyond its max
        limit = FLOAT32_MAX / factor
        raise JaxprobeError(f"{name}: expected {what} whose products stay finite in float32 (|value| <= "
                            f"{limit:.3g}), got {value!r}")
    return v


def check_options(options: PPGNOptions, code_size: int) -> PPGNOptions:
    """`options` checked (counts, float32-finite numbers and their products with the code's
    `code_size` units, the gradient's name) with its numbers as Python floats; bounds are
    checked by `start_codes`."""
    o = options
    steps = check_count("steps", o.steps, 1)
    sizes = _pair(o.step_size)
    if len(sizes) != 2:
        raise JaxprobeError(f"step_size: expected s > 0 or a pair (s_start > 0, s_end >= 0), got {o.step_size!r}")
    # |s d / mean|d|| <= s x code_size: the normalised step can put the whole budget on one unit.
    s0 = check_float32("step_size", sizes[0], low=0.0, low_open=True, what="a step size", factor=code_size)
    s1 = check_float32("step_size", sizes[1], low=0.0, what="a final step size", factor=code_size)
    eps = [check_float32(name, v, low=0.0, what="a non-negative weight", factor=f)
           for name, v, f in (("eps1", o.eps1, 1.0), ("eps2", o.eps2, 1.0), ("eps3", o.eps3, NOISE_BOUND))]
    if o.gradient not in GRADIENTS:
        raise JaxprobeError(f"gradient: expected one of {', '.join(GRADIENTS)}, got {o.gradient!r}")
    return o._replace(steps=steps, step_size=(s0, s1), eps1=eps[0], eps2=eps[1], eps3=eps[2],
                      save_every=check_count("save_every", o.save_every, 1),
                      reset_every=check_count("reset_every", o.reset_every, 0),
                      threshold=check_float32("threshold", o.threshold, low=0.0, high=1.0, what="a probability"),
                      normalize=bool(o.normalize), nonlinear=bool(o.nonlinear))


def encoder_prior(generator: Model, encoder: Model | None = None, layer=None) -> Denoiser:
    """R(h) = E(G(h)) with E the encoder `generator` inverts: its manifest's "encoder" record
    ({"model": a shipped name or directory, "layer": ...}) unless `encoder` and `layer` are given."""
    encoder, layer = recorded_encoder(generator, encoder, layer)
    return Denoiser(encoder, encoder.layer(layer))


def check_prior(prior, generator: Model) -> Denoiser:
    """`prior` as a `Denoiser` whose R maps the generator's codes to codes of the same shape.

    A `Model` is taken as a DAE on codes (role "denoiser"); raise naming `prior` otherwise.
    """
    code = tuple(generator.input_shape)
    if isinstance(prior, Model):
        prior = Denoiser(prior)
    if not isinstance(prior, Denoiser) or not isinstance(prior.model, Model):
        raise JaxprobeError(f"prior: expected a DAE model (role {DENOISER_ROLE!r}) or a Denoiser "
                            f"(jaxprobe.codespace.ppgn.encoder_prior), got {type(prior).__name__}")
    m = prior.model
    if prior.layer is None:
        if m.role != DENOISER_ROLE:
            raise JaxprobeError(f"prior: expected a DAE on codes (role {DENOISER_ROLE!r}), got {m.name!r} whose "
                                f"role is {m.role!r}")
        shapes = (tuple(m.input_shape), m.output_shape())
        if shapes != (code, code):
            raise JaxprobeError(f"prior: the DAE {m.name!r} maps codes of shape {shapes[0]} to {shapes[1]}; "
                                f"expected {code}, the code shape of generator {generator.name!r}")
        return prior
    out = m.layer_shape(m.layer(prior.layer))
    if int(np.prod(out)) != int(np.prod(code)):
        raise JaxprobeError(f"prior: encoder {m.name!r} gives codes of shape {out} at layer "
                            f"{m.layer_names[m.layer(prior.layer) - 1]!r}; expected {code}, the code shape of "
                            f"generator {generator.name!r}")
    return Denoiser(m, m.layer(prior.layer))


def resolve_condition(classifier: Model, label, neuron) -> tuple:
    """(the resolved neuron, its `Condition`) for class `label` (a unit of the output layer) or a
    hidden `neuron` address; exactly one."""
    if (label is None) == (neuron is None):
        raise JaxprobeError("label, neuron: expected exactly one: a class to condition on, or a neuron address")
    if label is not None:
        last = classifier.n_layers
        units = classifier.layer_shape(last)[-1]
        if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label < units:
            raise JaxprobeError(f"label: expected a class 0..{units - 1} of {classifier.name!r}, got {label!r}")
        neuron = f"{classifier.layer_names[last - 1]}:{int(label)}"
    neuron = resolve_neuron(classifier, neuron)
    base = flat_index(classifier, neuron._replace(unit=0))
    units = classifier.layer_shape(neuron.layer)[-1]
    return neuron, Condition(neuron.layer, np.arange(base, base + units, dtype=np.int32), np.int32(neuron.unit))


def check_nets(generator, classifier, prior, params: dict) -> PPGNNets:
    """The networks checked (a generator, a prior for its codes) as `PPGNNets` with `params`
    (gen_params, cls_params, prior_params) filled in from the models where not given."""
    if getattr(generator, "role", None) != "generator":
        raise JaxprobeError(f"generator: expected a generator, got {getattr(generator, 'name', generator)!r} "
                            f"whose role is {getattr(generator, 'role', None)!r}")
    prior = check_prior(prior, generator)
    return PPGNNets(generator, classifier, prior,
                    generator.params if params.get("gen_params") is None else params["gen_params"],
                    classifier.params if params.get("cls_params") is None else params["cls_params"],
                    prior.model.params if params.get("prior_params") is None else params["prior_params"])


# ---- running chains ------------------------------------------------------------------------------

def summarize(out, options: PPGNOptions, condition: str | None = None) -> PPGNResult:
    """A `PPGNResult` from the `jaxprobe.driver.RunResult` of chains run with `vmap`."""
    trace = jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), out.trace)  # chains first
    saved = jnp.arange(trace.prob.shape[1], dtype=jnp.int32) * options.save_every
    return PPGNResult(trace.code, trace.prob, trace.top, trace.prob > options.threshold, saved, out.state.code,
                      out.state.prob, condition)


def ppgn_run(nets: PPGNNets, options: PPGNOptions, condition, key, codes, *, mesh=None, chunk=None,
             progress=None) -> PPGNResult:
    """PPGN chains from `codes` (c, *code_shape): build, init, `jaxprobe.driver.run` with chain i
    drawing its step t from fold_in(fold_in(key, i), t), summary. Pure (no checks): works inside
    `jax.jit` with the arrays as arguments, or compiles itself on concrete values."""
    kernel = build(nets, options, condition)
    state = call(jax.vmap(kernel.init), jnp.asarray(codes, jnp.float32), mesh=mesh)
    out = run(kernel, key, state, int(options.steps) + 1, save_every=int(options.save_every), vmap=True,
              mesh=mesh, chunk=chunk, progress=progress)
    return summarize(out, options)


def _arrays(options: PPGNOptions) -> PPGNOptions:
    """The numbers as float32 arrays: closed over by the kernel they become arguments of the
    compiled program (Python floats would be folded in), so another eps or threshold reuses it."""
    f = lambda v: None if v is None else jnp.asarray(v, jnp.float32)  # noqa: E731
    return options._replace(step_size=tuple(f(s) for s in options.step_size), eps1=f(options.eps1),
                            eps2=f(options.eps2), eps3=f(options.eps3), threshold=f(options.threshold),
                            lower=f(options.lower), upper=f(options.upper))


PARAMS = ("gen_params", "cls_params", "prior_params")


def ppgn(key, generator: Model, classifier: Model, prior, *, label=None, neuron=None, chains: int = 1, init=None,
         mesh=None, chunk=None, progress=None, options: PPGNOptions | None = None, **settings) -> PPGNResult:
    """PPGN sampling (Nguyen et al. 2017, eq. 11): chains of codes whose images the classifier
    assigns to a class (or that excite a hidden neuron), under a learned prior on codes.

    Args:
      key: PRNG key: its first half draws the initial codes (h_0 ~ N(0, I), as the reference),
        its second every step's noise (chain i, step t: fold_in(fold_in(key_2, i), t)).
      generator: a probe-able generator the classifier can read (after `adapt_images`).
      classifier: the condition network C.
      prior: R, a DAE on the generator's codes (a `Model` of role "denoiser", e.g.
        `jaxprobe.load("h_dae")`) or `encoder_prior(generator)` (R(h) = E(G(h))).
      label: condition on this class: softmax over the classifier's output layer.
      neuron: or on this neuron `layer:unit[@y,x]`: softmax over its layer's channels at its
        position (read before the layer's nonlinearity unless `nonlinear=True`).
      chains: c chains in one program.
      init: (c, *code_shape) initial codes instead of N(0, I) draws.
      mesh: a `jax.sharding.Mesh` with a "batch" axis to split the chains over (c a multiple of
        its device count), or None; the parameters are replicated on it, a mesh may span
        processes (every process makes the same call and gets the whole result).
      chunk: None (one compiled program) or compiled chunks of this many steps, `progress`
        and Ctrl-C between them (the same chains).
      progress: None or progress(steps done, steps) (about 20 calls; steps = options.steps + 1).
      options: `PPGNOptions` (default the reference's settings).
      **settings: `PPGNOptions` fields replaced into `options` (steps=, eps1=, ...), and
        gen_params, cls_params, prior_params (default the models' own).

    Returns:
      `PPGNResult`: the saved codes with their probabilities, top units and kept mask, and the
      last codes. `jaxprobe.load`'s generator maps samples to images.
    """
    params = {k: settings.pop(k) for k in PARAMS if k in settings}
    opts = with_settings(PPGNOptions, options, settings, what="a PPGN setting")
    nets = check_nets(generator, classifier, prior, params)
    resolved, condition = resolve_condition(classifier, label, neuron)
    opts = check_options(opts, int(np.prod(generator.input_shape)))
    chains = check_count("chains", chains, 1)
    k_init, k_run = jax.random.split(key)
    codes, lo, hi = start_codes(k_init, generator, chains, init, opts.lower, opts.upper)
    check_mesh(mesh, chains, "chains", "the chains")
    chunk = None if chunk is None else check_count("chunk", chunk, 1)
    condition = Condition(condition.layer, jnp.asarray(condition.channels), jnp.asarray(condition.unit))
    opts = _arrays(opts._replace(lower=lo, upper=hi))
    if mesh is None and chunk is None:  # one program, found again without tracing by a second call
        result = compiled(ppgn_run, nets, opts, condition, k_run, codes, progress=progress)
    else:
        result = ppgn_run(nets, opts, condition, k_run, codes, mesh=mesh, chunk=chunk, progress=progress)
    return result._replace(condition=neuron_name(classifier, resolved))


__all__ = ["Condition", "Denoiser", "GRADIENTS", "PPGNInfo", "PPGNNets", "PPGNOptions", "PPGNResult", "PPGNState",
           "Terms", "build", "check_float32", "check_nets", "check_options", "check_prior", "condition_terms",
           "draw_noise", "encoder_prior", "ppgn", "ppgn_kernel", "ppgn_run", "resolve_condition",
           "step_size_at", "summarize"]
