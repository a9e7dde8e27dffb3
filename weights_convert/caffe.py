"""Caffe files: `.prototxt` (text NetParameter) and `.caffemodel` (binary NetParameter).

Both are parsed with the protobuf library against `jaxprobe.models.caffe_schema` (BVLC field
numbers): the prototxt by `jaxprobe.models.caffe_spec.read_prototxt`, the very reader `jaxprobe.load`
runs on the copy stored beside the weights, and the caffemodel here. In a caffemodel, blob shapes
are read from `shape.dim` or from the old num/channels/height/width fields, and layers without blobs
(data, loss, accuracy, ReLU...) are skipped.

Blob i of each learned layer maps as: Convolution [out, in/group, kh, kw] -> [kh, kw, in/group, out],
Deconvolution [in, out/group, kh, kw] -> [kh, kw, in, out/group], InnerProduct [out, in] -> [in, out]
(no permutation when the layer says `transpose: true`), bias as is; BatchNorm's mean and variance
blobs divided by its third blob, Scale's scale and bias as they are (`caffe_parameters`).

Every failure raises `JaxprobeError`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxprobe.errors import JaxprobeError
from jaxprobe.io import check_replaceable, read_bounded
from jaxprobe.models import caffe_spec
from jaxprobe.models.caffe_schema import NetParameter
from jaxprobe.models.pixels import PixelConvention

from weights_convert import mapping
from weights_convert.latent import latent_record

PROTOTXT_NAME = "net.prototxt"
MAX_CAFFEMODEL_BYTES = (2 << 30) - 1  # protobuf's limit on one message; VGG16's caffemodel is 553 MB


def blob_to_array(blob, what: str) -> np.ndarray:
    """One BlobProto as a float32 array of its shape (`shape.dim`, else num/channels/height/width)."""
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    elif any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        shape = (blob.num, blob.channels, blob.height, blob.width)
    else:
        shape = (len(blob.data) or len(blob.double_data),)
    if any(d < 0 for d in shape):
        raise JaxprobeError(f"caffemodel: {what}: negative dimension in shape {shape}")
    count = math.prod(shape)  # Python ints: dims (2**32, 2**32) must not wrap to 0 as int64 would
    n_float, n_double = len(blob.data), len(blob.double_data)
    if n_float and n_double:
        raise JaxprobeError(f"caffemodel: {what}: holds both float and double data")
    n = n_float or n_double
    if n != count:
        raise JaxprobeError(f"caffemodel: {what}: shape {shape} needs {count} values, the blob holds {n}")
    # np.array over the repeated field is ~7x faster than np.fromiter (0.3 s for CaffeNet's fc6)
    arr = np.array(blob.data, np.float32) if n_float else np.array(blob.double_data, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # doubles beyond float32: inf, refused by the mapping
        return arr.astype(np.float32, copy=False).reshape(shape)


def read_caffemodel(path) -> dict:
    """{f"{layer}[{i}]": blob i of that layer as a float32 array} for every layer with blobs.

    Handles new `layer` and V1 `layers` entries; layers without blobs (data, loss, ReLU...) carry
    nothing and are skipped. Duplicate names among layers with blobs are an error.
    """
    data = read_bounded(path, max_bytes=MAX_CAFFEMODEL_BYTES, what="caffemodel")
    net = NetParameter()
    try:
        net.ParseFromString(data)
    except Exception as e:  # google.protobuf.message.DecodeError and friends
        raise JaxprobeError(f"caffemodel: {path} is not a binary Caffe NetParameter ({type(e).__name__}: {e})") from None
    tensors, owners = {}, set()
    for layer in list(net.layer) + list(net.layers):
        if not layer.blobs:
            continue
        if layer.name in owners:
            raise JaxprobeError(f"caffemodel: {path}: two layers with weights are named {layer.name!r}")
        owners.add(layer.name)
        for i, blob in enumerate(layer.blobs):
            key = f"{layer.name}[{i}]"
            tensors[key] = blob_to_array(blob, key)
    if not tensors:
        raise JaxprobeError(f"caffemodel: {path} holds no layer with weights")
    return tensors


class CaffeParam(NamedTuple):
    """One learned tensor of a Caffe net: blob `blob` of Caffe layer `layer`, called `name` in a
    key map ("conv1.weight", "bn1.running_mean"), filling `param` of jaxprobe layer `target`."""

    layer: str
    name: str
    blob: int
    target: str
    param: str
    transform: str


# the order nn.Sequential stores a learned map and the BatchNorm2d after it: weight, bias, then the
# batch norm's weight, bias, running_mean, running_var
_TORCH_ORDER = ("linear.kernel", "linear.bias", "norm.scale", "norm.bias", "norm.mean", "norm.var")


def caffe_parameters(spec: caffe_spec.NetSpec) -> list:
    """Every learned tensor of a Caffe net as `CaffeParam`s, in the order PyTorch stores them.

    Convolution [out, in/group, kh, kw] -> [kh, kw, in/group, out], Deconvolution
    [in, out/group, kh, kw] -> [kh, kw, in, out/group], InnerProduct [out, in] -> [in, out] (as is
    with `transpose: true`), biases as they are ("weight" blob 0, "bias" blob 1); BatchNorm
    "running_mean" and "running_var" (blobs 0, 1) and Scale "weight" and "bias" fill the batch norm
    of the learned map they follow.
    """
    params, target = [], None
    for s in spec.layers:
        if s.type in caffe_spec.LEARNED:
            target = s.name
            transform = {"Convolution": "oihw_to_hwio", "Deconvolution": "iohw_to_hwio"}.get(
                s.type, "identity" if s.get("transpose") else "oi_to_io")
            params.append(CaffeParam(s.name, "weight", 0, target, "linear.kernel", transform))
            if s.get("bias"):
                params.append(CaffeParam(s.name, "bias", 1, target, "linear.bias", "identity"))
        elif s.type == "BatchNorm":
            params += [CaffeParam(s.name, "running_mean", 0, target, "norm.mean", "identity"),
                       CaffeParam(s.name, "running_var", 1, target, "norm.var", "identity")]
        elif s.type == "Scale":
            params.append(CaffeParam(s.name, "weight", 0, target, "norm.scale", "identity"))
            if s.get("bias"):
                params.append(CaffeParam(s.name, "bias", 1, target, "norm.bias", "identity"))
    order = {t: i for i, t in enumerate(dict.fromkeys(p.target for p in params))}
    return sorted(params, key=lambda p: (order[p.target], _TORCH_ORDER.index(p.param)))


def caffe_rules(spec: caffe_spec.NetSpec) -> list:
    """The mapping table of a Caffe net's caffemodel: blob i of each layer with learned tensors."""
    return [mapping.Rule(f"{p.layer}[{p.blob}]", p.target, p.param, p.transform) for p in caffe_parameters(spec)]


def batch_norm_statistics(spec: caffe_spec.NetSpec, tensors: dict) -> tuple:
    """(tensors, factors): each BatchNorm's mean and variance blobs divided by its third blob.

    Caffe stores the running sums and their moving-average weight s (blob 2) and normalizes with
    mean = blob0 / s and var = blob1 / s (0 where s is 0), as BVLC's batch_norm_layer.cpp does.
    """
    tensors, factors = dict(tensors), {}
    for s in spec.layers:
        if s.type != "BatchNorm":
            continue
        key = f"{s.name}[2]"
        if key not in tensors:
            raise JaxprobeError(f"caffemodel: BatchNorm {s.name!r} lacks its third blob {key} (the moving-average "
                                "weight its statistics are divided by)")
        weight = tensors.pop(key)
        if np.size(weight) != 1 or not np.isfinite(weight).all():
            raise JaxprobeError(f"caffemodel: {key}: expected one finite number, got shape {np.shape(weight)}")
        w = float(np.asarray(weight).ravel()[0])
        factors[s.name] = 0.0 if w == 0 else 1.0 / w
        for blob in (f"{s.name}[0]", f"{s.name}[1]"):
            if blob in tensors:
                tensors[blob] = np.asarray(tensors[blob], np.float32) * np.float32(factors[s.name])
    return tensors, factors


def pixel_convention(c: int, channels=None, mean=None, scale=1.0, value_range=None, *, color: str = "BGR",
                     default_range=None):
    """The `PixelConvention` of images with c channels: `channels` (default gray for 1, `color` for
    3), `value_range` (default `default_range`, else [0, 1] gray and [0, 255] colour), `mean`
    (1 or c values) and `scale`; each checked."""
    channels = channels or ("gray" if c == 1 else color)
    if (channels == "gray") != (c == 1):
        raise JaxprobeError(f"channels: {channels!r} does not fit an input with {c} channel(s)")
    if value_range is None:
        value_range = default_range or ((0.0, 1.0) if c == 1 else (0.0, 255.0))
    low, high = value_range
    mean = tuple(float(m) for m in (mean or ()))
    if mean and len(mean) not in (1, c):
        raise JaxprobeError(f"mean: expected 1 or {c} values, got {len(mean)}")
    if len(mean) == 1 and c == 3:
        mean = mean * 3
    if not np.isfinite(scale) or scale <= 0:
        raise JaxprobeError(f"scale: expected a positive number, got {scale}")
    return PixelConvention(float(low), float(high), channels, mean, float(scale))


def default_pixels(spec: caffe_spec.NetSpec, channels=None, mean=None, scale=1.0, value_range=None):
    """Pixel convention of a Caffe classifier's input (a generator's output when its input is a
    code and `channels` is given): gray [0, 1] or BGR [0, 255] by default."""
    if len(spec.input_shape) == 3 and spec.input_shape[0] in (1, 3):
        c = spec.input_shape[0]
    elif channels is not None:
        c = 1 if channels == "gray" else 3
    else:
        return None
    return pixel_convention(c, channels, mean, scale, value_range)


def caffe_model(prototxt, caffemodel, *, arch: str | None = None, role: str | None = None, channels=None,
                mean=None, scale: float | None = None, value_range=None, name: str | None = None, latent=None):
    """The jaxprobe `Model` of a Caffe deploy prototxt + caffemodel, in memory (nothing written).

    Args:
      prototxt: the deploy prototxt; None with `arch`.
      caffemodel: the trained weights.
      arch: a known architecture (`weights_convert.mapping.CAFFE_ARCHITECTURES`: "caffenet",
        "deepsim_fc6"); its prototxt is written by `jaxprobe.models.archs_paper` with the widths read off
        the caffemodel, and its pixel convention and role are the defaults.
      role: "classifier" (default), "generator" or "critic".
      channels, mean, scale, value_range: the input's (a generator's: output's) pixel convention;
        defaults: the arch's, else 1 channel gray in [0, 1], 3 channels BGR in [0, 255], mean 0,
        scale 1. Recorded as preprocessing (for a generator from a prototxt: of its output image).
      latent: a generator's latent prior, {"dim", "prior"} (`weights_convert.latent.parse_latent`),
        recorded in the manifest; for --prototxt networks only (a known arch records its own).
    Its manifest records the sources (path, sha256, format), the mapping and the preprocessing.
    """
    spec_arch = _known_arch(prototxt, arch)
    role = role or (spec_arch.role if spec_arch else "classifier")
    if role not in ("classifier", "generator", "critic"):
        raise JaxprobeError(f"role: expected classifier, generator or critic, got {role!r}")
    tensors = read_caffemodel(caffemodel)
    if spec_arch is not None:
        net = _arch_net(arch, spec_arch, tensors, caffemodel)
        p = spec_arch.pixels  # the arch's convention fills in what was not given
        channels = channels or p["channels"]
        mean = mean if mean is not None else p.get("mean")
        scale = scale if scale is not None else p.get("scale", 1.0)
        value_range = value_range if value_range is not None else (p["low"], p["high"])
    else:
        net = _prototxt_net(prototxt, caffemodel)
    spec = net.spec
    pixels = default_pixels(spec, channels, mean, 1.0 if scale is None else scale, value_range)
    tensors, bn_factors = batch_norm_statistics(spec, tensors)
    state, records = mapping.map_weights(caffe_rules(spec), tensors, net.graphdef, net.abstract, net.names,
                                         legacy_shapes=True, what=f"caffemodel {Path(caffemodel).name}")
    manifest = _manifest(net, arch, role, records, bn_factors)
    if spec_arch is not None and spec_arch.latent:
        manifest["latent"] = dict(mapping.resolve(spec_arch.latent, net.kwargs))
    if spec_arch is not None and spec_arch.encoder:
        manifest["encoder"] = dict(spec_arch.encoder)
    if arch is None:
        record = latent_record(latent, role, caffe_spec.input_shape(spec))
        if record:
            manifest["latent"] = record
    elif latent is not None:
        raise JaxprobeError(f"latent: --arch {arch} records its own latent prior; --latent is for --prototxt networks")
    if role == "generator" and arch is None:
        # The prototxt's input is a code: the convention given describes the output image.
        shape = mapping.make_model("shape", net.graphdef, state, net.names, dict(manifest)).output_shape()
        pixels = _output_pixels(shape, channels, mean, scale, value_range)
    if pixels is not None:
        manifest["pixels"] = pixels.to_dict()
        manifest["preprocessing"] = {"channel_order": pixels.channels, "mean": list(pixels.mean),
                                     "scale": pixels.scale, "range": [pixels.low, pixels.high]}
    return mapping.make_model(name or Path(caffemodel).stem, net.graphdef, state, net.names, manifest)


class _Net(NamedTuple):
    """A Caffe network before its weights: its spec, the manifest's architecture record, the abstract
    jaxprobe network (graphdef, abstract state, layer names), the source files' records and the
    builder's keyword arguments (a known arch's; empty for a prototxt)."""

    spec: caffe_spec.NetSpec
    architecture: dict
    graphdef: object
    abstract: object
    names: list
    sources: list
    kwargs: dict


def _known_arch(prototxt, arch):
    """The `mapping.CAFFE_ARCHITECTURES` entry of `arch` (None without one); exactly one of
    `prototxt` and `arch` must be given."""
    if (prototxt is None) == (arch is None):
        raise JaxprobeError("prototxt: give either a prototxt or a known --arch, not both or neither")
    if arch is None:
        return None
    if arch not in mapping.CAFFE_ARCHITECTURES:
        raise JaxprobeError(f"arch: unknown Caffe architecture {arch!r}; expected one of "
                            f"{', '.join(sorted(mapping.CAFFE_ARCHITECTURES))}")
    return mapping.CAFFE_ARCHITECTURES[arch]


def _arch_net(arch: str, spec_arch, tensors: dict, caffemodel) -> _Net:
    """A known arch's network, its widths read off the caffemodel's `tensors`; the prototxt is the one
    `jaxprobe.models.archs_paper` writes."""
    from jaxprobe.models import archs_paper

    kwargs = dict(spec_arch.kwargs, **spec_arch.infer(tensors))
    text = {"caffenet": archs_paper.caffenet_prototxt, "deepsim_fc6": archs_paper.deepsim_prototxt}[arch](**kwargs)
    spec = caffe_spec.parse_prototxt(text, f"<{arch}>")
    architecture = {"builder": spec_arch.builder,
                    "kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}}
    graphdef, abstract, names = mapping.abstract_network(spec_arch.builder, kwargs)
    return _Net(spec, architecture, graphdef, abstract, names, [mapping.source_record(caffemodel, "caffemodel")],
                kwargs)


def _prototxt_net(prototxt, caffemodel) -> _Net:
    """The network of a user's deploy prototxt (built from the copy the model directory keeps)."""
    spec = caffe_spec.read_prototxt(prototxt)
    architecture = {"builder": "caffe_prototxt", "kwargs": {"prototxt": PROTOTXT_NAME}}
    resolved = Path(prototxt).resolve()
    graphdef, abstract, names = mapping.abstract_network("caffe_prototxt", {"prototxt": resolved.name},
                                                         resolved.parent)
    sources = [mapping.source_record(prototxt, "prototxt"), mapping.source_record(caffemodel, "caffemodel")]
    return _Net(spec, architecture, graphdef, abstract, names, sources, {})


def _manifest(net: _Net, arch, role: str, records, bn_factors) -> dict:
    """The converted model's manifest: architecture, role, input shape, sources, Caffe names and the
    weight mapping (`records`), with the batch-norm factors applied (if any)."""
    spec = net.spec
    manifest = {
        "architecture": net.architecture,
        "role": role,
        "input_shape": list(caffe_spec.input_shape(spec)),
        "source": {"format": "caffe", "files": net.sources, "converter": "weights_convert.caffe",
                   "architecture": arch or f"caffe prototxt {spec.name!r}"},
        "caffe": {"name": spec.name, "input": spec.input_name, "output": spec.layers[-1].name,
                  "softmax": spec.layers[-1].type == "Softmax"},
        "mapping": records,
    }
    if bn_factors:  # mean and variance blobs were multiplied by these (1 / blob 2)
        manifest["caffe"]["batch_norm_factors"] = bn_factors
    return manifest


def _output_pixels(shape, channels, mean, scale, value_range):
    """The pixel convention of a prototxt generator's output of `shape` (batch excluded): None when it
    is not an image of 1 or 3 channels (then a convention given is an error)."""
    given = any(v is not None for v in (channels, mean, value_range)) or scale is not None
    if len(shape) != 3 or shape[-1] not in (1, 3):
        if given:
            raise JaxprobeError(f"channels: the generator's output of shape {tuple(shape)} is not an image of 1 or "
                                "3 channels; --channels, --mean, --scale and --range describe an output image")
        return None
    return pixel_convention(shape[-1], channels, mean, 1.0 if scale is None else scale, value_range)


def convert_caffe(prototxt, caffemodel, out, *, force: bool = False, **options):
    """Convert a Caffe deploy prototxt (or a known `arch=`) + caffemodel into model directory `out`.

    Writes the orbax checkpoint, `manifest.json` and, for a prototxt, a copy of it (`net.prototxt`,
    which `jaxprobe.load(out)` builds the network from), atomically; a directory jaxprobe did not
    write is refused before any work unless `force`. `options` are `caffe_model`'s.
    Returns the converted `Model`.
    """
    inputs = [p for p in (prototxt, caffemodel) if p is not None]  # never delete what it reads
    check_replaceable(out, force=force, inputs=inputs)
    model = caffe_model(prototxt, caffemodel, **options)
    files = {PROTOTXT_NAME: prototxt} if prototxt is not None else {}
    path = mapping.write_model(model, out, model.manifest, files, force=force, inputs=inputs)
    return model.replace(name=options.get("name") or str(path))
