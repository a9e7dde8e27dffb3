"""Building blocks of probe-able networks.

A *layer* in the sense of SPEC section 0 is one learned map (dense, convolution, transposed
convolution), its batch norm if any (always in eval mode), its nonlinearity, and the parameter-free
operations before the next learned map (pooling, reshape, flatten). `Layer.pre` computes the
pre-activation (the learned map's output, batch norm included); `Layer.post` applies the rest.

Parameter-free operations are frozen dataclasses: they are static attributes of the NNX graph,
hashable, and carry their own settings.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
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
        return _pool(x, self.window, self.stride, self.pad, self.ceil, jax.lax.max, -jnp.inf)


def _pool(x, window, stride, pad, ceil, op, init):
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
    """One SPEC layer: `pre` = learned map (+ eval-mode batch norm), `post` = act + static ops."""

    def __init__(self, linear: nnx.Module, act: Act = Act("identity"), after: Sequence = (),
                 norm: nnx.Module | None = None):
        self.linear = linear
        self.norm = norm
        self.act = act
        self.after = tuple(after)

    def pre(self, x):
        h = self.linear(x)
        if self.norm is not None:
            h = self.norm(h, use_running_average=True)
        return h

    def post(self, h):
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
