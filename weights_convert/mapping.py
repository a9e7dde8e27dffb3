"""Weight mapping tables, kept as data, and the one routine that applies them.

A mapping is a list of `Rule(source, layer, param, transform)`: the tensor named `source` in the
file becomes parameter `param` (a dotted path inside jaxprobe's `Layer`, e.g. "linear.kernel",
"norm.mean") of the layer named `layer`, after `transform`, a permutation of its axes:

- "identity": biases, batch-norm statistics, an InnerProduct weight Caffe stores transposed;
- "oihw_to_hwio": convolution weights, PyTorch/Caffe [out, in, kh, kw] -> jaxprobe [kh, kw, in, out];
- "iohw_to_hwio": transposed-convolution weights [in, out, kh, kw] -> [kh, kw, in, out];
- "oi_to_io": linear weights [out, in] -> [in, out].

The C,H,W flatten order before the first fully connected layer needs no weight permutation: the
models flatten their activations in C,H,W order (`Flatten("CHW")`), as PyTorch and Caffe do.

`map_weights` builds the target network shape-only, checks every rule against it and reports every
missing, unexpected or misshaped tensor (and every target parameter no rule fills) together, in
one `JaxprobeError`. `write_model` writes the orbax checkpoint, the manifest and any files the
architecture reads (a Caffe prototxt) atomically.
"""

from __future__ import annotations

import fnmatch
import math
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np
from flax import nnx

from jaxprobe.models import zoo
from jaxprobe.errors import JaxprobeError
from jaxprobe.io import sha256_file
from jaxprobe.models.pixels import PixelConvention
from jaxprobe.models.probe import Model

# Importing these registers their builders in jaxprobe.models.zoo.
import jaxprobe.models.archs_paper  # noqa: F401
import jaxprobe.models.archs_small  # noqa: F401
import jaxprobe.models.caffe_net  # noqa: F401

TRANSFORMS = {
    "identity": None,
    "oihw_to_hwio": (2, 3, 1, 0),
    "iohw_to_hwio": (2, 3, 0, 1),
    "oi_to_io": (1, 0),
}


class Rule(NamedTuple):
    """Source tensor `source` -> parameter `param` of layer `layer`, through `transform`."""

    source: str
    layer: str
    param: str
    transform: str


class Arch(NamedTuple):
    """A state-dict architecture: its jaxprobe builder, conventions and key table.

    `kwargs`, `input_shape`, `rules` and `ignore` may be functions: `infer(tensors)` reads the
    builder's hyperparameters (widths, depths) off the tensors' shapes, and the others take the
    resulting kwargs, so one table serves every width of an architecture.
    """

    builder: str
    kwargs: dict
    role: str
    input_shape: tuple
    pixels: dict
    rules: tuple
    ignore: tuple = ()  # glob patterns of source keys that carry nothing the model needs
    latent: dict | None = None
    description: str = ""
    infer: object = None  # tensors -> kwargs overriding `kwargs`
    rename: tuple = ()  # (regex, replacement) applied to source keys before matching
    fold_input_std: tuple | None = None  # per-channel input std folded into the first kernel
    # The encoder a generator was trained to invert, written to its manifest as "encoder":
    # {"architecture": the encoder's builder, "layer": its layer}; inverse sets take it as their
    # default embedding and initialization when the classifier is of that architecture.
    encoder: dict | None = None


def resolve(value, kwargs):
    """An `Arch` field: called with the builder kwargs if it is a function."""
    return value(kwargs) if callable(value) else value


def _conv(src, layer):
    return (Rule(f"{src}.weight", layer, "linear.kernel", "oihw_to_hwio"),
            Rule(f"{src}.bias", layer, "linear.bias", "identity"))


def _linear(src, layer):
    return (Rule(f"{src}.weight", layer, "linear.kernel", "oi_to_io"),
            Rule(f"{src}.bias", layer, "linear.bias", "identity"))


def _deconv(src, layer):
    return (Rule(f"{src}.weight", layer, "linear.kernel", "iohw_to_hwio"),
            Rule(f"{src}.bias", layer, "linear.bias", "identity"))


def _batchnorm(src, layer):
    return (Rule(f"{src}.weight", layer, "norm.scale", "identity"),
            Rule(f"{src}.bias", layer, "norm.bias", "identity"),
            Rule(f"{src}.running_mean", layer, "norm.mean", "identity"),
            Rule(f"{src}.running_var", layer, "norm.var", "identity"))


def _vgg16_rules(kw):
    rules, idx = [], 0
    for b, n in enumerate((2, 2, 3, 3, 3), 1):
        for j in range(1, n + 1):
            rules += _conv(f"features.{idx}", f"conv{b}_{j}")
            idx += 2
        idx += 1  # the max pooling
    return tuple(rules) + _linear("classifier.0", "fc6") + _linear("classifier.3", "fc7") + _linear("classifier.6", "fc8")


def _alexnet_rules(kw):
    rules = ()
    for i, name in zip((0, 3, 6, 8, 10), ("conv1", "conv2", "conv3", "conv4", "conv5")):
        rules += _conv(f"features.{i}", name)
    return rules + _linear("classifier.1", "fc6") + _linear("classifier.4", "fc7") + _linear("classifier.6", "fc8")


def _shape(tensors, key, axis, default):
    a = tensors.get(key)
    return int(np.shape(a)[axis]) if a is not None and len(np.shape(a)) > axis else default


def _vgg16_infer(t):
    return {"widths": tuple(_shape(t, f"features.{i}.weight", 0, w)
                            for i, w in zip((0, 5, 10, 17, 24), (64, 128, 256, 512, 512))),
            "hidden": _shape(t, "classifier.0.weight", 0, 4096), "num_classes": _shape(t, "classifier.6.weight", 0, 1000)}


def _alexnet_infer(t):
    return {"widths": tuple(_shape(t, f"features.{i}.weight", 0, w)
                            for i, w in zip((0, 3, 6, 8, 10), (64, 192, 384, 256, 256))),
            "hidden": _shape(t, "classifier.1.weight", 0, 4096), "num_classes": _shape(t, "classifier.6.weight", 0, 1000)}


def _pggan_infer(t):
    if "formatLayer.weight" not in t and "decisionLayer.weight" in t:
        raise JaxprobeError("arch: the state dict is pytorch_GAN_zoo's PGAN discriminator (decisionLayer, "
                            "fromRGBLayers), not its generator: convert it with --arch pggan_d")
    depths = [_shape(t, "groupScale0.0.weight", 0, 512)]
    i = 0
    while f"scaleLayers.{i}.0.weight" in t:
        depths.append(_shape(t, f"scaleLayers.{i}.0.weight", 0, 0))
        i += 1
    return {"latent_dim": _shape(t, "formatLayer.weight", 1, 512), "depths": tuple(depths),
            "channels": _shape(t, "toRGBLayers.0.weight", 0, 3)}


def _pggan_rules(kw):
    n = len(kw["depths"])
    rules = _linear("formatLayer", "format") + _conv("groupScale0.0", "scale0")
    for i in range(1, n):
        rules += _conv(f"scaleLayers.{i - 1}.0", f"scale{i}_conv1") + _conv(f"scaleLayers.{i - 1}.1", f"scale{i}_conv2")
    return rules + _conv(f"toRGBLayers.{n - 1}", "to_rgb")


def _pggan_ignore(kw):
    # the lower-resolution RGB heads only blend in while a scale fades in (alpha > 0)
    return tuple(f"toRGBLayers.{j}.*" for j in range(len(kw["depths"]) - 1))


def _pggan_d_infer(t):
    """DNet's hyperparameters off its tensors: depths (scalesDepth: groupScaleZero.0's output, then
    each scaleLayers.i.0's), channels (the last fromRGB layer's input), decision (the decision
    layer's outputs) and whether the minibatch stddev channel is there (groupScaleZero.0 reads
    depths[0] + 1 channels)."""
    if "decisionLayer.weight" not in t and "formatLayer.weight" in t:
        raise JaxprobeError("arch: the state dict is pytorch_GAN_zoo's PGAN generator (formatLayer, toRGBLayers), "
                            "not its discriminator: convert it with --arch pggan (--key netG)")
    d0 = _shape(t, "groupScaleZero.0.weight", 0, 512)
    depths = [d0]
    i = 0
    while f"scaleLayers.{i}.0.weight" in t:
        depths.append(_shape(t, f"scaleLayers.{i}.0.weight", 0, 0))
        i += 1
    # Neither d0 nor d0 + 1 input channels: built with the channel, so the mapping reports the shape.
    mbstd = _shape(t, "groupScaleZero.0.weight", 1, d0 + 1) != d0
    return {"depths": tuple(depths), "channels": _shape(t, f"fromRGBLayers.{len(depths) - 1}.weight", 1, 3),
            "decision": _shape(t, "decisionLayer.weight", 0, 1), "minibatch_std": mbstd}


def _pggan_d_rules(kw):
    n = len(kw["depths"])
    rules = _conv(f"fromRGBLayers.{n - 1}", "from_rgb")
    for i in range(n - 1, 0, -1):  # scaleLayers[i - 1] was added for scale i
        rules += _conv(f"scaleLayers.{i - 1}.0", f"scale{i}_conv1") + _conv(f"scaleLayers.{i - 1}.1", f"scale{i}_conv2")
    return rules + _conv("groupScaleZero.0", "scale0_conv") + _linear("groupScaleZero.1", "scale0_linear") \
        + _linear("decisionLayer", "decision")


def _pggan_d_ignore(kw):
    # the lower-resolution fromRGB heads only blend in while a scale fades in (alpha > 0)
    return tuple(f"fromRGBLayers.{j}.*" for j in range(len(kw["depths"]) - 1))


_TORCHVISION_PIXELS = dict(low=0.0, high=1.0, channels="RGB", mean=(0.485, 0.456, 0.406), scale=1.0)

ARCHITECTURES = {
    "lenet5": Arch(
        builder="lenet5", kwargs={}, role="classifier", input_shape=(28, 28, 1),
        pixels=dict(low=0.0, high=1.0, channels="gray", mean=(0.1307,), scale=1 / 0.3081),
        rules=_conv("conv1", "conv1") + _conv("conv2", "conv2") + _linear("fc1", "fc1")
        + _linear("fc2", "fc2") + _linear("fc3", "fc3"),
        description="LeNet-5 on MNIST (conv1, conv2, fc1, fc2, fc3), input (x - 0.1307) / 0.3081",
    ),
    "simple_cnn": Arch(
        builder="simple_cnn", kwargs={"widths": (8, 16), "num_classes": 10}, role="classifier",
        input_shape=(28, 28, 1), pixels=dict(low=0.0, high=1.0, channels="gray"),
        rules=_conv("conv1", "conv1") + _conv("conv2", "conv2") + _linear("fc1", "fc1"),
        description="two conv 3x3 + ReLU + max-pool blocks and fc1, input in [0, 1]",
    ),
    "torch_dcgan_generator": Arch(
        builder="torch_dcgan_generator", kwargs={"latent_dim": 64, "widths": (256, 128, 64), "channels": 1},
        role="generator", input_shape=(64,), pixels=dict(low=-1.0, high=1.0, channels="gray"),
        rules=_deconv("gen.0.0", "deconv1") + _batchnorm("gen.0.1", "deconv1")
        + _deconv("gen.1.0", "deconv2") + _batchnorm("gen.1.1", "deconv2")
        + _deconv("gen.2.0", "deconv3") + _batchnorm("gen.2.1", "deconv3")
        + _deconv("gen.3.0", "out"),
        ignore=("*.num_batches_tracked",), latent={"dim": 64, "prior": "normal"},
        description="DCGAN generator gen.0-3 (ConvTranspose2d + BatchNorm + ReLU, tanh), z of 64",
    ),
    "vgg16": Arch(
        builder="vgg16", kwargs={"widths": (64, 128, 256, 512, 512), "hidden": 4096, "num_classes": 1000},
        role="classifier", input_shape=(224, 224, 3), pixels=_TORCHVISION_PIXELS, rules=_vgg16_rules,
        infer=_vgg16_infer, fold_input_std=(0.229, 0.224, 0.225),
        description="torchvision VGG-16 (features.N, classifier.N) -> conv1_1..conv5_3, fc6-fc8",
    ),
    "alexnet": Arch(
        builder="alexnet", kwargs={"widths": (64, 192, 384, 256, 256), "hidden": 4096, "num_classes": 1000},
        role="classifier", input_shape=(224, 224, 3), pixels=_TORCHVISION_PIXELS, rules=_alexnet_rules,
        infer=_alexnet_infer, fold_input_std=(0.229, 0.224, 0.225),
        description="torchvision AlexNet (features.N, classifier.N) -> conv1..conv5, fc6-fc8",
    ),
    "pggan": Arch(
        builder="pggan_generator", kwargs={"latent_dim": 512, "depths": (512, 512, 512, 512, 256, 128, 64),
                                           "channels": 3},
        role="generator", input_shape=lambda kw: (kw["latent_dim"],),
        pixels=dict(low=-1.0, high=1.0, channels="RGB"), rules=_pggan_rules, ignore=_pggan_ignore,
        latent=lambda kw: {"dim": kw["latent_dim"], "prior": "normal"}, infer=_pggan_infer,
        rename=((r"^module\.", ""), (r"\.module\.", ".")),
        description="facebookresearch/pytorch_GAN_zoo PGAN generator (formatLayer, groupScale0, scaleLayers, "
                    "toRGBLayers; with or without `.module.`); use --key netG for a full checkpoint",
    ),
    "pggan_d": Arch(
        builder="pggan_discriminator",
        kwargs={"depths": (512, 512, 512, 512, 256, 128, 64), "channels": 3, "decision": 1, "minibatch_std": True,
                "minibatch_group": 1},
        role="critic", input_shape=lambda kw: (4 * 2 ** (len(kw["depths"]) - 1),) * 2 + (kw["channels"],),
        pixels=dict(low=-1.0, high=1.0, channels="RGB"), rules=_pggan_d_rules, ignore=_pggan_d_ignore,
        infer=_pggan_d_infer, rename=((r"^module\.", ""), (r"\.module\.", ".")),
        description="facebookresearch/pytorch_GAN_zoo PGAN discriminator DNet (fromRGBLayers, scaleLayers, "
                    "groupScaleZero, decisionLayer; with or without `.module.`) as a critic; use --key netD for a "
                    "full checkpoint. The minibatch stddev channel is computed per image (minibatch_group 1)",
    ),
}


def _blob_out(tensors, key, axis, default):
    """An output size from a Caffe blob, old num/channels/height/width shapes included."""
    a = tensors.get(key)
    if a is None:
        return default
    shape = list(np.shape(a))
    while len(shape) > 2 and shape[0] == 1 and key.endswith("[0]") and axis == 0:
        shape.pop(0)  # an InnerProduct weight stored 1 x 1 x out x in
    return int(shape[axis]) if len(shape) > axis else default


def _caffenet_infer(t):
    convs = tuple(_blob_out(t, f"conv{i}[0]", 0, w) for i, w in zip(range(1, 6), (96, 256, 384, 384, 256)))
    return {"widths": convs + (_blob_out(t, "fc6[0]", 0, 4096), _blob_out(t, "fc7[0]", 0, 4096)),
            "num_classes": _blob_out(t, "fc8[0]", 0, 1000)}


def _deepsim_infer(t):
    names = ("deconv5", "conv5_1", "deconv4", "conv4_1", "deconv3", "conv3_1", "deconv2", "deconv1")
    defaults = (256, 512, 256, 256, 128, 128, 64, 32)
    return {"latent_dim": _blob_out(t, "defc7[0]", 1, 4096),
            "fc": (_blob_out(t, "defc7[0]", 0, 4096), _blob_out(t, "defc6[0]", 0, 4096)),
            "base": _blob_out(t, "defc5[0]", 0, 4096) // 16,
            "convs": tuple(_blob_out(t, f"{n}[0]", 1, d) for n, d in zip(names, defaults)),  # [in, out, kh, kw]
            "channels": _blob_out(t, "deconv0[0]", 1, 3)}


# Caffe models with a known architecture: `weights_convert caffe --arch NAME --caffemodel M` needs no
# prototxt (jaxprobe.models.archs_paper writes it); the widths are read off the caffemodel's blobs.
CAFFE_ARCHITECTURES = {
    "caffenet": Arch(
        builder="caffenet", kwargs={"widths": (96, 256, 384, 384, 256, 4096, 4096), "num_classes": 1000},
        role="classifier", input_shape=(227, 227, 3),
        pixels=dict(low=0.0, high=255.0, channels="BGR", mean=(104.0, 117.0, 123.0), scale=1.0),
        rules=(), infer=_caffenet_infer,
        description="BVLC reference CaffeNet (bvlc_reference_caffenet.caffemodel), BGR minus mean, 227x227",
    ),
    "deepsim_fc6": Arch(
        builder="deepsim_fc6", kwargs={"latent_dim": 4096, "fc": (4096, 4096), "base": 256,
                                       "convs": (256, 512, 256, 256, 128, 128, 64, 32), "channels": 3},
        role="generator", input_shape=lambda kw: (kw["latent_dim"],),
        pixels=dict(low=0.0, high=255.0, channels="BGR", mean=(104.0, 117.0, 123.0), scale=1.0),
        rules=(), infer=_deepsim_infer, latent=lambda kw: {"dim": kw["latent_dim"], "prior": "normal"},
        encoder={"architecture": "caffenet", "layer": "fc6"},  # Dosovitskiy & Brox invert CaffeNet's fc6
        description="DeePSim fc6 generator (generator.caffemodel of Dosovitskiy & Brox), 256x256 BGR minus mean",
    ),
}


# ================================================================ applying a table


def rename_keys(tensors: dict, rename) -> tuple:
    """(renamed tensors, {new name: original name}) after the table's regex substitutions."""
    import re

    if not rename:
        return dict(tensors), {k: k for k in tensors}
    out, origin = {}, {}
    for key, value in tensors.items():
        new = key
        for pattern, repl in rename:
            new = re.sub(pattern, repl, new)
        if new in out:
            raise JaxprobeError(f"weights: {origin[new]!r} and {key!r} both name {new!r}")
        out[new], origin[new] = value, key
    return out, origin


def fold_input_std(state, std):
    """Divide the first layer's kernel (kh, kw, in, out) by the input's per-channel std, in place.

    conv((x - m) / s, W) = conv(x - m, W / s) exactly, so the model takes inputs minus the mean only
    and a scalar-scale `PixelConvention` describes them.
    """
    pure = nnx.to_pure_dict(state)
    kernel = pure["layers"][0]["linear"]["kernel"]
    if kernel.ndim != 4 or kernel.shape[2] != len(std):
        raise JaxprobeError(f"weights: cannot fold a {len(std)}-channel std into a kernel of shape {kernel.shape}")
    pure["layers"][0]["linear"]["kernel"] = kernel / jax.numpy.asarray(std, kernel.dtype)[None, None, :, None]
    nnx.replace_by_pure_dict(state, pure)
    return state


def abstract_network(builder: str, kwargs: dict, directory=None):
    """(graphdef, abstract state, layer names) of an architecture, built shape-only (no weights)."""
    if builder not in zoo.ARCHITECTURES:
        raise JaxprobeError(f"architecture: unknown builder {builder!r}")
    kw = dict(kwargs)
    if builder in zoo.NEEDS_DIRECTORY:
        kw["directory"] = directory
    module = nnx.eval_shape(lambda: zoo.ARCHITECTURES[builder](**kw, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(module)
    return graphdef, state, tuple(module.names)


def _target_path(names, rule: Rule):
    if rule.layer not in names:
        return None
    return ("layers", names.index(rule.layer)) + tuple(rule.param.split("."))


def _lookup(tree, path):
    for k in path:
        if not isinstance(tree, dict) or k not in tree:
            return None
        tree = tree[k]
    return tree


def _strip_ones(shape):
    s = list(shape)
    while s and s[0] == 1:
        s.pop(0)
    return tuple(s)


def _describe(a) -> str:
    return f"{tuple(np.shape(a))} {np.asarray(a).dtype}"


def map_weights(rules, tensors: dict, graphdef, abstract_state, names, *, ignore=(), legacy_shapes=False,
                what="weights"):
    """Apply `rules` to `tensors` (name -> numpy array) for the network (graphdef, abstract_state).

    Returns (state, records): the network's `nnx.State` holding the converted float32 weights and
    one record per rule for the manifest. With `legacy_shapes`, a tensor whose shape equals the
    expected one after dropping leading 1s is accepted (Caffe's old num/channels/height/width blobs).

    Raises one `JaxprobeError` listing every missing source tensor, unexpected source tensor,
    misshaped or non-float or non-finite tensor, and target parameter no rule fills.
    """
    target = nnx.to_pure_dict(abstract_state)
    flat_target = {tuple(k.key if hasattr(k, "key") else k.idx for k in path): leaf
                   for path, leaf in jax.tree_util.tree_flatten_with_path(target)[0]}
    missing, unexpected, bad, unfilled = [], [], [], []
    used_sources, filled = set(), {}
    records = []
    for rule in rules:
        if rule.transform not in TRANSFORMS:
            raise JaxprobeError(f"mapping: unknown transform {rule.transform!r} for {rule.source!r}")
        path = _target_path(names, rule)
        leaf = None if path is None else flat_target.get(path)
        if leaf is None:
            unfilled.append(f"{rule.layer}.{rule.param} (for {rule.source}: no such parameter in the model)")
            continue
        used_sources.add(rule.source)
        if rule.source not in tensors:
            missing.append(f"{rule.source} (for {rule.layer}.{rule.param}, shape {tuple(leaf.shape)})")
            continue
        src = tensors[rule.source]
        perm = TRANSFORMS[rule.transform]
        want = tuple(leaf.shape) if perm is None else tuple(leaf.shape[i] for i in np.argsort(perm))
        arr = np.asarray(src)
        if not (np.issubdtype(arr.dtype, np.floating) or arr.dtype.name == "bfloat16"):
            bad.append(f"{rule.source}: expected a floating-point tensor, got {arr.dtype}")
            continue
        if arr.shape != want:
            if legacy_shapes and arr.size == math.prod(want) and _strip_ones(arr.shape) == _strip_ones(want):
                arr = arr.reshape(want)
            else:
                bad.append(f"{rule.source}: expected shape {want} (for {rule.layer}.{rule.param}), got {arr.shape}")
                continue
        with np.errstate(over="ignore", invalid="ignore"):  # out of float32's range: refused below, quietly
            arr = arr.astype(np.float32)
        if not np.all(np.isfinite(arr)):
            bad.append(f"{rule.source}: holds non-finite values")
            continue
        if perm is not None:
            arr = np.ascontiguousarray(np.transpose(arr, perm))
        filled[path] = arr
        records.append({"source": rule.source, "target": f"{rule.layer}.{rule.param}", "transform": rule.transform,
                        "source_shape": list(np.shape(src)), "shape": list(arr.shape)})
    for key in tensors:
        if key not in used_sources and not any(fnmatch.fnmatchcase(key, p) for p in ignore):
            unexpected.append(f"{key} {_describe(tensors[key])}")
    for path in flat_target:
        if path not in filled and not any(r for r in rules if _target_path(names, r) == path):
            unfilled.append(f"{names[path[1]]}.{'.'.join(map(str, path[2:]))} (no rule maps a source tensor to it)")
    problems = []
    for title, items in (("missing", missing), ("unexpected", unexpected), ("misshaped or invalid", bad),
                         ("unfilled", unfilled)):
        if items:
            problems.append(f"{len(items)} {title}: " + "; ".join(items))
    if problems:
        raise JaxprobeError(f"{what}: " + " | ".join(problems))
    pure = jax.tree.map(lambda x: x, target)
    for path, arr in filled.items():
        node = pure
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = jax.numpy.asarray(arr)
    state = jax.tree.map(lambda x: x, abstract_state)
    nnx.replace_by_pure_dict(state, pure)
    return state, records


# ================================================================ output


def source_record(path, fmt: str) -> dict:
    """A source file as a manifest records it: name, sha256, format and size, never its path (the
    converting machine's directories are nobody else's business and identify nothing)."""
    from jaxprobe.io import check_regular_file

    size = check_regular_file(path, max_bytes=1 << 40, what=fmt)  # never hash a FIFO or a device
    path = Path(path)
    return {"name": path.name, "sha256": sha256_file(path), "format": fmt, "bytes": size}


def make_model(name: str, graphdef, state, names, manifest: dict) -> Model:
    """A `Model` of converted weights: the network's graph and mapped state, with the manifest's
    input shape, role and pixel convention."""
    pixels = PixelConvention.from_dict(manifest["pixels"]) if manifest.get("pixels") else None
    return Model(name, graphdef, state, tuple(names), tuple(manifest["input_shape"]), manifest["role"], pixels,
                 dict(manifest))


def write_model(model: Model, out, manifest: dict, files: dict | None = None, *, force: bool = False,
                inputs=()) -> Path:
    """Write `model` with `manifest` to directory `out`, plus `files` ({name in out: source path}).

    Atomic: everything is written into a temporary sibling directory that is renamed into place
    (an existing `out` is replaced only once the new one is complete, and only if jaxprobe wrote
    it or it is empty, unless `force`; never one holding a file of `inputs`, the files read).
    """
    from jaxprobe.models.store import save_model

    return save_model(model, out, manifest, files=files, force=force, inputs=inputs)
