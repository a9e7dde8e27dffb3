"""BerOpt: Bernoulli mask optimization for the smallest supporting boundary set (Jeon et al. 2020, Alg. 1).

For a query z0 and a layer l, h0 = f_{l:1}(z0) (the layer's pre-activation, `Model.up_to`) and
Bernoulli masks m ~ Ber(theta) over its D_l units. Equation (1) of the paper reads

    theta* = argmin_theta  E_m || f_{L:l+1}(h0 * m) - G(z0) ||_2 + lambda * ||theta||_1 ;

jaxprobe minimizes it with the norm squared,

    L(theta) = E_m || f_{L:l+1}(h0 * m) - G(z0) ||_2^2 + lambda * ||theta||_1 ,

because the unsquared norm selects nothing at the output layer: its gradient is the squared
norm's divided by 2 ||r||, so each unit dropped makes dropping the next cheaper, and where every
unit feeds one pixel (l = L, the output layer) the loss is concave in the number dropped and the
optimizer slides to the empty mask. Squared, at l = L the loss is separable, E ||r||^2 =
sum_i (1 - theta_i) a_i^2 with a_i = G(z0)_i - f(0)_i for binary masks, and its minimum keeps unit
i exactly when a_i^2 > lambda (see `default_lambda` for the scale).

lambda prices each kept boundary, so it sets the trade-off the paper is about: a larger lambda
keeps fewer boundaries and the region GR_V* grows. When no lambda is given, `beropt` chooses one
per query by a stated rule (`SUPPORT_RULE`): it runs the kernel at `MULTIPLES` of
`default_lambda` side by side and keeps the largest lambda whose thresholded mask still supports
the query, `support_error(V*) <= SUPPORT` (1/4 of the empty mask's error).

The sampled mask has no gradient, so (docs/methods/egbas.md) the mask is the concrete / relaxed Bernoulli
relaxation (Maddison et al. 2017; Jang et al. 2017) with temperature tau,

    m = sigmoid((alpha + log u - log(1 - u)) / tau),  u ~ U(0, 1),  theta = sigmoid(alpha),

with the logits alpha optimized by Adam (optax). The halfspace indicator of the smallest supporting
generative region is then V*_i = 1[theta*_i > p] * sign(h0_i).

The paper gives no lambda, tau, step count, learning rate or initialization; the defaults
(`BerOptOptions`) are jaxprobe's choices. The kernel (`build`, the protocol of `jaxprobe.driver`):
`init(z0)` holds the logits, Adam's state and the query's fixed quantities (h0, G(z0), lambda);
`step(key, state)` is one Adam step on one batch of relaxed masks. `beropt` runs it through
`jaxprobe.driver.run`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxprobe import driver
from jaxprobe.checks import check_count, check_number
from jaxprobe.driver import Kernel
from jaxprobe.errors import JaxprobeError
from jaxprobe.gbas.boundaries import check_query, layer_size
from jaxprobe.checks import with_settings


class BerOptResult(NamedTuple):
    """What BerOpt returns.

    Attributes:
      theta: theta*, the optimized Bernoulli keep-probabilities, float32 (D_l,).
      v_star: V* = 1[theta* > p] * sign(h0), int32 (D_l,) in {-1, 0, +1}.
      losses: the (stochastic) loss L(theta) at each step (the module docstring's squared form of
        equation 1), float32 (steps,).
      lam: the lambda used (resolved when the default `lam=None` was given), float32 ().
    """

    theta: jax.Array
    v_star: jax.Array
    losses: jax.Array
    lam: jax.Array


# lambda's default scale: the fraction rho of the average unit's share of the empty mask's error.
RHO = 1.0 / 16.0
# The rule for lambda when none is given: the largest of these multiples of `default_lambda`
# whose mask keeps `support_error` <= SUPPORT. Chosen from the shipped dcgan's sweep
# (docs/methods/egbas.md): at every layer some multiple qualifies, and at layer 1 the largest that
# does (64) is where the region's samples reach the paper's critic similarities.
MULTIPLES = (1.0, 4.0, 16.0, 64.0, 256.0)
SUPPORT = 0.25
SUPPORT_RULE = ("lambda = the largest of 1, 4, 16, 64, 256 x default_lambda whose thresholded mask reproduces G(z0) "
                "to within 1/4 of the empty mask's error, ||f(h0 * 1[V* != 0]) - G(z0)|| <= 0.25 ||f(0) - G(z0)|| "
                "(the smallest error when none does)")


def default_lambda(model, params, z0, l):
    """lambda when none is given: rho ||G(z0) - f_{L:l+1}(0)||_2^2 / D_l with rho = 1/16.

    ||G(z0) - f_{L:l+1}(0)||^2 is the squared error of the empty mask, so lambda is rho times
    the average unit's share of it: a unit is kept when removing it raises the squared error by
    more than 1/16 of that share. At l = L, where the loss is separable (module docstring), the
    units dropped each have a_i^2 <= lambda, so for binary masks the thresholded mask's error is
    at most sqrt(rho) = 1/4 of the empty mask's: a supporting set by construction, with a factor
    of 2 to spare against "at most half" for the relaxed masks' bias (a saturated tanh pixel
    looks cheap to drop until its mask is near 0). Deeper interactions make hidden layers
    differ, but the scale follows the model's output and the layer's width, so one default
    serves every layer (measured on the shipped dcgan: `tests/test_beropt.py`).
    """
    l = model.layer(l)
    h0 = model.up_to(params, z0[None], l)
    full = model.from_(params, h0, l)[0]
    empty = model.from_(params, jnp.zeros_like(h0), l)[0]
    return RHO * jnp.sum((full - empty) ** 2) / layer_size(model, l)


def support_error(model, params, z0, l, v):
    """||f_{L:l+1}(h0 * m) - G(z0)||_2 / ||f_{L:l+1}(0) - G(z0)||_2 with m = 1[v != 0]: how far
    the units a selection `v` keeps (a V* in {-1, 0, +1} or a 0/1 mask, D_l values) are from
    reproducing the query's image, relative to the empty mask. 0 when v keeps every unit that
    matters, 1 when it keeps nothing. Jeon et al. 2020 call the boundaries of v "supporting"
    G(z0) when this is small (their eq. 1's first term, at a binary mask)."""
    l = model.layer(l)
    h0 = model.up_to(params, z0[None], l)
    full = model.from_(params, h0, l)[0]
    keep = (jnp.asarray(v) != 0).astype(h0.dtype).reshape(h0.shape[1:])
    masked = model.from_(params, h0 * keep, l)[0]
    empty = model.from_(params, jnp.zeros_like(h0), l)[0]
    return jnp.linalg.norm(masked - full) / jnp.maximum(jnp.linalg.norm(empty - full), 1e-30)


def beropt_loss(logits, key, model, params, h0, target, l, *, lam, tau, n_masks):
    """L(theta) with concrete masks: mean over `n_masks` relaxed masks of the squared output error,
    plus lambda * ||sigmoid(logits)||_1.  h0: (1, *layer_shape); target: G(z0), (1, *out)."""
    u = jax.random.uniform(key, (n_masks,) + h0.shape[1:], h0.dtype, 1e-6, 1.0 - 1e-6)
    m = jax.nn.sigmoid((logits.reshape(h0.shape[1:]) + jnp.log(u) - jnp.log1p(-u)) / tau)
    out = model.from_(params, h0 * m, l)  # the n_masks masked features in one batch
    err = jnp.sum((out - target) ** 2, axis=tuple(range(1, out.ndim)))
    return jnp.mean(err) + lam * jnp.sum(jax.nn.sigmoid(logits))


class BerOptOptions(NamedTuple):
    """BerOpt's settings (the paper gives none but p; each default is jaxprobe's choice).

    Attributes:
      lam: the sparsity weight lambda, in squared output units. Default None: `beropt` chooses
        it per query by `SUPPORT_RULE` among `MULTIPLES` of `default_lambda`,
        ||G(z0) - f_{L:l+1}(0)||^2 / (16 D_l) (scale-free across layers and models; see there why);
        the kernel alone (`build`) uses `default_lambda` itself.
      tau: the concrete temperature, default 0.5: masks are close to binary (a relaxed sample lies
        within 0.1 of 0 or 1 about 2/3 of the time at theta = 0.5) while the gradient's variance
        stays moderate; 2/3 is Maddison et al.'s suggestion for binary concrete, lower is sharper.
      steps: Adam steps, default 300: with the default learning rate a logit can move by up to
        ~15, enough to push an irrelevant unit from the init to theta < 0.01.
      learning_rate: Adam's step size on the logits, default 0.05.
      init: initial theta of every unit, default 0.9: optimization starts from masks that keep
        most units, so the first gradients say which removals hurt G(z0) (at theta = 0.5 the
        masked outputs are far from G(z0) and the signal is noisy).
      p: the threshold on theta*, in (0, 1), default 0.5 (the paper's value).
      n_masks: relaxed masks per step, averaged, default 4 (lowers the gradient's variance at the
        cost of a batch of 4 through layers l..L).
      multiples: the multiples of `default_lambda` the support rule chooses among when `lam` is
        None, default `MULTIPLES` (1, 4, 16, 64, 256: BerOpt's cost times 5, in one program);
        (1.0,) is `default_lambda` itself, one run.
    """

    lam: float | None = None
    tau: float = 0.5
    steps: int = 300
    learning_rate: float = 0.05
    init: float = 0.9
    p: float = 0.5
    n_masks: int = 4
    multiples: tuple = MULTIPLES


class BerOptNets(NamedTuple):
    """The network BerOpt uses.

    Attributes:
      generator: the generator G = f_{L:1} (a probe-able `Model`).
      params: its parameters (default None: `generator.params`).
    """

    generator: Any
    params: Any = None


class BerOptState(NamedTuple):
    """BerOpt while it optimizes one query's mask.

    Attributes:
      logits: alpha, (D_l,) float32; theta = sigmoid(alpha).
      opt_state: Adam's state (optax) for the logits.
      h0: f_{l:1}(z0), (1, *layer_shape), the features the masks multiply.
      target: G(z0) through the same split as the masked outputs, (1, *output_shape).
      lam: () float32, the lambda of equation 1 (resolved at `init` when the options give None).
    """

    logits: jax.Array
    opt_state: Any
    h0: jax.Array
    target: jax.Array
    lam: jax.Array


class BerOptInfo(NamedTuple):
    """What one step did: `loss`, () float32, the stochastic L(theta) before the step."""

    loss: jax.Array


def build(nets: BerOptNets, options: BerOptOptions, layer) -> Kernel:
    """BerOpt's kernel (Jeon et al. 2020, Algorithm 1, equation 1 squared; the module docstring).

    `init(z0) -> BerOptState` (z0 of the generator's input shape: logits at `options.init`,
    lambda resolved); `step(key, state) -> (BerOptState, BerOptInfo)`, one Adam step on the mean
    loss of `n_masks` concrete masks drawn from `key`. `summary(state)` of the final state is
    (theta, v_star). No checks here: `beropt` checks.
    """
    model = nets.generator
    params = model.params if nets.params is None else nets.params
    l = model.layer(layer)
    tx = optax.adam(options.learning_rate)
    logit0 = float(np.log(options.init) - np.log1p(-options.init))

    def init(z0):
        z0 = jnp.asarray(z0, jnp.float32)
        h0 = model.up_to(params, z0[None], l)
        target = model.from_(params, h0, l)  # G(z0), through the same split as the masked outputs
        lam = (default_lambda(model, params, z0, l) if options.lam is None
               else jnp.asarray(options.lam, jnp.float32))
        logits = jnp.full((h0.size,), logit0, jnp.float32)
        return BerOptState(logits, tx.init(logits), h0, target, lam)

    def step(key, state: BerOptState):
        loss, g = jax.value_and_grad(beropt_loss)(state.logits, key, model, params, state.h0, state.target, l,
                                                  lam=state.lam, tau=options.tau, n_masks=options.n_masks)
        updates, opt_state = tx.update(g, state.opt_state, state.logits)
        return state._replace(logits=optax.apply_updates(state.logits, updates), opt_state=opt_state), BerOptInfo(loss)

    return Kernel(init=init, step=step)


def summary(state: BerOptState, p) -> tuple:
    """(theta*, V*) of a final state: theta = sigmoid(logits), V*_i = 1[theta_i > p] sign(h0_i)."""
    theta = jax.nn.sigmoid(state.logits)
    return theta, jnp.where(theta > p, jnp.sign(state.h0.reshape(-1)), 0.0).astype(jnp.int32)


def check_options(options: BerOptOptions) -> BerOptOptions:
    """Validate BerOpt's settings (one line naming the setting); returns them as Python numbers."""
    p = check_number("p", options.p, low=0, high=1, low_open=True, high_open=True)
    init = check_number("init", options.init, low=0, high=1, low_open=True, high_open=True)
    tau = check_number("tau", options.tau, low=0, low_open=True, what="a positive temperature")
    learning_rate = check_number("learning_rate", options.learning_rate, low=0, low_open=True,
                                 what="a positive number")
    # lambda * ||theta||_1 is formed in float32 over up to ~10^8 units: keep it finite there.
    lam = None if options.lam is None else check_number("lam", options.lam, low=0, high=1e30,
                                                        what="a non-negative number or None")
    try:
        multiples = tuple(sorted(float(m) for m in np.ravel(np.asarray(options.multiples, dtype=object))))
    except (TypeError, ValueError):
        multiples = ()
    if not multiples or not all(np.isfinite(m) and 0 < m < 1e30 for m in multiples):
        raise JaxprobeError(f"multiples: expected positive finite multiples of the default lambda, got "
                            f"{options.multiples!r}")
    return BerOptOptions(lam=lam, tau=tau, steps=check_count("steps", options.steps, 1), learning_rate=learning_rate,
                         init=init, p=p, n_masks=check_count("n_masks", options.n_masks, 1), multiples=multiples)


def _finite(model, params, l):
    """Whether h0 = f_{l:1}(z0) and G(z0) are finite, as a function of z0: (2,) bool."""
    def f(z0):
        h0 = model.up_to(params, z0[None], l)
        return jnp.stack([jnp.all(jnp.isfinite(h0)), jnp.all(jnp.isfinite(model.from_(params, h0, l)))])
    return f


def beropt(key, model, params, z0, layer, options: BerOptOptions | None = None, **settings) -> BerOptResult:
    """BerOpt (Jeon et al. 2020, Algorithm 1, equation 1): select the boundaries that support G(z0).

    Args:
      key: PRNG key; step t draws its concrete masks from `fold_in(key, t)`.
      model: a probe-able generator (`Model`).
      params: its parameters.
      z0: the query, shape `model.input_shape`.
      layer: the layer l (name or number 1..L).
      options: `BerOptOptions` (None: its defaults).
      **settings: `BerOptOptions` fields (lam, tau, steps, learning_rate, init, p, n_masks)
        replacing those of `options`.

    Returns:
      `BerOptResult(theta, v_star, losses, lam)`. The query is always in the region of v_star.

    Raises:
      JaxprobeError: for bad arguments, and when h0 = f_{l:1}(z0) or G(z0) is not finite (NaN or
        infinite parameters, or a query that overflows them): eq. 1 is then undefined.

    References:
      G. Jeon, H. Jeong, J. Choi, "An Efficient Explorative Sampling Considering the Generative
      Boundaries of Deep Generative Neural Networks", AAAI 2020 (Jeon et al. 2020).
    """
    options = check_options(with_settings(BerOptOptions, options, settings))
    l = model.layer(layer)
    z0 = check_query(model, z0)
    h0_ok, out_ok = (bool(f) for f in driver.call(_finite(model, params, l), z0))
    if not (h0_ok and out_ok):
        what = (f"h0 = f_{{l:1}}(z0) at layer {model.layer_names[l - 1]!r}" if not h0_ok else "G(z0)")
        raise JaxprobeError(f"params: expected parameters under which {what} is finite, got non-finite "
                            "values (NaN or infinite parameters, or a query that overflows them)")
    kernel = build(BerOptNets(model, params), options, l)
    state = driver.call(kernel.init, z0)
    if options.lam is not None or options.multiples == (1.0,):
        run = driver.run(kernel, key, state, options.steps, trace=lambda s, info: info.loss)
        theta, v_star = driver.call(lambda s: summary(s, jnp.float32(options.p)), run.state)
        return BerOptResult(theta, v_star, run.trace, run.state.lam)
    return _supported(kernel, key, state, options, model, params, z0, l)


def _supported(kernel, key, state, options, model, params, z0, l) -> BerOptResult:
    """`SUPPORT_RULE`: the kernel at every multiple of the default lambda as vmapped chains of one
    run, then the largest multiple whose V* keeps the support error at most `SUPPORT`."""
    mult = jnp.asarray(options.multiples, jnp.float32)
    states = jax.tree.map(lambda a: jnp.broadcast_to(a, (mult.size,) + jnp.shape(a)), state)
    states = states._replace(lam=state.lam * mult)
    run = driver.run(kernel, key, states, options.steps, vmap=True, trace=lambda s, info: info.loss)

    def pick(states):
        theta, v = jax.vmap(lambda s: summary(s, jnp.float32(options.p)))(states)
        err = jax.vmap(lambda vi: support_error(model, params, z0, l, vi))(v)
        ok = err <= SUPPORT
        i = jnp.where(jnp.any(ok), mult.size - 1 - jnp.argmax(ok[::-1]), jnp.argmin(err))
        return i, theta[i], v[i], states.lam[i]

    i, theta, v_star, lam = driver.call(pick, run.state)
    return BerOptResult(theta, v_star, run.trace[:, int(i)], lam)  # the trace is (steps, chains)
