"""Caffe networks as probe-able jaxprobe models: the generic feed-forward prototxt builder.

A deploy `.prototxt`, parsed into a `NetSpec` by `jaxprobe.models.caffe_spec`, becomes a
`CaffeNetwork`, a `jaxprobe.models.layers.Network`: each learned map (Convolution, Deconvolution,
InnerProduct) starts a layer, a BatchNorm (and the Scale after it) directly after the map is that
layer's batch norm (inference form, part of its pre-activation), and every parameter-free operation
up to the next learned map is that layer's post ops. The first elementwise nonlinearity directly
after the map (ReLU, Sigmoid, TanH) is the layer's `act`; anything else is in `after`. Dropout is
the identity (test time); Softmax may only be the network's final op, so `up_to(x, L)` is the
logits and `forward` the probabilities, as the prototxt says. The layers themselves, with Caffe's
exact semantics, are in `jaxprobe.models.caffe_layers`.

The builder is registered in the zoo as "caffe_prototxt", so `jaxprobe.load(DIR)` rebuilds a
converted model from the `net.prototxt` stored beside its weights, without `weights_convert`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np
from flax import nnx

from jaxprobe.errors import JaxprobeError
from jaxprobe.models import zoo
from jaxprobe.models.caffe_layers import (CaffeConv, CaffeDeconv, CaffeInnerProduct, CaffeLRN, CaffePool,
                                          CaffeReshape, Softmax, Upsample, pool_pads)
from jaxprobe.models.caffe_spec import LEARNED, NONLINEAR, NORMALIZATION, NetSpec, read_prototxt
from jaxprobe.models.layers import Act, Flatten, Layer, Network


class CaffeNetwork(Network):
    """A `Network` built from a Caffe prototxt, with each Caffe layer's output reachable by name.

    `taps` lists (caffe layer name, jaxprobe layer number l, stage): stage -2 is layer l's learned
    map output, -1 its pre-activation (after its BatchNorm and Scale; the same as -2 without them),
    0 its `act`, k >= 1 the output of `after[k - 1]`.
    """

    def __init__(self, layers: Sequence[Layer], names: Sequence[str], taps: Sequence[tuple]):
        super().__init__(layers, names)
        self.taps = tuple(tuple(t) for t in taps)

    def layer_outputs(self, x) -> dict:
        """The output of every Caffe layer (NHWC), by Caffe layer name, for input x.

        A BatchNorm followed by a Scale is absent: the two are one affine map here, reported
        under the Scale's name.
        """
        where = {}
        for name, l, stage in self.taps:
            where.setdefault((l, stage), []).append(name)
        out = {}

        def tap(i, stage, value):
            for name in where.get((i, stage), ()):
                out[name] = value

        for i, layer in enumerate(self.layers, 1):
            x = layer.linear(x)
            tap(i, -2, x)
            if layer.norm is not None:
                x = layer.norm(x, use_running_average=True)
            tap(i, -1, x)
            x = layer.act(x)
            tap(i, 0, x)
            for k, op in enumerate(layer.after, 1):
                x = op(x)
                tap(i, k, x)
        return out


@dataclasses.dataclass
class _Group:
    """One probe-protocol layer while it is assembled: a learned map and what follows it."""

    spec: object  # the learned map's LayerSpec
    module: object
    channels: int  # of its output: what a BatchNorm normalizes
    act: Act | None = None
    after: list = dataclasses.field(default_factory=list)
    taps: list = dataclasses.field(default_factory=list)  # (caffe name, stage or "last")
    norm: dict | None = None  # BatchNorm (+ Scale) settings

    def normalization(self, s, what: str) -> None:
        """Fold a BatchNorm or Scale layer `s` into this layer's pre-activation, or raise."""
        if s.type == "BatchNorm":
            if len(self.taps) != 1 or self.norm is not None:
                raise JaxprobeError(f"prototxt: {what}: a BatchNorm must directly follow a Convolution, "
                                    "Deconvolution or InnerProduct (it is part of that layer's pre-activation)")
            self.norm = dict(name=s.name, eps=s.get("eps"), scale=False, bias=False)
            self.taps.append((s.name, -1))
            return
        if self.norm is None or self.norm["scale"] or self.taps[-1][0] != self.norm["name"]:
            raise JaxprobeError(f"prototxt: {what}: a Scale is supported only directly after a BatchNorm")
        self.norm.update(scale=True, bias=s.get("bias"))
        self.taps[-1] = (s.name, -1)  # BatchNorm and Scale are one affine map: the Scale's output

    def layer(self, rngs: nnx.Rngs) -> Layer:
        norm = None
        if self.norm is not None:
            n = self.norm
            norm = nnx.BatchNorm(self.channels, epsilon=n["eps"], use_scale=n["scale"], use_bias=n["bias"], rngs=rngs)
        return Layer(self.module, self.act or Act("identity"), tuple(self.after), norm=norm)


def build(spec: NetSpec, *, rngs: nnx.Rngs) -> CaffeNetwork:
    """The probe-able network of a `NetSpec` (random weights; `weights_convert` fills them in).

    A BatchNorm (and the Scale after it) directly after a learned map is that layer's inference-form
    batch norm, y = (x - mean) / sqrt(var + eps) * scale + bias (Ioffe & Szegedy 2015, Algorithm 2):
    part of its pre-activation.
    """
    shape = spec.input_shape  # Caffe order (C,H,W) or (D,)
    groups: list = []
    before: list = []
    for s in spec.layers:
        t, what = s.type, f"layer {s.name!r} ({s.type})"
        if t in LEARNED:
            mod, shape = _learned(s, shape, before, what, rngs)
            before = []  # ops before the first learned map run inside it (no taps of their own)
            groups.append(_Group(s, mod, shape[0], taps=[(s.name, -2)]))
        elif t in NORMALIZATION:
            if not groups:
                raise JaxprobeError(f"prototxt: {what}: a {t} before any learned layer; it must directly follow a "
                                    "Convolution, Deconvolution or InnerProduct")
            groups[-1].normalization(s, what)
        else:
            op, shape = _parameter_free(s, shape, what)
            if groups:
                _attach(groups[-1], s.name, op)
            elif op != "identity":
                before.append(op)
    if before:
        raise JaxprobeError("prototxt: operations after the input but no learned layer follows them")
    return _network(groups, rngs)


def _image(shape, what) -> None:
    """Refuse a layer that needs an image blob on a (D,) blob."""
    if len(shape) != 3:
        raise JaxprobeError(f"prototxt: {what}: needs a C,H,W input, got a blob of shape {shape}")


def _learned(s, shape, before, what, rngs):
    """(module, output shape) of an InnerProduct, Convolution or Deconvolution on a blob of `shape`,
    running the parameter-free ops `before` first."""
    t = s.type
    if t == "InnerProduct":
        fan_in = int(np.prod(shape))
        return CaffeInnerProduct(fan_in, s.get("num_output"), s.get("bias"), before, rngs=rngs), (s.get("num_output"),)
    _image(shape, what)
    c, h, w = shape
    kernel, stride, pad, dil = s.get("kernel"), s.get("stride"), s.get("pad"), s.get("dilation")
    group, out = s.get("group"), s.get("num_output")
    if c % group:
        raise JaxprobeError(f"prototxt: {what}: group {group} does not divide the {c} input channels")
    eff = [d * (k - 1) + 1 for d, k in zip(dil, kernel)]
    if t == "Convolution":
        size = [(n + 2 * p - e) // st + 1 for n, p, e, st in zip((h, w), pad, eff, stride)]
        mod = CaffeConv(c, out, kernel, stride, pad, dil, group, s.get("bias"), before, rngs=rngs)
    else:
        size = [(n - 1) * st + e - 2 * p for n, p, e, st in zip((h, w), pad, eff, stride)]
        mod = CaffeDeconv(c, out, kernel, stride, pad, dil, group, s.get("bias"), before, rngs=rngs)
    if min(size) < 1:
        raise JaxprobeError(f"prototxt: {what}: output size {size} from input {h}x{w} is empty")
    return mod, (out, size[0], size[1])


def _parameter_free(s, shape, what):
    """(op, output shape) of a parameter-free layer on a blob of `shape`; the op is "identity" for
    Dropout (inference) and None for a type that changes nothing here."""
    t, op = s.type, None
    if t == "Dropout":
        op = "identity"
    elif t in NONLINEAR:
        if t == "ReLU":
            slope = s.get("negative_slope")
            op = Act("leaky_relu", slope) if slope else Act("relu")
        else:
            op = Act("sigmoid" if t == "Sigmoid" else "tanh")
    elif t == "Pooling":
        _image(shape, what)
        op = CaffePool(s.get("mode"), s.get("kernel"), s.get("stride"), s.get("pad"), s.get("ceil"),
                       s.get("global_pooling"))
        shape = _pooled(s, shape, what)
    elif t == "Upsample":
        _image(shape, what)
        op = Upsample(s.get("mode"), s.get("scale"), s.get("align_corners"))
        shape = (shape[0], shape[1] * op.scale[0], shape[2] * op.scale[1])
    elif t == "LRN":
        _image(shape, what)
        op = CaffeLRN(s.get("region"), s.get("local_size"), s.get("alpha"), s.get("beta"), s.get("k"))
    elif t == "Softmax":
        axis = s.get("axis")
        if not (axis == 1 or (len(shape) == 1 and axis == -1) or (len(shape) == 3 and axis == -3)):
            raise JaxprobeError(f"prototxt: {what}: only softmax over the channel axis (1) is supported")
        op = Softmax()
    elif t == "Flatten":
        op = Flatten("CHW")
        shape = (int(np.prod(shape)),)
    elif t == "Reshape":
        op, shape = _reshape(s, shape, what)
    return op, shape


def _pooled(s, shape, what):
    """The (C, H, W) output shape of Pooling layer `s` on a blob of (C, H, W) `shape`."""
    if s.get("global_pooling"):
        return (shape[0], 1, 1)
    try:
        oh, ow = (pool_pads(n, k, st, p, s.get("ceil"))[0]
                  for n, k, st, p in zip(shape[1:], s.get("kernel"), s.get("stride"), s.get("pad")))
    except JaxprobeError as e:
        raise JaxprobeError(f"prototxt: {what}: {e}") from None
    if oh < 1 or ow < 1:
        raise JaxprobeError(f"prototxt: {what}: kernel {s.get('kernel')} does not fit {shape[1], shape[2]}")
    return (shape[0], oh, ow)


def _attach(g: _Group, name: str, op) -> None:
    """Add parameter-free `op` (layer `name`) to group `g`: an identity only taps the group's last
    output, the first activation right after the learned map is the group's own, others run after it."""
    if op == "identity":
        g.taps.append((name, "last"))
    elif isinstance(op, Act) and g.act is None and not g.after:
        g.act = op
        g.taps.append((name, 0))
    else:
        g.after.append(op)
        g.taps.append((name, len(g.after)))


def _network(groups, rngs) -> CaffeNetwork:
    """The CaffeNetwork of the groups, each Caffe layer name tapping (group index, stage)."""
    layers, names, taps = [], [], []
    for i, g in enumerate(groups, 1):
        layers.append(g.layer(rngs))
        names.append(g.spec.name)
        stage_so_far = None
        for name, stage in g.taps:
            if stage == "last":  # an identity op (Dropout) outputs what came before it
                stage = stage_so_far
            taps.append((name, i, stage))
            stage_so_far = stage
    return CaffeNetwork(layers, names, taps)


def _reshape(s, shape, what):
    """(CaffeReshape op, output shape) of a Reshape layer on a blob of `shape` (batch excluded)."""
    raw = s.get("shape")
    if len(raw) < 2 or any(d == 0 and i > len(shape) for i, d in enumerate(raw)):
        raise JaxprobeError(f"prototxt: {what}: invalid reshape dims {raw} for a blob of shape {shape}")
    # dim 0 is the batch; a 0 elsewhere copies the input's dimension at that position
    dims = [shape[i - 1] if d == 0 else d for i, d in enumerate(raw)][1:]
    total = int(np.prod(shape))
    if dims.count(-1) > 1 or any(d < -1 or d == 0 for d in dims):
        raise JaxprobeError(f"prototxt: {what}: invalid reshape dims {raw}")
    if -1 in dims:
        known = int(np.prod([d for d in dims if d != -1]))
        if known == 0 or total % known:
            raise JaxprobeError(f"prototxt: {what}: cannot reshape {shape} to {raw}")
        dims[dims.index(-1)] = total // known
    if int(np.prod(dims)) != total or len(dims) not in (1, 3):
        raise JaxprobeError(f"prototxt: {what}: cannot reshape {shape} to {raw}")
    return CaffeReshape((0,) + tuple(dims)), tuple(dims)


def caffe_prototxt(*, prototxt: str = "net.prototxt", directory=None, rngs: nnx.Rngs) -> CaffeNetwork:
    """Architecture builder (zoo name "caffe_prototxt"): the network of `directory/prototxt`.

    With a `directory`, the prototxt must be a file inside it (symbolic links resolved): a model
    directory's manifest cannot point the builder at a file elsewhere.
    """
    path = Path(prototxt)
    if directory is not None:
        base = Path(directory).resolve()
        path = (base / path).resolve()
        if not path.is_relative_to(base):
            raise JaxprobeError(f"prototxt: {prototxt!r} is not a file inside the model directory {base}")
    return build(read_prototxt(path), rngs=rngs)


def layer_outputs(model, params, x) -> dict:
    """Every Caffe layer's output (NHWC) by name for a model built by `caffe_prototxt`."""
    net = nnx.merge(model.graphdef, params)
    if not isinstance(net, CaffeNetwork):
        raise JaxprobeError(f"model: {model.name!r} was not built from a Caffe prototxt")
    return net.layer_outputs(x)


zoo.register("caffe_prototxt", caffe_prototxt, files=("prototxt",))
