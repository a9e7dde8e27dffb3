"""Parameter-free ops and learned maps against brute-force numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxprobe.models.layers import Act, DownConv, Flatten, MaxPool, Reshape, SubPixelUp, depth_to_space, space_to_depth


def test_depth_to_space_brute_force():
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 4 * 5)).astype(np.float32)
    out = np.asarray(depth_to_space(jnp.asarray(x), 2))
    ref = np.zeros((2, 6, 8, 5), np.float32)
    for i in range(3):
        for j in range(4):
            for dy in range(2):
                for dx in range(2):
                    ref[:, 2 * i + dy, 2 * j + dx] = x[:, i, j, (dy * 2 + dx) * 5 : (dy * 2 + dx + 1) * 5]
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(space_to_depth(jnp.asarray(ref), 2), x)


def test_downconv_is_a_4x4_stride2_convolution():
    """DownConv equals sum over 2x2 blocks of the space-to-depth input (explicit loops)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 7, 7, 3)).astype(np.float32)
    m = DownConv(3, 5, rngs=nnx.Rngs(0))
    w = np.asarray(m.conv.kernel[...])  # (2, 2, 12, 5)
    b = np.asarray(m.conv.bias[...])
    xp = np.zeros((2, 10, 10, 3), np.float32)
    xp[:, :7, :7] = x  # space_to_depth pads to 8; SAME with a 2x2 kernel pads one block after
    ref = np.zeros((2, 4, 4, 5), np.float32) + b
    for i in range(4):
        for j in range(4):
            for dy in range(2):
                for dx in range(2):
                    for sy in range(2):
                        for sx in range(2):
                            pix = xp[:, 2 * (i + dy) + sy, 2 * (j + dx) + sx]  # (2, 3)
                            ref[:, i, j] += pix @ w[dy, dx, (sy * 2 + sx) * 3 : (sy * 2 + sx + 1) * 3]
    np.testing.assert_allclose(m(jnp.asarray(x)), ref, atol=1e-4, rtol=1e-5)


def test_subpixel_up_shape_and_composition():
    m = SubPixelUp(3, 2, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 5, 3))
    np.testing.assert_allclose(m(x), depth_to_space(m.conv(x), 2), atol=1e-6)
    assert m(x).shape == (2, 10, 10, 2)


def _caffe_max_pool(x, k, s, p):
    n, h, w, c = x.shape
    oh = int(np.ceil((h + 2 * p - k) / s)) + 1
    ow = int(np.ceil((w + 2 * p - k) / s)) + 1
    if p and (oh - 1) * s >= h + p:
        oh -= 1
    if p and (ow - 1) * s >= w + p:
        ow -= 1
    out = np.empty((n, oh, ow, c), x.dtype)
    for i in range(oh):
        for j in range(ow):
            y0, x0 = i * s - p, j * s - p
            win = x[:, max(y0, 0) : min(y0 + k, h), max(x0, 0) : min(x0 + k, w)]
            out[:, i, j] = win.max(axis=(1, 2))
    return out


@pytest.mark.parametrize("size, k, s, p", [(32, 3, 2, 0), (7, 3, 2, 0), (6, 3, 2, 0), (13, 3, 2, 1), (28, 2, 2, 0),
                                           (55, 3, 2, 0), (9, 2, 2, 1)])
def test_max_pool_ceil_matches_caffe(size, k, s, p):
    x = np.random.default_rng(size).normal(size=(2, size, size + 1, 3)).astype(np.float32)
    out = MaxPool(k, s, p, ceil=True)(jnp.asarray(x))
    np.testing.assert_array_equal(out, _caffe_max_pool(x, k, s, p))


def test_max_pool_floor_mode():
    x = np.random.default_rng(0).normal(size=(1, 7, 7, 2)).astype(np.float32)
    assert MaxPool(2, 2)(jnp.asarray(x)).shape == (1, 3, 3, 2)


def test_activations_and_reshapes():
    h = jnp.linspace(-2, 2, 9)
    np.testing.assert_allclose(Act("relu")(h), np.maximum(h, 0))
    np.testing.assert_allclose(Act("leaky_relu", 0.3)(h), np.where(h >= 0, h, 0.3 * h), rtol=1e-6)
    np.testing.assert_allclose(Act("tanh")(h), np.tanh(h), rtol=1e-6)
    np.testing.assert_allclose(Act("sigmoid")(h), 1 / (1 + np.exp(-np.asarray(h))), rtol=1e-6)
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    np.testing.assert_array_equal(Flatten("CHW")(jnp.asarray(x)), x.transpose(0, 3, 1, 2).reshape(2, -1))
    np.testing.assert_array_equal(Flatten()(jnp.asarray(x)), x.reshape(2, -1))
    np.testing.assert_array_equal(Reshape((4, 15))(jnp.asarray(x)), x.reshape(2, 4, 15))
