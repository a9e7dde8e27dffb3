"""Caffe networks as probe-able jaxprobe models: the generic feed-forward prototxt builder.

A deploy `.prototxt` (new `layer { type: "Convolution" }` or legacy V1 `layers { type: CONVOLUTION }`)
becomes a `CaffeNetwork`, a `jaxprobe.models.layers.Network` whose layers follow SPEC section 0: each
learned map (Convolution, Deconvolution, InnerProduct) starts a layer, and every parameter-free
operation up to the next learned map is that layer's post ops. The first elementwise nonlinearity
directly after the map (ReLU, Sigmoid, TanH) is the layer's `act`; anything else is in `after`.

Semantics follow BVLC Caffe exactly, with images NHWC inside jaxprobe:
- Convolution with group, pad, stride, dilation. Groups run as one convolution each plus a concat
  (NOTES.md: `feature_group_count` is several times slower on XLA's CPU backend).
- Deconvolution: the transposed convolution, weights [in, out/group, kh, kw] as Caffe stores them.
- Pooling MAX/AVE with Caffe's output size ceil((n + 2p - k) / s) + 1 (minus one if the last
  window would start in the padding), and AVE's divisor counting the window clipped to
  [-p, n + p): padding inside the padded input counts, the ceil overhang does not.
- LRN ACROSS_CHANNELS: x / (k + alpha/n * sum_{n channels} x^2)^beta; WITHIN_CHANNEL:
  x / (1 + alpha/n^2 * sum_{n x n window} x^2)^beta (Caffe builds it from an AVE pooling and a
  Power layer with shift 1, so `k` plays no part).
- InnerProduct flattens in C,H,W order (`Flatten("CHW")`).
- ReLU with negative_slope, Sigmoid, TanH, Dropout (identity at test time), Flatten, Reshape, and
  Softmax as the network's final op (so `up_to(x, L)` is the logits and `forward` the
  probabilities, as the prototxt says).

This module is self-contained: it reads the prototxt with a small schema-free reader of protobuf's
text format, so `jaxprobe.load` rebuilds a converted model without `weights_convert` (which parses
the same files against its protobuf schema and checks that both readings agree).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxprobe.models import zoo
from jaxprobe.errors import JaxprobeError
from jaxprobe.models.layers import Act, Flatten, Layer, Network

LEARNED = ("Convolution", "Deconvolution", "InnerProduct")
NONLINEAR = ("ReLU", "Sigmoid", "TanH")
SUPPORTED = LEARNED + NONLINEAR + ("Input", "Pooling", "LRN", "Dropout", "Softmax", "Flatten", "Reshape")

# V1 (`layers { type: CONVOLUTION }`) enum names and numbers -> current type strings.
V1_TYPES = {
    "ABSVAL": ("AbsVal", 35), "ACCURACY": ("Accuracy", 1), "ARGMAX": ("ArgMax", 30), "BNLL": ("BNLL", 2),
    "CONCAT": ("Concat", 3), "CONTRASTIVE_LOSS": ("ContrastiveLoss", 37), "CONVOLUTION": ("Convolution", 4),
    "DATA": ("Data", 5), "DECONVOLUTION": ("Deconvolution", 39), "DROPOUT": ("Dropout", 6),
    "DUMMY_DATA": ("DummyData", 32), "EUCLIDEAN_LOSS": ("EuclideanLoss", 7), "ELTWISE": ("Eltwise", 25),
    "EXP": ("Exp", 38), "FLATTEN": ("Flatten", 8), "HDF5_DATA": ("HDF5Data", 9),
    "HDF5_OUTPUT": ("HDF5Output", 10), "HINGE_LOSS": ("HingeLoss", 28), "IM2COL": ("Im2col", 11),
    "IMAGE_DATA": ("ImageData", 12), "INFOGAIN_LOSS": ("InfogainLoss", 13),
    "INNER_PRODUCT": ("InnerProduct", 14), "LRN": ("LRN", 15), "MEMORY_DATA": ("MemoryData", 29),
    "MULTINOMIAL_LOGISTIC_LOSS": ("MultinomialLogisticLoss", 16), "MVN": ("MVN", 34),
    "POOLING": ("Pooling", 17), "POWER": ("Power", 26), "RELU": ("ReLU", 18), "SIGMOID": ("Sigmoid", 19),
    "SIGMOID_CROSS_ENTROPY_LOSS": ("SigmoidCrossEntropyLoss", 27), "SILENCE": ("Silence", 36),
    "SOFTMAX": ("Softmax", 20), "SOFTMAX_LOSS": ("SoftmaxWithLoss", 21), "SPLIT": ("Split", 22),
    "SLICE": ("Slice", 33), "TANH": ("TanH", 23), "WINDOW_DATA": ("WindowData", 24),
    "THRESHOLD": ("Threshold", 31),
}
_V1_BY_NUMBER = {num: name for name, num in V1_TYPES.values()}
_V1_BY_NAME = {k: name for k, (name, _) in V1_TYPES.items()}


# ================================================================ text-format reader


class _Reader:
    """Tokenizer + recursive-descent reader of protobuf text format, without a schema.

    A message becomes a dict mapping each field name to the list of its values in file order
    (proto2: the last value of a singular field wins). Values are dicts (messages), str (quoted
    strings and identifiers such as enum names), int, float or bool-like identifiers.
    """

    _PUNCT = "{}<>:[],;"

    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self.line = 1

    def error(self, what: str) -> JaxprobeError:
        return JaxprobeError(f"prototxt: line {self.line}: {what}")

    def _skip(self):
        t, n = self.text, len(self.text)
        while self.pos < n:
            c = t[self.pos]
            if c == "\n":
                self.line += 1
                self.pos += 1
            elif c in " \t\r\f\v":
                self.pos += 1
            elif c == "#":
                end = t.find("\n", self.pos)
                self.pos = n if end < 0 else end
            else:
                break

    def peek(self):
        self._skip()
        if self.pos >= len(self.text):
            return None
        c = self.text[self.pos]
        return c if c in self._PUNCT else "word" if c not in "\"'" else "string"

    def punct(self, c):
        self._skip()
        if self.pos >= len(self.text) or self.text[self.pos] != c:
            got = self.text[self.pos : self.pos + 10] if self.pos < len(self.text) else "end of file"
            raise self.error(f"expected {c!r}, got {got!r}")
        self.pos += 1

    def word(self):
        self._skip()
        t, start = self.text, self.pos
        while self.pos < len(t) and (t[self.pos].isalnum() or t[self.pos] in "_.-+"):
            self.pos += 1
        if start == self.pos:
            got = t[start : start + 10] if start < len(t) else "end of file"
            raise self.error(f"expected a name or a number, got {got!r}")
        return t[start : self.pos]

    def string(self):
        parts = []
        while self.peek() == "string":
            quote = self.text[self.pos]
            self.pos += 1
            out = []
            while True:
                if self.pos >= len(self.text) or self.text[self.pos] == "\n":
                    raise self.error("unterminated string")
                c = self.text[self.pos]
                self.pos += 1
                if c == quote:
                    break
                if c == "\\":
                    if self.pos >= len(self.text):
                        raise self.error("unterminated string")
                    e = self.text[self.pos]
                    self.pos += 1
                    out.append({"n": "\n", "t": "\t", "r": "\r", "0": "\0"}.get(e, e))
                else:
                    out.append(c)
            parts.append("".join(out))
        return "".join(parts)

    def scalar(self):
        kind = self.peek()
        if kind == "string":
            return self.string()
        if kind != "word":
            raise self.error(f"expected a value, got {kind or 'end of file'!r}")
        return _number(self.word())

    def message(self, close):
        out: dict = {}
        while True:
            kind = self.peek()
            if kind is None:
                if close is None:
                    return out
                raise self.error(f"missing {close!r} at end of file")
            if kind == close:
                self.pos += 1
                return out
            if kind in ",;":
                self.pos += 1
                continue
            if kind != "word":
                raise self.error(f"expected a field name, got {kind!r}")
            name = self.word()
            if not (name[0].isalpha() or name[0] == "_"):
                raise self.error(f"expected a field name, got {name!r}")
            kind = self.peek()
            if kind == ":":
                self.pos += 1
                kind = self.peek()
            if kind in ("{", "<"):
                self.pos += 1
                values = [self.message("}" if kind == "{" else ">")]
            elif kind == "[":
                self.pos += 1
                values = []
                while self.peek() != "]":
                    if self.peek() in ("{", "<"):
                        c = self.peek()
                        self.pos += 1
                        values.append(self.message("}" if c == "{" else ">"))
                    else:
                        values.append(self.scalar())
                    if self.peek() == ",":
                        self.pos += 1
                    elif self.peek() != "]":
                        raise self.error("expected ',' or ']' in a list")
                self.pos += 1
            else:
                values = [self.scalar()]
            out.setdefault(name, []).extend(values)


def _number(word: str):
    """A text-format scalar token: int, float, or the identifier itself (enum name, true/false)."""
    w = word.rstrip("fF") if not word.lower().endswith(("inf", "infinity")) else word
    try:
        return int(w, 0)
    except ValueError:
        pass
    try:
        return float(w)
    except ValueError:
        return word


def parse_prototxt(text: str) -> dict:
    """Read protobuf text format (a Caffe `.prototxt`) into nested dicts of value lists.

    Raises `JaxprobeError` naming the line for malformed text.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise JaxprobeError(f"prototxt: not UTF-8 text ({e})") from None
    try:
        return _Reader(text).message(None)
    except RecursionError:
        raise JaxprobeError("prototxt: nesting too deep") from None


# ================================================================ normalized network description


class LayerSpec(NamedTuple):
    """One Caffe layer with every setting the builder uses resolved (defaults applied).

    `settings` is a sorted tuple of (name, value) pairs, so two readings of the same prototxt
    compare equal exactly when they mean the same network.
    """

    name: str
    type: str
    bottom: tuple
    top: tuple
    settings: tuple

    def get(self, key, default=None):
        return dict(self.settings).get(key, default)


class NetSpec(NamedTuple):
    """A feed-forward Caffe net: its input blob shape (Caffe order, batch excluded) and layers."""

    name: str
    input_name: str
    input_shape: tuple  # (C, H, W) or (D,)
    layers: tuple  # of LayerSpec, training-only and Input layers removed


def _one(msg: dict, key: str, default=None):
    v = msg.get(key)
    return v[-1] if v else default


def _many(msg: dict, key: str) -> list:
    return list(msg.get(key, []))


def _int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer)) or value != int(value):
        raise JaxprobeError(f"prototxt: {what}: expected an integer, got {value!r}")
    return int(value)


def _float(value, what: str) -> float:
    """A `float` field: Caffe holds it in float32, so it is rounded to float32 here too."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise JaxprobeError(f"prototxt: {what}: expected a number, got {value!r}")
    return float(np.float32(value))


def _bool(value, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "True", "t", 1):
        return True
    if value in ("false", "False", "f", 0):
        return False
    raise JaxprobeError(f"prototxt: {what}: expected true or false, got {value!r}")


def _enum(value, names: Sequence[str], what: str) -> str:
    if isinstance(value, str) and value in names:
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
        return names[value]
    raise JaxprobeError(f"prototxt: {what}: expected one of {', '.join(names)}, got {value!r}")


def _layer_type(raw, name: str) -> str:
    if isinstance(raw, int) and not isinstance(raw, bool):
        if raw not in _V1_BY_NUMBER:
            raise JaxprobeError(f"prototxt: layer {name!r}: unknown V1 layer type number {raw}")
        return _V1_BY_NUMBER[raw]
    if not isinstance(raw, str) or not raw:
        raise JaxprobeError(f"prototxt: layer {name!r}: missing or invalid type {raw!r}")
    return _V1_BY_NAME.get(raw, raw)


def _in_test_phase(layer: dict, name: str) -> bool:
    """Caffe's NetStateRule check for the TEST phase (levels and stages default to none)."""

    def meets(rule):  # the net state is phase TEST, level 0, no stages
        phase = _one(rule, "phase")
        if phase is not None and _enum(phase, ("TRAIN", "TEST"), f"layer {name!r} phase") != "TEST":
            return False
        if _one(rule, "min_level") is not None and _int(_one(rule, "min_level"), "min_level") > 0:
            return False
        if _one(rule, "max_level") is not None and _int(_one(rule, "max_level"), "max_level") < 0:
            return False
        return not _many(rule, "stage")

    include, exclude = _many(layer, "include"), _many(layer, "exclude")
    if include:
        return any(meets(r) for r in include)
    if exclude:
        return not any(meets(r) for r in exclude)
    phase = _one(layer, "phase")
    return phase is None or _enum(phase, ("TRAIN", "TEST"), f"layer {name!r} phase") == "TEST"


def _pair(p: dict, base: str, h: str, w: str, default, what: str, positive=True) -> tuple:
    """Caffe's kernel/stride/pad resolution: `X_h`/`X_w` or a repeated `X` with 1 or 2 values."""
    if _one(p, h) is not None or _one(p, w) is not None:
        if _one(p, h) is None or _one(p, w) is None:
            raise JaxprobeError(f"prototxt: {what}: {h} and {w} must be given together")
        vals = (_int(_one(p, h), f"{what} {h}"), _int(_one(p, w), f"{what} {w}"))
    else:
        raw = _many(p, base)
        if not raw:
            if default is None:
                raise JaxprobeError(f"prototxt: {what}: {base} is required")
            vals = (default, default)
        elif len(raw) == 1:
            vals = (_int(raw[0], f"{what} {base}"),) * 2
        elif len(raw) == 2:
            vals = tuple(_int(r, f"{what} {base}") for r in raw)
        else:
            raise JaxprobeError(f"prototxt: {what}: {base} has {len(raw)} values; only 2-D nets are supported")
    if any(v < (1 if positive else 0) for v in vals):
        raise JaxprobeError(f"prototxt: {what}: {base} must be {'>= 1' if positive else '>= 0'}, got {vals}")
    return vals


def _settings(ltype: str, layer: dict, name: str) -> dict:
    what = f"layer {name!r} ({ltype})"
    if ltype in ("Convolution", "Deconvolution"):
        p = _one(layer, "convolution_param", {})
        num_output = _int(_one(p, "num_output", 0), f"{what} num_output")
        if num_output < 1:
            raise JaxprobeError(f"prototxt: {what}: num_output must be >= 1, got {num_output}")
        stride = _pair(p, "stride", "stride_h", "stride_w", 1, what)
        pad = _pair(p, "pad", "pad_h", "pad_w", 0, what, positive=False)
        dil = _many(p, "dilation")
        dilation = (1, 1) if not dil else ((_int(dil[0], what),) * 2 if len(dil) == 1 else tuple(_int(d, what) for d in dil))
        if len(dilation) != 2 or min(dilation) < 1:
            raise JaxprobeError(f"prototxt: {what}: dilation must be 1 or 2 values >= 1, got {dil}")
        group = _int(_one(p, "group", 1), f"{what} group")
        if group < 1 or num_output % group:
            raise JaxprobeError(f"prototxt: {what}: group {group} must divide num_output {num_output}")
        if _int(_one(p, "axis", 1), f"{what} axis") != 1:
            raise JaxprobeError(f"prototxt: {what}: only axis 1 (channels) is supported")
        return dict(num_output=num_output, kernel=_pair(p, "kernel_size", "kernel_h", "kernel_w", None, what),
                    stride=stride, pad=pad, dilation=dilation, group=group,
                    bias=_bool(_one(p, "bias_term", True), f"{what} bias_term"))
    if ltype == "InnerProduct":
        p = _one(layer, "inner_product_param", {})
        num_output = _int(_one(p, "num_output", 0), f"{what} num_output")
        if num_output < 1:
            raise JaxprobeError(f"prototxt: {what}: num_output must be >= 1, got {num_output}")
        if _int(_one(p, "axis", 1), f"{what} axis") != 1:
            raise JaxprobeError(f"prototxt: {what}: only axis 1 is supported")
        return dict(num_output=num_output, bias=_bool(_one(p, "bias_term", True), f"{what} bias_term"),
                    transpose=_bool(_one(p, "transpose", False), f"{what} transpose"))
    if ltype == "Pooling":
        p = _one(layer, "pooling_param", {})
        mode = _enum(_one(p, "pool", "MAX"), ("MAX", "AVE", "STOCHASTIC"), f"{what} pool")
        if mode == "STOCHASTIC":
            raise JaxprobeError(f"prototxt: {what}: STOCHASTIC pooling is not supported")
        glob = _bool(_one(p, "global_pooling", False), f"{what} global_pooling")
        if glob:
            kernel, stride, pad = (0, 0), (1, 1), (0, 0)
        else:
            kernel = _pair(p, "kernel_size", "kernel_h", "kernel_w", None, what)
            stride = _pair(p, "stride", "stride_h", "stride_w", 1, what)
            pad = _pair(p, "pad", "pad_h", "pad_w", 0, what, positive=False)
            if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
                raise JaxprobeError(f"prototxt: {what}: pad {pad} must be smaller than kernel {kernel}")
        ceil = _enum(_one(p, "round_mode", "CEIL"), ("CEIL", "FLOOR"), f"{what} round_mode") == "CEIL"
        return dict(mode=mode, kernel=kernel, stride=stride, pad=pad, global_pooling=glob, ceil=ceil)
    if ltype == "LRN":
        p = _one(layer, "lrn_param", {})
        size = _int(_one(p, "local_size", 5), f"{what} local_size")
        if size < 1 or size % 2 == 0:
            raise JaxprobeError(f"prototxt: {what}: local_size must be odd and positive (as in Caffe), got {size}")
        return dict(region=_enum(_one(p, "norm_region", "ACROSS_CHANNELS"), ("ACROSS_CHANNELS", "WITHIN_CHANNEL"),
                                 f"{what} norm_region"),
                    local_size=size, alpha=_float(_one(p, "alpha", 1.0), f"{what} alpha"),
                    beta=_float(_one(p, "beta", 0.75), f"{what} beta"), k=_float(_one(p, "k", 1.0), f"{what} k"))
    if ltype == "ReLU":
        p = _one(layer, "relu_param", {})
        return dict(negative_slope=_float(_one(p, "negative_slope", 0.0), f"{what} negative_slope"))
    if ltype == "Softmax":
        p = _one(layer, "softmax_param", {})
        return dict(axis=_int(_one(p, "axis", 1), f"{what} axis"))
    if ltype == "Flatten":
        p = _one(layer, "flatten_param", {})
        axis, end = _int(_one(p, "axis", 1), f"{what} axis"), _int(_one(p, "end_axis", -1), f"{what} end_axis")
        if (axis, end) != (1, -1):
            raise JaxprobeError(f"prototxt: {what}: only axis 1 to end_axis -1 is supported")
        return {}
    if ltype == "Reshape":
        p = _one(layer, "reshape_param", {})
        shape = _one(p, "shape")
        if shape is None:
            raise JaxprobeError(f"prototxt: {what}: reshape_param.shape is required")
        if _int(_one(p, "axis", 0), what) != 0 or _int(_one(p, "num_axes", -1), what) != -1:
            raise JaxprobeError(f"prototxt: {what}: only axis 0 with num_axes -1 is supported")
        return dict(shape=tuple(_int(d, f"{what} dim") for d in _many(shape, "dim")))
    if ltype == "Dropout":
        return {}
    if ltype in ("Sigmoid", "TanH"):
        return {}
    raise JaxprobeError(
        f"prototxt: layer {name!r}: unsupported layer type {ltype!r}; supported: {', '.join(SUPPORTED)}"
        + (" (give the deploy prototxt, without data and loss layers)" if "Data" in ltype or "Loss" in ltype
           or ltype == "Accuracy" else "")
    )


def _shape_dims(shape_msg: dict, what: str) -> tuple:
    return tuple(_int(d, what) for d in _many(shape_msg, "dim"))


def net_spec(tree: dict) -> NetSpec:
    """Normalize a parsed prototxt (either reader's dict form) into a `NetSpec`.

    Checks that the net is one chain from its single input to its output; raises `JaxprobeError`
    naming the offending layer otherwise.
    """
    new, old = _many(tree, "layer"), _many(tree, "layers")
    if new and old:
        raise JaxprobeError("prototxt: mixes new `layer` and legacy V1 `layers` entries")
    raw_layers = new or old
    name = _one(tree, "name", "") or ""
    input_name, input_shape = None, None
    inputs = _many(tree, "input")
    if inputs:
        if len(inputs) != 1:
            raise JaxprobeError(f"prototxt: expected one input blob, got {len(inputs)}: {inputs}")
        input_name = str(inputs[0])
        dims = [_int(d, "input_dim") for d in _many(tree, "input_dim")]
        shapes = _many(tree, "input_shape")
        if shapes:
            dims = list(_shape_dims(shapes[0], "input_shape"))
        if not dims:
            raise JaxprobeError(f"prototxt: input {input_name!r} has no input_dim or input_shape")
        input_shape = tuple(dims)
    layers = []
    for i, layer in enumerate(raw_layers):
        if not isinstance(layer, dict):
            raise JaxprobeError(f"prototxt: layer #{i + 1} is not a message")
        lname = str(_one(layer, "name", f"#{i + 1}"))
        ltype = _layer_type(_one(layer, "type"), lname)
        if not _in_test_phase(layer, lname):
            continue  # training-only layer
        bottom, top = tuple(str(b) for b in _many(layer, "bottom")), tuple(str(t) for t in _many(layer, "top"))
        if ltype == "Input":
            if input_name is not None:
                raise JaxprobeError(f"prototxt: layer {lname!r}: a second input (the net must have one input)")
            if len(top) != 1:
                raise JaxprobeError(f"prototxt: layer {lname!r}: an Input layer with {len(top)} tops")
            shapes = _many(_one(layer, "input_param", {}), "shape")
            if not shapes:
                raise JaxprobeError(f"prototxt: layer {lname!r}: input_param.shape is required")
            input_name, input_shape = top[0], _shape_dims(shapes[0], f"layer {lname!r} shape")
            continue
        settings = _settings(ltype, layer, lname)
        layers.append(LayerSpec(lname, ltype, bottom, top, tuple(sorted(settings.items()))))
    if input_name is None:
        raise JaxprobeError("prototxt: no input (expected an Input layer or input/input_dim)")
    if len(input_shape) not in (2, 4) or any(d < 1 for d in input_shape[1:]):
        raise JaxprobeError(f"prototxt: input shape {input_shape}: expected N,C,H,W or N,D with positive sizes")
    if not layers:
        raise JaxprobeError("prototxt: the net has no layers")
    current = input_name
    for spec in layers:
        if len(spec.bottom) != 1 or len(spec.top) != 1:
            raise JaxprobeError(
                f"prototxt: layer {spec.name!r} has {len(spec.bottom)} bottoms and {len(spec.top)} tops; "
                "only feed-forward chains (one bottom, one top) are supported"
            )
        if spec.bottom[0] != current:
            raise JaxprobeError(
                f"prototxt: layer {spec.name!r} reads {spec.bottom[0]!r} but the chain's current blob is "
                f"{current!r}; only feed-forward chains are supported"
            )
        current = spec.top[0]
    if not any(s.type in LEARNED for s in layers):
        raise JaxprobeError("prototxt: the net has no learned layer (Convolution, Deconvolution, InnerProduct)")
    for s in layers[:-1]:
        if s.type == "Softmax":
            raise JaxprobeError(f"prototxt: layer {s.name!r}: Softmax is only supported as the final layer")
    return NetSpec(str(name), input_name, tuple(int(d) for d in input_shape[1:]), tuple(layers))


def read_prototxt(path_or_text) -> NetSpec:
    """`net_spec(parse_prototxt(...))` of a file path or of prototxt text."""
    if isinstance(path_or_text, Path) or (isinstance(path_or_text, str) and "\n" not in path_or_text
                                         and "{" not in path_or_text):
        path = Path(path_or_text)
        try:
            text = path.read_bytes()
        except OSError as e:
            raise JaxprobeError(f"prototxt: cannot read {path}: {e.strerror or e}") from None
    else:
        text = path_or_text
    return net_spec(parse_prototxt(text))


# ================================================================ functional ops


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


def pool_output_size(n: int, kernel: int, stride: int, pad: int, ceil: bool = True) -> int:
    """Caffe's pooled size: ceil (or floor) of (n + 2p - k)/s, plus one, minus one if the last
    window would start inside the bottom/right padding."""
    num = n + 2 * pad - kernel
    out = (-(-num // stride) if ceil else num // stride) + 1
    if pad and (out - 1) * stride >= n + pad:
        out -= 1
    return out


def _pool_pads(n: int, k: int, s: int, p: int, ceil: bool):
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
        (oh, ph_lo, ph_hi), (ow, pw_lo, pw_hi) = (_pool_pads(n, k, s, p, self.ceil)
                                                   for n, k, s, p in zip((h, w), kernel, stride, pad))
        if oh < 1 or ow < 1:
            raise JaxprobeError(f"pooling: kernel {kernel} does not fit the input {h}x{w}")
        # A negative high pad (floor mode) means trailing rows no window reaches: crop them.
        x = x[:, : h + min(ph_hi, 0), : w + min(pw_hi, 0)]
        pads = [(0, 0), (ph_lo, max(ph_hi, 0)), (pw_lo, max(pw_hi, 0)), (0, 0)]
        window, strides = (1, kernel[0], kernel[1], 1), (1, stride[0], stride[1], 1)
        if self.mode == "MAX":
            return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, strides, pads)
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
        n = self.local_size
        lo, hi = (n - 1) // 2, n - 1 - (n - 1) // 2
        sq = jnp.square(x)
        if self.region == "ACROSS_CHANNELS":
            total = jax.lax.reduce_window(sq, 0.0, jax.lax.add, (1, 1, 1, n), (1, 1, 1, 1),
                                          [(0, 0), (0, 0), (0, 0), (lo, hi)])
            scale = self.k + (self.alpha / n) * total
        else:
            total = jax.lax.reduce_window(sq, 0.0, jax.lax.add, (1, n, n, 1), (1, 1, 1, 1),
                                          [(0, 0), (lo, hi), (lo, hi), (0, 0)])
            scale = 1.0 + (self.alpha / (n * n)) * total
        return x * jnp.power(scale, -self.beta)


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


# ================================================================ learned maps


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


# ================================================================ the network


class CaffeNetwork(Network):
    """A `Network` built from a Caffe prototxt, with each Caffe layer's output reachable by name.

    `taps` lists (caffe layer name, jaxprobe layer number l, stage): stage -1 is layer l's learned
    map output (its pre-activation), 0 its `act`, k >= 1 the output of `after[k - 1]`.
    """

    def __init__(self, layers: Sequence[Layer], names: Sequence[str], taps: Sequence[tuple]):
        super().__init__(layers, names)
        self.taps = tuple(tuple(t) for t in taps)

    def layer_outputs(self, x) -> dict:
        """The output of every Caffe layer (NHWC), by Caffe layer name, for input x."""
        where = {}
        for name, l, stage in self.taps:
            where.setdefault((l, stage), []).append(name)
        out = {}
        for i, layer in enumerate(self.layers, 1):
            x = layer.pre(x)
            for name in where.get((i, -1), ()):
                out[name] = x
            x = layer.act(x)
            for name in where.get((i, 0), ()):
                out[name] = x
            for k, op in enumerate(layer.after, 1):
                x = op(x)
                for name in where.get((i, k), ()):
                    out[name] = x
        return out


def build(spec: NetSpec, *, rngs: nnx.Rngs) -> CaffeNetwork:
    """The probe-able network of a `NetSpec` (random weights; `weights_convert` fills them in)."""
    shape = spec.input_shape  # Caffe order (C,H,W) or (D,)
    groups: list = []  # [learned spec, module, act-or-None, after ops, taps]
    before: list = []

    def hw(s):
        return (s[1], s[2]) if len(s) == 3 else None

    for s in spec.layers:
        t, what = s.type, f"layer {s.name!r} ({s.type})"
        if t in LEARNED:
            if t == "InnerProduct":
                fan_in = int(np.prod(shape))
                mod = CaffeInnerProduct(fan_in, s.get("num_output"), s.get("bias"), before, rngs=rngs)
                shape = (s.get("num_output"),)
            else:
                if len(shape) != 3:
                    raise JaxprobeError(f"prototxt: {what}: needs a C,H,W input, got a blob of shape {shape}")
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
                shape = (out, size[0], size[1])
            before = []  # ops before the first learned map run inside it (no taps of their own)
            groups.append([s, mod, None, [], [(s.name, -1)]])
            continue
        # parameter-free ops
        op = None
        if t == "Dropout":
            op = "identity"
        elif t in NONLINEAR:
            if t == "ReLU":
                slope = s.get("negative_slope")
                op = Act("leaky_relu", slope) if slope else Act("relu")
            else:
                op = Act("sigmoid" if t == "Sigmoid" else "tanh")
        elif t == "Pooling":
            if len(shape) != 3:
                raise JaxprobeError(f"prototxt: {what}: needs a C,H,W input, got a blob of shape {shape}")
            op = CaffePool(s.get("mode"), s.get("kernel"), s.get("stride"), s.get("pad"), s.get("ceil"),
                           s.get("global_pooling"))
            if s.get("global_pooling"):
                shape = (shape[0], 1, 1)
            else:
                try:
                    oh, ow = (_pool_pads(n, k, st, p, s.get("ceil"))[0]
                              for n, k, st, p in zip(hw(shape), s.get("kernel"), s.get("stride"), s.get("pad")))
                except JaxprobeError as e:
                    raise JaxprobeError(f"prototxt: {what}: {e}") from None
                if oh < 1 or ow < 1:
                    raise JaxprobeError(f"prototxt: {what}: kernel {s.get('kernel')} does not fit {hw(shape)}")
                shape = (shape[0], oh, ow)
        elif t == "LRN":
            if len(shape) != 3:
                raise JaxprobeError(f"prototxt: {what}: needs a C,H,W input, got a blob of shape {shape}")
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
            raw = s.get("shape")
            if len(raw) < 2 or any(d == 0 and i > len(shape) for i, d in enumerate(raw)):
                raise JaxprobeError(f"prototxt: {what}: invalid reshape dims {raw} for a blob of shape {shape}")
            # dim 0 is the batch; a 0 elsewhere copies the input's dimension at that position
            dims = [shape[i - 1] if d == 0 else d for i, d in enumerate(raw)][1:]
            total = int(np.prod(shape))
            if dims.count(-1) > 1 or any(d < -1 or d == 0 for d in dims):
                raise JaxprobeError(f"prototxt: {what}: invalid reshape dims {s.get('shape')}")
            if -1 in dims:
                known = int(np.prod([d for d in dims if d != -1]))
                if known == 0 or total % known:
                    raise JaxprobeError(f"prototxt: {what}: cannot reshape {shape} to {s.get('shape')}")
                dims[dims.index(-1)] = total // known
            if int(np.prod(dims)) != total or len(dims) not in (1, 3):
                raise JaxprobeError(f"prototxt: {what}: cannot reshape {shape} to {s.get('shape')}")
            op = CaffeReshape((0,) + tuple(d for d in dims))
            shape = tuple(dims)
        if not groups:
            if op != "identity":
                before.append(op)
            continue
        g = groups[-1]
        if op == "identity":
            g[4].append((s.name, "last"))
        elif isinstance(op, Act) and g[2] is None and not g[3]:
            g[2] = op
            g[4].append((s.name, 0))
        else:
            g[3].append(op)
            g[4].append((s.name, len(g[3])))
    if before:
        raise JaxprobeError("prototxt: operations after the input but no learned layer follows them")
    layers, names, taps = [], [], []
    for i, (s, mod, act, after, gtaps) in enumerate(groups, 1):
        layers.append(Layer(mod, act or Act("identity"), tuple(after)))
        names.append(s.name)
        stage_so_far = -1
        for name, stage in gtaps:
            if stage == "last":  # an identity op (Dropout) outputs what came before it
                stage = stage_so_far
            taps.append((name, i, stage))
            stage_so_far = stage
    return CaffeNetwork(layers, names, taps)


def input_shape(spec: NetSpec) -> tuple:
    """jaxprobe's input shape (H, W, C) or (D,) of a Caffe net (batch excluded)."""
    s = spec.input_shape
    return (s[1], s[2], s[0]) if len(s) == 3 else tuple(s)


def caffe_prototxt(*, prototxt: str = "net.prototxt", directory=None, rngs: nnx.Rngs) -> CaffeNetwork:
    """Architecture builder (zoo name "caffe_prototxt"): the network of `directory/prototxt`."""
    path = Path(prototxt)
    if directory is not None and not path.is_absolute():
        path = Path(directory) / path
    return build(read_prototxt(path), rngs=rngs)


def layer_outputs(model, params, x) -> dict:
    """Every Caffe layer's output (NHWC) by name for a model built by `caffe_prototxt`."""
    net = nnx.merge(model.graphdef, params)
    if not isinstance(net, CaffeNetwork):
        raise JaxprobeError(f"model: {model.name!r} was not built from a Caffe prototxt")
    return net.layer_outputs(x)


zoo.register("caffe_prototxt", caffe_prototxt, needs_directory=True)
