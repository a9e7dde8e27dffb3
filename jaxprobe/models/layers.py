"""Building blocks of probe-able networks.

A *layer* in the sense of the probe protocol (docs/probe-protocol.md, "Layers") is one learned map (dense, convolution, transposed
convolution), its batch norm if any (always in eval mode), its nonlinearity, and the parameter-free
operations before the next learned map (pooling, reshape, flatten). `Layer.pre` computes the
pre-activation (the learned map's output, batch norm included); `Layer.post` applies the rest.

Parameter-free operations are frozen dataclasses: they are static attributes of the NNX graph,
hashable, and carry their own settings.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


# ---------------------------------------------------------------- parameter-free operations


@dataclasses.dataclass(frozen=True)
class Act:
    """Elementwise nonlinearity: relu, leaky_relu (with `slope`), tanh, sigmoid or identity."""

    kind: str = "relu"
    slope: float = 0.0

    def __call__(self, h):
        if self.kind == "relu":
            return jax.nn.relu(h)
        if self.kind == "leaky_relu":
            return jnp.where(h >= 0, h, self.slope * h)
        if self.kind == "tanh":
            return jnp.tanh(h)
        if self.kind == "sigmoid":
            return jax.nn.sigmoid(h)
        if self.kind == "identity":
            return h
        raise ValueError(f"unknown activation {self.kind!r}")


@dataclasses.dataclass(frozen=True)
class MaxPool:
    """Max pooling over NHWC; `ceil=True` rounds the output size up as Caffe does."""

    window: int = 2
    stride: int = 2
    pad: int = 0
    ceil: bool = False

    def __call__(self, x):
        if self.window * self.window > 25:  # large windows: one reduction, not window^2 slices
            return _pool(x, self.window, self.stride, self.pad, self.ceil, jax.lax.max, -jnp.inf)
        pads = _pool_pads(x, self.window, self.stride, self.pad, self.ceil)
        out = tuple((n + lo + hi - self.window) // self.stride + 1 for n, (lo, hi) in zip(x.shape[1:3], pads))
        return max_pool_slices(x, (self.window, self.window), (self.stride, self.stride), pads, out)


def max_pool_slices(x, kernel, stride, pads, out):
    """Max pooling of NHWC `x` over kh x kw windows with strides (sh, sw), the input padded with
    -inf by `pads` ((lo, hi) per spatial axis), `out` = (oh, ow) windows per axis.

    The values of `lax.reduce_window(max)`, with a custom gradient: each window passes its output
    gradient to its first maximum in row-major window order (Caffe's and PyTorch's rule), written as
    kh * kw masked, stride-dilated pads of the output gradient summed. XLA's own gradient
    (`select_and_scatter`) ran 15-20x slower than the forward pass on CaffeNet's pool1 (NOTES.md);
    a running maximum of strided slices avoided it but let XLA fuse the slices into every consumer
    of the pooled values, so that pool1 + LRN's backward recomputed the pooling per window tap
    (pool1 + norm1 backward 184 ms against 33 ms in this form, batch 10, same run). The forward is
    one `reduce_window`, whose output XLA materializes. Not forward-mode differentiable (jvp).
    """
    return _max_pool(x, tuple(kernel), tuple(stride), tuple(tuple(p) for p in pads), tuple(out))


def _pool_taps(xp, kernel, stride, out):
    """(i, j, the strided slice of `xp` that window tap (i, j) reads for every output)."""
    (oh, ow), (kh, kw), (sh, sw) = out, kernel, stride
    for i in range(kh):
        for j in range(kw):
            yield i, j, jax.lax.slice(xp, (0, i, j, 0), (xp.shape[0], i + (oh - 1) * sh + 1, j + (ow - 1) * sw + 1,
                                                         xp.shape[3]), (1, sh, sw, 1))


def _max_pool_fwd(x, kernel, stride, pads, out):
    (ph_lo, ph_hi), (pw_lo, pw_hi) = pads
    xp = jnp.pad(x, [(0, 0), (ph_lo, ph_hi), (pw_lo, pw_hi), (0, 0)], constant_values=-jnp.inf)
    (oh, ow), (kh, kw), (sh, sw) = out, kernel, stride
    # Crop what no window reads (Caffe's floor mode), so VALID windows give exactly `out`.
    xp = xp[:, :(oh - 1) * sh + kh, :(ow - 1) * sw + kw]
    y = jax.lax.reduce_window(xp, -jnp.inf, jax.lax.max, (1, kh, kw, 1), (1, sh, sw, 1), "VALID")
    return y, (xp, y, x.shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4))
def _max_pool(x, kernel, stride, pads, out):
    return _max_pool_fwd(x, kernel, stride, pads, out)[0]


def _max_pool_bwd(kernel, stride, pads, out, res, g):
    xp, y, shape = res
    (oh, ow), (sh, sw) = out, stride
    taken = jnp.zeros(y.shape, bool)
    zero = jnp.zeros((), g.dtype)
    gxp = None
    for i, j, part in _pool_taps(xp, kernel, stride, out):
        hit = (part == y) & ~taken  # the first maximum of each window takes the gradient
        taken = taken | hit
        term = jax.lax.pad(jnp.where(hit, g, zero), zero,
                           [(0, 0, 0), (i, xp.shape[1] - i - (oh - 1) * sh - 1, sh - 1),
                            (j, xp.shape[2] - j - (ow - 1) * sw - 1, sw - 1), (0, 0, 0)])
        gxp = term if gxp is None else gxp + term
    (ph_lo, _), (pw_lo, _) = pads
    gx = gxp[:, ph_lo:ph_lo + shape[1], pw_lo:pw_lo + shape[2]]
    # Rows the cropped padded input did not reach (floor mode) get no gradient.
    gx = jnp.pad(gx, [(0, 0), (0, shape[1] - gx.shape[1]), (0, shape[2] - gx.shape[2]), (0, 0)])
    return (gx,)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def window_sum(u, window, pads):
    """Sum of `u` over stride-1 windows of shape `window` (one size per axis), zero padded by
    `pads` ((lo, hi) per axis): the output has u's shape when lo + hi = size - 1."""
    # A Python 0.0 makes it JAX's differentiable reduce_window_sum (a traced zero would not be).
    return jax.lax.reduce_window(u, 0.0, jax.lax.add, tuple(window), (1,) * u.ndim, tuple(tuple(p) for p in pads))


def local_response_norm(x, window, pads, coef, k, beta):
    """Local response normalization y = x * (k + coef * S(x^2))^-beta, with S = `window_sum(.,
    window, pads)` (Krizhevsky et al. 2012, sec. 3.3; Caffe's LRN layer: across channels, window
    (1, 1, 1, n) and coef = alpha / n; within a channel, window (1, n, n, 1) and coef = alpha / n^2).

    A custom gradient in closed form, g s^-beta - 2 beta coef x S^T(g x s^(-beta-1)) with s the
    normalizer and S^T the window sum with each axis' padding reversed: one windowed sum each way.
    XLA's autodiff of the plain form and its fusion with max pooling's gradient made CaffeNet's
    pool1 + norm1 backward 3x slower (94 against 33 ms, batch 10, same run). Not forward-mode
    differentiable (jvp).
    """
    return _lrn(x, tuple(window), tuple(tuple(p) for p in pads), float(coef), float(k), float(beta))


def _lrn_fwd(x, window, pads, coef, k, beta):
    s = k + coef * window_sum(jnp.square(x), window, pads)
    p = jnp.power(s, -beta)
    return x * p, (x, s, p)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3, 4, 5))
def _lrn(x, window, pads, coef, k, beta):
    return _lrn_fwd(x, window, pads, coef, k, beta)[0]


def _lrn_bwd(window, pads, coef, k, beta, res, g):
    x, s, p = res
    back = tuple((hi, lo) for lo, hi in pads)  # the transpose of a window sum
    t = window_sum(g * x * p / s, window, back)
    return (g * p - (2.0 * beta * coef) * x * t,)


_lrn.defvjp(_lrn_fwd, _lrn_bwd)


def _pool_pads(x, window, stride, pad, ceil):
    h, w = x.shape[1], x.shape[2]
    pads = []
    for n in (h, w):
        extra = 0
        if ceil:
            # Caffe: out = ceil((n + 2p - k) / s) + 1, and the last window must start inside the
            # padded input; the shortfall is padded on the high side with `init`.
            out = -(-(n + 2 * pad - window) // stride) + 1
            if pad and (out - 1) * stride >= n + pad:
                out -= 1
            extra = max(0, (out - 1) * stride + window - (n + 2 * pad))
        pads.append((pad, pad + extra))
    return pads


def _pool(x, window, stride, pad, ceil, op, init):
    pads = _pool_pads(x, window, stride, pad, ceil)
    return jax.lax.reduce_window(
        x, init, op, (1, window, window, 1), (1, stride, stride, 1),
        [(0, 0), pads[0], pads[1], (0, 0)],
    )


@dataclasses.dataclass(frozen=True)
class Reshape:
    """Reshape each example to `shape` (batch axis kept)."""

    shape: tuple

    def __call__(self, x):
        return x.reshape((x.shape[0],) + tuple(self.shape))


@dataclasses.dataclass(frozen=True)
class Flatten:
    """Flatten each example; `order="CHW"` flattens channels first (Caffe and PyTorch order)."""

    order: str = "HWC"

    def __call__(self, x):
        if self.order == "CHW" and x.ndim == 4:
            x = jnp.transpose(x, (0, 3, 1, 2))
        return x.reshape(x.shape[0], -1)


def depth_to_space(x, r: int):
    """(N, H, W, r*r*C) -> (N, rH, rW, C), channel index (dy, dx, c) row-major."""
    n, h, w, c = x.shape
    c_out = c // (r * r)
    x = x.reshape(n, h, w, r, r, c_out)
    x = jnp.transpose(x, (0, 1, 3, 2, 4, 5))
    return x.reshape(n, h * r, w * r, c_out)


# ---------------------------------------------------------------- convolutions and initial weights


def lecun_normal(key, shape, dtype=jnp.float32, fan_in: int | None = None):
    """LeCun-normal initial weights (std 1/sqrt(fan_in); fan_in = prod(shape[:-1]) by default).

    With a concrete key the numbers are drawn on the host by numpy, seeded from the key: compiling
    `jax.random.normal` for every new weight shape cost seconds per layer on the shared 2-core
    machine, and these weights are placeholders that converted checkpoints overwrite. Inside a
    trace (`nnx.eval_shape`, jit) it falls back to `jax.random.normal`.
    """
    fan_in = int(np.prod(shape[:-1])) if fan_in is None else fan_in
    scale = 1.0 / math.sqrt(max(fan_in, 1))
    try:
        seed = np.asarray(jax.random.key_data(key)).astype(np.uint64).ravel()
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return scale * jax.random.normal(key, shape, dtype)
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape) * scale, dtype)


def conv2d(x, kernel, bias, stride=(1, 1), pad=(0, 0), dilation=(1, 1), group: int = 1):
    """Caffe/PyTorch convolution of NHWC `x` with HWIO `kernel` (I = in/group), symmetric padding.

    Each group is its own convolution and the results are concatenated (NOTES.md: faster than
    `feature_group_count` on XLA's CPU backend, same numbers).
    """
    padding = [(pad[0], pad[0]), (pad[1], pad[1])]

    def one(xg, kg):
        return jax.lax.conv_general_dilated(xg, kg, tuple(stride), padding, rhs_dilation=tuple(dilation),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    if group == 1 and tuple(dilation) == (1, 1) and tuple(stride) != (1, 1) and kernel.shape[2] <= 16 \
            and all(k >= s for k, s in zip(kernel.shape[:2], stride)):
        # An image-reading first layer (few input channels): see strided_conv2d.
        y = strided_conv2d(x, kernel, tuple(stride), tuple(pad))
    elif group == 1:
        y = one(x, kernel)
    else:
        ci, co = kernel.shape[2], kernel.shape[3] // group
        y = jnp.concatenate([one(x[..., g * ci:(g + 1) * ci], kernel[..., g * co:(g + 1) * co])
                             for g in range(group)], axis=-1)
    return y if bias is None else y + bias


def _conv_plain(x, kernel, stride, pad):
    return jax.lax.conv_general_dilated(x, kernel, stride, [(pad[0], pad[0]), (pad[1], pad[1])],
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def conv2d_space_to_depth(x, kernel, stride, pad):
    """The strided convolution `_conv_plain(x, kernel, stride, pad)` (NHWC, HWIO, symmetric zero
    padding) as a stride-1 one: the padded input blocked s_h x s_w into channels (`space_to_depth`)
    and the kernel zero-padded to multiples of the strides and blocked the same way, (ceil(kh/sh),
    ceil(kw/sw), sh sw in, out). Same values up to float32 rounding."""
    (sh, sw), (kh, kw) = stride, kernel.shape[:2]
    n, h, w, c = x.shape
    oh, ow = (h + 2 * pad[0] - kh) // sh + 1, (w + 2 * pad[1] - kw) // sw + 1
    bh, bw = -(-kh // sh), -(-kw // sw)
    hn, wn = (oh - 1 + bh) * sh, (ow - 1 + bw) * sw  # rows and columns the blocked windows read
    xp = jax.lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (pad[0], hn - h - pad[0], 0),
                                                 (pad[1], wn - w - pad[1], 0), (0, 0, 0)])
    xs = xp.reshape(n, hn // sh, sh, wn // sw, sw, c).transpose(0, 1, 3, 2, 4, 5)
    xs = xs.reshape(n, hn // sh, wn // sw, sh * sw * c)
    kp = jnp.pad(kernel, ((0, bh * sh - kh), (0, bw * sw - kw), (0, 0), (0, 0)))
    kb = kp.reshape(bh, sh, bw, sw, c, -1).transpose(0, 2, 1, 3, 4, 5).reshape(bh, bw, sh * sw * c, -1)
    return jax.lax.conv_general_dilated(xs, kb, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def strided_conv2d(x, kernel, stride, pad):
    """A strided convolution (group 1, no dilation, kernel at least the stride) whose forward pass
    is XLA's strided convolution and whose gradient to the input is that of
    `conv2d_space_to_depth` (a stride-1 convolution transposed), the kernel's gradient the plain one.

    Why, measured on CaffeNet's conv1 (11x11, stride 4, 227 -> 55, 3 -> 96) at batch 10 on XLA's
    CPU backend: the plain forward 53 ms against 97 ms blocked, the gradient to the input 62 ms
    plain (a stride-dilated transposed convolution) against 33 ms blocked. Samplers need both.
    `conv2d` uses it for convolutions with at most 16 input channels, where it won in one process
    (batch 10, input gradient: AlexNet's 11x11/4 on 224 129 against 454 ms, a 7x7/2 3 -> 64 on
    224 521 against 716 ms); with 128 input channels (3x3/2, 56 -> 28, 128 -> 256) it lost (549
    against 416 ms): the blocked kernel is mostly zeros and wide. Not forward-mode differentiable
    (jvp)."""
    return _conv_plain(x, kernel, stride, pad)


def _strided_fwd(x, kernel, stride, pad):
    return _conv_plain(x, kernel, stride, pad), (x, kernel)


def _strided_bwd(stride, pad, res, g):
    x, kernel = res
    dx = jax.vjp(lambda u: conv2d_space_to_depth(u, kernel, stride, pad), x)[1](g)[0]
    dk = jax.vjp(lambda k: _conv_plain(x, k, stride, pad), kernel)[1](g)[0]
    return dx, dk


strided_conv2d.defvjp(_strided_fwd, _strided_bwd)


def conv_transpose2d(x, kernel, bias, stride=(1, 1), pad=(0, 0), dilation=(1, 1), group: int = 1,
                     output_padding=(0, 0)):
    """Transposed convolution (Caffe Deconvolution, PyTorch ConvTranspose2d) of NHWC `x`.

    `kernel` is (kh, kw, in, out/group): the [in, out/group, kh, kw] blob of Caffe and PyTorch
    with its spatial axes moved first. Output size (n - 1) s - 2p + d (k - 1) + 1 (+ output_padding).
    Computed as the correlation of the stride-dilated input with the spatially flipped kernel,
    padded by d (k - 1) - p on each side (negative padding crops).
    """
    kh, kw = kernel.shape[0], kernel.shape[1]
    if (kh, kw) == (4, 4) and tuple(stride) == (2, 2) and tuple(pad) == (1, 1) and tuple(dilation) == (1, 1) \
            and group == 1 and tuple(output_padding) == (0, 0):
        return _subpixel_k4s2p1(x, kernel, bias)
    eff = (dilation[0] * (kh - 1), dilation[1] * (kw - 1))
    padding = [(eff[0] - pad[0], eff[0] - pad[0] + output_padding[0]),
               (eff[1] - pad[1], eff[1] - pad[1] + output_padding[1])]
    flipped = kernel[::-1, ::-1]

    def one(xg, kg):
        return jax.lax.conv_general_dilated(xg, kg, (1, 1), padding, lhs_dilation=tuple(stride),
                                            rhs_dilation=tuple(dilation),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    if group == 1:
        y = one(x, flipped)
    else:
        ci = kernel.shape[2] // group
        y = jnp.concatenate([one(x[..., g * ci:(g + 1) * ci], flipped[:, :, g * ci:(g + 1) * ci])
                             for g in range(group)], axis=-1)
    return y if bias is None else y + bias


def _subpixel_k4s2p1(x, kernel, bias):
    """The kernel-4, stride-2, pad-1 transposed convolution (`_subpixel`) plus the bias."""
    y = _subpixel(x, kernel)
    return y if bias is None else y + bias


@jax.custom_vjp
def _subpixel(x, kernel):
    """The kernel-4, stride-2, pad-1 transposed convolution as one 2x2 convolution to 4C channels
    followed by an interleave (faster on XLA's CPU backend than the dilated form); its input
    gradient is one stride-2 convolution (`_subpixel_bwd`).

    In 1-D, y[2m] = x[m] w1 + x[m-1] w3 and y[2m+1] = x[m+1] w0 + x[m] w2: both phases read a
    2-tap window (x[j-1], x[j]) of the input padded by one, phase a at j = m + a, with taps
    w[3 - a - 2t] for t = 0, 1. In 2-D the four phases (a, b) are four output channel blocks.
    """
    n, h, w, c = x.shape
    co = kernel.shape[3]
    taps = jnp.asarray([[3, 1], [2, 0]])  # [a, t] -> kernel index 3 - a - 2t
    # k2[t, u, c, (a, b, o)] = kernel[3 - a - 2t, 3 - b - 2u, c, o]
    k = kernel[taps[:, :, None, None], taps[None, None, :, :]]  # (a, t, b, u, c, o)
    k2 = jnp.transpose(k, (1, 3, 4, 0, 2, 5)).reshape(2, 2, c, 4 * co)
    z = jax.lax.conv_general_dilated(x, k2, (1, 1), [(1, 1), (1, 1)], dimension_numbers=("NHWC", "HWIO", "NHWC"))
    z = z.reshape(n, h + 1, w + 1, 2, 2, co)
    phases = jnp.stack([jnp.stack([z[:, a:a + h, b:b + w, a, b] for b in (0, 1)], axis=3) for a in (0, 1)], axis=2)
    return phases.reshape(n, 2 * h, 2 * w, co)  # (n, h, a, w, b, o) -> (n, 2h + a, 2w + b, o)


def _subpixel_fwd(x, kernel):
    return _subpixel(x, kernel), (x, kernel)


def _subpixel_bwd(res, dy):
    """The input gradient of a transposed convolution is the convolution of dy with the same
    kernel, stride 2, pad 1 (1-D: y[2i - 1 + k] += x[i] w[k], so dx[i] = sum_k dy[2i - 1 + k] w[k]),
    its in/out roles swapped: one strided convolution, as PyTorch's backward runs it. XLA's own
    gradient of the interleave (four padded phase gradients summed, then the 2x2 convolution's
    input gradient) cost 3x PyTorch's at DeePSim's deconv1 (batch 10). The kernel gradient is the
    interleaved form's own (dead code, removed by XLA, when only dx is used)."""
    x, kernel = res
    dx = jax.lax.conv_general_dilated(dy, kernel.astype(dy.dtype), (2, 2), [(1, 1), (1, 1)],
                                      dimension_numbers=("NHWC", "HWOI", "NHWC"))
    dk = jax.vjp(lambda k: _subpixel.fun(x, k), kernel)[1](dy)[0]
    return dx.astype(x.dtype), dk


_subpixel.defvjp(_subpixel_fwd, _subpixel_bwd)


# ---------------------------------------------------------------- learned maps


class SubPixelUp(nnx.Module):
    """Learned 2x upsampling: a stride-1 3x3 convolution to 4C channels, then depth-to-space.

    It plays the role of a DCGAN's stride-2 transposed convolution; on XLA's CPU backend its
    weight gradient is several times cheaper (NOTES.md), and the output is the learned map's
    output, so it is a valid pre-activation.
    """

    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
        self.out_features = out_features
        self.conv = nnx.Conv(in_features, 4 * out_features, (3, 3), padding="SAME", rngs=rngs)

    def __call__(self, x):
        return depth_to_space(self.conv(x), 2)


def space_to_depth(x, r: int):
    """(N, H, W, C) -> (N, ceil(H/r), ceil(W/r), r*r*C), zero-padding H and W up to multiples of r."""
    n, h, w, c = x.shape
    ph, pw = -h % r, -w % r
    if ph or pw:
        x = jnp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)))
    h, w = h + ph, w + pw
    x = x.reshape(n, h // r, r, w // r, r, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h // r, w // r, r * r * c)


class DownConv(nnx.Module):
    """Learned 2x downsampling: space-to-depth, then a 2x2 stride-1 convolution.

    The same function class as a 4x4 stride-2 convolution; its double backward (the WGAN gradient
    penalty) ran 2.5x faster than the strided form on XLA's CPU backend (0.029 s vs 0.072 s for a
    batch of 64 through the whole critic).
    """

    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(4 * in_features, out_features, (2, 2), padding="SAME", rngs=rngs)

    def __call__(self, x):
        return self.conv(space_to_depth(x, 2))


# ---------------------------------------------------------------- one probe-able layer


class Layer(nnx.Module):
    """One layer of the probe protocol: `pre` = learned map (+ eval-mode batch norm), `post` = act + static ops."""

    def __init__(self, linear: nnx.Module, act: Act = Act("identity"), after: Sequence = (),
                 norm: nnx.Module | None = None):
        self.linear = linear
        self.norm = norm
        self.act = act
        self.after = tuple(after)

    def pre(self, x):
        """The layer's pre-activation: its learned map, then eval-mode batch norm if any."""
        h = self.linear(x)
        if self.norm is not None:
            h = self.norm(h, use_running_average=True)
        return h

    def post(self, h):
        """The rest of the layer from its pre-activation h: the nonlinearity, then the static ops."""
        h = self.act(h)
        for op in self.after:
            h = op(h)
        return h

    def __call__(self, x):
        return self.post(self.pre(x))


class Network(nnx.Module):
    """An ordered list of named `Layer`s, numbered 1..L; the model every probe sees."""

    def __init__(self, layers: Sequence[Layer], names: Sequence[str]):
        if len(layers) != len(names):
            raise ValueError("one name per layer")
        self.layers = nnx.List(list(layers))
        self.names = tuple(names)

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def up_to(self, x, l: int):
        """f_{l:1}(x): layers 1..l-1 in full, then layer l's pre-activation."""
        for layer in self.layers[: l - 1]:
            x = layer(x)
        return self.layers[l - 1].pre(x)

    def from_(self, h, l: int):
        """The rest of the network from layer l's pre-activation: its nonlinearity onward."""
        h = self.layers[l - 1].post(h)
        for layer in self.layers[l:]:
            h = layer(h)
        return h

    def act(self, h, l: int):
        """Layer l's nonlinearity alone (what Caffe reports as the layer's value)."""
        return self.layers[l - 1].act(h)
