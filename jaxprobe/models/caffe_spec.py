"""Caffe deploy prototxts as `NetSpec`s: parsed once, by protobuf, against `caffe_schema`.

A prototxt may use the current `layer { type: "Convolution" }` or the legacy V1
`layers { type: CONVOLUTION }`, and declare its input with an Input layer or with the legacy
`input`/`input_dim`/`input_shape` fields. Layers outside Caffe's TEST phase (data, loss, accuracy)
are dropped, Caffe's defaults are applied, and the net is checked to be one feed-forward chain.

Besides BVLC's types, one jaxprobe extension type is read: `Upsample` (`upsample_param { scale: 2
mode: NEAREST|BILINEAR align_corners: false }`, or `scale_h`/`scale_w`), PyTorch's `nn.Upsample`
by integer factors; BVLC Caffe has no such layer.

There is one rule for where the text comes from: `parse_prototxt` takes prototxt text,
`read_prototxt` a file path. Every failure raises `JaxprobeError` naming the file (or text) and,
for malformed text, the line and column.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from google.protobuf import text_format

from jaxprobe.errors import JaxprobeError
from jaxprobe.io import read_bounded
from jaxprobe.models.caffe_schema import NetParameter

# Limits on what a network definition may ask for, checked in Python integers before anything is
# built or written (a hostile prototxt must not hang, exhaust memory or wrap an int64 product).
MAX_PROTOTXT_BYTES = 16 << 20  # CaffeNet's deploy prototxt is 4 kB
MAX_DIM = 1 << 20  # any one dimension of any blob (channels, height, width, features)
MAX_ELEMENTS = 1 << 26  # of any one blob per sample: 256 MiB as float32 (VGG16's largest is 3.2 M)
MAX_PARAMETERS = 1 << 28  # of any one learned layer: 1 GiB as float32 (VGG16's fc6 has 103 M)
MAX_UPSAMPLE = 64  # per axis
MAX_LAYERS = 10_000

LEARNED = ("Convolution", "Deconvolution", "InnerProduct")
NONLINEAR = ("ReLU", "Sigmoid", "TanH")
NORMALIZATION = ("BatchNorm", "Scale")  # part of the learned map they follow (its pre-activation)
EXTENSIONS = ("Upsample",)  # jaxprobe's own layer types (caffe_schema's UpsampleParameter)
SUPPORTED = LEARNED + NONLINEAR + NORMALIZATION + (
    "Input", "Pooling", "LRN", "Dropout", "Softmax", "Flatten", "Reshape") + EXTENSIONS

# V1 (`layers { type: CONVOLUTION }`) enum names -> current type strings.
V1_TYPES = {
    "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL", "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution", "DATA": "Data",
    "DECONVOLUTION": "Deconvolution", "DROPOUT": "Dropout", "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise", "EXP": "Exp", "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output", "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData", "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct", "LRN": "LRN",
    "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss", "MVN": "MVN",
    "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence", "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice", "TANH": "TanH",
    "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}


class LayerSpec(NamedTuple):
    """One Caffe layer with every setting the builder uses resolved (defaults applied).

    `settings` is a sorted tuple of (name, value) pairs, so two prototxts compare equal exactly
    when they mean the same network (a V1 file and its upgrade, say).
    """

    name: str
    type: str
    bottom: tuple
    top: tuple
    settings: tuple

    def get(self, key, default=None):
        """The layer's setting `key` (kernel, stride, ...), or `default`."""
        return dict(self.settings).get(key, default)


class NetSpec(NamedTuple):
    """A feed-forward Caffe net: its input blob shape (Caffe order, batch excluded) and layers."""

    name: str
    input_name: str
    input_shape: tuple  # (C, H, W) or (D,)
    layers: tuple  # of LayerSpec, training-only and Input layers removed


def parse_prototxt(text: str, source: str | None = None) -> NetSpec:
    """The `NetSpec` of prototxt text; `source` names it in errors (a file, `<caffenet>`)."""
    where = f"prototxt {source}" if source else "prototxt"
    if not isinstance(text, str):
        raise JaxprobeError(f"{where}: expected prototxt text, got {type(text).__name__} "
                            "(read_prototxt reads a file)")
    net = NetParameter()
    try:
        text_format.Parse(text, net, allow_unknown_field=True)
    except text_format.ParseError as e:
        message = str(e)
        if e.GetLine() is not None:  # protobuf's "3:19 : ..." as words
            message = f"line {e.GetLine()} column {e.GetColumn()}: {message.split(' : ', 1)[-1]}"
        raise JaxprobeError(f"{where}: {message}") from None
    except Exception as e:  # protobuf raises a few other types on odd input (e.g. RecursionError)
        raise JaxprobeError(f"{where}: cannot parse ({type(e).__name__}: {e})") from None
    try:
        spec = _net_spec(net)
        check_limits(spec)
    except JaxprobeError as e:
        raise JaxprobeError(f"{where}: {e}") from None
    return spec


def read_prototxt(path) -> NetSpec:
    """The `NetSpec` of the prototxt file at `path` (UTF-8 text)."""
    data = read_bounded(path, max_bytes=MAX_PROTOTXT_BYTES, what="prototxt")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise JaxprobeError(f"prototxt {path}: not UTF-8 text ({e})") from None
    return parse_prototxt(text, str(path))


def check_limits(spec: NetSpec) -> None:
    """Raise a `JaxprobeError` naming the first layer of `spec` whose sizes exceed jaxprobe's limits.

    Blob shapes are propagated in Python integers (no int64 wrap-around): every dimension at most
    `MAX_DIM`, every blob at most `MAX_ELEMENTS` per sample, every learned layer at most
    `MAX_PARAMETERS` weights, Upsample factors at most `MAX_UPSAMPLE`, convolution and pooling
    windows no larger than their padded input, an across-channel LRN window no wider than the
    channels. Shapes other checks refuse (an empty output, a group that does not divide) end the
    propagation here: the builder reports them.
    """
    if len(spec.layers) > MAX_LAYERS:
        raise JaxprobeError(f"the net has {len(spec.layers)} layers, over the limit of {MAX_LAYERS}")
    shape = tuple(int(d) for d in spec.input_shape)
    _check_blob(f"input {spec.input_name!r}", shape)
    for s in spec.layers:
        what = f"layer {s.name!r} ({s.type})"
        rule = _LIMIT_RULES.get(s.type)
        shape = rule(s, shape, what) if rule else shape
        if shape is None:
            return
        _check_blob(what, shape)


def _check_blob(where: str, shape: tuple) -> None:
    """Refuse a blob (batch excluded) with a dimension over MAX_DIM or over MAX_ELEMENTS values."""
    if any(d > MAX_DIM for d in shape):
        raise JaxprobeError(f"{where}: blob shape {list(shape)} has a dimension over the limit of {MAX_DIM:,}")
    n = math.prod(shape)
    if n > MAX_ELEMENTS:
        raise JaxprobeError(f"{where}: blob shape {list(shape)} holds {n:,} values per sample "
                            f"({4 * n:,} bytes as float32), over the limit of {MAX_ELEMENTS:,}")


# check_limits' rules: each takes (layer, input blob shape, the layer's name for errors), refuses a
# size over a limit, and returns the output blob shape, or None where the builder will refuse the
# layer (which ends the propagation). A type without a rule keeps the shape.

def _conv_limits(s, shape, what):
    if len(shape) != 3:
        return None
    get = s.get
    c, h, w = shape
    kernel, stride, pad, dil = get("kernel"), get("stride"), get("pad"), get("dilation")
    eff = [d * (k - 1) + 1 for d, k in zip(dil, kernel)]
    params = get("num_output") * (c // get("group") if c % get("group") == 0 else c) * kernel[0] * kernel[1]
    if params > MAX_PARAMETERS:
        raise JaxprobeError(f"{what}: {params:,} weights, over the limit of {MAX_PARAMETERS:,}")
    if s.type == "Convolution":
        for n, p, e in zip((h, w), pad, eff):
            if e > n + 2 * p:
                raise JaxprobeError(f"{what}: the window {e} (kernel {list(kernel)}, dilation {list(dil)}) "
                                    f"is larger than the padded input {n} + 2*{p}")
        size = [(n + 2 * p - e) // st + 1 for n, p, e, st in zip((h, w), pad, eff, stride)]
    else:
        size = [(n - 1) * st + e - 2 * p for n, p, e, st in zip((h, w), pad, eff, stride)]
    return None if min(size) < 1 else (get("num_output"), size[0], size[1])


def _inner_product_limits(s, shape, what):
    params = math.prod(shape) * s.get("num_output")
    if params > MAX_PARAMETERS:
        raise JaxprobeError(f"{what}: {params:,} weights, over the limit of {MAX_PARAMETERS:,}")
    return (s.get("num_output"),)


def _pooling_limits(s, shape, what):
    get = s.get
    if len(shape) != 3:
        return None
    if get("global_pooling"):
        return (shape[0], 1, 1)
    size = []
    for n, k, st, p in zip(shape[1:], get("kernel"), get("stride"), get("pad")):
        if k > n + 2 * p:
            raise JaxprobeError(f"{what}: kernel {list(get('kernel'))} is larger than the padded input "
                                f"{list(shape[1:])} + 2*{list(get('pad'))}")
        num = n + 2 * p - k
        size.append((-(-num // st) if get("ceil") else num // st) + 1)
    return (shape[0], *size)


def _lrn_limits(s, shape, what):
    get = s.get
    if len(shape) != 3:
        return None
    if get("region") == "ACROSS_CHANNELS" and get("local_size") > shape[0]:
        raise JaxprobeError(f"{what}: local_size {get('local_size')} is wider than the {shape[0]} channels "
                            "of its input")
    if get("region") == "WITHIN_CHANNEL" and get("local_size") > 2 * max(shape[1:]) + 1:
        raise JaxprobeError(f"{what}: local_size {get('local_size')} is wider than its padded "
                            f"{shape[1]}x{shape[2]} input")
    return shape


def _upsample_limits(s, shape, what):
    scale = s.get("scale")
    if max(scale) > MAX_UPSAMPLE:
        raise JaxprobeError(f"{what}: scale {list(scale)} over the limit of {MAX_UPSAMPLE} per axis")
    if len(shape) != 3:
        return None
    return (shape[0], shape[1] * scale[0], shape[2] * scale[1])


def _flatten_limits(s, shape, what):
    return (math.prod(shape),)


def _reshape_limits(s, shape, what):
    raw = s.get("shape")
    if any(abs(d) > MAX_ELEMENTS for d in raw):
        raise JaxprobeError(f"{what}: reshape dims {list(raw)} over the limit of {MAX_ELEMENTS:,}")
    # the builder's rule (0 copies the input's dimension, one -1 is inferred); what it
    # refuses ends the propagation
    if len(raw) < 2 or any(d == 0 and i > len(shape) for i, d in enumerate(raw)):
        return None
    dims = [shape[i - 1] if d == 0 else d for i, d in enumerate(raw)][1:]
    total = math.prod(shape)
    if dims.count(-1) > 1 or any(d < -1 or d == 0 for d in dims):
        return None
    if -1 in dims:
        known = math.prod(d for d in dims if d != -1)
        if total % known:
            return None
        dims[dims.index(-1)] = total // known
    if math.prod(dims) != total or len(dims) not in (1, 3):
        return None
    return tuple(dims)


_LIMIT_RULES = {"Convolution": _conv_limits, "Deconvolution": _conv_limits, "InnerProduct": _inner_product_limits,
                "Pooling": _pooling_limits, "LRN": _lrn_limits, "Upsample": _upsample_limits,
                "Flatten": _flatten_limits, "Reshape": _reshape_limits}


def input_shape(spec: NetSpec) -> tuple:
    """jaxprobe's input shape (H, W, C) or (D,) of a Caffe net (batch excluded)."""
    s = spec.input_shape
    return (s[1], s[2], s[0]) if len(s) == 3 else tuple(s)


# ================================================================ NetParameter -> NetSpec


def _enum_name(msg, field: str) -> str:
    return msg.DESCRIPTOR.fields_by_name[field].enum_type.values_by_number[getattr(msg, field)].name


def _layer_type(layer, name: str) -> str:
    if not layer.HasField("type") or not layer.type:
        raise JaxprobeError(f"layer {name!r}: missing layer type")
    if isinstance(layer.type, str):
        return layer.type
    return V1_TYPES[_enum_name(layer, "type")]


def _in_test_phase(layer) -> bool:
    """Caffe's NetStateRule check for the TEST phase (levels and stages default to none)."""

    def meets(rule):  # the net state is phase TEST, level 0, no stages
        if rule.HasField("phase") and _enum_name(rule, "phase") != "TEST":
            return False
        if rule.HasField("min_level") and rule.min_level > 0:
            return False
        if rule.HasField("max_level") and rule.max_level < 0:
            return False
        return not rule.stage

    if layer.include:
        return any(meets(r) for r in layer.include)
    if layer.exclude:
        return not any(meets(r) for r in layer.exclude)
    if "phase" not in layer.DESCRIPTOR.fields_by_name:  # V1 layers have no phase of their own
        return True
    return not layer.HasField("phase") or _enum_name(layer, "phase") == "TEST"


def _pair(p, base: str, h: str, w: str, default, what: str, positive=True) -> tuple:
    """Caffe's kernel/stride/pad resolution: `X_h`/`X_w`, else `X` with 1 or 2 values, else the default."""
    if p.HasField(h) or p.HasField(w):
        if not (p.HasField(h) and p.HasField(w)):
            raise JaxprobeError(f"{what}: {h} and {w} must be given together")
        vals = (getattr(p, h), getattr(p, w))
    else:
        if p.DESCRIPTOR.fields_by_name[base].is_repeated:  # Convolution's; Pooling's is a single value
            raw = list(getattr(p, base))
        else:
            raw = [getattr(p, base)] if p.HasField(base) else []
        if not raw:
            if default is None:
                raise JaxprobeError(f"{what}: {base} is required")
            vals = (default, default)
        elif len(raw) == 1:
            vals = (raw[0], raw[0])
        elif len(raw) == 2:
            vals = tuple(raw)
        else:
            raise JaxprobeError(f"{what}: {base} has {len(raw)} values; only 2-D nets are supported")
    if positive and min(vals) < 1:
        raise JaxprobeError(f"{what}: {base} must be >= 1, got {vals}")
    return vals


def _finite(what: str, field: str, value, *, low: float | None = None, positive: bool = False) -> float:
    """`value` if it is a finite number (>= `low`, or > 0 if `positive`); else a `JaxprobeError`."""
    ok = math.isfinite(value) and (low is None or value >= low) and (not positive or value > 0)
    if not ok:
        need = "a finite number" + (f" >= {low:g}" if low is not None else "") + (" > 0" if positive else "")
        raise JaxprobeError(f"{what}: {field} must be {need}, got {value}")
    return value


def _settings(ltype: str, layer, name: str) -> dict:
    what = f"layer {name!r} ({ltype})"
    if ltype in ("Convolution", "Deconvolution"):
        p = layer.convolution_param
        if p.num_output < 1:
            raise JaxprobeError(f"{what}: num_output must be >= 1, got {p.num_output}")
        dilation = tuple(p.dilation) or (1,)
        if len(dilation) > 2 or min(dilation) < 1:
            raise JaxprobeError(f"{what}: dilation must be 1 or 2 values >= 1, got {list(dilation)}")
        if len(dilation) == 1:
            dilation = dilation * 2
        if p.group < 1 or p.num_output % p.group:
            raise JaxprobeError(f"{what}: group {p.group} must divide num_output {p.num_output}")
        if p.axis != 1:
            raise JaxprobeError(f"{what}: only axis 1 (channels) is supported")
        return dict(num_output=p.num_output, kernel=_pair(p, "kernel_size", "kernel_h", "kernel_w", None, what),
                    stride=_pair(p, "stride", "stride_h", "stride_w", 1, what),
                    pad=_pair(p, "pad", "pad_h", "pad_w", 0, what, positive=False),
                    dilation=dilation, group=p.group, bias=p.bias_term)
    if ltype == "InnerProduct":
        p = layer.inner_product_param
        if p.num_output < 1:
            raise JaxprobeError(f"{what}: num_output must be >= 1, got {p.num_output}")
        if p.axis != 1:
            raise JaxprobeError(f"{what}: only axis 1 is supported")
        return dict(num_output=p.num_output, bias=p.bias_term, transpose=p.transpose)
    if ltype == "Pooling":
        p = layer.pooling_param
        mode = _enum_name(p, "pool")
        if mode == "STOCHASTIC":
            raise JaxprobeError(f"{what}: STOCHASTIC pooling is not supported")
        if p.global_pooling:
            kernel, stride, pad = (0, 0), (1, 1), (0, 0)
        else:
            kernel = _pair(p, "kernel_size", "kernel_h", "kernel_w", None, what)
            stride = _pair(p, "stride", "stride_h", "stride_w", 1, what)
            pad = _pair(p, "pad", "pad_h", "pad_w", 0, what, positive=False)
            if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
                raise JaxprobeError(f"{what}: pad {pad} must be smaller than kernel {kernel}")
        return dict(mode=mode, kernel=kernel, stride=stride, pad=pad, global_pooling=p.global_pooling,
                    ceil=_enum_name(p, "round_mode") == "CEIL")
    if ltype == "LRN":
        p = layer.lrn_param
        if p.local_size < 1 or p.local_size % 2 == 0:
            raise JaxprobeError(f"{what}: local_size must be odd and positive (as in Caffe), got {p.local_size}")
        _finite(what, "alpha", p.alpha, low=0.0)
        _finite(what, "beta", p.beta, low=0.0)
        _finite(what, "k", p.k, positive=True)
        return dict(region=_enum_name(p, "norm_region"), local_size=p.local_size, alpha=p.alpha, beta=p.beta, k=p.k)
    if ltype == "ReLU":
        return dict(negative_slope=_finite(what, "negative_slope", layer.relu_param.negative_slope))
    if ltype == "Softmax":
        return dict(axis=layer.softmax_param.axis)
    if ltype == "Flatten":
        p = layer.flatten_param
        if (p.axis, p.end_axis) != (1, -1):
            raise JaxprobeError(f"{what}: only axis 1 to end_axis -1 is supported")
        return {}
    if ltype == "Reshape":
        p = layer.reshape_param
        if not p.HasField("shape"):
            raise JaxprobeError(f"{what}: reshape_param.shape is required")
        if p.axis != 0 or p.num_axes != -1:
            raise JaxprobeError(f"{what}: only axis 0 with num_axes -1 is supported")
        return dict(shape=tuple(p.shape.dim))
    if ltype == "BatchNorm":
        p = layer.batch_norm_param
        if p.HasField("use_global_stats") and not p.use_global_stats:
            raise JaxprobeError(f"{what}: use_global_stats: false normalizes by the batch's statistics; only the "
                                "inference form (the stored mean and variance) is supported")
        if not p.eps >= 0:
            raise JaxprobeError(f"{what}: eps must be >= 0, got {p.eps}")
        _finite(what, "eps", p.eps, low=0.0)
        return dict(eps=p.eps)
    if ltype == "Scale":
        p = layer.scale_param
        if (p.axis, p.num_axes) != (1, 1):
            raise JaxprobeError(f"{what}: only a per-channel scale (axis 1, num_axes 1) is supported")
        return dict(bias=p.bias_term)
    if ltype == "Upsample":
        p = layer.upsample_param
        scale = _pair(p, "scale", "scale_h", "scale_w", None, what)
        if max(scale) > MAX_UPSAMPLE:
            raise JaxprobeError(f"{what}: scale {list(scale)} over the limit of {MAX_UPSAMPLE} per axis")
        return dict(mode=_enum_name(p, "mode"), scale=scale, align_corners=p.align_corners)
    if ltype in ("Dropout", "Sigmoid", "TanH"):
        return {}
    raise JaxprobeError(
        f"layer {name!r}: unsupported layer type {ltype!r}; supported: {', '.join(SUPPORTED)}"
        + (" (give the deploy prototxt, without data and loss layers)" if "Data" in ltype or "Loss" in ltype
           or ltype == "Accuracy" else "")
    )


def _net_spec(net) -> NetSpec:
    """Normalize a parsed NetParameter into a `NetSpec`, checking it is one chain from one input."""
    if net.layer and net.layers:
        raise JaxprobeError("mixes new `layer` and legacy V1 `layers` entries")
    input_name, input_dims = None, None
    if net.input:
        if len(net.input) != 1:
            raise JaxprobeError(f"expected one input blob, got {len(net.input)}: {list(net.input)}")
        input_name = net.input[0]
        input_dims = tuple(net.input_shape[0].dim) if net.input_shape else tuple(net.input_dim)
        if not input_dims:
            raise JaxprobeError(f"input {input_name!r} has no input_dim or input_shape")
    layers = []
    for i, layer in enumerate(net.layer or net.layers):
        lname = layer.name if layer.HasField("name") else f"#{i + 1}"
        ltype = _layer_type(layer, lname)
        if not _in_test_phase(layer):
            continue  # training-only layer
        bottom, top = tuple(layer.bottom), tuple(layer.top)
        if ltype == "Input":
            if input_name is not None:
                raise JaxprobeError(f"layer {lname!r}: a second input (the net must have one input)")
            if len(top) != 1:
                raise JaxprobeError(f"layer {lname!r}: an Input layer with {len(top)} tops")
            if not layer.input_param.shape:
                raise JaxprobeError(f"layer {lname!r}: input_param.shape is required")
            input_name, input_dims = top[0], tuple(layer.input_param.shape[0].dim)
            continue
        settings = _settings(ltype, layer, lname)
        layers.append(LayerSpec(lname, ltype, bottom, top, tuple(sorted(settings.items()))))
    if input_name is None:
        raise JaxprobeError("no input (expected an Input layer or input/input_dim)")
    if len(input_dims) not in (2, 4) or any(d < 1 for d in input_dims[1:]):
        raise JaxprobeError(f"input shape {input_dims}: expected N,C,H,W or N,D with positive sizes")
    if not layers:
        raise JaxprobeError("the net has no layers")
    current = input_name
    for spec in layers:
        if len(spec.bottom) != 1 or len(spec.top) != 1:
            raise JaxprobeError(
                f"layer {spec.name!r} has {len(spec.bottom)} bottoms and {len(spec.top)} tops; "
                "only feed-forward chains (one bottom, one top) are supported"
            )
        if spec.bottom[0] != current:
            raise JaxprobeError(
                f"layer {spec.name!r} reads {spec.bottom[0]!r} but the chain's current blob is "
                f"{current!r}; only feed-forward chains are supported"
            )
        current = spec.top[0]
    if not any(s.type in LEARNED for s in layers):
        raise JaxprobeError("the net has no learned layer (Convolution, Deconvolution, InnerProduct)")
    for s in layers[:-1]:
        if s.type == "Softmax":
            raise JaxprobeError(f"layer {s.name!r}: Softmax is only supported as the final layer")
    return NetSpec(net.name, input_name, input_dims[1:], tuple(layers))
