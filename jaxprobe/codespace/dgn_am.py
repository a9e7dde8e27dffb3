"""DGN-AM: activation maximization in a generator's code space (Nguyen et al. 2016; docs/methods/dgn-am.md).

Nguyen et al. 2016, eq. (1): y* = argmax_y Phi_h(G(y)) - lambda ||y||. A generator G maps a code y
to an image, a frozen classifier reads neurons a_j of that image, and gradient ascent on y raises
them; as in the reference code, the lambda ||y|| term acts as a decay of y after each step.
Chain i maximizes

    F_i(y_i) = sum_j W_ij a_j(T(G(y_i))),

with T the generator-to-classifier pixel map (`jaxprobe.models.pixels.adapt_images`: convention, then
centre crop), a_j the p neurons read before their layer's nonlinearity (the reference reads the blob
`net.forward(end=layer)` leaves, before Caffe's in-place ReLU runs) and W a (c, p) weight matrix
(default the identity: one chain per neuron). Iteration t = 0..T-1 of the reference scripts
(Evolving-AI-Lab/synthesizing, `act_max.py` with the fc8 settings):

    s_t = s_start + (s_end - s_start) t / T             step size ramped linearly
    g   = grad F_i(y)                                   zero or not finite: the chain stops
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

The kernel (`jaxprobe.driver` protocol): `build(nets, options, neurons)` (or `dgn_am_kernel` for
any objective) gives `init(code, target) -> DGNAMState` and `step(key, state) -> (DGNAMState,
DGNAMInfo)` for ONE chain (the step is deterministic and ignores its key); chains run by
`jaxprobe.driver.run(..., vmap=True)`. `dgn_am_run` is that composition as a pure function,
`dgn_am` checks its arguments and runs it. The result holds G of the last code (the reference's
loop returns the image of the code before its last update, whose result it never renders) and
the best evaluated code (docs/methods/dgn-am.md, choices).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxprobe.checks import check_count, check_finite, check_number, with_settings
from jaxprobe.driver import Kernel, call, compiled, run
from jaxprobe.errors import JaxprobeError
from jaxprobe.models.neurons import flat_index, neuron_name, resolve_neurons, values_at
from jaxprobe.models.pixels import adapt_images
from jaxprobe.models.probe import Model
from jaxprobe.sharding import check_mesh, replicate

F32_MAX = float(np.finfo(np.float32).max)


def as_float32(value) -> np.ndarray:
    """`value` cast to a float32 array (values beyond float32's range become +-inf, silently: the
    callers' finiteness checks name them)."""
    with np.errstate(over="ignore", under="ignore"):
        return np.asarray(value, np.float32)


class DGNAMNets(NamedTuple):
    """The networks DGN-AM uses.

    Attributes:
      generator: G, codes -> images.
      classifier: the frozen network whose neurons are maximized.
      gen_params, cls_params: their parameters (None: the models' own).
    """

    generator: Model
    classifier: Model
    gen_params: Any = None
    cls_params: Any = None


class DGNAMOptions(NamedTuple):
    """DGN-AM's settings, defaults those of the reference scripts (`act_max.py`, fc8 settings).

    Attributes:
      steps: T iterations, the length of the step-size ramp (200).
      step_size: s_start or (s_start, s_end), ramped linearly ((8.0, 1e-10)).
      decay: factor applied to the code after each step, in (0, 1] (the reference's L2 weight 0.99).
      lower, upper: per-unit bounds of the code (None: unbounded), scalars or arrays broadcasting
        to the code shape, applied after each step and before the decay.
      nonlinear: read neurons after their layer's nonlinearity (False: before it, as the
        reference reads them; fc8 logits have none).
      optimizer: None (the reference's normalised step) or an optax GradientTransformation whose
        update on -grad F replaces it (step_size is then unused).
    """

    steps: int = 200
    step_size: Any = (8.0, 1e-10)
    decay: float = 0.99
    lower: Any = None
    upper: Any = None
    nonlinear: bool = False
    optimizer: Any = None


class NeuronReadout(NamedTuple):
    """The p neurons of the objective as `jaxprobe.models.neurons.values_at` reads them.

    Attributes:
      layers: (static) tuple of p layer numbers.
      flat: (p,) int32 flat indices into those layers' outputs.
    """

    layers: tuple
    flat: Any


class DGNAMState(NamedTuple):
    """One chain's state (with `vmap`, every array gains the chains as its leading axis).

    Attributes:
      code: (*code_shape) the current code.
      best_code: (*code_shape) the evaluated code with the highest objective so far.
      best_value: () its objective (-inf before the first evaluation).
      step: () int32, updates made (the ramp's t; it stays put once the chain stops).
      stopped: () bool, the gradient was zero or not finite at `code`: the chain makes no more updates.
      target: what the objective reads besides the code (the neuron weights W_i, (p,)), or None.
      opt_state: the optax optimizer's state (None for the reference update).
    """

    code: jax.Array
    best_code: jax.Array
    best_value: jax.Array
    step: jax.Array
    stopped: jax.Array
    target: Any = None
    opt_state: Any = None


class DGNAMInfo(NamedTuple):
    """What one step reports: value, () F at the code the step started from; stopped, () bool after it."""

    value: jax.Array
    stopped: jax.Array


DGNAM = Kernel  # the init/step pair's type


class DGNAMResult(NamedTuple):
    """What `dgn_am` returns (c chains; p neurons).

    Attributes:
      codes: (c, *code_shape) the last codes; values: (c,) their objectives F_i.
      activations: (c, p) every neuron's value at the last codes' images.
      best_codes, best_values: the evaluated codes with the highest objective, and those.
      history: (steps, c) F_i at the start of each iteration (a stopped chain's stays at its last value).
      images: (c, *generator output) G(codes), in the generator's own pixel convention.
      neurons: the p neurons' canonical addresses; weights: (c, p) the W used.
      stopped: (c,) bool, the chain stopped on a zero or non-finite gradient.
      steps_taken: (c,) int32, the updates each chain made (T for a chain that never stopped).
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
    stopped: Any = None
    steps_taken: Any = None


def step_sizes(steps: int, start, end):
    """s_t = start + (end - start) t / steps for t = 0..steps-1 (the reference's linear ramp)."""
    t = jnp.arange(steps, dtype=jnp.float32)
    return start + (end - start) * t / steps


def keep_best(best_code, best_value, code, values):
    """(code, value) where value beats best_value, else the best so far (one chain: value (); or
    chains on the leading axis: values (c,)). A NaN value never becomes the best."""
    better = values > best_value
    mask = better.reshape(better.shape + (1,) * (jnp.ndim(code) - better.ndim))
    return jnp.where(mask, code, best_code), jnp.where(better, values, best_value)


def _pair(step_size) -> tuple:
    return tuple(step_size) if isinstance(step_size, (tuple, list, np.ndarray)) else (step_size, step_size)


def dgn_am_kernel(objective: Callable, options: DGNAMOptions | None = None, **settings) -> Kernel:
    """The DGN-AM update (Nguyen et al. 2016, eq. 1, as the reference scripts take it) for ONE chain
    and any objective, as a `jaxprobe.driver.Kernel`.

    Args:
      objective: code (*code_shape) -> () F, or (code, target) -> () F when the state carries a
        target (e.g. the chain's neuron weights).
      options: `DGNAMOptions` (steps: the ramp's length; nonlinear is not used here);
        `settings` replace its fields by name.

    Returns:
      `Kernel(init, step)`: `init(code, target=None) -> DGNAMState`; `step(key, state) ->
      (DGNAMState, DGNAMInfo)` (the key is ignored): g = grad F at the code; a zero or non-finite
      g stops the chain (no update, no clip, no decay: the reference's loop breaks there), else
      y <- decay clip(y + s_t g / mean|g|, lower, upper) (or the optimizer's update).
    """
    o = with_settings(DGNAMOptions, options, settings)
    start, end = _pair(o.step_size)
    ramp = step_sizes(int(o.steps), jnp.float32(start), jnp.float32(end))
    opt = o.optimizer

    def value(y, target):
        return objective(y) if target is None else objective(y, target)

    value_and_grad = jax.value_and_grad(value)

    def init(code, target=None) -> DGNAMState:
        code = jnp.asarray(code, jnp.float32)
        return DGNAMState(code, code, jnp.float32(-jnp.inf), jnp.int32(0), jnp.bool_(False), target,
                          None if opt is None else opt.init(code))

    def step(key, state: DGNAMState):
        del key  # deterministic
        y = state.code
        v, g = value_and_grad(y, state.target)
        scale = jnp.mean(jnp.abs(g))
        stop = state.stopped | ~((scale > 0) & jnp.isfinite(scale))
        opt_state = state.opt_state
        if opt is None:
            delta = ramp[jnp.minimum(state.step, ramp.shape[0] - 1)] * g / jnp.where(stop, 1.0, scale)
        else:
            delta, new_opt = opt.update(-jnp.where(stop, 0.0, g), opt_state, y)
            opt_state = jax.tree.map(lambda a, b: jnp.where(stop, b, a), new_opt, opt_state)
        y_new = y + delta
        if o.lower is not None or o.upper is not None:
            y_new = jnp.clip(y_new, o.lower, o.upper)
        y_new = jnp.where(stop, y, o.decay * y_new)
        best_code, best_value = keep_best(state.best_code, state.best_value, y, v)
        new = DGNAMState(y_new, best_code, best_value, state.step + (~stop).astype(jnp.int32), stop, state.target,
                         opt_state)
        return new, DGNAMInfo(v, stop)

    return Kernel(init, step)


def neuron_values_fn(nets: DGNAMNets, readout: NeuronReadout, *, nonlinear: bool = False):
    """codes (c, *code_shape) -> ((c, p) the neurons' values, G(codes) in G's own convention)."""
    g, c = nets.generator, nets.classifier
    gp = g.params if nets.gen_params is None else nets.gen_params
    cp = c.params if nets.cls_params is None else nets.cls_params

    def values(codes):
        images = g.forward(gp, codes)
        x = adapt_images(images, g.pixels, c.pixels, c.input_shape)
        return values_at(c, cp, x, readout.layers, readout.flat, nonlinear=nonlinear), images

    return values


def neuron_objective(nets: DGNAMNets, readout: NeuronReadout, weights, *, nonlinear: bool = False):
    """codes (c, *code_shape) -> ((c,) objectives sum_j W_ij a_j, ((c, p) neuron values, G(codes)))."""
    values = neuron_values_fn(nets, readout, nonlinear=nonlinear)

    def objective(codes):
        a, images = values(codes)
        return jnp.sum(a * weights, axis=1), (a, images)

    return objective


def build(nets: DGNAMNets, options: DGNAMOptions, neurons: NeuronReadout) -> Kernel:
    """The DGN-AM kernel of one chain maximizing F(y) = sum_j w_j a_j(T(G(y))), the weights w (p,)
    the chain's `target`: `init(code (*code_shape), w (p,))`, `step(key, state)` (`dgn_am_kernel`)."""
    values = neuron_values_fn(nets, neurons, nonlinear=options.nonlinear)

    def objective(code, w):
        return jnp.dot(values(code[None])[0][0], w)

    return dgn_am_kernel(objective, options)


def neuron_readout(classifier: Model, neurons) -> NeuronReadout:
    """The `NeuronReadout` of addresses `layer:unit[@y,x]` (one or a sequence) of `classifier`."""
    resolved = resolve_neurons(classifier, neurons)
    return NeuronReadout(tuple(n.layer for n in resolved),
                         np.array([flat_index(classifier, n) for n in resolved], np.int32))


def _all_stopped(state) -> jax.Array:
    return jnp.all(state.stopped)


def dgn_am_run(nets: DGNAMNets, options: DGNAMOptions, neurons: NeuronReadout, codes, weights, *, mesh=None,
               progress=None, chunk=None) -> DGNAMResult:
    """DGN-AM as a composition (no checks): `build`, one chain per row of `codes` (c, *code_shape)
    with the row of `weights` (c, p), `jaxprobe.driver.run(..., vmap=True)` (stopping early once
    every chain has stopped), then the summary at the last codes. Pure when called under a trace.
    See `dgn_am` for the arguments."""
    if mesh is not None and not isinstance(codes, jax.core.Tracer):
        # the networks whole on every device, so that the summary runs where the chains' codes live
        g, c = nets.generator, nets.classifier
        gp, cp = replicate((g.params if nets.gen_params is None else nets.gen_params,
                            c.params if nets.cls_params is None else nets.cls_params), mesh)
        nets = nets._replace(gen_params=gp, cls_params=cp)
    kernel = build(nets, options, neurons)
    state = jax.vmap(kernel.init)(jnp.asarray(codes, jnp.float32), jnp.asarray(weights, jnp.float32))
    out = run(kernel, jax.random.key(0), state, options.steps, vmap=True, until=_all_stopped, mesh=mesh,
              progress=progress, chunk=chunk)
    values = neuron_values_fn(nets, neurons, nonlinear=options.nonlinear)
    return call(lambda s, tr, saved: _summary(values, s, tr, saved), out.state, out.trace, out.saved)


def _summary(values, state: DGNAMState, trace: DGNAMInfo, saved) -> DGNAMResult:
    a, images = values(state.code)
    v = jnp.sum(a * state.target, axis=1)
    best_codes, best_values = keep_best(state.best_code, state.best_value, state.code, v)
    # Rows past `saved` were not run (every chain had stopped): each chain's value stays its last.
    rows = jnp.arange(trace.value.shape[0])[:, None]
    history = jnp.where(rows < saved, trace.value, v[None])
    return DGNAMResult(state.code, v, a, best_codes, best_values, history, images, (), state.target, state.stopped,
                       state.step)


def check_bounds(name, value, code_shape):
    """Per-unit code bounds as float32 broadcasting to `code_shape` (None stays None); raise naming
    `name` for a shape that does not broadcast or a bound not finite in float32."""
    if value is None:
        return None
    b = as_float32(value)
    try:
        np.broadcast_to(b, code_shape)
    except ValueError:
        raise JaxprobeError(f"{name}: expected a scalar or an array broadcasting to the code shape "
                            f"{code_shape}, got shape {b.shape}") from None
    if not np.all(np.isfinite(b)):
        raise JaxprobeError(f"{name}: expected bounds finite in float32, got NaN or a value beyond +-3.4e38")
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
    codes = as_float32(init)
    if tuple(codes.shape) != (chains,) + code_shape:
        raise JaxprobeError(f"init: expected codes of shape ({chains}, {', '.join(map(str, code_shape))}) "
                            f"(one per chain), got {tuple(codes.shape)}")
    check_finite("init", codes)
    return jnp.asarray(codes), lo, hi


def check_step_size(step_size, code_size: int) -> tuple:
    """(s_start, s_end) as Python floats, checked in float32: s_start > 0, s_end >= 0, and the
    largest unit of a normalised step, s x code_size (|g_k| / mean|g| <= code_size), finite."""
    sizes = np.asarray(step_size, np.float64).reshape(-1)
    limit = F32_MAX / max(int(code_size), 1) / 2  # room for the code it is added to
    ok = (sizes.size in (1, 2) and np.all(np.isfinite(sizes)) and np.all(sizes >= 0) and sizes[0] > 0
          and np.all(sizes <= limit))
    if not ok:
        raise JaxprobeError(f"step_size: expected s > 0 or a pair (s_start > 0, s_end >= 0), each at most "
                            f"{limit:.3g} (float32 max / 2 / the code size {code_size}), got {step_size!r}")
    return float(sizes[0]), float(sizes[-1])


class DGNAMChecked(NamedTuple):
    """`dgn_am`'s arguments, checked: options (bounds as float32 arrays), the neurons' readout and
    canonical names, the initial codes (c, *code_shape) and weights (c, p)."""

    options: DGNAMOptions
    readout: NeuronReadout
    names: tuple
    codes: Any
    weights: np.ndarray


def check_arguments(key, generator: Model, classifier: Model, neurons, options: DGNAMOptions, weights, init,
                    mesh) -> DGNAMChecked:
    """Check `dgn_am`'s arguments (every float in float32); raise a one-line JaxprobeError naming the first bad one."""
    if getattr(generator, "role", None) != "generator":
        raise JaxprobeError(f"generator: expected a generator, got {getattr(generator, 'name', generator)!r} "
                            f"whose role is {getattr(generator, 'role', None)!r}")
    resolved = resolve_neurons(classifier, neurons)
    p = len(resolved)
    w = np.eye(p, dtype=np.float32) if weights is None else as_float32(weights)
    if w.ndim != 2 or w.shape[1] != p or w.shape[0] < 1:
        raise JaxprobeError(f"weights: expected shape (chains, {p}), one weight per neuron, got {w.shape}")
    check_finite("weights", w)
    steps = check_count("steps", options.steps, 1)
    sizes = check_step_size(options.step_size, int(np.prod(generator.input_shape)))
    decay = check_number("decay", options.decay, low=0.0, high=1.0, low_open=True, what="a factor")
    if not as_float32(decay) > 0:
        raise JaxprobeError(f"decay: expected a factor in (0, 1] that is > 0 in float32, got {options.decay!r}")
    codes, lo, hi = start_codes(key, generator, w.shape[0], init, options.lower, options.upper)
    check_mesh(mesh, w.shape[0], "weights", "the chains, one per row,")
    opt = options.optimizer
    if opt is not None and not (callable(getattr(opt, "init", None)) and callable(getattr(opt, "update", None))):
        raise JaxprobeError(f"optimizer: expected None or an optax GradientTransformation, got {type(opt).__name__}")
    readout = neuron_readout(classifier, resolved)
    options = options._replace(steps=steps, step_size=sizes, decay=float(np.float32(decay)), lower=lo, upper=hi,
                               nonlinear=bool(options.nonlinear))
    return DGNAMChecked(options, readout, tuple(neuron_name(classifier, n) for n in resolved), codes, w)


def dgn_am(key, generator: Model, classifier: Model, neurons, options: DGNAMOptions | None = None, *,
           weights=None, init=None, gen_params=None, cls_params=None, mesh=None, progress=None, chunk=None,
           **settings) -> DGNAMResult:
    """DGN-AM (Nguyen et al. 2016, eq. 1; docs/methods/dgn-am.md): codes whose images excite neurons.

    Args:
      key: PRNG key for the initial codes, y0 ~ N(0, I) as in the reference (unused with `init`).
      generator: a probe-able generator whose output the classifier can read (after
        `adapt_images`: pixel convention, centre crop).
      classifier: the frozen network whose neurons are maximized.
      neurons: one address or p addresses `layer:unit[@y,x]` of the classifier (read before the
        layer's nonlinearity, as the reference reads them, unless `nonlinear=True`).
      options: `DGNAMOptions` (steps 200, step_size (8, 1e-10), decay 0.99, lower/upper None,
        nonlinear False, optimizer None); `settings` replace its fields by name
        (e.g. `steps=40, lower=0.0`).
      weights: (c, p) W: chain i maximizes sum_j W_ij a_j. Default: the p x p identity, one chain
        per neuron, all in one batch.
      init: (c, *code_shape) initial codes instead of N(0, I) draws.
      gen_params, cls_params: parameters (default the models' own).
      mesh: a `jax.sharding.Mesh` with a "batch" axis to split the chains over (c a multiple of
        its device count), or None; a mesh may span processes (every process makes the same call
        and gets the whole result).
      progress: None or progress(steps done, steps), called from the host about 20 times a run.
      chunk: None (one compiled program) or compiled chunks of this many steps (progress and
        Ctrl-C between them).

    Returns:
      `DGNAMResult`: last and best codes with their objectives, every neuron's value at the last
      codes, the objective's history, the last images, and which chains stopped (zero gradient).
    """
    options = with_settings(DGNAMOptions, options, settings)
    checked = check_arguments(key, generator, classifier, neurons, options, weights, init, mesh)
    nets = DGNAMNets(generator, classifier, gen_params, cls_params)
    if mesh is None and chunk is None:  # one program, found again without tracing by a second call
        nets = nets._replace(gen_params=generator.params if gen_params is None else gen_params,
                             cls_params=classifier.params if cls_params is None else cls_params)
        res = compiled(dgn_am_run, nets, checked.options, checked.readout, checked.codes, checked.weights,
                       progress=progress)
    else:
        res = dgn_am_run(nets, checked.options, checked.readout, checked.codes, checked.weights, mesh=mesh,
                         progress=progress, chunk=chunk)
    return res._replace(neurons=checked.names)



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


__all__ = ["DGNAM", "DGNAMChecked", "DGNAMInfo", "DGNAMNets", "DGNAMOptions", "DGNAMResult", "DGNAMState",
           "NeuronReadout", "as_float32", "build", "check_arguments", "check_bounds", "check_step_size", "dgn_am",
           "dgn_am_kernel", "dgn_am_run", "keep_best", "neuron_objective", "neuron_readout", "neuron_values_fn",
           "real_bounds", "recorded_encoder", "start_codes", "step_sizes"]
