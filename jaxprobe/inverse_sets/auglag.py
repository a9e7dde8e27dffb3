"""Augmented Lagrangian for inequality constraints, slacks eliminated in closed form.

Problem: minimize f(x) subject to g_i(x) >= 0, i = 1..m, x any pytree of float arrays.

With slacks s_i >= 0 (g_i - s_i = 0), the bound-constrained augmented Lagrangian is

    L(x, s; lambda, mu) = f(x) + sum_i [ -lambda_i (g_i(x) - s_i) + mu/2 (g_i(x) - s_i)^2 ].

It is a convex separable quadratic in s, minimized over s >= 0 by s_i = max(0, g_i(x) - lambda_i/mu)
(the inverse-set paper's "substitute s", eq. 8; Nocedal & Wright 2006, eq. 17.65), so the inner
objective is a function of x alone:

    psi(x) = f(x) + sum_i { -lambda_i g_i + mu/2 g_i^2    if g_i <= lambda_i / mu
                           { -lambda_i^2 / (2 mu)          otherwise.

The solver is a `jaxprobe.driver.Kernel`: `init(x0, *, mu0, lam0) -> AugLagState` and one outer
iteration per `step(key, state) -> (state, AugLagInfo)` (the key is unused: the solver is
deterministic): `inner_steps` optax steps on psi (an inner lax.scan, part of the one step), then
lambda_i <- max(lambda_i - mu g_i(x), 0) at the new x (the paper's printed update is garbled;
this is the standard first-order multiplier update, N&W 17.4), then mu <- a mu. The penalty mu
lives in the state, so raising it never recompiles. `run` drives the steps with
`jaxprobe.driver.run` until every constraint holds (`feasible`, the paper's stopping rule) or
`max_outer` outer iterations are spent.

Examples:
  >>> import jax.numpy as jnp, optax
  >>> solver = augmented_lagrangian(lambda x: jnp.sum((x - 2.0) ** 2), lambda x: 1.0 - x,
  ...                               optimizer=optax.adam(0.05), inner_steps=200)
  >>> state = run(solver, solver.init(jnp.zeros(3), mu0=1.0), 10, until_feasible=False)
  >>> # state.x is close to 1 (the constraint x <= 1 is active), state.lam close to 2

References:
  J. Nocedal, S. Wright, Numerical Optimization (2006), section 17.4.
  Hada & Carreira-Perpiñán 2019 (the inverse set of a neuron), section 3.4, eq. 8 and 10.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from jaxprobe import driver
from jaxprobe.checks import check_count, check_number
from jaxprobe.models.convs import canonical_convs


class AugLagState(NamedTuple):
    """State of the augmented-Lagrangian solver.

    Attributes:
      x: the variables (any pytree of float arrays).
      lam: (m,) multipliers, always >= 0.
      mu: () penalty parameter (in the state so that raising it does not recompile).
      opt_state: the inner optax optimizer's state.
      value: () objective f at x.
      g: (m,) constraint values g(x) (feasible iff all >= 0); cached so a driver's stopping test
        costs no extra evaluation.
      outer: () int32, outer iterations done.
      inner: () int32, inner gradient steps done in total.
    """

    x: Any
    lam: jax.Array
    mu: jax.Array
    opt_state: Any
    value: jax.Array
    g: jax.Array
    outer: jax.Array
    inner: jax.Array


class AugLagInfo(NamedTuple):
    """What one outer iteration reports.

    Attributes:
      value: () f at the new x.
      violation: () max_i max(-g_i(x), 0) at the new x (0 when feasible).
      mu: () the penalty the iteration's inner steps used.
    """

    value: jax.Array
    violation: jax.Array
    mu: jax.Array


class AugLag(NamedTuple):
    """An augmented-Lagrangian solver as pure functions: a `jaxprobe.driver.Kernel` (its first two
    fields) plus the slack-eliminated objective.

    Attributes:
      init: `init(x0, *, mu0=10.0, lam0=None) -> AugLagState`.
      step: `step(key, state) -> (AugLagState, AugLagInfo)`, one outer iteration (inner steps,
        lambda, mu); the key is unused.
      lagrangian: `lagrangian(x, lam, mu) -> (psi, (f, g))`, the slack-eliminated objective.
    """

    init: Callable
    step: Callable
    lagrangian: Callable

    def update(self, state: AugLagState) -> AugLagState:
        """One outer iteration without its info: `step(None, state)[0]`."""
        return self.step(None, state)[0]


def slack_terms(g, lam, mu):
    """Per-constraint augmented-Lagrangian terms with the slack minimized out (same shape as g).

    s = max(0, g - lam/mu) and r = g - s give -lam r + mu/2 r^2: equal to -lam g + mu/2 g^2 where
    g <= lam/mu and to the constant -lam^2/(2 mu) elsewhere, so a constraint satisfied by more than
    lam/mu exerts no force.
    """
    s = jnp.maximum(0.0, g - lam / mu)
    r = g - s
    return -lam * r + 0.5 * mu * r * r


def augmented_lagrangian(objective: Callable, constraints: Callable | None = None, *,
                         optimizer: optax.GradientTransformation, inner_steps: int = 100,
                         growth=10.0, reset_optimizer: bool = True) -> AugLag:
    """Build an augmented-Lagrangian solver (a kernel) for min f(x) s.t. g(x) >= 0.

    Args:
      objective: f(x) -> scalar to minimize; or, when `constraints` is None, x -> (f, g) so one
        evaluation (one forward pass of a network) serves both.
      constraints: g(x) -> (m,) vector; constraint i holds iff g_i(x) >= 0.
      optimizer: the inner optax optimizer (the paper used plain gradient descent; with mu growing
        by 10x per outer iteration a scale-free optimizer such as Adam needs no retuning). It is
        called with the extra arguments `value`, `grad`, `value_fn`, so line-search optimizers
        such as `optax.lbfgs()` work too.
      inner_steps: gradient steps on psi per outer iteration (paper: 100). Static.
      growth: the factor a > 1 applied to mu after each outer iteration (paper: 10). May be traced.
      reset_optimizer: re-initialize the optimizer's state at the start of each outer iteration,
        because lambda and mu change psi (and its gradient scale) between outer iterations, which
        makes moment estimates and curvature pairs from the previous psi stale.

    Returns:
      An `AugLag` (init, step, lagrangian). Nothing is jitted: `run`, or the user's own
      `jax.jit`, compiles it.
    """
    inner_steps = check_count("inner_steps", inner_steps, 1)
    if not isinstance(growth, jax.core.Tracer):
        check_number("growth", growth, low=1.0, low_open=True, what="a factor a")
    tx = optax.with_extra_args_support(optimizer)

    if constraints is None:
        fun = objective
    else:
        def fun(x):
            return objective(x), constraints(x)

    def evaluate(x):
        f, g = fun(x)
        return jnp.asarray(f), jnp.ravel(jnp.asarray(g))

    def lagrangian(x, lam, mu):
        f, g = evaluate(x)
        return f + jnp.sum(slack_terms(g, lam, mu)), (f, g)

    def init(x0, *, mu0=10.0, lam0=None) -> AugLagState:
        f, g = evaluate(x0)
        lam = jnp.zeros_like(g) if lam0 is None else jnp.maximum(jnp.asarray(lam0, g.dtype), 0.0)
        return AugLagState(x0, lam, jnp.asarray(mu0, g.dtype), tx.init(x0), f, g,
                           jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))

    def step(key, state: AugLagState):
        del key  # deterministic
        lam, mu = state.lam, state.mu
        opt_state = tx.init(state.x) if reset_optimizer else state.opt_state

        def psi(x):
            return lagrangian(x, lam, mu)[0]

        def inner(carry, _):
            x, opt_state = carry
            # canonical_convs: XLA CPU leaves a loop body's input-gradient convolutions on its slow
            # path otherwise (2.6x slower per step, see jaxprobe.models.convs); the driver rewrites
            # only the outer body, not this inner scan's.
            value, grad = canonical_convs(jax.value_and_grad(psi))(x)
            updates, opt_state = tx.update(grad, opt_state, x, value=value, grad=grad, value_fn=psi)
            return (optax.apply_updates(x, updates), opt_state), None

        (x, opt_state), _ = lax.scan(inner, (state.x, opt_state), None, length=inner_steps)
        f, g = evaluate(x)
        # Multiplier update at the new x; max(., 0) keeps lambda a valid inequality multiplier.
        lam = jnp.maximum(lam - mu * g, 0.0)
        new = AugLagState(x, lam, mu * growth, opt_state, f, g, state.outer + 1,
                          state.inner + inner_steps)
        return new, AugLagInfo(f, jnp.max(jnp.maximum(-g, 0.0), initial=0.0), mu)

    return AugLag(init, step, lagrangian)


def feasible(state: AugLagState, tol=0.0):
    """True iff every constraint holds at state.x: all g_i(x) >= -tol."""
    return jnp.all(state.g >= -tol)


def run(solver: AugLag, state: AugLagState, max_outer: int, *, until_feasible: bool = True,
        tol=0.0, progress: Callable | None = None, mesh=None) -> AugLagState:
    """Apply `solver.step` until all constraints hold or `max_outer` outer iterations are done.

    Args:
      solver: from `augmented_lagrangian`.
      state: from `solver.init` (or a previous `run`); the budget counts from here.
      max_outer: outer-iteration budget (a static Python int >= 1).
      until_feasible: stop as soon as every g_i >= -tol (the inverse-set paper's rule, checked
        before each iteration, so a feasible start does no work). False runs the whole budget,
        which is what convergence to a KKT point needs.
      tol: feasibility tolerance for the stopping test (0: exact).
      progress: None or progress(outer iterations done, max_outer) on the host after each one.
      mesh: passed to `jaxprobe.driver.run` (the state replicated on it).

    Returns:
      The final state; `state.outer` counts the outer iterations done.
    """
    until = (lambda s: feasible(s, tol)) if until_feasible else None
    # One outer iteration is a long step (inner_steps gradient steps): with progress, one compiled
    # step per chunk reports after each, and the program does not depend on the callback.
    chunk = None if progress is None else 1
    out = driver.run(solver, jax.random.key(0), state, max_outer, trace=None, until=until,
                     progress=progress, chunk=chunk, mesh=mesh)
    return out.state
