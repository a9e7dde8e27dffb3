"""Saving and loading probe-able models: an orbax checkpoint plus `manifest.json`.

A model directory holds `manifest.json` (architecture builder and its arguments, role, input shape,
pixel convention, provenance, quality figures) and `params/` (an orbax checkpoint of the network's
variables). `load(name_or_path)` accepts a shipped model's name or such a directory. Writes go to
a temporary sibling directory that is renamed into place, so nothing half-written is left behind.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from jaxprobe.errors import JaxprobeError
from jaxprobe.io import atomic_dir, dumps_json
from jaxprobe.models.pixels import PixelConvention
from jaxprobe.models.probe import Model
from jaxprobe.models import zoo

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"  # package data, beside the floors
SHIPPED = ("classifier", "dcgan", "dcgan_critic", "dcgan2d", "dcgan2d_critic", "fc_generator")
FORMAT = "jaxprobe-model/1"


def build_network(architecture: dict, seed: int = 0, directory=None):
    """Instantiate the `Network` an architecture record describes (random weights)."""
    builder = architecture.get("builder")
    if builder not in zoo.ARCHITECTURES:
        raise JaxprobeError(
            f"architecture: unknown builder {builder!r}; expected one of {', '.join(sorted(zoo.ARCHITECTURES))}"
        )
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in architecture.get("kwargs", {}).items()}
    if builder in zoo.NEEDS_DIRECTORY:
        kwargs["directory"] = directory
    return zoo.ARCHITECTURES[builder](**kwargs, rngs=nnx.Rngs(seed))


def new_model(name: str, manifest: dict, seed: int = 0, directory=None, *, shape_only: bool = False) -> Model:
    """A model with fresh random weights from a manifest's architecture and conventions.

    `shape_only` builds it without running the initializers: its params are ShapeDtypeStructs,
    to be filled by a restore.
    """
    build = lambda: build_network(manifest["architecture"], seed, directory)  # noqa: E731
    net = nnx.eval_shape(build) if shape_only else build()
    pixels = PixelConvention.from_dict(manifest["pixels"]) if manifest.get("pixels") else None
    return Model.from_module(name, net, manifest["input_shape"], manifest["role"], pixels, manifest)


def _abstract(model: Model):
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), model.params.to_pure_dict())


def save_model(model: Model, directory, manifest: dict | None = None, files: dict | None = None, *,
               force: bool = False) -> Path:
    """Write `model` (params and manifest) to `directory` atomically; returns the path.

    `files` ({name in the directory: source path}) are copied in beside them (a converted model's
    prototxt, say). An existing directory is replaced only once the new one is complete, and only
    if jaxprobe wrote it or it is empty, unless `force` (`jaxprobe.io.check_replaceable`).
    """
    import shutil

    import orbax.checkpoint as ocp

    target = Path(directory).resolve()
    manifest = dict(model.manifest if manifest is None else manifest)
    manifest.update(format=FORMAT, role=model.role, input_shape=list(model.input_shape),
                    layer_names=list(model.layer_names))
    if model.pixels is not None:
        manifest["pixels"] = model.pixels.to_dict()
    with atomic_dir(target, force=force, name="directory") as tmp:
        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save(tmp / "params", model.params.to_pure_dict())
        (tmp / "manifest.json").write_text(dumps_json(manifest))
        for name, src in (files or {}).items():
            shutil.copyfile(src, tmp / name)
    return target



def read_manifest(directory) -> dict:
    path = Path(directory) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise JaxprobeError(f"path: {directory} is not a jaxprobe model directory (no manifest.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise JaxprobeError(f"manifest: {path} is corrupt ({e})") from None
    for key in ("architecture", "role", "input_shape"):
        if key not in manifest:
            raise JaxprobeError(f"manifest: {path} lacks the field {key!r}")
    return manifest


def load(name_or_path) -> Model:
    """Load a shipped model by name ("dcgan", "classifier", ...) or a model directory.

    Returns a `Model` whose `forward`, `up_to` and `from_` are pure functions of (params, input).
    Raises `JaxprobeError` for an unknown name, a missing directory or a corrupt checkpoint.
    """
    import orbax.checkpoint as ocp

    s = str(name_or_path)
    if s in SHIPPED:
        directory, name = WEIGHTS_DIR / s, s
        if not (directory / "manifest.json").exists():
            raise JaxprobeError(f"model: the shipped model {s!r} is not installed (no {directory}/manifest.json)")
    elif Path(s).is_dir():
        directory, name = Path(s).resolve(), s
    else:
        raise JaxprobeError(
            f"model: {s!r} is neither a shipped model ({', '.join(SHIPPED)}) nor a model directory"
        )
    manifest = read_manifest(directory)
    # Built shape-only: running the initializers would compile one small program per parameter
    # shape (seconds per model on a CPU) only to overwrite every value.
    model = new_model(name, manifest, directory=directory, shape_only=True)
    abstract = _abstract(model)
    try:
        with ocp.StandardCheckpointer() as ckptr:
            restored = ckptr.restore((directory / "params").resolve(), abstract)
    except Exception as e:  # orbax raises many types for unreadable data
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise JaxprobeError(f"checkpoint: cannot read {directory / 'params'}: {first}") from e
    _check_restored(directory, abstract, restored)
    params = jax.tree.map(lambda a: a, model.params)
    nnx.replace_by_pure_dict(params, restored)
    return model.replace(params=params)


def _check_restored(directory, abstract, restored) -> None:
    want = jax.tree_util.tree_flatten_with_path(abstract)[0]
    got = dict(jax.tree_util.tree_flatten_with_path(restored)[0])
    bad = [
        f"{jax.tree_util.keystr(k)} (expected {a.shape}, got {np.shape(got.get(k)) if k in got else 'nothing'})"
        for k, a in want
        if k not in got or np.shape(got[k]) != a.shape
    ]
    if bad:
        raise JaxprobeError(f"checkpoint: {directory} does not match its manifest: {'; '.join(bad)}")
    for k, v in got.items():
        if not np.all(np.isfinite(np.asarray(v))):
            raise JaxprobeError(f"checkpoint: {directory} holds non-finite values in {jax.tree_util.keystr(k)}")
