"""PPGN: conditional sampling in a generator's code space (Nguyen et al. 2017; docs/methods/ppgn.md).

Nguyen et al. 2017, eq. 11, the MALA-approx sampler of PPGN-h (no Metropolis correction):

    d       = eps1 (R(h_t) - h_t) + eps2 grad_h log p(y = c | G(h_t)) + eps3 n_t,   n_t ~ N(0, I)
    h_{t+1} = clip(h_t + s_t d / mean|d|, lower, upper)

R is the prior's denoiser, so that eps1 (R(h) - h) is a step along grad log p(h) (Alain & Bengio
2014): a denoising autoencoder on h (PPGN-h), or h -> E(G(h)) with E the encoder the generator
inverts (the released Joint PPGN-h: CaffeNet up to fc6). p(y = c | x) is the softmax over the
classifier's output, or, to condition on a hidden neuron, over the channels of its layer at the
neuron's position. As in the reference (Evolving-AI-Lab/ppgn, `sampler.py`):

- the step is normalised by the mean |d| of the chain's own update and scaled by s_t, ramped
  linearly from s_start to s_end over the run; a chain whose d is zero or not finite takes no
  step. `normalize=False` takes eq. 11 as written, h + s_t d.
- after step t the code is clipped to [lower, upper] (the reference's [0, 30] is for fc6), then,
  when reset_every > 0 and t is a positive multiple of it, replaced by a fresh N(0, I) draw (the
  reference also redraws eps1 then, an experiment jaxprobe leaves out).
- h_t is saved with p(y = c | G(h_t)) every `save_every` steps (t = 0, save_every, ...); it is
  *kept* when that probability exceeds `threshold`.
- the reference's condition gradient is (1 - p_c) grad a_c (it drops the other units' terms);
  jaxprobe's default is the exact grad log p(y = c | x) = grad a_c - sum_j p_j grad a_j.

`ppgn_kernel` gives the init/step pair for one chain over any `terms(h) -> Terms`; its state
caches the terms at its code, so each step evaluates G, the classifier and R once. `sample_chain`
and `advance` (the same in chunks) run a chain under `lax.scan` into fixed buffers; `ppgn_run` is
the pure driver (chains by `vmap`); `ppgn` checks its arguments and jits it.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxprobe.checks import check_count, check_number
from jaxprobe.codespace.dgn_am import recorded_encoder, start_codes, step_sizes
from jaxprobe.errors import JaxprobeError
from jaxprobe.models.dae import ROLE as DENOISER_ROLE
from jaxprobe.models.neurons import flat_index, neuron_name, resolve_neuron
from jaxprobe.models.pixels import adapt_images
from jaxprobe.models.probe import Model
from jaxprobe.sharding import check_mesh, constrain_batch, gather, on_mesh, shard_batch

GRADIENTS = ("exact", "reference")


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


class PPGN(NamedTuple):
    """`init(code) -> PPGNState` and `step(key, state, noise=None) -> PPGNState`.

    `noise` is the step's N(0, I) draw n_t (code-shaped), drawn from `key` when None: passing it
    replays a run of another implementation on the same draws. `key` also draws the reset code.
    """

    init: Callable
    step: Callable


class Denoiser(NamedTuple):
    """The prior's R. `layer` None: a DAE on codes, R(h) = model(h). Otherwise R(h) = E(G(h)), E =
    `model` up to `layer` read after its nonlinearity, on G's images adapted to E's input."""

    model: Model
    layer: int | None = None


class PPGNResult(NamedTuple):
    """What `ppgn` returns (c chains, n saved steps).

    Attributes:
      samples: (c, n, *code_shape) h_t at the saved steps.
      probs: (c, n) p(y = c | G(h_t)); labels: (c, n) the softmax's top unit at h_t (the
        classifier's prediction when conditioning on a class).
      kept: (c, n) probs > threshold.
      saved_steps: (n,) the t of each saved column: 0, save_every, 2 save_every, ...
      codes: (c, *code_shape) the last codes h_T; prob: (c,) their probabilities.
      condition: the neuron conditioned on, canonical (`logits:3` for class 3 of the default
        classifier); None from `ppgn_run`.
    """

    samples: jax.Array
    probs: jax.Array
    labels: jax.Array
    kept: jax.Array
    saved_steps: jax.Array
    codes: jax.Array
    prob: jax.Array
    condition: str | None


def ppgn_kernel(terms: Callable, *, steps: int, step_size=1.0, eps1=1e-5, eps2=1.0, eps3=1e-17,
                normalize: bool = True, lower=None, upper=None, reset_every: int = 0) -> PPGN:
    """The MALA-approx update (eq. 11) of one chain as an init/step pair.

    Args:
      terms: code h -> `Terms` at h (one chain, no batch axis).
      steps: T, the length of the step-size ramp (step t reads s_t).
      step_size: s, or (s_start, s_end) ramped linearly (the reference's lr, lr_end: 1, 1).
      eps1, eps2, eps3: the weights of the prior, condition and noise terms (reference 1e-5, 1,
        1e-17; the slides' PPGN-h uses 1e-5, 1, 1e-5).
      normalize: divide d by mean|d| (the reference) or not (eq. 11 as written).
      lower, upper: bounds the code is clipped to after each step (None: none).
      reset_every: redraw the code from N(0, I) after steps t = k reset_every, k >= 1 (0: never).
    """
    start, end = step_size if isinstance(step_size, (tuple, list)) else (step_size, step_size)
    ramp = step_sizes(int(steps), jnp.float32(start), jnp.float32(end))

    def init(code) -> PPGNState:
        code = jnp.asarray(code, jnp.float32)
        return PPGNState(code, *terms(code), jnp.zeros((), jnp.int32))

    def step(key, state: PPGNState, noise=None) -> PPGNState:
        k_noise, k_reset = jax.random.split(key)
        h = state.code
        if noise is None:
            noise = jax.random.normal(k_noise, h.shape, h.dtype)
        d = eps1 * state.drift + eps2 * state.grad + eps3 * noise
        s = ramp[jnp.minimum(state.step, ramp.shape[0] - 1)]
        if normalize:
            scale = jnp.mean(jnp.abs(d))
            ok = (scale > 0) & jnp.isfinite(scale)  # the reference stops a chain whose d is zero
            h = h + jnp.where(ok, s * d / jnp.where(ok, scale, 1.0), 0.0)
        else:
            h = h + s * d
        if lower is not None or upper is not None:
            h = jnp.clip(h, lower, upper)
        if reset_every:
            reset = (state.step > 0) & (state.step % reset_every == 0)
            h = jnp.where(reset, jax.random.normal(k_reset, h.shape, h.dtype), h)
        return PPGNState(h, *terms(h), state.step + 1)

    return PPGN(init, step)


def saved_rows(steps: int, save_every: int) -> int:
    """n = ceil(steps / save_every): the saves at t = 0, save_every, ... < steps."""
    return (steps - 1) // save_every + 1


def advance(kernel: PPGN, state: PPGNState, buffers, keys, *, save_every: int):
    """Continue one chain from `state` for len(keys) steps under `lax.scan`, writing (h_t, p_t, top_t)
    into row t // save_every of `buffers` = (samples (n, *code_shape), probs (n,), tops (n,)) at
    every t (= state.step onward) divisible by save_every.

    Returns (state, buffers). Chunks continue one another: advancing by keys[:a] and then by
    keys[a:] gives the same chain as by keys (a driver can report progress between chunks).
    """
    def body(carry, key_t):
        state, buffers = carry
        row, due = state.step // save_every, state.step % save_every == 0
        buffers = tuple(b.at[row].set(jnp.where(due, v, b[row]))
                        for b, v in zip(buffers, (state.code, state.prob, state.top)))
        return (kernel.step(key_t, state), buffers), None

    (state, buffers), _ = jax.lax.scan(body, (state, buffers), keys)
    return state, buffers


def sample_chain(kernel: PPGN, key, code, *, steps: int, save_every: int):
    """Run one chain for `steps` steps from `code`, with the step keys `jax.random.split(key, steps)`,
    into fixed buffers of `saved_rows(steps, save_every)` rows (`advance`).

    Returns (last state, (samples (n, *code_shape), probs (n,), tops (n,))).
    """
    state = kernel.init(code)
    n = saved_rows(steps, save_every)
    buffers = (jnp.zeros((n,) + state.code.shape, jnp.float32), jnp.zeros((n,), jnp.float32),
               jnp.zeros((n,), jnp.int32))
    return advance(kernel, state, buffers, jax.random.split(key, steps), save_every=save_every)


def condition_terms(generator: Model, gen_params, classifier: Model, cls_params, prior: Denoiser, prior_params,
                    layer: int, channels, unit, *, exact: bool = True, nonlinear: bool = True) -> Callable:
    """h -> `Terms` through G, the classifier and R (one chain; G is evaluated once per call).

    `layer` (static) is the conditioned layer's number, `channels` (C,) the flat indices (as
    `jaxprobe.models.neurons.flat_index` counts) of its C channels at the neuron's position, `unit`
    the conditioned one among them: p(y = unit | x) = softmax(a(x)[channels])[unit].
    """
    def log_condition(x):
        images = adapt_images(x, generator.pixels, classifier.pixels, classifier.input_shape)
        a = classifier.activation(cls_params, images, layer, nonlinear=nonlinear)
        a = jnp.take(a.reshape(-1), channels)
        log_p = jax.nn.log_softmax(a)
        p = jnp.exp(log_p[unit])
        objective = log_p[unit] if exact else jax.lax.stop_gradient(1.0 - p) * a[unit]
        return objective, (p, jnp.argmax(a).astype(jnp.int32))

    def denoise(h, x):
        if prior.layer is None:
            return prior.model.forward(prior_params, h[None])[0]
        e = prior.model
        images = adapt_images(x, generator.pixels, e.pixels, e.input_shape)
        return e.activation(prior_params, images, prior.layer)[0].reshape(h.shape)

    def terms(h):
        x, pull = jax.vjp(lambda h: generator.forward(gen_params, h[None]), h)
        g_x, (p, top) = jax.grad(log_condition, has_aux=True)(x)
        (g_h,) = pull(g_x)
        return Terms(denoise(h, x) - h, g_h, p, top)

    return terms


def ppgn_run(generator: Model, gen_params, classifier: Model, cls_params, prior: Denoiser, prior_params, layer: int,
             channels, unit, key, codes, *, steps: int, save_every: int, threshold=0.0, step_size=(1.0, 1.0),
             eps1=1e-5, eps2=1.0, eps3=1e-17, normalize: bool = True, exact: bool = True, nonlinear: bool = True,
             lower=None, upper=None, reset_every: int = 0, mesh=None) -> PPGNResult:
    """PPGN as a pure function (no checks; jit with the models, prior, layer, steps, save_every,
    normalize, exact, nonlinear, reset_every and mesh static). `codes` (c, *code_shape) are the
    chains' h_0; `key` splits into one key per chain. See `ppgn` for the other arguments."""
    codes = constrain_batch(jnp.asarray(codes, jnp.float32), mesh)
    keys = constrain_batch(jax.random.split(key, codes.shape[0]), mesh)
    kernel = _kernel(generator, gen_params, classifier, cls_params, prior, prior_params, layer, channels, unit,
                     steps=steps, step_size=step_size, eps1=eps1, eps2=eps2, eps3=eps3, normalize=normalize,
                     exact=exact, nonlinear=nonlinear, lower=lower, upper=upper, reset_every=reset_every)
    last, (samples, probs, tops) = jax.vmap(
        lambda k, h: sample_chain(kernel, k, h, steps=steps, save_every=save_every))(keys, codes)
    saved = jnp.arange(samples.shape[1], dtype=jnp.int32) * save_every
    return PPGNResult(samples, probs, tops, probs > threshold, saved, last.code, last.prob, None)


def _kernel(generator, gen_params, classifier, cls_params, prior, prior_params, layer, channels, unit, *, steps,
            step_size, eps1, eps2, eps3, normalize, exact, nonlinear, lower, upper, reset_every) -> PPGN:
    terms = condition_terms(generator, gen_params, classifier, cls_params, prior, prior_params, layer, channels, unit,
                            exact=exact, nonlinear=nonlinear)
    return ppgn_kernel(terms, steps=steps, step_size=step_size, eps1=eps1, eps2=eps2, eps3=eps3,
                       normalize=normalize, lower=lower, upper=upper, reset_every=reset_every)


def ppgn_start(*models, codes, save_every: int, mesh=None, **options):
    """The chunked driver's start: (c chains' `PPGNState`, empty save buffers) for `ppgn_advance`.
    `models` and `options` as `ppgn_run`'s (jit with the same static arguments)."""
    kernel = _kernel(*models, **options)
    state = jax.vmap(kernel.init)(constrain_batch(jnp.asarray(codes, jnp.float32), mesh))
    c, n = state.code.shape[0], saved_rows(options["steps"], save_every)
    return state, (jnp.zeros((c, n) + state.code.shape[1:], jnp.float32), jnp.zeros((c, n), jnp.float32),
                   jnp.zeros((c, n), jnp.int32))


def ppgn_advance(*models, carry, keys, save_every: int, mesh=None, **options):
    """`advance` every chain of `carry` = (state, buffers) by its row of `keys` (c, k) step keys."""
    kernel = _kernel(*models, **options)
    return jax.vmap(lambda s, b, k: advance(kernel, s, b, k, save_every=save_every))(*carry, keys)


_STATIC = ("generator", "classifier", "prior", "layer", "steps", "save_every", "normalize", "exact", "nonlinear",
           "reset_every", "mesh")
_run_jit = jax.jit(ppgn_run, static_argnames=_STATIC)
_MODELS = (0, 2, 4, 6)  # generator, classifier, prior, layer as positions of *models
_start_jit = jax.jit(ppgn_start, static_argnums=_MODELS, static_argnames=_STATIC[4:])
_advance_jit = jax.jit(ppgn_advance, static_argnums=_MODELS, static_argnames=_STATIC[4:])


def _run_chunked(models, key, codes, *, chunk: int, progress, threshold, **options) -> PPGNResult:
    """`ppgn_run` in compiled chunks of `chunk` steps, calling `progress(steps done)` after each;
    the same draws as `ppgn_run` (chain i's step keys are split(split(key, c)[i], steps))."""
    steps, save_every, mesh = options["steps"], options["save_every"], options["mesh"]
    keys = jax.vmap(lambda k: jax.random.split(k, steps))(jax.random.split(key, codes.shape[0]))
    carry = _start_jit(*models, codes=codes, **options)
    for a in range(0, steps, chunk):
        chunk_keys = keys[:, a:a + chunk]
        carry = _advance_jit(*models, carry=carry, keys=chunk_keys if mesh is None else shard_batch(chunk_keys, mesh),
                             **options)
        if progress is not None:
            jax.block_until_ready(carry)  # so that progress reports finished steps, not dispatched ones
            progress(min(a + chunk, steps))
    last, (samples, probs, tops) = carry
    saved = jnp.arange(samples.shape[1], dtype=jnp.int32) * save_every
    return PPGNResult(samples, probs, tops, probs > threshold, saved, last.code, last.prob, None)


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
    """(neuron, (C,) flat indices of its layer's channels at its position, its index among them)
    for class `label` (a unit of the output layer) or a hidden `neuron` address; exactly one."""
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
    return neuron, np.arange(base, base + units, dtype=np.int32), neuron.unit


def ppgn(key, generator: Model, classifier: Model, prior, *, label=None, neuron=None, chains: int = 1,
         steps: int = 200, step_size=1.0, eps1: float = 1e-5, eps2: float = 1.0, eps3: float = 1e-17,
         save_every: int = 5, reset_every: int = 0, threshold: float = 0.0, lower=None, upper=None,
         normalize: bool = True, gradient: str = "exact", nonlinear: bool = True, init=None, gen_params=None,
         cls_params=None, prior_params=None, mesh=None, chunk=None, progress=None) -> PPGNResult:
    """PPGN sampling (Nguyen et al. 2017, eq. 11): chains of codes whose images the
    classifier assigns to a class (or that excite a hidden neuron), under a learned prior on codes.

    Args:
      key: PRNG key for the initial codes (h_0 ~ N(0, I), as the reference) and every step's noise.
      generator: a probe-able generator the classifier can read (after `adapt_images`).
      classifier: the condition network C.
      prior: R, a DAE on the generator's codes (a `Model` of role "denoiser", e.g.
        `jaxprobe.load("h_dae")`) or `encoder_prior(generator)` (R(h) = E(G(h))).
      label: condition on this class: softmax over the classifier's output layer.
      neuron: or on this neuron `layer:unit[@y,x]`: softmax over its layer's channels at its
        position (read after the layer's nonlinearity unless `nonlinear=False`).
      chains: c chains in one program.
      steps: T steps per chain (reference 200).
      step_size: s or (s_start, s_end), ramped linearly (reference 1, 1).
      eps1, eps2, eps3: prior, condition and noise weights, each >= 0 (reference 1e-5, 1, 1e-17).
      save_every: keep h_t every this many steps (reference 5); reset_every: 0 or the reset period.
      threshold: a saved sample is kept when its probability exceeds it, in [0, 1] (reference 0).
      lower, upper: per-unit bounds of the code (scalars or arrays broadcasting to the code shape);
        the reference clips fc6 codes to [0, 30]. Default: unbounded.
      normalize: the reference's step s_t d / mean|d| (default), or h + s_t d.
      gradient: "exact" grad log p(y = c | x), or "reference" (1 - p_c) grad a_c.
      init: (c, *code_shape) initial codes instead of N(0, I) draws.
      gen_params, cls_params, prior_params: parameters (default the models' own).
      mesh: a `jax.sharding.Mesh` with a "batch" axis to split the chains over (c a multiple of
        its device count), or None. The parameters are replicated on it; a mesh may span
        processes (`jax.distributed`): every process then makes the same call and gets the whole
        result (`jaxprobe.sharding.gather`).
      chunk: None (one compiled scan over all steps) or run the chains in compiled chunks of this
        many steps (`advance`; the same chains), calling `progress(steps done)` after each chunk.

    Returns:
      `PPGNResult`: the saved codes with their probabilities, top units and kept mask, and the
      last codes. `jaxprobe.load`'s generator maps samples to images.
    """
    if getattr(generator, "role", None) != "generator":
        raise JaxprobeError(f"generator: expected a generator, got {getattr(generator, 'name', generator)!r} "
                            f"whose role is {getattr(generator, 'role', None)!r}")
    resolved, channels, unit = resolve_condition(classifier, label, neuron)
    prior = check_prior(prior, generator)
    chains = check_count("chains", chains, 1)
    steps = check_count("steps", steps, 1)
    save_every = check_count("save_every", save_every, 1)
    reset_every = check_count("reset_every", reset_every, 0)
    sizes = step_size if isinstance(step_size, (tuple, list)) else (step_size, step_size)
    if len(sizes) != 2:
        raise JaxprobeError(f"step_size: expected s > 0 or a pair (s_start > 0, s_end >= 0), got {step_size!r}")
    s0 = check_number("step_size", sizes[0], low=0.0, low_open=True, what="a step size")
    s1 = check_number("step_size", sizes[1], low=0.0, what="a final step size")
    eps = [check_number(name, v, low=0.0, what="a non-negative weight")
           for name, v in (("eps1", eps1), ("eps2", eps2), ("eps3", eps3))]
    threshold = check_number("threshold", threshold, low=0.0, high=1.0, what="a probability")
    if gradient not in GRADIENTS:
        raise JaxprobeError(f"gradient: expected one of {', '.join(GRADIENTS)}, got {gradient!r}")
    k_init, k_run = jax.random.split(key)
    codes, lo, hi = start_codes(k_init, generator, chains, init, lower, upper)
    check_mesh(mesh, chains, "chains", "the chains")
    chunk = None if chunk is None else check_count("chunk", chunk, 1)
    # Numbers go in as arrays, so another class, eps or threshold reuses the compiled program.
    f32 = np.float32
    numbers = dict(step_size=(f32(s0), f32(s1)), eps1=f32(eps[0]), eps2=f32(eps[1]), eps3=f32(eps[2]), lower=lo,
                   upper=hi, threshold=f32(threshold))
    # With a mesh: parameters, keys and settings on every device, the chains split (`on_mesh`).
    (gp, cp, pp, channels, unit, k_run, numbers), codes = on_mesh(
        mesh, (generator.params if gen_params is None else gen_params,
               classifier.params if cls_params is None else cls_params,
               prior.model.params if prior_params is None else prior_params, channels, np.int32(unit), k_run,
               numbers), codes)
    models = (generator, gp, classifier, cp, prior, pp, resolved.layer, channels, unit)
    threshold = numbers.pop("threshold")
    options = dict(steps=steps, save_every=save_every, normalize=bool(normalize), exact=gradient == "exact",
                   nonlinear=bool(nonlinear), reset_every=reset_every, mesh=mesh, **numbers)
    if chunk is None:
        result = _run_jit(*models, k_run, codes, threshold=threshold, **options)
    else:
        result = _run_chunked(models, k_run, codes, chunk=chunk, progress=progress, threshold=threshold,
                              **options)
    return gather(result)._replace(condition=neuron_name(classifier, resolved))


__all__ = ["Denoiser", "GRADIENTS", "PPGN", "PPGNResult", "PPGNState", "Terms", "advance", "check_prior",
           "ppgn_advance", "ppgn_start",
           "condition_terms", "encoder_prior", "ppgn", "ppgn_kernel", "ppgn_run", "resolve_condition", "sample_chain",
           "saved_rows"]
