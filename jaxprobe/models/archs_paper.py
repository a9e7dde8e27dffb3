"""Paper-scale models: CaffeNet, the DeePSim fc6 generator, VGG-16, AlexNet and a PGGAN generator and discriminator.

All are probe-able `Network`s (the probe protocol, docs/probe-protocol.md) registered in `jaxprobe.models.zoo`, so `jaxprobe.load`
rebuilds them from a manifest. Widths are parameters: the defaults are the published sizes, and
tests use narrow versions with the same layer structure and parameter names.

- `caffenet`: BVLC reference CaffeNet (deploy), built from its prototxt by `jaxprobe.models.caffe_net`
  with Caffe's semantics: ceil-rounded max pooling, pooling before LRN (alpha / local_size across
  channels), group-2 conv2/4/5 (one convolution per group), BGR input minus the mean, 227x227.
- `deepsim_fc6`: the DeePSim fc6 generator of Dosovitskiy & Brox (as used by DGN-AM): defc7, defc6,
  defc5 (InnerProduct, leaky ReLU 0.3), reshape to 256x4x4, then Deconvolution layers deconv5
  conv5_1 deconv4 conv4_1 deconv3 conv3_1 deconv2 deconv1 deconv0 (deconv*: kernel 4, stride 2,
  pad 1, computed as sub-pixel convolutions; conv*_1: kernel 3, stride 1, pad 1), output
  3x256x256 BGR minus the ImageNet mean, before any clipping.
- `vgg16`, `alexnet`: torchvision's layouts (the classifier's adaptive average pooling is the
  identity at 224x224), layers named conv1_1..conv5_3, fc6..fc8 (VGG) and conv1..conv5, fc6..fc8.
- `pggan_generator`: the progressive GAN generator of facebookresearch/pytorch_GAN_zoo (PGAN,
  alpha = 0): pixel norm of z, equalized-learning-rate layers (weights stored unscaled, He's
  constant sqrt(2 / fan_in) applied at run time to the output, bias included), leaky ReLU 0.2,
  pixel norm after every layer, nearest-neighbour 2x upsampling between scales, a 1x1 toRGB head.
  The resolution is 4 * 2**(len(depths) - 1).
- `pggan_discriminator`: its discriminator (pytorch_GAN_zoo's `DNet`, alpha = 0): a 1x1 fromRGB
  head, two 3x3 convolutions and a 2x2 average pooling per scale from the finest down, the
  minibatch standard deviation channel, a 3x3 convolution and a dense layer at 4x4, and the
  decision layer; equalized learning rate and leaky ReLU 0.2 as in the generator.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxprobe.errors import JaxprobeError
from jaxprobe.models import zoo
from jaxprobe.models.caffe_layers import CaffeReshape
from jaxprobe.models.caffe_net import build
from jaxprobe.models.caffe_spec import parse_prototxt
from jaxprobe.models.layers import Act, Flatten, Layer, MaxPool, Network, conv2d, lecun_normal

IMAGENET_BGR_MEAN = (104.0, 117.0, 123.0)  # the mean DGN-AM subtracts (Evolving-AI-Lab/synthesizing)
TORCHVISION_MEAN = (0.485, 0.456, 0.406)
TORCHVISION_STD = (0.229, 0.224, 0.225)

# ================================================================ Caffe models (prototxt text)

CAFFENET_WIDTHS = (96, 256, 384, 384, 256, 4096, 4096)


def _layer(name, ltype, bottom, top, body=""):
    return f'layer {{ name: "{name}" type: "{ltype}" bottom: "{bottom}" top: "{top}" {body} }}\n'


def _conv(name, bottom, n, k, stride=1, pad=0, group=1, ltype="Convolution"):
    return _layer(name, ltype, bottom, name, f"convolution_param {{ num_output: {n} kernel_size: {k} "
                                            f"stride: {stride} pad: {pad} group: {group} }}")


def caffenet_prototxt(widths=CAFFENET_WIDTHS, num_classes: int = 1000, size: int = 227) -> str:
    """BVLC reference CaffeNet's deploy prototxt with the given widths (conv1-5, fc6, fc7)."""
    c1, c2, c3, c4, c5, f6, f7 = widths
    if c1 % 2 or c2 % 2 or c3 % 2 or c4 % 2 or c5 % 2:
        raise JaxprobeError(f"widths: CaffeNet's group-2 layers need even conv widths, got {tuple(widths)}")
    lrn = 'lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 }'
    pool = 'pooling_param { pool: MAX kernel_size: 3 stride: 2 }'
    t = f'name: "CaffeNet"\ninput: "data"\ninput_shape {{ dim: 1 dim: 3 dim: {size} dim: {size} }}\n'
    t += _conv("conv1", "data", c1, 11, stride=4) + _layer("relu1", "ReLU", "conv1", "conv1")
    t += _layer("pool1", "Pooling", "conv1", "pool1", pool) + _layer("norm1", "LRN", "pool1", "norm1", lrn)
    t += _conv("conv2", "norm1", c2, 5, pad=2, group=2) + _layer("relu2", "ReLU", "conv2", "conv2")
    t += _layer("pool2", "Pooling", "conv2", "pool2", pool) + _layer("norm2", "LRN", "pool2", "norm2", lrn)
    t += _conv("conv3", "norm2", c3, 3, pad=1) + _layer("relu3", "ReLU", "conv3", "conv3")
    t += _conv("conv4", "conv3", c4, 3, pad=1, group=2) + _layer("relu4", "ReLU", "conv4", "conv4")
    t += _conv("conv5", "conv4", c5, 3, pad=1, group=2) + _layer("relu5", "ReLU", "conv5", "conv5")
    t += _layer("pool5", "Pooling", "conv5", "pool5", pool)
    bottom = "pool5"
    for i, n in ((6, f6), (7, f7)):
        t += _layer(f"fc{i}", "InnerProduct", bottom, f"fc{i}", f"inner_product_param {{ num_output: {n} }}")
        t += _layer(f"relu{i}", "ReLU", f"fc{i}", f"fc{i}")
        t += _layer(f"drop{i}", "Dropout", f"fc{i}", f"fc{i}", "dropout_param { dropout_ratio: 0.5 }")
        bottom = f"fc{i}"
    t += _layer("fc8", "InnerProduct", "fc7", "fc8", f"inner_product_param {{ num_output: {num_classes} }}")
    t += _layer("prob", "Softmax", "fc8", "prob")
    return t


def caffenet(*, widths=CAFFENET_WIDTHS, num_classes: int = 1000, size: int = 227, rngs: nnx.Rngs):
    """CaffeNet (227, 227, 3) BGR minus mean -> class probabilities; layers conv1-5, fc6-8."""
    return build(parse_prototxt(caffenet_prototxt(widths, num_classes, size), "<caffenet>"), rngs=rngs)


# fc: defc7, defc6 widths; base: channels of the 4x4 map (defc5 = 16 * base);
# convs: deconv5, conv5_1, deconv4, conv4_1, deconv3, conv3_1, deconv2, deconv1 (deconv0 -> 3)
DEEPSIM_FC = (4096, 4096)
DEEPSIM_CONVS = (256, 512, 256, 256, 128, 128, 64, 32)


def deepsim_prototxt(latent_dim: int = 4096, fc=DEEPSIM_FC, base: int = 256, convs=DEEPSIM_CONVS,
                     channels: int = 3) -> str:
    """The DeePSim fc6 generator's deploy prototxt (Caffe layer names) with the given widths."""
    if len(fc) != 2 or len(convs) != 8:
        raise JaxprobeError(f"deepsim: expected 2 fc widths and 8 conv widths, got {len(fc)} and {len(convs)}")
    lrelu = "relu_param { negative_slope: 0.3 }"
    t = f'name: "DeePSiM_fc6"\ninput: "feat"\ninput_shape {{ dim: 1 dim: {latent_dim} }}\n'
    bottom = "feat"
    for name, n in (("defc7", fc[0]), ("defc6", fc[1]), ("defc5", 16 * base)):
        t += _layer(name, "InnerProduct", bottom, name, f"inner_product_param {{ num_output: {n} }}")
        t += _layer(f"relu_{name}", "ReLU", name, name, lrelu)
        bottom = name
    t += _layer("reshape", "Reshape", "defc5", "reshape_defc5",
                f"reshape_param {{ shape {{ dim: 1 dim: {base} dim: 4 dim: 4 }} }}")
    bottom = "reshape_defc5"
    names = ("deconv5", "conv5_1", "deconv4", "conv4_1", "deconv3", "conv3_1", "deconv2", "deconv1")
    for name, n in zip(names, convs):
        k, s = (3, 1) if name.startswith("conv") else (4, 2)
        t += _conv(name, bottom, n, k, stride=s, pad=1, ltype="Deconvolution")
        t += _layer(f"relu_{name}", "ReLU", name, name, lrelu)
        bottom = name
    t += _conv("deconv0", bottom, channels, 4, stride=2, pad=1, ltype="Deconvolution")
    return t


def deepsim_fc6(*, latent_dim: int = 4096, fc=DEEPSIM_FC, base: int = 256, convs=DEEPSIM_CONVS, channels: int = 3,
                rngs: nnx.Rngs):
    """DeePSim fc6 generator: code (latent_dim,) -> (256, 256, channels) BGR minus the mean."""
    text = deepsim_prototxt(latent_dim, tuple(fc), base, tuple(convs), channels)
    return build(parse_prototxt(text, "<deepsim_fc6>"), rngs=rngs)


# ================================================================ torchvision VGG-16 and AlexNet


class TorchConv(nnx.Module):
    """PyTorch Conv2d (groups 1) over NHWC: kernel (kh, kw, in, out), symmetric padding."""

    def __init__(self, in_features: int, out_features: int, kernel: int, stride: int = 1, padding: int = 0, *,
                 rngs: nnx.Rngs):
        self.kernel = nnx.Param(lecun_normal(rngs.params(), (kernel, kernel, in_features, out_features)))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32))
        self.stride, self.padding = (stride, stride), (padding, padding)

    def __call__(self, x):
        return conv2d(x, self.kernel[...], self.bias[...], self.stride, self.padding)


def _linear(i, o, rngs):
    return nnx.Linear(i, o, kernel_init=lecun_normal, rngs=rngs)


VGG16_WIDTHS = (64, 128, 256, 512, 512)
VGG16_BLOCKS = (2, 2, 3, 3, 3)


def vgg16(*, widths=VGG16_WIDTHS, hidden: int = 4096, num_classes: int = 1000, rngs: nnx.Rngs) -> Network:
    """torchvision VGG-16 (224, 224, 3) -> logits; layers conv1_1..conv5_3, fc6, fc7, fc8.

    Input: RGB in [0, 1] minus torchvision's mean; the per-channel std is folded into conv1_1's
    weights by the converter (exact: the convolution is linear in its input).
    """
    layers, names, c = [], [], 3
    relu = Act("relu")
    for b, (w, n) in enumerate(zip(widths, VGG16_BLOCKS), 1):
        for j in range(1, n + 1):
            after = ((MaxPool(2, 2),) if b < 5 else (MaxPool(2, 2), Flatten("CHW"))) if j == n else ()
            layers.append(Layer(TorchConv(c, w, 3, 1, 1, rngs=rngs), relu, after))
            names.append(f"conv{b}_{j}")
            c = w
    layers += [Layer(_linear(c * 7 * 7, hidden, rngs), relu), Layer(_linear(hidden, hidden, rngs), relu),
               Layer(_linear(hidden, num_classes, rngs))]
    return Network(layers, names + ["fc6", "fc7", "fc8"])


ALEXNET_WIDTHS = (64, 192, 384, 256, 256)


def alexnet(*, widths=ALEXNET_WIDTHS, hidden: int = 4096, num_classes: int = 1000, rngs: nnx.Rngs) -> Network:
    """torchvision AlexNet (224, 224, 3) -> logits; layers conv1..conv5, fc6, fc7, fc8 (floor pooling)."""
    c1, c2, c3, c4, c5 = widths
    relu, pool = Act("relu"), MaxPool(3, 2)
    layers = [
        Layer(TorchConv(3, c1, 11, 4, 2, rngs=rngs), relu, (pool,)),  # 55 -> 27
        Layer(TorchConv(c1, c2, 5, 1, 2, rngs=rngs), relu, (pool,)),  # 27 -> 13
        Layer(TorchConv(c2, c3, 3, 1, 1, rngs=rngs), relu),
        Layer(TorchConv(c3, c4, 3, 1, 1, rngs=rngs), relu),
        Layer(TorchConv(c4, c5, 3, 1, 1, rngs=rngs), relu, (pool, Flatten("CHW"))),  # 13 -> 6
        Layer(_linear(c5 * 6 * 6, hidden, rngs), relu),
        Layer(_linear(hidden, hidden, rngs), relu),
        Layer(_linear(hidden, num_classes, rngs)),
    ]
    return Network(layers, ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"))


# ================================================================ PGGAN generator


@dataclasses.dataclass(frozen=True)
class PixelNorm:
    """x / sqrt(mean over channels of x^2 + eps) (Karras et al.); channels are the last axis."""

    eps: float = 1e-8

    def __call__(self, x):
        return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + self.eps)


@dataclasses.dataclass(frozen=True)
class Upscale2x:
    """Nearest-neighbour 2x upsampling of NHWC images."""

    def __call__(self, x):
        return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class EqualizedConv(nnx.Module):
    """Equalized-learning-rate convolution: (conv(x, W) + b) * sqrt(2 / fan_in), W stored unscaled."""

    def __init__(self, in_features: int, out_features: int, kernel: int, padding: int = 0, *, rngs: nnx.Rngs):
        # N(0, 1) weights, as PGAN initializes them (fan_in=1: no 1/sqrt(fan_in) in the initializer)
        self.kernel = nnx.Param(lecun_normal(rngs.params(), (kernel, kernel, in_features, out_features), fan_in=1))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32))
        self.padding = (padding, padding)
        self.scale = math.sqrt(2.0 / (in_features * kernel * kernel))

    def __call__(self, x):
        return conv2d(x, self.kernel[...], self.bias[...], (1, 1), self.padding) * self.scale


class EqualizedLinear(nnx.Module):
    """Equalized-learning-rate dense layer: (x W + b) * sqrt(2 / fan_in); `before` ops run first."""

    def __init__(self, in_features: int, out_features: int, before=(), *, rngs: nnx.Rngs):
        self.kernel = nnx.Param(lecun_normal(rngs.params(), (in_features, out_features), fan_in=1))
        self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32))
        self.scale = math.sqrt(2.0 / in_features)
        self.before = tuple(before)

    def __call__(self, x):
        for op in self.before:
            x = op(x)
        if x.ndim != 2:
            x = x.reshape(x.shape[0], -1)
        return (x @ self.kernel[...] + self.bias[...]) * self.scale


PGGAN_DEPTHS = (512, 512, 512, 512, 256, 128, 64)  # 4x4 .. 256x256


def pggan_generator(*, latent_dim: int = 512, depths=PGGAN_DEPTHS, channels: int = 3, slope: float = 0.2,
                    rngs: nnx.Rngs) -> Network:
    """PGAN generator z (latent_dim,) -> (R, R, channels), R = 4 * 2**(len(depths) - 1), about [-1, 1].

    Layers: format (dense to 4x4xdepths[0]), scale0 (3x3 conv), then per scale i >= 1
    scale{i}_conv1 and scale{i}_conv2 (3x3 convs after a 2x upsampling), and to_rgb (1x1 conv,
    the output layer, no nonlinearity).
    """
    depths = tuple(int(d) for d in depths)
    if not depths or min(depths) < 1 or latent_dim < 1:
        raise JaxprobeError(f"pggan_generator: positive latent_dim and depths expected, got {latent_dim}, {depths}")
    lrelu, norm = Act("leaky_relu", slope), PixelNorm()
    d0 = depths[0]
    up = (Upscale2x(),)
    layers = [Layer(EqualizedLinear(latent_dim, 16 * d0, before=(norm,), rngs=rngs), lrelu,
                    (CaffeReshape((0, d0, 4, 4)), norm)),
              Layer(EqualizedConv(d0, d0, 3, 1, rngs=rngs), lrelu, (norm,) + (up if len(depths) > 1 else ()))]
    names = ["format", "scale0"]
    prev = d0
    for i, d in enumerate(depths[1:], 1):
        last = i == len(depths) - 1
        layers.append(Layer(EqualizedConv(prev, d, 3, 1, rngs=rngs), lrelu, (norm,)))
        layers.append(Layer(EqualizedConv(d, d, 3, 1, rngs=rngs), lrelu, (norm,) + (() if last else up)))
        names += [f"scale{i}_conv1", f"scale{i}_conv2"]
        prev = d
    layers.append(Layer(EqualizedConv(prev, channels, 1, 0, rngs=rngs)))
    names.append("to_rgb")
    return Network(layers, names)


# ================================================================ PGGAN discriminator


@dataclasses.dataclass(frozen=True)
class AvgPool2x:
    """2x2 average pooling, stride 2, of NHWC images (PyTorch's `AvgPool2d((2, 2))`, even sides)."""

    def __call__(self, x):
        n, h, w, c = x.shape
        return jnp.mean(x[:, :h - h % 2, :w - w % 2].reshape(n, h // 2, 2, w // 2, 2, c), axis=(2, 4))


@dataclasses.dataclass(frozen=True)
class MinibatchStdDev:
    """Append the minibatch standard deviation channel (Karras et al. 2018, section 3), NHWC.

    pytorch_GAN_zoo's `miniBatchStdDev(x, subGroupSize)` rule on the batch given: the group size
    is g = min(batch, `group`), or the whole batch when g does not divide it; consecutive rows
    form the groups. Per group, the unbiased variance over its g images of every activation, plus
    1e-8, square-rooted and averaged over channels and positions, is one number, broadcast as an
    extra channel to the group's images. A group of one image (g = 1, `group` = 1 or a batch of
    one) gets a channel of zeros, as in the reference.
    """

    group: int = 4
    eps: float = 1e-8

    def __call__(self, x):
        n, h, w, _ = x.shape
        g = min(n, self.group)
        if g > 1 and n % g:
            g = n
        if g <= 1:
            return jnp.concatenate([x, jnp.zeros((n, h, w, 1), x.dtype)], axis=-1)
        y = x.reshape((n // g, g) + x.shape[1:])
        s = jnp.mean(jnp.sqrt(jnp.var(y, axis=1, ddof=1) + self.eps).reshape(n // g, -1), axis=1)  # (n // g,)
        channel = jnp.broadcast_to(s[:, None, None, None, None], (n // g, g, h, w, 1)).reshape(n, h, w, 1)
        return jnp.concatenate([x, channel.astype(x.dtype)], axis=-1)


def pggan_discriminator(*, depths=PGGAN_DEPTHS, channels: int = 3, decision: int = 1, minibatch_std: bool = True,
                        minibatch_group: int = 1, slope: float = 0.2, rngs: nnx.Rngs) -> Network:
    """PGAN discriminator (R, R, channels) in [-1, 1] -> (decision,) scores, R = 4 * 2**(len(depths) - 1).

    pytorch_GAN_zoo's `DNet` at its final scale (alpha = 0, so only the last fromRGB layer is
    used), `depths` being the generator's (DNet's `scalesDepth`, 4x4 first). Layers, in the order
    the image meets them: from_rgb (1x1 conv to depths[-1]); for each scale i = len(depths) - 1
    down to 1, scale{i}_conv1 (3x3, depths[i] -> depths[i]) and scale{i}_conv2 (3x3, depths[i] ->
    depths[i - 1]) followed by a 2x2 average pooling (DNet's `scaleLayers[i - 1]`, explored in
    reverse order of addition); scale0_conv (3x3 at 4x4 on depths[0] + 1 channels: the minibatch
    standard deviation channel is appended before it, as the last operation of the layer before);
    scale0_linear (dense 16 depths[0] -> depths[0], after a C,H,W flatten); decision (dense to
    `decision` scores, no nonlinearity). Every learned map is equalized (sqrt(2 / fan_in) applied
    to its output, bias included) and followed by a leaky ReLU of slope `slope` but the last.

    The minibatch standard deviation (`MinibatchStdDev`) is the one operation that reads other
    images of the batch: in DNet it is a function of the batch, and with `minibatch_group` = 4
    (DNet's `subGroupSize`) `forward` on a batch equals DNet on that batch. Every layer up to and
    including the last scale's scale{1}_conv2 is per-sample either way; scale0_conv, scale0_linear
    and decision are not. The default `minibatch_group` = 1 makes every image its own minibatch
    (DNet on a batch of one, whose extra channel is zero), so that like every probed model (batch
    norm runs in evaluation mode for the same reason) a point's activations never depend on the
    other points of its batch: E-GBAS's critic similarity (Jeon et al. 2020, eq. 2) reads every
    layer but `decision` on batches mixing the query, three sample sets and padding. The
    converted model records which in its manifest (`architecture.kwargs.minibatch_group`);
    `pggan_minibatch_group(model, 4)` gives the batch rule. `minibatch_std` False: DNet built
    without it (`miniBatchNormalization=False`, scale0_conv on depths[0] channels).
    """
    depths = tuple(int(d) for d in depths)
    if not depths or min(depths) < 1 or channels < 1 or decision < 1 or int(minibatch_group) < 1:
        raise JaxprobeError(f"pggan_discriminator: positive depths, channels, decision and minibatch_group expected, "
                            f"got {depths}, {channels}, {decision}, {minibatch_group}")
    lrelu, pool = Act("leaky_relu", slope), AvgPool2x()
    mbstd = (MinibatchStdDev(int(minibatch_group)),) if minibatch_std else ()
    n = len(depths)
    layers = [Layer(EqualizedConv(channels, depths[-1], 1, 0, rngs=rngs), lrelu, () if n > 1 else mbstd)]
    names = ["from_rgb"]
    for i in range(n - 1, 0, -1):
        d, below = depths[i], depths[i - 1]
        layers.append(Layer(EqualizedConv(d, d, 3, 1, rngs=rngs), lrelu))
        layers.append(Layer(EqualizedConv(d, below, 3, 1, rngs=rngs), lrelu, (pool,) + (mbstd if i == 1 else ())))
        names += [f"scale{i}_conv1", f"scale{i}_conv2"]
    d0 = depths[0]
    layers += [Layer(EqualizedConv(d0 + (1 if minibatch_std else 0), d0, 3, 1, rngs=rngs), lrelu, (Flatten("CHW"),)),
               Layer(EqualizedLinear(16 * d0, d0, rngs=rngs), lrelu),
               Layer(EqualizedLinear(d0, decision, rngs=rngs))]
    names += ["scale0_conv", "scale0_linear", "decision"]
    return Network(layers, names)


def pggan_minibatch_group(model, group: int):
    """A `pggan_discriminator` model whose minibatch standard deviation takes groups of `group`
    images by DNet's rule (`MinibatchStdDev`): `group` = 4 is DNet's own batch statistic, 1 each
    image alone. Same parameters; the manifest's architecture records the new group."""
    arch = model.manifest.get("architecture") or {}
    if arch.get("builder") != "pggan_discriminator":
        raise JaxprobeError(f"model: {model.name!r} is not a pggan_discriminator (its builder is "
                            f"{arch.get('builder')!r})")
    if isinstance(group, bool) or not isinstance(group, int) or group < 1:
        raise JaxprobeError(f"group: expected a positive int, got {group!r}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in arch.get("kwargs", {}).items()}
    kwargs["minibatch_group"] = group
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: pggan_discriminator(**kwargs, rngs=nnx.Rngs(0))))
    record = {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}
    return model.replace(graphdef=graphdef, manifest=dict(model.manifest, architecture=dict(arch, kwargs=record)))


zoo.register("caffenet", caffenet)
zoo.register("deepsim_fc6", deepsim_fc6)
zoo.register("vgg16", vgg16)
zoo.register("alexnet", alexnet)
zoo.register("pggan_generator", pggan_generator)
zoo.register("pggan_discriminator", pggan_discriminator)
