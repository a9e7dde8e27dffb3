"""The excitation generator of Despraz et al. 2017 (appendix Table 2) and the MNIST denoising
autoencoder whose decoder is that generator, as probe-able `Network`s.

Table 2's generator G: an input vector, a per-element scale alpha (Keras' "Locally Connected 1D,
1x1", the alpha of eq. 1), a reshape to a small grid, then blocks of (2x nearest upsampling,
two 3x3 convolutions each with batch norm), and a last convolution to the image channels with
batch norm. Choices jaxprobe makes where the table is silent:

- **Nonlinearity**: the table lists none; hidden layers use a leaky ReLU (slope 0.2) after their
  batch norm (a stack of convolutions and batch norms alone would be one linear map; with plain
  ReLU the DAE's decoder died within 50 steps, every image black, loss stuck at mean(x^2)).
- **Batch norm**: in eval mode, as every probed network (docs/probe-protocol.md): with running
  statistics at their initial (0, 1), each batch norm is a learned per-channel affine map
  gamma * h + beta. The network G is then the same function in training and when probed, with one
  image per target (a batch of one, where batch statistics would not exist across examples).
  The scratch excitation (`jaxprobe.codespace.excite`) instead trains G with each image's own
  statistics over its positions, as the paper trained G in Keras, and freezes them into the
  running statistics at the end, so that this network draws the trained image.
- **Pixels**: the table ends with the image channels' batch norm and no squashing function (the
  paper feeds VGG-16 directly). jaxprobe ends with a sigmoid: the last batch norm's output is the
  `out` layer's pre-activation and sigmoid(pre) is the image in [0, 1] (manifest pixels [0, 1]),
  which `jaxprobe.convert_pixels` maps into any classifier's convention. Without it, a generator
  could raise a [0, 1] classifier's activations without bound by leaving the pixel range. Images
  are shown as they are (canonical [0, 1], grey for one channel).
- **Size**: Table 2 (3200 = 128x5x5, six upsamplings) gives 320x320, not VGG-16's 224x224; here
  the grid and the number of blocks are sized to the target's input: side = grid * 2^blocks
  (28 = 7 * 2^2 for MNIST; `VGG_CONFIG` 224 = 7 * 2^5 with Table 2's widths 512..64), the
  smallest such side at least the input's, centre-cropped to it (`config_for`: 227 -> 256).

Layers (probe protocol): `scale` (alpha * x, then reshape and the first upsampling), `b{i}c1`,
`b{i}c2` (conv + batch norm + leaky ReLU; the block's second conv is followed by the next upsampling),
`out` (conv + batch norm, sigmoid).

`mnist_dae` is the pretrained variant's autoencoder: encoder layers `enc1`, `enc2` (space-to-depth
convolutions 28 -> 14 -> 7; `enc2` linear, its 7x7xC output flattened is the code) followed by the
generator's layers; `dae_decoder` cuts the decoder out as a generator `Model`.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxprobe.errors import JaxprobeError
from jaxprobe.models import zoo
from jaxprobe.models.layers import Act, DownConv, Flatten, Layer, Network, Reshape, lecun_normal
from jaxprobe.models.pixels import PixelConvention
from jaxprobe.models.probe import Model

PIXELS_GRAY = PixelConvention(0.0, 1.0, "gray")
PIXELS_RGB = PixelConvention(0.0, 1.0, "RGB")
MNIST_CONFIG = {"grid": (7, 7, 16), "widths": (32, 16), "channels": 1}
VGG_CONFIG = {"grid": (7, 7, 128), "widths": (512, 256, 256, 128, 64), "channels": 3}  # Table 2's widths
ENCODER_LAYERS = 2  # mnist_dae's encoder layers before the decoder's
SLOPE = 0.2  # the hidden layers' leaky ReLU


@dataclasses.dataclass(frozen=True)
class Upsample2:
    """2x nearest-neighbour upsampling of NHWC (Keras' UpSampling2D, Table 2's "Upsampling 2x2")."""

    def __call__(self, x):
        return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class Conv3x3(nnx.Module):
    """3x3 convolution, stride 1, zero padding 1 ("same"), NHWC, as one matrix product over the
    nine shifted copies of the input (im2col).

    Why not `nnx.Conv`: the excitation trains one generator per target under `vmap`, and a
    convolution whose *weights* are batched becomes a grouped convolution, which XLA's CPU backend
    runs many times slower than the same work as a batched matrix product (NOTES.md: grouped
    convolutions). The numbers are the same as `jax.lax.conv_general_dilated`'s (tested).
    `kernel` is (3, 3, in, out) (HWIO), `bias` (out,).
    """

    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
        self.kernel = nnx.Param(lecun_normal(rngs.params(), (3, 3, in_features, out_features)))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32))

    def __call__(self, x):
        n, h, w, c = x.shape
        p = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        cols = jnp.concatenate([p[:, dy:dy + h, dx:dx + w, :] for dy in range(3) for dx in range(3)], axis=-1)
        k = self.kernel[...].reshape(9 * c, -1)  # (dy, dx, c) row-major, as `cols`
        return jnp.einsum("nhwk,ko->nhwo", cols, k) + self.bias[...]


class Scale(nnx.Module):
    """Per-element scale: x (batch, n) -> alpha * x, alpha (n,) learned (Despraz et al. 2017, eq. 1)."""

    def __init__(self, features: int, init: float = 1.0):
        self.alpha = nnx.Param(jnp.full((features,), init, jnp.float32))

    def __call__(self, x):
        return x * self.alpha[...]


def _check_config(grid, widths, channels, name):
    if len(grid) != 3 or min(grid) < 1 or not widths or min(widths) < 1 or channels < 1:
        raise JaxprobeError(f"{name}: expected grid (h, w, c) and widths of positive sizes and channels >= 1, got "
                            f"grid {list(grid)}, widths {list(widths)}, channels {channels}")


def _decoder_layers(grid, widths, channels, rngs):
    grid, widths = tuple(int(g) for g in grid), tuple(int(w) for w in widths)
    relu = Act("leaky_relu", SLOPE)

    def conv(i, o):
        return Conv3x3(i, o, rngs=rngs)

    def bn(n):
        return nnx.BatchNorm(n, rngs=rngs)

    layers = [Layer(Scale(math.prod(grid)), Act("identity"), (Reshape(grid), Upsample2()))]
    names = ["scale"]
    width = grid[2]
    for b, w in enumerate(widths, 1):
        last_block = b == len(widths)
        layers.append(Layer(conv(width, w), relu, (), norm=bn(w)))
        layers.append(Layer(conv(w, w), relu, () if last_block else (Upsample2(),), norm=bn(w)))
        names += [f"b{b}c1", f"b{b}c2"]
        width = w
    layers.append(Layer(conv(width, channels), Act("sigmoid"), (), norm=bn(channels)))
    names.append("out")
    return layers, names


def excite_generator(*, grid=MNIST_CONFIG["grid"], widths=MNIST_CONFIG["widths"], channels: int = 1,
                     rngs: nnx.Rngs) -> Network:
    """Table 2's generator: input (h*w*c,) -> image (h 2^B, w 2^B, channels) in [0, 1], B = len(widths).

    Args:
      grid: (h, w, c), the reshape of the scaled input vector (Table 2: 128x5x5 of a 3200-vector).
      widths: the two convolutions' width in each upsampling block (Table 2: 512, 256, 256, 128,
        128, 64).
      channels: the image's channels (1 grey, 3 RGB).
    """
    _check_config(grid, widths, channels, "excite_generator")
    layers, names = _decoder_layers(grid, widths, channels, rngs)
    return Network(layers, names)


def mnist_dae(*, grid=(7, 7, 8), enc_width: int = 32, widths=(64, 32), rngs: nnx.Rngs) -> Network:
    """Denoising autoencoder (28, 28, 1) in [0, 1] -> (28, 28, 1) in [0, 1].

    Encoder: `enc1` (space-to-depth conv to 14x14x enc_width, ReLU), `enc2` (to 7x7x grid[2],
    linear; flattened, the code). Decoder: `excite_generator(grid, widths, 1)`'s layers.
    """
    _check_config(grid, widths, 1, "mnist_dae")
    if tuple(grid[:2]) != (7, 7) or enc_width < 1:
        raise JaxprobeError(f"mnist_dae: expected grid (7, 7, c) and enc_width >= 1, got {list(grid)}, {enc_width}")
    enc = [Layer(DownConv(1, enc_width, rngs=rngs), Act("relu")),
           Layer(DownConv(enc_width, int(grid[2]), rngs=rngs), Act("identity"), (Flatten(),))]
    layers, names = _decoder_layers(grid, widths, 1, rngs)
    return Network(enc + layers, ["enc1", "enc2"] + names)


def config_for(shape) -> dict:
    """Table 2's pattern sized to a classifier's input (side, side, channels), channels 1 or 3:
    side' = grid x 2^blocks, the smallest at least `side` (a larger image is centre-cropped to the
    input, as the DGN-AM reference crops DeePSim's 256 to CaffeNet's 227). Up to 64 pixels:
    `MNIST_CONFIG`'s widths (2 blocks; 28 -> grid 7); above: Table 2's widths (`VGG_CONFIG`, 5
    blocks; 224 -> grid 7, 227 -> grid 8, a 256 image)."""
    shape = tuple(int(d) for d in shape)
    if len(shape) != 3 or shape[0] != shape[1] or shape[2] not in (1, 3) or shape[0] < 4:
        raise JaxprobeError(f"expected square images (side, side, 1 or 3) with side >= 4, got input {shape}")
    base = MNIST_CONFIG if shape[0] <= 64 else VGG_CONFIG
    grid = -(-shape[0] // 2 ** len(base["widths"]))
    return {"grid": (grid, grid, base["grid"][2]), "widths": tuple(base["widths"]), "channels": shape[2]}


def generator_model(config=None, *, seed: int = 0, name: str = "excite_generator", shape_only: bool = False) -> Model:
    """A generator `Model` of `excite_generator(**config)` with random weights (seed), role
    "generator", pixels [0, 1] (grey or RGB). `shape_only` builds it with `nnx.eval_shape`."""
    config = dict(MNIST_CONFIG if config is None else config)
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}

    def build():
        return excite_generator(**config, rngs=nnx.Rngs(seed))

    net = nnx.eval_shape(build) if shape_only else build()
    pixels = PIXELS_GRAY if config.get("channels", 1) == 1 else PIXELS_RGB
    manifest = {"architecture": {"builder": "excite_generator",
                                 "kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}},
                "role": "generator", "pixels": pixels.to_dict(), "input_shape": [math.prod(config["grid"])]}
    return Model.from_module(name, net, (math.prod(config["grid"]),), "generator", pixels, manifest)


def dae_decoder(dae: Model, name: str | None = None) -> Model:
    """The decoder of a `mnist_dae` model as a generator `Model` (code (h*w*c,) -> image [0, 1]),
    sharing the DAE's decoder parameters (layers 3.. of the DAE are layers 1.. of the decoder)."""
    arch = dae.manifest.get("architecture", {})
    if arch.get("builder") != "mnist_dae":
        raise JaxprobeError(f"dae: expected a model built by 'mnist_dae' (the shipped 'dae'), got {dae.name!r} "
                            f"built by {arch.get('builder')!r}")
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in arch.get("kwargs", {}).items()}
    config = {"grid": kw.get("grid", (7, 7, 8)), "widths": kw.get("widths", (64, 32)), "channels": 1}
    shell = generator_model(config, name=name or f"{dae.name}_decoder", shape_only=True)
    pure = nnx.to_pure_dict(dae.params)
    layers = pure["layers"]
    dec = {"layers": {i - ENCODER_LAYERS: v for i, v in layers.items() if i >= ENCODER_LAYERS}}
    params = jax.tree.map(lambda a: a, shell.params)
    nnx.replace_by_pure_dict(params, dec)
    manifest = dict(shell.manifest, decoder_of=dae.name)
    if "code_mean" in dae.manifest:  # the mean code of the training digits (jaxprobe.train.mnist_dae.code_mean)
        manifest["code_mean"] = list(dae.manifest["code_mean"])
    return shell.replace(params=params, manifest=manifest)


zoo.register("excite_generator", excite_generator)
zoo.register("mnist_dae", mnist_dae)

__all__ = ["MNIST_CONFIG", "VGG_CONFIG", "Conv3x3", "Scale", "Upsample2", "config_for", "dae_decoder",
           "excite_generator", "generator_model", "mnist_dae"]
