"""A state dict of the user's own network, mapped onto that network described in a Caffe prototxt.

`jaxprobe convert torch FILE --prototxt NET.prototxt [--map MAP.json]`: the prototxt (Caffe's text
format, `jaxprobe.models.caffe_spec`, with BatchNorm + Scale and jaxprobe's Upsample extension)
describes the network, is copied into the model directory as `net.prototxt`, and
`jaxprobe.load(DIR)` rebuilds the network from that copy. Its learned tensors are named
"LAYER.weight" and "LAYER.bias" (Convolution, Deconvolution, InnerProduct, Scale) and
"LAYER.running_mean", "LAYER.running_var" (BatchNorm), in PyTorch's layouts
(`weights_convert.caffe.caffe_parameters`). The key map, a JSON object {state dict key: tensor
name, or null to leave the key out}, says which file tensor fills which; without one, the state
dict's tensors fill them in order (`*.num_batches_tracked` left out), the order `nn.Sequential`
stores a learned map and the BatchNorm after it.
"""

from __future__ import annotations

import fnmatch
import glob
import json
from pathlib import Path

import numpy as np
from flax import nnx

from jaxprobe.errors import JaxprobeError
from jaxprobe.io import check_replaceable, read_json
from jaxprobe.models import caffe_spec

from weights_convert import mapping
from weights_convert.caffe import PROTOTXT_NAME, caffe_parameters, pixel_convention
from weights_convert.latent import latent_record
from weights_convert.torch_files import load_state_dict

IGNORED = ("*num_batches_tracked",)  # a BatchNorm's training step counter


def read_key_map(path) -> dict:
    """The key map in the JSON file at `path`: {state dict key: tensor name or null}."""
    data = read_json(path, what="map", max_bytes=64 << 20, max_depth=8)  # a map is one flat object
    return check_key_map(data, str(path)[:200])


def check_key_map(key_map, where: str | None = None) -> dict:
    """`key_map` itself if it is {str: str or None}; else a `JaxprobeError` naming what is wrong
    (and `where`, the file it came from)."""
    head = f"map: {where}: " if where else "map: "
    if not isinstance(key_map, dict):
        raise JaxprobeError(f"{head}expected a JSON object {{state dict key: tensor name}}, got "
                            f"{type(key_map).__name__}")
    bad = [k for k, v in key_map.items() if not isinstance(k, str) or not (v is None or isinstance(v, str))]
    if bad:
        raise JaxprobeError(f"{head}entry {bad[0]!r}: expected a tensor name such as \"conv1.weight\" or null, "
                            f"got {json.dumps(key_map[bad[0]], default=repr)[:80]}")
    return key_map


def _listing(params, shapes) -> str:
    return ", ".join(f"{p.layer}.{p.name} {shapes[p]}" for p in params)


def _source_shapes(params, abstract, names) -> dict:
    """Each tensor's shape as the source file holds it (PyTorch's layout)."""
    target = nnx.to_pure_dict(abstract)
    shapes = {}
    for p in params:
        leaf = target["layers"][names.index(p.target)]
        for k in p.param.split("."):
            leaf = leaf[k]
        perm = mapping.TRANSFORMS[p.transform]
        shape = tuple(leaf.shape) if perm is None else tuple(leaf.shape[i] for i in np.argsort(perm))
        shapes[p] = shape
    return shapes


def prototxt_rules(spec, tensors: dict, key_map: dict | None, shapes: dict, *, ordered: bool = True) -> tuple:
    """(rules, ignore patterns) that fill a prototxt net's tensors from `tensors`.

    With `key_map`, each entry names its key's tensor; without, the state dict's tensors fill the
    net's in order, which needs a file that keeps its order (`ordered`: not safetensors) and as many
    tensors as the net takes.
    """
    params = caffe_parameters(spec)
    if key_map is None:
        if not ordered:
            raise JaxprobeError("map: a safetensors file does not keep its state dict's order; give --map MAP.json "
                                f"naming each key's tensor among: {_listing(params, shapes)}")
        keys = [k for k in tensors if not any(fnmatch.fnmatchcase(k, p) for p in IGNORED)]
        if len(keys) != len(params):
            raise JaxprobeError(f"map: the state dict holds {len(keys)} tensors (num_batches_tracked aside) and the "
                                f"prototxt's layers take {len(params)} ({_listing(params, shapes)}); give --map "
                                "MAP.json naming each key's tensor")
        return tuple(mapping.Rule(k, p.target, p.param, p.transform) for k, p in zip(keys, params)), IGNORED
    by_name = {f"{p.layer}.{p.name}": p for p in params}
    rules, ignore, taken = [], list(IGNORED), {}
    for key, name in key_map.items():
        if name is None:
            ignore.append(glob.escape(key))
            continue
        if name not in by_name:
            raise JaxprobeError(f"map: {key!r} -> {name!r}: the prototxt has no tensor {name!r}; its tensors: "
                                f"{_listing(params, shapes)}")
        if name in taken:
            raise JaxprobeError(f"map: {taken[name]!r} and {key!r} both fill {name!r}")
        taken[name] = key
        p = by_name[name]
        rules.append(mapping.Rule(key, p.target, p.param, p.transform))
    return tuple(rules), tuple(ignore)


def _pixels(model, role, channels, mean, scale, value_range):
    """The pixel convention of a classifier's input or a generator's output image, if it is one."""
    shape = model.output_shape() if role == "generator" else model.input_shape
    if len(shape) != 3 or shape[-1] not in (1, 3):
        if channels is not None:
            raise JaxprobeError(f"channels: the {'output' if role == 'generator' else 'input'} of shape "
                                f"{tuple(shape)} is not an image of 1 or 3 channels")
        return None
    default = (-1.0, 1.0) if role == "generator" else (0.0, 1.0)
    return pixel_convention(shape[-1], channels, mean, 1.0 if scale is None else scale, value_range, color="RGB",
                            default_range=default)


def torch_prototxt_model(path, prototxt, *, key_map=None, key: str | None = None, role: str = "classifier",
                         channels=None, mean=None, scale: float | None = None, value_range=None,
                         name: str | None = None, latent=None):
    """The jaxprobe `Model` of a PyTorch/safetensors state dict of the network in `prototxt`.

    Args:
      path: the weights file (`.pth`/`.pt`, zip or legacy, or `.safetensors`).
      prototxt: the network in Caffe's text format (any type `caffe_spec.SUPPORTED` lists).
      key_map: {state dict key: tensor name ("conv1.weight", "bn1.running_var") or None to leave it
        out}, or the path of a JSON file holding one; None fills the tensors in the state dict's order.
      key: a nested state dict's dotted key in a larger checkpoint ("netG").
      role: "classifier" (default), "generator" or "critic".
      channels, mean, scale, value_range: the pixel convention of the input image (a generator's:
        of its output image); defaults gray or RGB in [0, 1] ([-1, 1] for a generator's output).
      latent: a generator's latent prior {"dim", "prior"} (`weights_convert.latent.parse_latent`);
        default N(0, I) for a generator with a vector input ({} records none). The manifest records the
    sources (name, sha256, format: weights, prototxt, key map) and the mapping.
    """
    if role not in ("classifier", "generator", "critic"):
        raise JaxprobeError(f"role: expected classifier, generator or critic, got {role!r}")
    spec = caffe_spec.read_prototxt(prototxt)
    sources = [mapping.source_record(prototxt, "prototxt")]
    if isinstance(key_map, (str, Path)):
        key_map_path, key_map = key_map, read_key_map(key_map)  # read (and checked) before it is hashed
        sources.append(mapping.source_record(key_map_path, "key-map"))
    elif key_map is not None:
        key_map = check_key_map(key_map)
    loaded = load_state_dict(path, key=key)
    sources.insert(0, mapping.source_record(path, loaded.format))
    resolved = Path(prototxt).resolve()
    graphdef, abstract, names = mapping.abstract_network("caffe_prototxt", {"prototxt": resolved.name}, resolved.parent)
    shapes = _source_shapes(caffe_parameters(spec), abstract, names)
    rules, ignore = prototxt_rules(spec, loaded.tensors, key_map, shapes, ordered=loaded.format != "safetensors")
    try:
        state, records = mapping.map_weights(rules, loaded.tensors, graphdef, abstract, names, ignore=ignore,
                                             what=f"{Path(path).name} as {Path(prototxt).name}")
    except JaxprobeError as e:
        raise JaxprobeError(f"{e} | the prototxt's tensors, in order: {_listing(caffe_parameters(spec), shapes)}") \
            from None
    input_shape = caffe_spec.input_shape(spec)
    manifest = {
        "architecture": {"builder": "caffe_prototxt", "kwargs": {"prototxt": PROTOTXT_NAME}},
        "role": role,
        "input_shape": list(input_shape),
        "source": {"format": loaded.format, "files": sources, "converter": "weights_convert.user_network",
                   "architecture": f"caffe prototxt {spec.name!r}", "key": key,
                   "key_order": "state dict order" if key_map is None else "key map"},
        "mapping": records,
    }
    default = {"dim": input_shape[0], "prior": "normal"} if role == "generator" and len(input_shape) == 1 else None
    record = latent_record(latent, role, input_shape, default)
    if record:
        manifest["latent"] = record
    model = mapping.make_model(name or Path(path).stem, graphdef, state, names, manifest)
    pixels = _pixels(model, role, channels, mean, scale, value_range)
    if pixels is not None:
        manifest["pixels"] = pixels.to_dict()
        manifest["preprocessing"] = {"channel_order": pixels.channels, "mean": list(pixels.mean),
                                     "scale": pixels.scale, "range": [pixels.low, pixels.high]}
    return mapping.make_model(model.name, graphdef, state, names, manifest)


def convert_torch_prototxt(path, prototxt, out, *, force: bool = False, **options):
    """Convert a state dict of the network in `prototxt` into model directory `out`: the orbax
    checkpoint, `manifest.json` and `net.prototxt`, written atomically; a directory jaxprobe did not
    write is refused before any work unless `force`. `options` are `torch_prototxt_model`'s.
    Returns the converted `Model`."""
    inputs = [p for p in (path, prototxt, options.get("key_map")) if isinstance(p, (str, Path))]
    check_replaceable(out, force=force, inputs=inputs)
    model = torch_prototxt_model(path, prototxt, **options)
    out_path = mapping.write_model(model, out, model.manifest, {PROTOTXT_NAME: prototxt}, force=force,
                                   inputs=inputs)
    return model.replace(name=options.get("name") or str(out_path))
