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


# ---------------------------------------------------------------- rewrites with custom gradients
# Each is checked against the plain form it replaces (values and gradients) and against PyTorch.

from jaxprobe.models.caffe_layers import CaffeLRN, CaffePool  # noqa: E402
from jaxprobe.models.layers import (conv2d, conv2d_space_to_depth, conv_transpose2d, local_response_norm,  # noqa: E402
                                    max_pool_slices, strided_conv2d)


def _cot(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _vjp(f, x, seed=0):
    """f(x) and its vjp with the cotangent `_cot(f(x).shape, seed)`."""
    y, back = jax.vjp(f, x)
    return y, back(jnp.asarray(_cot(y.shape, seed), y.dtype))[0]


def _plain_pool(x, kernel, stride, pads):
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1,) + kernel + (1,), (1,) + stride + (1,),
                                 [(0, 0)] + list(pads) + [(0, 0)])


@pytest.mark.parametrize("shape, kernel, stride, pads", [
    ((2, 13, 12, 3), (3, 3), (2, 2), ((0, 0), (0, 1))),   # ceil-mode overhang on one axis
    ((2, 9, 9, 2), (2, 2), (2, 2), ((1, 1), (1, 1))),
    ((1, 11, 7, 4), (3, 2), (1, 2), ((0, 0), (0, 0))),
    ((2, 10, 10, 3), (3, 3), (2, 2), ((0, 0), (0, 0))),   # floor mode: the last row is never read
])
def test_max_pool_values_and_gradient_equal_plain_form(shape, kernel, stride, pads):
    """On inputs without ties the custom gradient is XLA's select_and_scatter gradient."""
    x = jnp.asarray(np.random.default_rng(3).standard_normal(shape).astype(np.float32))
    plain = lambda v: _plain_pool(v, kernel, stride, pads)  # noqa: E731
    y_ref, g_ref = _vjp(plain, x)
    out = y_ref.shape[1:3]
    y, g = _vjp(lambda v: max_pool_slices(v, kernel, stride, pads, out), x)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_allclose(g, g_ref, rtol=1e-6, atol=1e-6)  # overlapping windows: sums reassociate
    assert np.array_equal(g != 0, g_ref != 0)  # the same input takes each window's gradient


def test_max_pool_ties_go_to_the_first_maximum_as_in_torch():
    """Integer inputs tie often; PyTorch (like Caffe) gives each window's gradient to its first maximum."""
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(4).integers(0, 3, size=(2, 15, 15, 4)).astype(np.float32)
    for ceil in (False, True):
        pool = CaffePool("MAX", (3, 3), (2, 2), (0, 0), ceil=ceil)
        y, g = _vjp(pool, jnp.asarray(x), seed=5)
        cot = _cot(y.shape, 5)
        xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
        yt = torch.nn.functional.max_pool2d(xt, 3, 2, ceil_mode=ceil)
        yt.backward(torch.tensor(cot.transpose(0, 3, 1, 2)))
        np.testing.assert_array_equal(y, yt.detach().numpy().transpose(0, 2, 3, 1))
        np.testing.assert_allclose(g, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-6, atol=1e-6)


def _plain_lrn(x, window, pads, coef, k, beta):
    total = jax.lax.reduce_window(jnp.square(x), 0.0, jax.lax.add, window, (1,) * x.ndim, pads)
    return x * jnp.power(k + coef * total, -beta)


@pytest.mark.parametrize("region, n", [("ACROSS_CHANNELS", 5), ("ACROSS_CHANNELS", 4), ("WITHIN_CHANNEL", 3),
                                       ("WITHIN_CHANNEL", 2)])
def test_lrn_values_and_gradient_equal_plain_form(region, n):
    """The closed-form gradient (even n: the window's padding is asymmetric, so its transpose differs)
    against autodiff of the plain form, in float64 to separate algebra from rounding."""
    with jax.enable_x64():
        x = jnp.asarray(np.random.default_rng(6).standard_normal((2, 5, 6, 9)) * 3.0)
        lrn = CaffeLRN(region, n, alpha=0.7, beta=0.75, k=2.0)
        lo, hi = (n - 1) // 2, n - 1 - (n - 1) // 2
        if region == "ACROSS_CHANNELS":
            args = ((1, 1, 1, n), ((0, 0), (0, 0), (0, 0), (lo, hi)), 0.7 / n, 2.0, 0.75)
        else:
            args = ((1, n, n, 1), ((0, 0), (lo, hi), (lo, hi), (0, 0)), 0.7 / (n * n), 1.0, 0.75)
        y_ref, g_ref = _vjp(lambda v: _plain_lrn(v, *args), x)
        y, g = _vjp(lrn, x)
        np.testing.assert_allclose(y, y_ref, rtol=1e-12)
        np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(_vjp(lambda v: local_response_norm(v, *args), x)[1], g_ref, rtol=1e-10,
                                   atol=1e-12)

        def curvature(f):  # a second derivative differentiates the custom gradient itself
            return jax.grad(lambda v: jnp.sum(jax.grad(lambda u: jnp.sum(f(u) ** 3))(v) ** 2))(x)

        np.testing.assert_allclose(curvature(lrn), curvature(lambda v: _plain_lrn(v, *args)), rtol=1e-9, atol=1e-10)


def test_lrn_across_channels_matches_torch():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(7).standard_normal((2, 6, 7, 96)).astype(np.float32) * 30
    y, g = _vjp(CaffeLRN("ACROSS_CHANNELS", 5, alpha=1e-4, beta=0.75, k=1.0), jnp.asarray(x), seed=8)
    cot = _cot(y.shape, 8)
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    yt = torch.nn.functional.local_response_norm(xt, 5, alpha=1e-4, beta=0.75, k=1.0)
    yt.backward(torch.tensor(cot.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("hw, k, s, p", [((31, 31), (11, 11), (4, 4), (0, 0)), ((9, 8), (4, 4), (2, 2), (1, 1)),
                                         ((10, 11), (3, 3), (2, 2), (1, 1)), ((12, 9), (5, 3), (3, 2), (2, 0))])
def test_strided_conv_values_and_gradients_equal_plain_form(hw, k, s, p):
    """conv2d's strided path (plain forward, space-to-depth input gradient) against XLA's plain
    convolution in float64: values, input and kernel gradients, and a second derivative (a
    gradient penalty differentiates the gradient again)."""
    with jax.enable_x64():
        rng = np.random.default_rng(9)
        x = jnp.asarray(rng.standard_normal((2,) + hw + (3,)))
        w = jnp.asarray(rng.standard_normal(k + (3, 5)))
        b = jnp.asarray(rng.standard_normal(5))

        def plain(x, w):
            return jax.lax.conv_general_dilated(x, w, s, [(p[0], p[0]), (p[1], p[1])],
                                                dimension_numbers=("NHWC", "HWIO", "NHWC")) + b

        def ours(x, w):
            return conv2d(x, w, b, s, p)

        np.testing.assert_allclose(ours(x, w), plain(x, w), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(conv2d_space_to_depth(x, w, s, p) + b, plain(x, w), rtol=1e-12, atol=1e-12)
        cot = jnp.asarray(rng.standard_normal(plain(x, w).shape))
        gr = jax.vjp(plain, x, w)[1](cot)
        go = jax.vjp(ours, x, w)[1](cot)
        for a, r in zip(go, gr):
            np.testing.assert_allclose(a, r, rtol=1e-10, atol=1e-10)

        def penalty(f):
            return jax.grad(lambda w: jnp.sum(jax.grad(lambda x: jnp.sum(f(x, w) * cot))(x) ** 2))(w)

        np.testing.assert_allclose(penalty(ours), penalty(plain), rtol=1e-10, atol=1e-10)


def test_strided_conv_gradient_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 35, 35, 3)).astype(np.float32)
    w = (rng.standard_normal((11, 11, 3, 8)) * 0.1).astype(np.float32)
    y, g = _vjp(lambda v: strided_conv2d(v, jnp.asarray(w), (4, 4), (0, 0)), jnp.asarray(x), seed=11)
    cot = _cot(y.shape, 11)
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    yt = torch.nn.functional.conv2d(xt, torch.tensor(w.transpose(3, 2, 0, 1)), stride=4)
    yt.backward(torch.tensor(cot.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(g, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)


def test_rewrites_inside_a_canonical_loop_body():
    """The lead's loop bodies wrap the differentiated function with `canonical_convs` and run it in
    lax.scan: the custom gradients survive the re-trace and give the plain forms' gradient."""
    from jaxprobe.models.convs import canonical_convs
    rng = np.random.default_rng(12)
    x0 = rng.standard_normal((2, 39, 39, 3))  # float64: no near-tie of the pooling flips by rounding
    w = rng.standard_normal((11, 11, 3, 8)) * 0.1
    pool, lrn = CaffePool("MAX", (3, 3), (2, 2)), CaffeLRN("ACROSS_CHANNELS", 5, alpha=1e-2, beta=0.75)

    def block(x):
        return jnp.sum(lrn(pool(jax.nn.relu(conv2d(x, w, None, (4, 4))))) ** 2)

    def plain(x):
        h = jax.nn.relu(jax.lax.conv_general_dilated(x, w, (4, 4), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")))
        h = _plain_pool(h, (3, 3), (2, 2), ((0, 1), (0, 1)))  # Caffe's ceil mode: 8 -> 4
        return jnp.sum(_plain_lrn(h, (1, 1, 1, 5), ((0, 0), (0, 0), (0, 0), (2, 2)), 1e-2 / 5, 1.0, 0.75) ** 2)

    def run(f):
        body = canonical_convs(lambda x: x - 1e-3 * jax.grad(f)(x))
        return jax.jit(lambda x: jax.lax.scan(lambda c, _: (body(c), None), x, None, length=3)[0])(x0)

    with jax.enable_x64():
        x0, w = jnp.asarray(x0), jnp.asarray(w)
        np.testing.assert_allclose(run(block), run(plain), rtol=1e-10, atol=1e-10)


def _plain_conv_transpose(x, w, b):
    """The 4x4, stride-2, pad-1 transposed convolution in its dilated form (Caffe's definition)."""
    return jax.lax.conv_general_dilated(x, w[::-1, ::-1], (1, 1), [(2, 2), (2, 2)], lhs_dilation=(2, 2),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC")) + b


@pytest.mark.parametrize("hw", [(4, 4), (5, 3)])
def test_subpixel_transposed_conv_values_and_gradients_equal_plain_form(hw):
    """The k4 s2 p1 transposed convolution (DeePSim's deconv layers: sub-pixel forward, one stride-2
    convolution as its input gradient) against the dilated form in float64: values, input and
    kernel gradients, and a second derivative."""
    with jax.enable_x64():
        rng = np.random.default_rng(13)
        x = jnp.asarray(rng.standard_normal((2,) + hw + (3,)))
        w = jnp.asarray(rng.standard_normal((4, 4, 3, 5)))
        b = jnp.asarray(rng.standard_normal(5))

        def ours(x, w):
            return conv_transpose2d(x, w, b, (2, 2), (1, 1))

        np.testing.assert_allclose(ours(x, w), _plain_conv_transpose(x, w, b), rtol=1e-12, atol=1e-12)
        cot = jnp.asarray(rng.standard_normal((2, 2 * hw[0], 2 * hw[1], 5)))
        for a, r in zip(jax.vjp(ours, x, w)[1](cot), jax.vjp(lambda x, w: _plain_conv_transpose(x, w, b), x, w)[1](cot)):
            np.testing.assert_allclose(a, r, rtol=1e-10, atol=1e-10)

        def penalty(f):
            return jax.grad(lambda w: jnp.sum(jax.grad(lambda x: jnp.sum(f(x, w) * cot))(x) ** 2))(w)

        np.testing.assert_allclose(penalty(ours), penalty(lambda x, w: _plain_conv_transpose(x, w, b)),
                                   rtol=1e-10, atol=1e-10)


def test_subpixel_transposed_conv_gradient_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(14)
    x = rng.standard_normal((2, 6, 7, 4)).astype(np.float32)
    w = (rng.standard_normal((4, 4, 4, 3)) * 0.3).astype(np.float32)  # (kh, kw, in, out)
    y, g = _vjp(lambda v: conv_transpose2d(v, jnp.asarray(w), None, (2, 2), (1, 1)), jnp.asarray(x), seed=15)
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    yt = torch.nn.functional.conv_transpose2d(xt, torch.tensor(w.transpose(2, 3, 0, 1)), stride=2, padding=1)
    yt.backward(torch.tensor(_cot(y.shape, 15).transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(g, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)
