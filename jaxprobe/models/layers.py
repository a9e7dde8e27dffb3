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
    """Max pooling of NHWC `x` as the running maximum of kh * kw strided slices of the input padded
    with -inf by `pads` ((lo, hi) per spatial axis), `out` = (oh, ow) windows per axis.

    The same values as `lax.reduce_window(max)`; its gradient is a chain of selects and slices
    instead of XLA's `select_and_scatter`, which XLA's CPU backend ran 15-20x slower than the
    forward pass on CaffeNet (NOTES.md). Ties pass the gradient to both maxima equally (JAX's rule
    for `max`) where Caffe picks the first; in CaffeNet and jaxprobe's classifiers every pooled input
    follows a ReLU, so a tie is between zeros whose upstream gradient is zero either way.
    """
    (ph_lo, ph_hi), (pw_lo, pw_hi) = pads
    xp = jnp.pad(x, [(0, 0), (ph_lo, ph_hi), (pw_lo, pw_hi), (0, 0)], constant_values=-jnp.inf)
    (oh, ow), (kh, kw), (sh, sw) = out, kernel, stride
    y = None
    for i in range(kh):
        for j in range(kw):
            part = jax.lax.slice(xp, (0, i, j, 0), (xp.shape[0], i + (oh - 1) * sh + 1, j + (ow - 1) * sw + 1,
                                                    xp.shape[3]), (1, sh, sw, 1))
            y = part if y is None else jnp.maximum(y, part)
    return y


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

    if group == 1:
        y = one(x, kernel)
    else:
        ci, co = kernel.shape[2], kernel.shape[3] // group
        y = jnp.concatenate([one(x[..., g * ci:(g + 1) * ci], kernel[..., g * co:(g + 1) * co])
                             for g in range(group)], axis=-1)
    return y if bias is None else y + bias


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
    """The kernel-4, stride-2, pad-1 transposed convolution as one 2x2 convolution to 4C channels
    followed by an interleave (NOTES.md: faster on XLA's CPU backend than the dilated form).

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
    y = phases.reshape(n, 2 * h, 2 * w, co)  # (n, h, a, w, b, o) -> (n, 2h + a, 2w + b, o)
    return y if bias is None else y + bias


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
