"""`canonical_convs`: the same function, with every convolution's kernel in XLA CPU's canonical
layout, also inside a loop body (where XLA's own canonicalization does not reach)."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxprobe.models.convs import canonical_convs


def _loss(w, x):
    y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.sum(jnp.tanh(y) ** 2)


def test_same_values_and_gradients_and_canonical_kernels_in_a_scan():
    kw, kx = jax.random.split(jax.random.PRNGKey(0))
    w = jax.random.normal(kw, (3, 3, 4, 5)) * 0.3
    x = jax.random.normal(kx, (2, 8, 8, 4))
    grad = jax.grad(_loss, argnums=1)
    # Values: equal up to float32 rounding, for a gradient (whose convolution has the swapped kernel).
    np.testing.assert_allclose(canonical_convs(grad)(w, x), grad(w, x), rtol=1e-5, atol=1e-6)
    v, g = canonical_convs(jax.value_and_grad(_loss))(w, x)
    np.testing.assert_allclose(v, _loss(w, x), rtol=1e-6)
    np.testing.assert_allclose(g, jax.grad(_loss)(w, x), rtol=1e-5, atol=1e-6)

    def descend(step_grad):
        def run(x):
            return jax.lax.scan(lambda x, _: (x - 0.1 * step_grad(w, x), None), x, None, length=3)[0]
        return jax.jit(run)

    plain, canon = descend(grad), descend(canonical_convs(grad))
    np.testing.assert_allclose(canon(x), plain(x), rtol=1e-5, atol=1e-5)
    # The loop body's convolutions: the swapped kernel layout (01oi) is gone once rewritten.
    def swapped(f):
        return f.lower(x).compile().as_text().count("_01oi->")
    assert swapped(canon) == 0
    if jax.default_backend() == "cpu":  # the XLA CPU behaviour that makes the rewrite worth having
        assert swapped(plain) > 0
