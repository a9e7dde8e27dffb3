"""Caffe's layers over NHWC, with BVLC Caffe's exact semantics: the parameter-free operations
(Pooling, LRN, Softmax, Reshape, and jaxprobe's extension Upsample) and the learned maps
(Convolution, Deconvolution, InnerProduct). BatchNorm + Scale are `flax.nnx.BatchNorm` in eval mode.

- Pooling MAX/AVE with Caffe's output size ceil((n + 2p - k) / s) + 1 (minus one if the last
  window would start in the padding), and AVE's divisor counting the window clipped to
  [-p, n + p): padding inside the padded input counts, the ceil overhang does not.
- LRN ACROSS_CHANNELS: x / (k + alpha/n * sum_{n channels} x^2)^beta; WITHIN_CHANNEL:
  x / (1 + alpha/n^2 * sum_{n x n window} x^2)^beta (Caffe builds it from an AVE pooling and a
  Power layer with shift 1, so `k` plays no part).
  Padded AVE pooling is PyTorch's `AvgPool2d(count_include_pad=True)`, `ceil_mode=True` for Caffe's
  default CEIL rounding and `ceil_mode=False` for `round_mode: FLOOR`: both clip the divisor's window
  to [-p, n + p) and shorten the output by one where the last window would start in the padding.
- Upsample (jaxprobe's extension type): PyTorch's `nn.Upsample(scale_factor=s)` for integer s,
  NEAREST (each value repeated s times) or BILINEAR (source coordinate (i + 0.5)/s - 0.5 clamped
  at 0, or i (n - 1)/(sn - 1) with `align_corners`).
- Convolution with group, pad, stride, dilation; Deconvolution, the transposed convolution with
  weights [in, out/group, kh, kw] as Caffe stores them; InnerProduct flattening in C,H,W order.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxprobe.errors import JaxprobeError
from jaxprobe.models.layers import Flatten, conv2d, conv_transpose2d, lecun_normal, max_pool_slices


def pool_output_size(n: int, kernel: int, stride: int, pad: int, ceil: bool = True) -> int:
    """Caffe's pooled size: ceil (or floor) of (n + 2p - k)/s, plus one, minus one if the last
    window would start inside the bottom/right padding."""
    num = n + 2 * pad - kernel
    out = (-(-num // stride) if ceil else num // stride) + 1
    if pad and (out - 1) * stride >= n + pad:
        out -= 1
    return out


def pool_pads(n: int, k: int, s: int, p: int, ceil: bool) -> tuple:
    """(output size, padding before, padding after) of Caffe pooling along one axis of size n.

    The padding after may be negative (floor rounding): that many trailing entries are never read.
    Raises `JaxprobeError` where Caffe's last window would lie entirely outside the input.
    """
    out = pool_output_size(n, k, s, p, ceil)
    if out >= 1 and (out - 1) * s - p >= n:
        # Only without padding and with kernel < stride: Caffe would emit -FLT_MAX (MAX) or 0/0 (AVE).
        raise JaxprobeError(
            f"pooling: with kernel {k}, stride {s}, pad {p} on size {n} the last window lies entirely outside "
            "the input (Caffe's ceil rounding would output -FLT_MAX or NaN there)"
        )
    hi = (out - 1) * s + k - n - p  # padding needed after the input for the last window
    return out, p, hi


@dataclasses.dataclass(frozen=True)
class CaffePool:
    """Caffe pooling over NHWC: MAX or AVE, Caffe's output size (ceil by default).

    MAX ignores padding (it pads with -inf). AVE divides the window's sum by the size of the
    window clipped to the padded input [-p, n + p), exactly as Caffe's `pool_size`: zero padding
    inside that range counts, the ceil-mode overhang beyond it does not.
    """

    mode: str = "MAX"
    kernel: tuple = (2, 2)
    stride: tuple = (2, 2)
    pad: tuple = (0, 0)
    ceil: bool = True
    global_pooling: bool = False

    def __call__(self, x):
        h, w = x.shape[1], x.shape[2]
        kernel, stride, pad = ((h, w), (1, 1), (0, 0)) if self.global_pooling else (self.kernel, self.stride, self.pad)
        (oh, ph_lo, ph_hi), (ow, pw_lo, pw_hi) = (pool_pads(n, k, s, p, self.ceil)
                                                   for n, k, s, p in zip((h, w), kernel, stride, pad))
        if oh < 1 or ow < 1:
            raise JaxprobeError(f"pooling: kernel {kernel} does not fit the input {h}x{w}")
        # A negative high pad (floor mode) means trailing rows no window reaches: crop them.
        x = x[:, : h + min(ph_hi, 0), : w + min(pw_hi, 0)]
        pads = [(0, 0), (ph_lo, max(ph_hi, 0)), (pw_lo, max(pw_hi, 0)), (0, 0)]
        window, strides = (1, kernel[0], kernel[1], 1), (1, stride[0], stride[1], 1)
        if self.mode == "MAX":
            if kernel[0] * kernel[1] > 25:  # global or large windows: one reduction, not k^2 slices
                return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, strides, pads)
            return max_pool_slices(x, kernel, stride, pads[1:3], (oh, ow))
        total = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, pads)
        counts = [np.minimum(np.arange(o) * s - p + k, n + p) - (np.arange(o) * s - p)
                  for o, n, k, s, p in zip((oh, ow), (h, w), kernel, stride, pad)]
        divisor = np.outer(counts[0], counts[1]).astype(np.float32)
        return total / jnp.asarray(divisor)[None, :, :, None]


@dataclasses.dataclass(frozen=True)
class CaffeLRN:
    """Caffe local response normalization over NHWC.

    ACROSS_CHANNELS: y = x / (k + alpha/n * sum of x^2 over n neighbouring channels)^beta.
    WITHIN_CHANNEL: y = x / (1 + alpha/n^2 * sum of x^2 over an n x n window, zero padded)^beta.
    """

    region: str = "ACROSS_CHANNELS"
    local_size: int = 5
    alpha: float = 1.0
    beta: float = 0.75
    k: float = 1.0

    def __call__(self, x):
        # One windowed sum each way, gradient in closed form (`local_response_norm`: XLA CPU's
        # autodiff of the plain form was 3x slower behind CaffeNet's pooling).
        from jaxprobe.models.layers import local_response_norm
        n = self.local_size
        lo, hi = (n - 1) // 2, n - 1 - (n - 1) // 2
        if self.region == "ACROSS_CHANNELS":
            return local_response_norm(x, (1, 1, 1, n), [(0, 0), (0, 0), (0, 0), (lo, hi)], self.alpha / n, self.k,
                                       self.beta)
        return local_response_norm(x, (1, n, n, 1), [(0, 0), (lo, hi), (lo, hi), (0, 0)], self.alpha / (n * n), 1.0,
                                   self.beta)


@dataclasses.dataclass(frozen=True)
class Softmax:
    """Softmax over the channel axis (Caffe's axis 1; the last axis in NHWC)."""

    def __call__(self, x):
        return jax.nn.softmax(x, axis=-1)


@dataclasses.dataclass(frozen=True)
class CaffeReshape:
    """Caffe Reshape (axis 0, all axes): `shape` in Caffe's N,C,H,W order, 0 copies a dim, -1 infers.

    The input is read in Caffe's (C,H,W) memory order and a 4-D result is returned as NHWC.
    """

    shape: tuple

    def __call__(self, x):
        if x.ndim == 4:
            x = jnp.transpose(x, (0, 3, 1, 2))
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(self.shape)]
        y = x.reshape(dims)
        return jnp.transpose(y, (0, 2, 3, 1)) if y.ndim == 4 else y


def interpolation_matrix(n: int, scale: int, align_corners: bool = False) -> np.ndarray:
    """The (n * scale, n) matrix of PyTorch's 1-D linear interpolation (`upsample_bilinear2d`).

    Output i reads source coordinate c = i (n - 1)/(n s - 1) with `align_corners`, else
    c = max((i + 0.5)/s - 0.5, 0); it weighs x[floor(c)] by 1 - frac(c) and x[min(floor(c) + 1, n - 1)]
    by frac(c).
    """
    out = n * scale
    i = np.arange(out, dtype=np.float64)
    if align_corners:
        c = i * ((n - 1) / (out - 1)) if out > 1 else np.zeros(out)
    else:
        c = np.maximum((i + 0.5) / scale - 0.5, 0.0)
    lo = np.floor(c).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    frac = c - lo
    m = np.zeros((out, n))
    np.add.at(m, (np.arange(out), lo), 1.0 - frac)
    np.add.at(m, (np.arange(out), hi), frac)
    return m.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Upsample:
    """Upsampling of NHWC by integer factors `scale` (h, w): NEAREST or BILINEAR (`interpolation_matrix`)."""

    mode: str = "NEAREST"
    scale: tuple = (2, 2)
    align_corners: bool = False

    def __call__(self, x):
        sh, sw = self.scale
        if self.mode == "NEAREST":
            return jnp.repeat(jnp.repeat(x, sh, axis=1), sw, axis=2)
        mh = jnp.asarray(interpolation_matrix(x.shape[1], sh, self.align_corners))
        mw = jnp.asarray(interpolation_matrix(x.shape[2], sw, self.align_corners))
        # HIGHEST: an accelerator's default float32 matmul may round the inputs to TF32/bfloat16
        return jnp.einsum("ih,jw,nhwc->nijc", mh, mw, x, precision=jax.lax.Precision.HIGHEST)


def _lecun(rngs: nnx.Rngs, shape, fan_in: int):
    return lecun_normal(rngs.params(), shape, jnp.float32, fan_in)


class CaffeConv(nnx.Module):
    """Caffe Convolution: kernel (kh, kw, in/group, out), optional bias; see `conv2d`."""

    transposed = False  # CaffeDeconv's only difference: the kernel's grouped axis and the op

    def __init__(self, in_channels: int, out_channels: int, kernel=(3, 3), stride=(1, 1), pad=(0, 0),
                 dilation=(1, 1), group: int = 1, bias: bool = True, before: Sequence = (), *, rngs: nnx.Rngs):
        if in_channels % group:
            raise JaxprobeError(f"group: {group} does not divide the {in_channels} input channels")
        kh, kw = kernel
        shape = ((kh, kw, in_channels, out_channels // group) if self.transposed
                 else (kh, kw, in_channels // group, out_channels))
        self.kernel = nnx.Param(_lecun(rngs, shape, kh * kw * in_channels // group))
        self.bias = nnx.Param(jnp.zeros((out_channels,), jnp.float32)) if bias else None
        self.stride, self.pad, self.dilation, self.group = tuple(stride), tuple(pad), tuple(dilation), group
        self.before = tuple(before)

    def __call__(self, x):
        for op in self.before:
            x = op(x)
        conv = conv_transpose2d if self.transposed else conv2d
        return conv(x, self.kernel[...], None if self.bias is None else self.bias[...], self.stride, self.pad,
                    self.dilation, self.group)


class CaffeDeconv(CaffeConv):
    """Caffe Deconvolution: kernel (kh, kw, in, out/group), optional bias; see `conv_transpose2d`."""

    transposed = True


class CaffeInnerProduct(nnx.Module):
    """Caffe InnerProduct: flattens each example in C,H,W order, then x @ kernel (in, out) + bias."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, before: Sequence = (), *,
                 rngs: nnx.Rngs):
        self.kernel = nnx.Param(_lecun(rngs, (in_features, out_features), in_features))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32)) if bias else None
        self.before = tuple(before)

    def __call__(self, x):
        for op in self.before:
            x = op(x)
        if x.ndim != 2:
            x = Flatten("CHW")(x)
        y = x @ self.kernel[...]
        return y if self.bias is None else y + self.bias[...]
