"""DGN-AM: activation maximization in a generator's code space (Nguyen et al. 2016; docs/methods/dgn-am.md).

Nguyen et al. 2016, eq. (1): y* = argmax_y Phi_h(G(y)) - lambda ||y||. A generator G maps a code y
to an image, a frozen classifier reads neurons a_j of that image, and gradient ascent on y raises
them; as in the reference code, the lambda ||y|| term acts as a decay of y after each step.
jaxprobe runs c chains at once; chain i maximizes

    F_i(y_i) = sum_j W_ij a_j(T(G(y_i))),

with T the generator-to-classifier pixel map (`jaxprobe.models.pixels.adapt_images`: convention, then
centre crop) and W a (c, p) weight matrix over the p neurons (default the identity: one chain per
neuron; a row with several non-zero weights maximizes a sum of neurons). Iteration t = 0..T-1 of
the reference scripts (Evolving-AI-Lab/synthesizing, `act_max.py` with the fc8 settings):

    s_t = s_start + (s_end - s_start) t / T             step size ramped linearly
    g   = grad F_i(y)                                   skipped when zero or not finite
    y  <- y + s_t g / mean(|g|)                         each chain normalised by its own gradient
    y  <- clip(y, lower, upper)                         per-unit bounds (e.g. 0 and 3x the fc6
                                                        activations seen on real images)
    y  <- decay y                                       the scripts' "L2 weight", 0.99

With `optimizer` (an optax GradientTransformation, e.g. `optax.adam(0.1)`) the normalised step
is replaced by that optimizer's update on -F (ascent on the same objective); the clip and the
decay stay. `real_bounds` gives the reference's per-unit bounds from real images.

The scripts take the step in two stages (an image step normalised by its own mean |gradient|,
then back through G and normalised again); the image step's scale cancels in the second
normalisation, so the single normalised step above is the same update.

`dgn_am_kernel` gives the init/step pair over `DGNAMState` for any objective; `dgn_am_run` is the
pure driver (`lax.scan`); `dgn_am` checks its arguments and jits it. The reference keeps only the
last code; jaxprobe keeps the last and the best evaluated one (docs/methods/dgn-am.md, choices).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxprobe.checks import check_count, check_finite, check_number
from jaxprobe.errors import JaxprobeError
from jaxprobe.models.neurons import flat_index, neuron_name, resolve_neurons, values_at
from jaxprobe.models.pixels import adapt_images
from jaxprobe.models.probe import Model
from jaxprobe.sharding import check_mesh, constrain_batch, gather, on_mesh


PROGRESS_TICKS = 20  # progress calls per run


class DGNAMState(NamedTuple):
    """Codes under optimization; every array has the c chains on its leading axis.

    Attributes:
      code: (c, *code_shape) the current codes.
      best_code: (c, *code_shape) the evaluated code with the highest objective so far.
      best_value: (c,) its objective (-inf before the first evaluation).
      step: () int32, iterations done.
      opt_state: the optax optimizer's state (None for the reference update).
    """

    code: jax.Array
    best_code: jax.Array
    best_value: jax.Array
    step: jax.Array
    opt_state: object = None


class DGNAM(NamedTuple):
    """`init(codes) -> DGNAMState` and `step(state) -> (state, values)` (values: F at the codes the
    step started from, (c,)). The step is deterministic, so it takes no key."""

    init: Callable
    step: Callable


class DGNAMResult(NamedTuple):
    """What `dgn_am` returns (c chains; p neurons).

    Attributes:
      codes: (c, *code_shape) the last codes; values: (c,) their objectives F_i.
      activations: (c, p) every neuron's value at the last codes' images.
      best_codes, best_values: the evaluated codes with the highest objective, and those.
      history: (steps, c) F_i at the start of each iteration (the curve of the optimization).
      images: (c, *generator output) G(codes), in the generator's own pixel convention.
      neurons: the p neurons' canonical addresses; weights: (c, p) the W used.
    """

    codes: jax.Array
    values: jax.Array
    activations: jax.Array
    best_codes: jax.Array
    best_values: jax.Array
    history: jax.Array
    images: jax.Array
    neurons: tuple
    weights: jax.Array


def step_sizes(steps: int, start, end):
    """s_t = start + (end - start) t / steps for t = 0..steps-1 (the reference's linear ramp)."""
    t = jnp.arange(steps, dtype=jnp.float32)
    return start + (end - start) * t / steps


def keep_best(best_code, best_value, code, values):
    """Per chain, (code, value) where value beats best_value, else the best so far."""
    better = values > best_value
    return (jnp.where(better.reshape((-1,) + (1,) * (code.ndim - 1)), code, best_code),
            jnp.where(better, values, best_value))  # a NaN value never becomes the best


def dgn_am_kernel(objective: Callable, *, steps: int, step_size=(8.0, 1e-10), decay=0.99,
                  lower=None, upper=None, optimizer=None) -> DGNAM:
    """The DGN-AM update as an init/step pair for any per-chain objective.

    Args:
      objective: codes (c, *code_shape) -> (c,) values; chain i's value may depend on code i only
        (so the gradient of their sum is every chain's own gradient).
      steps: T, the length of the step-size ramp (the step reads s_t at t = state.step).
      step_size: s_start, or (s_start, s_end); the reference uses (8, 1e-10).
      decay: factor applied to the code after each step (the reference's L2 weight 0.99; 1 = none).
      lower, upper: bounds the code is clipped to before the decay (None: unbounded); scalars or
        arrays broadcasting to code_shape.
      optimizer: None for the reference's normalised step, or an optax GradientTransformation
        whose update on -grad F replaces it (step_size is then unused).
    """
    start, end = step_size if isinstance(step_size, (tuple, list)) else (step_size, step_size)
    ramp = step_sizes(int(steps), jnp.float32(start), jnp.float32(end))

    def total(y):
        v = objective(y)
        return jnp.sum(v), v

    value_and_grad = jax.value_and_grad(total, has_aux=True)

    def init(codes) -> DGNAMState:
        codes = jnp.asarray(codes, jnp.float32)
        return DGNAMState(codes, codes, jnp.full(codes.shape[:1], -jnp.inf, jnp.float32), jnp.zeros((), jnp.int32),
                          None if optimizer is None else optimizer.init(codes))

    def step(state: DGNAMState):
        y = state.code
        (_, values), g = value_and_grad(y)
        axes = tuple(range(1, y.ndim))
        scale = jnp.mean(jnp.abs(g), axis=axes, keepdims=True)
        # The reference skips the update when the gradient is NaN, and stops the run when it is
        # zero; one chain of a batch cannot stop, so either way that chain only takes no step.
        ok = (scale > 0) & jnp.isfinite(scale)
        opt_state = state.opt_state
        if optimizer is None:
            delta = ramp[jnp.minimum(state.step, ramp.shape[0] - 1)] * g / jnp.where(ok, scale, 1.0)
        else:
            delta, opt_state = optimizer.update(-jnp.where(ok, g, 0.0), opt_state, y)
        y_new = y + jnp.where(ok, delta, 0.0)
        if lower is not None or upper is not None:
            y_new = jnp.clip(y_new, lower, upper)
        y_new = decay * y_new
        best_code, best_value = keep_best(state.best_code, state.best_value, y, values)
        return DGNAMState(y_new, best_code, best_value, state.step + 1, opt_state), values

    return DGNAM(init, step)


def neuron_objective(generator: Model, gen_params, classifier: Model, cls_params, layers, flat, weights, *,
                     nonlinear: bool = True):
    """codes -> ((c,) objectives sum_j W_ij a_j, ((c, p) neuron values, G(codes))) through G and
    the classifier (the images in the generator's own convention).

    `layers` (static tuple) and `flat` are the neurons as `jaxprobe.models.neurons.values_at` reads them.
    """
    def values(codes):
        g = generator.forward(gen_params, codes)
        a = values_at(classifier, cls_params, adapt_images(g, generator.pixels, classifier.pixels,
                                                           classifier.input_shape), layers, flat, nonlinear=nonlinear)
        return jnp.sum(a * weights, axis=1), (a, g)

    return values


def dgn_am_run(generator: Model, gen_params, classifier: Model, cls_params, layers, flat, weights, codes, *,
               steps: int, step_size=(8.0, 1e-10), decay=0.99, lower=None, upper=None,
               nonlinear: bool = True, mesh=None, optimizer=None, progress=None) -> DGNAMResult:
    """DGN-AM as a pure function (no checks; jit with generator, classifier, layers, steps,
    nonlinear, mesh, optimizer and progress static). See `dgn_am` for the arguments."""
    codes = constrain_batch(jnp.asarray(codes, jnp.float32), mesh)
    values = neuron_objective(generator, gen_params, classifier, cls_params, layers, flat, weights,
                              nonlinear=nonlinear)
    kernel = dgn_am_kernel(lambda y: values(y)[0], steps=steps, step_size=step_size, decay=decay,
                           lower=lower, upper=upper, optimizer=optimizer)

    every = max(1, steps // PROGRESS_TICKS)

    def body(s, _):
        s, v = kernel.step(s)
        if progress is not None:  # a callback every step costs about half a step of the default models
            tick = (s.step % every == 0) | (s.step == steps)
            jax.lax.cond(tick, lambda n: jax.debug.callback(progress, n), lambda n: None, s.step)
        return s, v

    state, history = jax.lax.scan(body, kernel.init(codes), None, length=steps)
    last, (act, images) = values(state.code)
    best_codes, best_values = keep_best(state.best_code, state.best_value, state.code, last)
    return DGNAMResult(state.code, last, act, best_codes, best_values, history, images, (), weights)


_STATIC = ("generator", "classifier", "layers", "steps", "nonlinear", "mesh", "optimizer", "progress")
_run_jit = jax.jit(dgn_am_run, static_argnames=_STATIC)


def check_bounds(name, value, code_shape):
    """Per-unit code bounds as float32 broadcasting to `code_shape` (None stays None); raise naming
    `name` for a shape that does not broadcast or a non-finite bound."""
    if value is None:
        return None
    b = np.asarray(value, np.float32)
    try:
        np.broadcast_to(b, code_shape)
    except ValueError:
        raise JaxprobeError(f"{name}: expected a scalar or an array broadcasting to the code shape "
                            f"{code_shape}, got shape {b.shape}") from None
    if not np.all(np.isfinite(b)):
        raise JaxprobeError(f"{name}: expected finite bounds, got NaN or inf")
    return b


def start_codes(key, generator: Model, chains: int, init, lower, upper):
    """The chains' initial codes and per-unit bounds, checked: (codes (chains, *code_shape) float32,
    lower, upper (float32 arrays broadcasting to the code shape, or None)).

    Codes are `init` when given (finite, one per chain), otherwise N(0, I) draws from `key` as in
    the reference implementations of DGN-AM and PPGN.
    """
    code_shape = tuple(generator.input_shape)
    lo, hi = check_bounds("lower", lower, code_shape), check_bounds("upper", upper, code_shape)
    if lo is not None and hi is not None and np.any(np.broadcast_to(lo, code_shape) > np.broadcast_to(hi, code_shape)):
        raise JaxprobeError("lower, upper: expected lower <= upper for every unit")
    if init is None:
        return jax.random.normal(key, (chains,) + code_shape, jnp.float32), lo, hi
    codes = jnp.asarray(init, jnp.float32)
    if tuple(codes.shape) != (chains,) + code_shape:
        raise JaxprobeError(f"init: expected codes of shape ({chains}, {', '.join(map(str, code_shape))}) "
                            f"(one per chain), got {tuple(codes.shape)}")
    check_finite("init", codes)
    return codes, lo, hi


def dgn_am(key, generator: Model, classifier: Model, neurons, *, weights=None, steps: int = 200,
           step_size=(8.0, 1e-10), decay: float = 0.99, lower=None, upper=None, init=None,
           nonlinear: bool = True, gen_params=None, cls_params=None, mesh=None, optimizer=None,
           progress=None) -> DGNAMResult:
    """DGN-AM (Nguyen et al. 2016, eq. 1; docs/methods/dgn-am.md): codes whose images excite neurons.

    Args:
      key: PRNG key for the initial codes, y0 ~ N(0, I) as in the reference (unused with `init`).
      generator: a probe-able generator whose output the classifier can read (after
        `adapt_images`: pixel convention, centre crop).
      classifier: the frozen network whose neurons are maximized.
      neurons: one address or p addresses `layer:unit[@y,x]` of the classifier (read after the
        layer's nonlinearity unless `nonlinear=False`; fc8 logits have none).
      weights: (c, p) W: chain i maximizes sum_j W_ij a_j. Default: the p x p identity, one chain
        per neuron, all in one batch.
      steps: T iterations (reference: 200).
      step_size: s_start or (s_start, s_end), ramped linearly (reference: 8 to 1e-10).
      decay: the code is multiplied by it after each step, in (0, 1] (reference: 0.99).
      lower, upper: per-unit bounds of the code (scalars or arrays broadcasting to the code shape),
        applied after each step; the reference clips fc6 codes to [0, 3x the activations seen on
        real images]. Default: unbounded.
      init: (c, *code_shape) initial codes instead of N(0, I) draws.
      nonlinear: read neurons after (default) or before their layer's nonlinearity.
      gen_params, cls_params: parameters (default the models' own).
      mesh: a `jax.sharding.Mesh` with a "batch" axis to split the chains over (c a multiple of
        its device count), or None. The parameters are replicated on it; a mesh may span
        processes (`jax.distributed`): every process then makes the same call and gets the whole
        result (`jaxprobe.sharding.gather`).
      optimizer: None (the reference's normalised, ramped step) or an optax GradientTransformation
        taking the step on -F instead (e.g. `optax.adam(0.05)`); clip and decay still apply.
      progress: None or a function called (outside the program, `jax.debug.callback`) with the
        number of steps done, `PROGRESS_TICKS` times a run, e.g. to move a progress bar.

    Returns:
      `DGNAMResult`: last and best codes with their objectives, every neuron's value at the last
      codes, the objective's history and the last images.
    """
    if getattr(generator, "role", None) != "generator":
        raise JaxprobeError(f"generator: expected a generator, got {getattr(generator, 'name', generator)!r} "
                            f"whose role is {getattr(generator, 'role', None)!r}")
    resolved = resolve_neurons(classifier, neurons)
    p = len(resolved)
    w = np.eye(p, dtype=np.float32) if weights is None else np.asarray(weights, np.float32)
    if w.ndim != 2 or w.shape[1] != p or w.shape[0] < 1:
        raise JaxprobeError(f"weights: expected shape (chains, {p}), one weight per neuron, got {w.shape}")
    check_finite("weights", w)
    c = w.shape[0]
    steps = check_count("steps", steps, 1)
    sizes = np.asarray(step_size, np.float64).reshape(-1)
    if sizes.size not in (1, 2) or not np.all(np.isfinite(sizes)) or np.any(sizes < 0) or sizes[0] <= 0:
        raise JaxprobeError(f"step_size: expected s > 0 or a pair (s_start > 0, s_end >= 0), got {step_size!r}")
    decay = check_number("decay", decay, low=0.0, high=1.0, low_open=True, what="a factor")
    codes, lo, hi = start_codes(key, generator, c, init, lower, upper)
    check_mesh(mesh, c, "weights", "the chains, one per row,")
    if optimizer is not None and not (callable(getattr(optimizer, "init", None))
                                      and callable(getattr(optimizer, "update", None))):
        raise JaxprobeError(f"optimizer: expected None or an optax GradientTransformation, got "
                            f"{type(optimizer).__name__}")
    flat = np.array([flat_index(classifier, n) for n in resolved], np.int32)
    # With a mesh: parameters and settings on every device, the chains split (`on_mesh`).
    (gp, cp, flat, w, lo, hi), codes = on_mesh(
        mesh, (generator.params if gen_params is None else gen_params,
               classifier.params if cls_params is None else cls_params, flat, w, lo, hi), codes)
    result = _run_jit(generator, gp, classifier, cp, tuple(n.layer for n in resolved), flat, jnp.asarray(w), codes,
                      steps=steps,
                      step_size=tuple(float(s) for s in (sizes if sizes.size == 2 else (sizes[0], sizes[0]))),
                      decay=float(decay), lower=lo, upper=hi, nonlinear=bool(nonlinear), mesh=mesh,
                      optimizer=optimizer, progress=progress)
    return gather(result)._replace(neurons=tuple(neuron_name(classifier, n) for n in resolved))


def recorded_encoder(generator: Model, encoder: Model | None = None, layer=None) -> tuple:
    """(encoder, layer): the encoder `generator` inverts, from its manifest's "encoder" record
    ({"model": a shipped name or directory, "layer": ...}) unless both are given."""
    if encoder is None or layer is None:
        record = generator.manifest.get("encoder")
        if not isinstance(record, dict) or "model" not in record or "layer" not in record:
            raise JaxprobeError(f"generator: {generator.name!r} records no encoder (its manifest has no "
                                "'encoder': {'model', 'layer'}); pass encoder and layer")
        if encoder is None:
            from jaxprobe.models.store import load
            encoder = load(record["model"])
        layer = record["layer"] if layer is None else layer
    return encoder, layer


def real_bounds(generator: Model, images, *, multiple: float = 3.0, encoder: Model | None = None, layer=None,
                batch: int = 256):
    """Per-unit code bounds from real data, as the reference's fc6 bounds: (lower, upper) with
    upper = multiple x the largest value of each unit of E(x) over the images x, lower = 0 when E's
    layer ends in a nonlinearity whose outputs are >= 0 on them (a ReLU), else multiple x the smallest.

    `images` (m, H, W, C) are real images in E's canonical [0, 1] scale; E is `encoder` up to
    `layer`, read after its nonlinearity (default: the generator's manifest "encoder" record, e.g.
    the classifier up to fc1 for fc_generator). Returns two float32 arrays of the code's shape.
    """
    encoder, layer = recorded_encoder(generator, encoder, layer)
    multiple = check_number("multiple", multiple, low=0.0, low_open=True, what="a factor")
    x = np.asarray(images, np.float32)
    if x.ndim != 4 or x.shape[1:] != tuple(encoder.input_shape) or len(x) == 0:
        raise JaxprobeError(f"images: expected real images of shape (m, {', '.join(map(str, encoder.input_shape))}), "
                            f"m >= 1, got {x.shape}")
    check_finite("images", x)
    code_shape = tuple(generator.input_shape)
    number = encoder.layer(layer)
    if int(np.prod(encoder.layer_shape(number))) != int(np.prod(code_shape)):
        raise JaxprobeError(f"layer: {encoder.name!r} at {layer!r} gives {encoder.layer_shape(number)}, not the code "
                            f"shape {code_shape} of {generator.name!r}")
    read = jax.jit(lambda p, x: encoder.activation(p, x, number))
    to_input = (lambda v: v) if encoder.pixels is None else encoder.pixels.from_canonical
    h = np.concatenate([np.asarray(read(encoder.params, to_input(jnp.asarray(x[i:i + batch]))))
                        .reshape((-1,) + code_shape) for i in range(0, len(x), batch)])
    low = h.min(axis=0)
    lower = np.zeros(code_shape, np.float32) if np.all(low >= 0) else (multiple * low).astype(np.float32)
    return lower, (multiple * h.max(axis=0)).astype(np.float32)


__all__ = ["DGNAM", "DGNAMResult", "DGNAMState", "dgn_am", "dgn_am_kernel", "dgn_am_run", "keep_best",
           "neuron_objective", "real_bounds", "recorded_encoder", "step_sizes", "check_bounds"]
