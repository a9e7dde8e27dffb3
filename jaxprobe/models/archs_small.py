"""Small third-party architectures whose PyTorch/safetensors weights `weights_convert` maps.

Each builder reproduces the PyTorch module's forward pass exactly (eval mode), NHWC, as a probe-able
`Network` (the probe protocol, docs/probe-protocol.md), and is registered in `jaxprobe.models.zoo` so `jaxprobe.load` rebuilds it from
a manifest:

- `lenet5`: LeNet-5 on MNIST (conv1 6@5x5, max-pool 2, ReLU, conv2 16@5x5, max-pool 2, ReLU,
  flatten C,H,W to 256, fc1 120 ReLU, fc2 84 ReLU, fc3 logits).
- `simple_cnn`: conv1 8@3x3 pad 1, ReLU, max-pool 2, conv2 16@3x3 pad 1, ReLU, max-pool 2, flatten
  C,H,W to 784, fc1 logits.
- `torch_dcgan_generator`: DCGAN generator z (64,) -> 28x28x1 in [-1, 1]: four ConvTranspose2d
  (no padding; kernel/stride 3/2, 4/1, 3/2, 4/2), the first three with eval-mode BatchNorm and
  ReLU, the last ending in tanh.

Where PyTorch pools before its ReLU (LeNet-5), the ReLU is taken as the layer's nonlinearity and
the pooling after it: max pooling and ReLU commute exactly (ReLU is monotone), and the layer's
value "after its nonlinearity" is then the full-resolution rectified map.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from jaxprobe.errors import JaxprobeError
from jaxprobe.models import zoo
from jaxprobe.models.layers import Act, Flatten, Layer, MaxPool, Network, conv_transpose2d, lecun_normal


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v), int(v))


class ConvTranspose(nnx.Module):
    """PyTorch `ConvTranspose2d` over NHWC (groups 1), a learned map.

    `kernel` is (kh, kw, in, out): PyTorch's [in, out, kh, kw] weight with the spatial axes first.
    Output size (n - 1) * stride - 2 * padding + kernel + output_padding. A 2-D input (batch, C)
    is read as a 1x1 image, so a generator can take its latent vector directly.
    """

    def __init__(self, in_features: int, out_features: int, kernel_size, stride=1, padding=0,
                 output_padding=0, bias: bool = True, *, rngs: nnx.Rngs):
        kh, kw = _pair(kernel_size)
        self.kernel = nnx.Param(lecun_normal(rngs.params(), (kh, kw, in_features, out_features), jnp.float32,
                                             in_features * kh * kw))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32)) if bias else None
        self.stride, self.padding, self.output_padding = _pair(stride), _pair(padding), _pair(output_padding)

    def __call__(self, x):
        if x.ndim == 2:
            x = x[:, None, None, :]
        return conv_transpose2d(x, self.kernel[...], None if self.bias is None else self.bias[...], self.stride,
                                self.padding, (1, 1), 1, self.output_padding)


def _conv(i, o, k, padding, rngs):
    return nnx.Conv(i, o, (k, k), padding=padding, kernel_init=lecun_normal, rngs=rngs)


def _linear(i, o, rngs):
    return nnx.Linear(i, o, kernel_init=lecun_normal, rngs=rngs)


def lenet5(*, num_classes: int = 10, rngs: nnx.Rngs) -> Network:
    """LeNet-5 (28, 28, 1) normalized as (x - 0.1307) / 0.3081 -> `num_classes` logits.

    Layers conv1, conv2, fc1, fc2, fc3; the flatten before fc1 is in C,H,W order (PyTorch's).
    """
    relu = Act("relu")
    layers = [
        Layer(_conv(1, 6, 5, "VALID", rngs), relu, (MaxPool(2, 2),)),  # 24 -> 12
        Layer(_conv(6, 16, 5, "VALID", rngs), relu, (MaxPool(2, 2), Flatten("CHW"))),  # 8 -> 4
        Layer(_linear(16 * 4 * 4, 120, rngs), relu),
        Layer(_linear(120, 84, rngs), relu),
        Layer(_linear(84, num_classes, rngs)),
    ]
    return Network(layers, ("conv1", "conv2", "fc1", "fc2", "fc3"))


def simple_cnn(*, widths=(8, 16), num_classes: int = 10, rngs: nnx.Rngs) -> Network:
    """Two 3x3 pad-1 conv + ReLU + max-pool blocks and one linear layer: (28, 28, 1) in [0, 1] -> logits."""
    c1, c2 = widths
    pad = [(1, 1), (1, 1)]
    layers = [
        Layer(_conv(1, c1, 3, pad, rngs), Act("relu"), (MaxPool(2, 2),)),
        Layer(_conv(c1, c2, 3, pad, rngs), Act("relu"), (MaxPool(2, 2), Flatten("CHW"))),
        Layer(_linear(7 * 7 * c2, num_classes, rngs)),
    ]
    return Network(layers, ("conv1", "conv2", "fc1"))


def torch_dcgan_generator(*, latent_dim: int = 64, widths=(256, 128, 64), channels: int = 1,
                          rngs: nnx.Rngs) -> Network:
    """DCGAN generator z (latent_dim,) -> (28, 28, channels) in [-1, 1] (PyTorch eval mode).

    Layers deconv1 (1 -> 3), deconv2 (3 -> 6), deconv3 (6 -> 13), each ConvTranspose2d + BatchNorm
    (eps 1e-5, running statistics) + ReLU, and out (13 -> 28, pre-tanh), the output layer.
    """
    w0, w1, w2 = widths
    if latent_dim < 1 or min(widths) < 1 or channels < 1:
        raise JaxprobeError(f"torch_dcgan_generator: sizes must be positive, got {latent_dim}, {widths}, {channels}")

    def bn(n):
        return nnx.BatchNorm(n, epsilon=1e-5, rngs=rngs)

    relu = Act("relu")
    layers = [
        Layer(ConvTranspose(latent_dim, w0, 3, 2, rngs=rngs), relu, norm=bn(w0)),
        Layer(ConvTranspose(w0, w1, 4, 1, rngs=rngs), relu, norm=bn(w1)),
        Layer(ConvTranspose(w1, w2, 3, 2, rngs=rngs), relu, norm=bn(w2)),
        Layer(ConvTranspose(w2, channels, 4, 2, rngs=rngs), Act("tanh")),
    ]
    return Network(layers, ("deconv1", "deconv2", "deconv3", "out"))


zoo.register("lenet5", lenet5)
zoo.register("simple_cnn", simple_cnn)
zoo.register("torch_dcgan_generator", torch_dcgan_generator)
