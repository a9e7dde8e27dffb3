"""The models the suite times: jaxprobe's shipped MNIST-scale ones, and the paper-scale DeePSim fc6
generator + CaffeNet with random He-scaled weights (built shape-only, then filled on the host)."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxprobe.models import archs_paper
from jaxprobe.models import caffe_layers as cl
from jaxprobe.models.pixels import PixelConvention
from jaxprobe.models.probe import Model

CAFFE_PIXELS = PixelConvention(0.0, 255.0, "BGR", archs_paper.IMAGENET_BGR_MEAN, 1.0)

# --quick: the same layer structure at a fraction of the widths (CaffeNet still reads 227 x 227).
QUICK_CAFFENET = dict(widths=(16, 32, 32, 32, 32, 64, 64), num_classes=100)
QUICK_DEEPSIM = dict(latent_dim=64, fc=(64, 64), base=8, convs=(16, 16, 16, 16, 8, 8, 8, 8))


def he_fill(net):
    """Random He-scaled weights for every kernel of `net` (std sqrt(2 / fan_in), biases 0), drawn by
    numpy from a fixed seed. A stride-s transposed convolution's output reads kh kw in / s^2 taps.
    Returns (graphdef, params)."""
    rng = np.random.default_rng(0)
    for _, m in nnx.iter_graph(net):
        kernel = getattr(m, "kernel", None)
        if not isinstance(m, nnx.Module) or not isinstance(kernel, nnx.Param):
            continue
        shape = tuple(kernel.shape)
        fan_in = math.prod(shape[:-1])
        if isinstance(m, cl.CaffeDeconv):
            fan_in = max(1, fan_in // (m.stride[0] * m.stride[1]))
        kernel.value = jnp.asarray(rng.standard_normal(shape, np.float32) * np.float32(math.sqrt(2.0 / fan_in)))
        bias = getattr(m, "bias", None)
        if isinstance(bias, nnx.Param):
            bias.value = jnp.zeros(bias.shape, jnp.float32)
    return nnx.split(net)


@functools.lru_cache(maxsize=None)
def paper_models(quick: bool):
    """(generator, classifier) Models: DeePSim fc6 (4096 -> 256 x 256 x 3) and CaffeNet (227 x 227 x 3),
    random He-scaled weights; narrow versions with the same structure under --quick."""
    gkw = QUICK_DEEPSIM if quick else {}
    ckw = QUICK_CAFFENET if quick else {}
    models = []
    for name, builder, kw, shape, role in (
            ("deepsim_fc6", archs_paper.deepsim_fc6, gkw, (gkw.get("latent_dim", 4096),), "generator"),
            ("caffenet", archs_paper.caffenet, ckw, (227, 227, 3), "classifier")):
        abstract = nnx.eval_shape(lambda: builder(**kw, rngs=nnx.Rngs(0)))
        net = _materialize(abstract)
        graphdef, params = he_fill(net)
        manifest = {"architecture": {"builder": name, "kwargs": kw}}
        if role == "generator":  # DeePSim fc6 inverts CaffeNet's fc6 (the inverse set's default embedding)
            manifest["encoder"] = {"architecture": "caffenet", "layer": "fc6"}
        models.append(Model(name, graphdef, params, tuple(net.names), shape, role, CAFFE_PIXELS, manifest))
    return tuple(models)


def _materialize(abstract):
    """A module from its shape-only build: every variable a zero array of its shape (filled later)."""
    graphdef, state = nnx.split(abstract)
    state = jax.tree.map(lambda s: np.zeros(s.shape, np.float32), state)
    return nnx.merge(graphdef, state)


@functools.lru_cache(maxsize=None)
def small_models():
    """The shipped fc_generator, classifier and h_dae (MNIST scale)."""
    import jaxprobe
    return jaxprobe.load("fc_generator"), jaxprobe.load("classifier"), jaxprobe.load("h_dae")
