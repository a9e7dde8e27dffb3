"""The augmented-Lagrangian solver on problems with known answers."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.optimize import minimize

from jaxprobe.inverse_sets import auglag
from jaxprobe.errors import JaxprobeError


def test_slack_terms_equal_the_minimum_over_the_slack():
    # Independent reference: minimize -lam (g - s) + mu/2 (g - s)^2 over s >= 0 on a fine grid.
    rng = np.random.default_rng(0)
    g = rng.normal(size=60) * 2
    lam = np.abs(rng.normal(size=60)) * 3
    mu = 10 ** rng.uniform(-1, 2, size=60)
    s = np.linspace(0, 12, 40001)[None, :]
    brute = np.min(-lam[:, None] * (g[:, None] - s) + mu[:, None] / 2 * (g[:, None] - s) ** 2, axis=1)
    got = np.asarray(auglag.slack_terms(jnp.asarray(g), jnp.asarray(lam), jnp.asarray(mu)), np.float64)
    # Grid step 3e-4 bounds the brute-force error by mu/2 * (1.5e-4)^2 <= 1.2e-6; float32 adds ~1e-6 relative.
    np.testing.assert_allclose(got, brute, rtol=1e-5, atol=1e-5)


def _solve(objective, constraints, x0, *, outer=10, growth=2.0, mu0=1.0, until_feasible=False):
    # mu ends at 2^10: large enough for the multipliers to converge (their error shrinks by about
    # 1/mu per outer iteration), small enough that lambda - mu g does not amplify float32 rounding
    # in g (~1e-7) beyond ~1e-3.
    solver = auglag.augmented_lagrangian(objective, constraints, optimizer=optax.lbfgs(), inner_steps=40,
                                         growth=growth)
    return auglag.run(solver, solver.init(x0, mu0=mu0), outer, until_feasible=until_feasible)


def test_projection_onto_halfspaces_closed_form():
    # min 1/2 ||x - p||^2 s.t. a.x >= b has the KKT point x* = p + t a, lambda* = t, with
    # t = max(0, b - a.p) / ||a||^2 (active or not). 16 random instances, vmapped in one program.
    rng = np.random.default_rng(1)
    d, m = 6, 16
    p = rng.normal(size=(m, d))
    a = rng.normal(size=(m, d))
    b = np.einsum("md,md->m", a, p) + rng.normal(size=m) * 2  # about half active
    t = np.maximum(0, b - np.einsum("md,md->m", a, p)) / np.sum(a * a, 1)

    @jax.jit
    @jax.vmap
    def solve(p, a, b):
        return _solve(lambda x: 0.5 * jnp.sum((x - p) ** 2), lambda x: jnp.dot(a, x)[None] - b,
                      jnp.zeros(d))

    st = solve(jnp.asarray(p, jnp.float32), jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32))
    # Tolerance: L-BFGS solves each inner problem to float32 precision and the multiplier error
    # shrinks by ~1/mu per outer iteration, so what remains is float32 rounding (x: ~1e-6 on O(1)
    # values; lambda: mu * rounding of g, mu <= 1024, measured up to 1.1e-4): 1e-5 on x and 1e-3
    # on lambda.
    np.testing.assert_allclose(np.asarray(st.x), p + t[:, None] * a, atol=1e-5)
    np.testing.assert_allclose(np.asarray(st.lam)[:, 0], t, atol=1e-3)
    assert np.any(t == 0) and np.any(t > 0)


def test_qp_against_slsqp_and_kkt():
    rng = np.random.default_rng(2)
    d = 5
    M = rng.normal(size=(d, d))
    Q = M @ M.T + np.eye(d)
    c = rng.normal(size=d)
    A = rng.normal(size=(4, d))
    b = rng.normal(size=4) + 1.5
    b[3] = -50.0  # a constraint that is inactive at the optimum: its multiplier must be 0
    ref = minimize(lambda x: 0.5 * x @ Q @ x + c @ x, np.zeros(d), jac=lambda x: Q @ x + c, method="SLSQP",
                   constraints=[{"type": "ineq", "fun": lambda x: A @ x - b, "jac": lambda x: A}],
                   options={"ftol": 1e-12, "maxiter": 1000})
    assert ref.success
    active = A @ ref.x - b < 1e-8
    lam_ref = np.zeros(4)
    lam_ref[active] = np.linalg.lstsq(A[active].T, Q @ ref.x + c, rcond=None)[0]
    assert active.sum() >= 1 and not active[3] and np.all(lam_ref >= 0)

    Qj, cj, Aj, bj = (jnp.asarray(v, jnp.float32) for v in (Q, c, A, b))
    st = jax.jit(lambda x0: _solve(lambda x: 0.5 * x @ Qj @ x + cj @ x, lambda x: Aj @ x - bj, x0))(
        jnp.zeros(d))
    # Tolerance: SLSQP's answer is exact to ~1e-10 in float64; ours is float32 with O(1) solution and
    # O(5) multipliers, the multiplier update amplifying rounding in g by mu (measured: 7e-7 on x,
    # 6e-6 on lambda): 1e-5 on x and 1e-4 on lambda.
    np.testing.assert_allclose(np.asarray(st.x), ref.x, atol=1e-5)
    np.testing.assert_allclose(np.asarray(st.lam), lam_ref, atol=1e-4)
    np.testing.assert_allclose(np.asarray(st.lam), ref.multipliers, atol=1e-4)
    assert float(st.lam[3]) == 0.0
    # KKT stationarity at our own point: Q x + c = A^T lambda.
    np.testing.assert_allclose(Q @ np.asarray(st.x) + c, A.T @ np.asarray(st.lam), atol=1e-4)


def test_multipliers_nonnegative_and_mu_grows_by_a():
    # Random nonconvex-ish problems; record lambda and mu after each outer iteration.
    rng = np.random.default_rng(3)
    a_factor = 3.0
    W = jnp.asarray(rng.normal(size=(7, 4)), jnp.float32)
    v = jnp.asarray(rng.normal(size=7), jnp.float32)

    def objective(x):
        return jnp.sum(jnp.sin(x) * x) + 0.1 * jnp.sum(x ** 4)

    def constraints(x):
        return jnp.tanh(W @ x) - v * 0.5

    solver = auglag.augmented_lagrangian(objective, constraints, optimizer=optax.adam(0.05), inner_steps=20,
                                         growth=a_factor)

    @jax.jit
    def history(x0, lam0):
        def body(s, _):
            s = solver.update(s)
            return s, (s.lam, s.mu, s.outer, s.inner)
        return jax.lax.scan(body, solver.init(x0, mu0=0.5, lam0=lam0), None, length=8)[1]

    for seed in range(4):
        x0 = jnp.asarray(rng.normal(size=4) * 2, jnp.float32)
        lam0 = jnp.asarray(rng.normal(size=7), jnp.float32)  # negative entries are clipped at init
        lams, mus, outers, inners = history(x0, lam0)
        assert np.all(np.asarray(lams) >= 0)
        np.testing.assert_allclose(np.asarray(mus), 0.5 * a_factor ** np.arange(1, 9), rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(outers), np.arange(1, 9))
        np.testing.assert_array_equal(np.asarray(inners), 20 * np.arange(1, 9))


def test_run_stops_at_the_first_feasible_iterate():
    # min -sum(x) s.t. 1 - x_i >= 0 from x0 = 5 (infeasible): compare with stepping by hand.
    solver = auglag.augmented_lagrangian(lambda x: -jnp.sum(x), lambda x: 1.0 - x,
                                         optimizer=optax.sgd(0.01), inner_steps=10, growth=10.0)
    update = jax.jit(solver.update)
    state = solver.init(jnp.full(3, 5.0), mu0=1.0)
    manual = 0
    s = state
    while not bool(auglag.feasible(s)) and manual < 20:
        s = update(s)
        manual += 1
    assert 0 < manual < 20
    done = jax.jit(lambda s: auglag.run(solver, s, 20))(state)
    assert int(done.outer) == manual and bool(auglag.feasible(done))
    np.testing.assert_allclose(np.asarray(done.x), np.asarray(s.x), rtol=1e-6)
    # A budget smaller than needed stops there, infeasible.
    short = auglag.run(solver, state, manual - 1)
    assert int(short.outer) == manual - 1 and not bool(auglag.feasible(short))
    # A feasible start does no work.
    start = solver.init(jnp.zeros(3), mu0=1.0)
    out = auglag.run(solver, start, 20)
    assert int(out.outer) == 0 and int(out.inner) == 0


def test_raising_mu_does_not_recompile():
    traces = []

    def objective(x):
        traces.append(1)
        return jnp.sum(x ** 2)

    solver = auglag.augmented_lagrangian(objective, lambda x: x - 1.0, optimizer=optax.adam(0.1), inner_steps=5)
    update = jax.jit(solver.update)
    s = solver.init(jnp.zeros(2), mu0=1.0)
    s = update(s)
    n = len(traces)
    for mu0 in (3.0, 1e4):
        update(update(solver.init(jnp.ones(2), mu0=mu0)))
    update(s)
    assert len(traces) == n + 2  # only the two eager init calls traced the objective again


def test_bad_arguments():
    with pytest.raises(JaxprobeError, match="inner_steps: expected an integer >= 1, got 0"):
        auglag.augmented_lagrangian(jnp.sum, jnp.ravel, optimizer=optax.sgd(0.1), inner_steps=0)
    with pytest.raises(JaxprobeError, match=r"growth: expected a factor a in \(1\.0, inf\), got 1\.0"):
        auglag.augmented_lagrangian(jnp.sum, jnp.ravel, optimizer=optax.sgd(0.1), growth=1.0)
