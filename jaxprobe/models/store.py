"""Saving and loading probe-able models: an orbax checkpoint plus `manifest.json`.

A model directory holds `manifest.json` (architecture builder and its arguments, role, input shape,
pixel convention, provenance, quality figures, and the sha256 of every other file stored beside
the weights) and `params/` (an orbax checkpoint of the network's variables). `load(name_or_path)`
accepts a shipped model's name or such a directory, checks the manifest field by field and the
stored files against their hashes before it builds anything. Writes go to a temporary sibling
directory that is renamed into place, so nothing half-written is left behind.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
import sys
import traceback
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from jaxprobe.errors import JaxprobeError
from jaxprobe.io import atomic_dir, check_path_text, dumps_json, read_json, sha256_file
from jaxprobe.models.pixels import PixelConvention
from jaxprobe.models.probe import Model
from jaxprobe.models import zoo
# Imported for their side effect: they register their builders in `zoo`, so that `load(DIR)` rebuilds
# a converted or paper-scale model whichever module the caller imported first (`import jaxprobe` is
# lazy and imports none of them).
from jaxprobe.models import archs_paper, archs_small, caffe_net, dae, excite_gen  # noqa: F401,E402

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"  # package data, beside the floors
SHIPPED = ("classifier", "dcgan", "dcgan_critic", "dcgan2d", "dcgan2d_critic", "fc_generator", "h_dae", "dae")
FORMAT = "jaxprobe-model/1"
ROLES = ("classifier", "generator", "critic", "denoiser")
PRIORS = ("normal", "uniform")
_PIXEL_FIELDS = ("low", "high", "channels", "mean", "scale")
# The manifest fields that decide what `load` builds and how the model is used: their sha256
# (`record_sha256`) is written with the weights' hashes, so an edited role or architecture is seen.
RECORDED = ("format", "architecture", "role", "input_shape", "pixels", "latent", "layer_names", "files", "weights",
            "encoder", "critic", "code_mean", "caffe")
MAX_MANIFEST_BYTES = 16 << 20
VERIFY_ENV = "JAXPROBE_VERIFY"  # "0": `load` skips the weights' hashes (the directory was verified otherwise)


def weight_hashes(directory) -> dict:
    """{"params/<path>": sha256} of every file of a model directory's checkpoint; a link or special
    file in it is an error (a checkpoint jaxprobe wrote has none)."""
    directory = Path(directory)
    root = directory / "params"
    hashes = {}
    for top, dirs, files in os.walk(root, followlinks=False):
        for entry in sorted(dirs + files):
            full = Path(top) / entry
            if full.is_symlink():
                raise JaxprobeError(f"model: {full} is a link; a model directory's checkpoint holds only its own files")
        for f in files:
            full = Path(top) / f
            if not full.is_file():
                raise JaxprobeError(f"model: {full} is not a regular file")
            hashes[full.relative_to(directory).as_posix()] = sha256_file(full)
    return dict(sorted(hashes.items()))


def record_hash(manifest: dict) -> str:
    """sha256 of the `RECORDED` fields of `manifest` as canonical JSON (sorted keys, no spaces)."""
    record = {k: manifest.get(k) for k in RECORDED}
    return hashlib.sha256(json.dumps(record, sort_keys=True, separators=(",", ":"),
                                     allow_nan=False).encode()).hexdigest()


def seal_manifest(manifest: dict, directory) -> dict:
    """`manifest` with `weights` (the checkpoint files' sha256 in `directory`) and `record_sha256`
    added: what `load` verifies."""
    manifest = json.loads(dumps_json(manifest))  # as it will be read back (tuples as lists, inf as null)
    manifest["weights"] = weight_hashes(directory)
    manifest["record_sha256"] = record_hash(manifest)
    return manifest


def _verify(directory: Path, manifest: dict, path) -> None:
    """The manifest's recorded fields and every checkpoint file match the hashes written with them."""
    if not isinstance(manifest.get("weights"), dict) or not isinstance(manifest.get("record_sha256"), str):
        raise JaxprobeError(f"model: {directory} records no sha256 of its weights (written by an older jaxprobe): "
                            f"save or convert it again, or load it with verify=False ({VERIFY_ENV}=0) if you "
                            "have checked it another way")
    if record_hash(manifest) != manifest["record_sha256"]:
        raise JaxprobeError(f"manifest: {path} was edited after the model was written: its fields (role, "
                            "architecture, input_shape, pixels, ...) no longer match the record_sha256 written "
                            "with the weights; restore it, or save the model again")
    now = weight_hashes(directory)
    want = manifest["weights"]
    if now != want:
        diff = sorted(set(now) ^ set(want)) or sorted(k for k in now if now[k] != want.get(k))
        raise JaxprobeError(f"model: {directory}: the checkpoint's files do not match the sha256 its manifest "
                            f"records ({diff[0]}{' and others' if len(diff) > 1 else ''}): they were changed, "
                            "copied or replaced after the model was written")


def _verify_default() -> bool:
    return os.environ.get(VERIFY_ENV, "1").strip().lower() not in ("0", "no", "false", "off")


def _builder_arguments(builder) -> tuple | None:
    """The keyword arguments a zoo builder takes from a manifest (None: it takes any)."""
    params = inspect.signature(builder).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return tuple(p.name for p in params if p.name not in ("rngs", "directory")
                 and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD))


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
    try:
        return zoo.ARCHITECTURES[builder](**kwargs, rngs=nnx.Rngs(seed))
    except JaxprobeError:
        raise
    except Exception as e:  # a manifest's values are data: a builder's TypeError is a bad manifest
        raise JaxprobeError(f"architecture: builder {builder!r} cannot build from kwargs "
                            f"{architecture.get('kwargs')}: {type(e).__name__}: {str(e)[:200]}") from e


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
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), nnx.to_pure_dict(model.params))


def save_model(model: Model, directory, manifest: dict | None = None, files: dict | None = None, *,
               force: bool = False, inputs=()) -> Path:
    """Write `model` (params and manifest) to `directory` atomically; returns the path.

    `files` ({name in the directory: source path}) are copied in beside them (a converted model's
    prototxt, say). An existing directory is replaced only once the new one is complete, and only
    if jaxprobe wrote it or it is empty, unless `force` (`jaxprobe.io.check_replaceable`), and never
    one holding a file of `inputs` (what the caller read). The manifest records the sha256 of
    every checkpoint file and of its own recorded fields (`seal_manifest`), which `load` checks.
    """
    import shutil

    import orbax.checkpoint as ocp

    target = Path(directory).resolve()
    manifest = dict(model.manifest if manifest is None else manifest)
    manifest.update(format=FORMAT, role=model.role, input_shape=list(model.input_shape),
                    layer_names=list(model.layer_names))
    if model.pixels is not None:
        manifest["pixels"] = model.pixels.to_dict()
    if files:
        manifest["files"] = {name: sha256_file(src) for name, src in files.items()}
    with atomic_dir(target, force=force, name="directory", inputs=inputs) as tmp:
        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save(tmp / "params", nnx.to_pure_dict(model.params))
        (tmp / "manifest.json").write_text(dumps_json(seal_manifest(manifest, tmp)))
        for name, src in (files or {}).items():
            shutil.copyfile(src, tmp / name)
    return target


def read_manifest(directory) -> dict:
    """The manifest of a model directory, every field jaxprobe reads checked (`check_manifest`)."""
    path = Path(directory) / "manifest.json"
    if not os.path.lexists(path):
        raise JaxprobeError(f"path: {directory} is not a jaxprobe model directory (no manifest.json)")
    try:
        manifest = read_json(path, what="manifest", max_bytes=MAX_MANIFEST_BYTES)
    except JaxprobeError as e:
        raise JaxprobeError(f"manifest: {path} is corrupt ({str(e).removeprefix('manifest: ')[:300]})") from None
    check_manifest(manifest, path)
    return manifest


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_manifest(manifest, path) -> None:
    """Raise one `JaxprobeError` naming the first field of `manifest` that jaxprobe cannot use.

    Checked: the format tag, `architecture` (a known builder and only the keyword arguments it
    takes, as an object), `role` (one of `ROLES`), `input_shape` (positive ints), `pixels` (a
    `PixelConvention`'s fields with numbers where numbers belong), `latent` (`dim`, `prior`),
    `layer_names` (strings) and `files` ({name: sha256}). Other fields (training, quality,
    provenance) are not read by `load`.
    """
    def bad(field, expected, got):
        return JaxprobeError(f"manifest: {path}: {field}: expected {expected}, got {json.dumps(got)[:120]}")

    if not isinstance(manifest, dict):
        raise bad("manifest", "a JSON object", manifest)
    if manifest.get("format", FORMAT) != FORMAT:
        raise JaxprobeError(f"manifest: {path}: format {manifest['format']!r} is not {FORMAT!r}, the one this "
                            "jaxprobe reads; convert the source weights again (jaxprobe convert ...) or save "
                            "the model again with this version")
    for key in ("architecture", "role", "input_shape"):
        if key not in manifest:
            raise JaxprobeError(f"manifest: {path} lacks the field {key!r}")
    arch = manifest["architecture"]
    if not isinstance(arch, dict) or not isinstance(arch.get("builder"), str):
        raise bad("architecture", 'an object {"builder": NAME, "kwargs": {...}}', arch)
    if arch["builder"] not in zoo.ARCHITECTURES:
        raise JaxprobeError(f"architecture: unknown builder {arch['builder']!r}; expected one of "
                            f"{', '.join(sorted(zoo.ARCHITECTURES))}")
    kwargs = arch.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise bad("architecture.kwargs", "an object of keyword arguments", kwargs)
    takes = _builder_arguments(zoo.ARCHITECTURES[arch["builder"]])
    unknown = [k for k in kwargs if takes is not None and k not in takes]
    if unknown:
        raise JaxprobeError(f"manifest: {path}: architecture.kwargs: builder {arch['builder']!r} takes no "
                            f"argument {unknown[0]!r}; it takes {', '.join(takes) or 'none'}")
    if manifest["role"] not in ROLES:
        raise bad("role", " or ".join(ROLES), manifest["role"])
    shape = manifest["input_shape"]
    if not (isinstance(shape, list) and shape and all(_is_int(d) and d > 0 for d in shape)):
        raise bad("input_shape", "a list of positive ints", shape)
    if manifest.get("pixels") is not None:
        _check_pixels(manifest["pixels"], bad)
    latent = manifest.get("latent")
    if latent is not None and not (isinstance(latent, dict) and latent.get("prior", "normal") in PRIORS
                                   and _is_int(latent.get("dim", 1)) and latent.get("dim", 1) > 0):
        raise bad("latent", f'{{"dim": a positive int, "prior": {" or ".join(PRIORS)}}}', latent)
    names = manifest.get("layer_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise bad("layer_names", "a list of strings", names)
    files = manifest.get("files")
    if files is not None and not (isinstance(files, dict) and all(
            isinstance(v, str) and len(v) == 64 for v in files.values())):
        raise bad("files", "an object {file name: sha256 hex digest}", files)
    weights = manifest.get("weights")
    if weights is not None and not (isinstance(weights, dict) and all(
            isinstance(k, str) and isinstance(v, str) and len(v) == 64 for k, v in weights.items())):
        raise bad("weights", "an object {checkpoint file: sha256 hex digest}", weights)


def _check_pixels(pixels, bad) -> None:
    if not isinstance(pixels, dict) or set(pixels) - set(_PIXEL_FIELDS):
        raise bad("pixels", f"an object with fields {', '.join(_PIXEL_FIELDS)}", pixels)
    for key in ("low", "high", "scale"):
        if key in pixels and not _is_number(pixels[key]):
            raise bad(f"pixels.{key}", "a finite number", pixels[key])
    mean = pixels.get("mean", [])
    if not (isinstance(mean, list) and all(_is_number(m) for m in mean)):
        raise bad("pixels.mean", "a list of finite numbers", mean)
    if pixels.get("scale", 1.0) <= 0:
        raise bad("pixels.scale", "a positive number", pixels["scale"])
    try:
        convention = PixelConvention.from_dict(pixels)
    except JaxprobeError as e:
        raise bad("pixels", f"a valid pixel convention ({e})", pixels) from None
    if len(mean) not in (0, 1, convention.n_channels):
        raise bad("pixels.mean", f"0, 1 or {convention.n_channels} values", mean)


def _stored_files(manifest) -> dict:
    """{file name in the model directory: sha256} that the manifest vouches for.

    Manifests written before `files` existed record the copy of a source file (a converted Caffe
    net's prototxt) only in `source.files`, under a format named like the builder argument that
    names the copy; the same hash holds for both.
    """
    if "files" in manifest:
        return dict(manifest["files"])
    kwargs = manifest["architecture"].get("kwargs", {})
    sources = (manifest.get("source") or {}).get("files") or []
    return {kwargs[r["format"]]: r.get("sha256") for r in sources
            if isinstance(r, dict) and isinstance(kwargs.get(r.get("format")), str)}


def _check_stored_files(directory: Path, manifest: dict, path) -> None:
    """Every file a builder reads from the directory lies inside it and matches its recorded sha256."""
    builder = manifest["architecture"]["builder"]
    if builder not in zoo.NEEDS_DIRECTORY:
        return
    kwargs, recorded = manifest["architecture"].get("kwargs", {}), _stored_files(manifest)
    for arg in zoo.NEEDS_DIRECTORY[builder]:
        name = kwargs.get(arg)
        if (not isinstance(name, str) or "\x00" in name or Path(name).name != name
                or name in ("", ".", "..")):
            raise JaxprobeError(f"manifest: {path}: architecture.kwargs.{arg}: expected the name of a file in the "
                                f"model directory, got {json.dumps(name)[:120]}")
        file = (directory / name).resolve()
        if file.parent != directory.resolve() or not file.is_file():
            raise JaxprobeError(f"model: {directory} has no file {name!r} (architecture.kwargs.{arg}) inside it")
        if recorded.get(name) is None:
            raise JaxprobeError(f"manifest: {path}: files: no sha256 recorded for {name!r}; convert again")
        if sha256_file(file) != recorded[name]:
            raise JaxprobeError(f"model: {file} does not match the sha256 its manifest records: it was changed "
                                "after the model was written; restore it or convert the model again")


def load(name_or_path, *, verify: bool | None = None) -> Model:
    """Load a shipped model by name ("dcgan", "classifier", ...) or a model directory.

    Returns a `Model` whose `forward`, `up_to` and `from_` are pure functions of (params, input).
    Raises `JaxprobeError` for an unknown name, a missing directory, a corrupt checkpoint, a
    `params/` that is a link, and (with `verify`) a checkpoint file or recorded manifest field
    that does not match the sha256 written with it. `verify=None` verifies unless the environment
    sets `JAXPROBE_VERIFY=0` (for directories checked another way: hashing costs about 2 s per GB).
    """
    import orbax.checkpoint as ocp

    if verify is None:
        verify = _verify_default()
    s = check_path_text(name_or_path, "model") if isinstance(name_or_path, (str, os.PathLike)) else str(name_or_path)
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
    params_dir = directory / "params"
    if params_dir.is_symlink() or not params_dir.resolve().is_relative_to(directory.resolve()):
        raise JaxprobeError(f"model: {params_dir} is a link; a model directory's weights must lie inside it")
    _check_stored_files(directory, manifest, directory / "manifest.json")
    # Built shape-only: running the initializers would compile one small program per parameter
    # shape (seconds per model on a CPU) only to overwrite every value.
    model = new_model(name, manifest, directory=directory, shape_only=True)
    _check_structure(model, manifest, directory / "manifest.json")
    if verify:
        _verify(directory, manifest, directory / "manifest.json")
    abstract = _abstract(model)
    _quiet_failed_restore_reports()  # before: a failing restore's other reads report while it unwinds
    try:
        with ocp.StandardCheckpointer(multiprocessing_options=_process_local()) as ckptr:
            restored = ckptr.restore((directory / "params").resolve(), _on_local_device(abstract))
    except Exception as e:  # orbax raises many types for unreadable data
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        first = first.split(" [tensorstore_spec=")[0]
        raise JaxprobeError(f"checkpoint: cannot read {directory / 'params'}: {first}") from e
    _check_restored(directory, abstract, restored)
    params = jax.tree.map(lambda a: a, model.params)
    nnx.replace_by_pure_dict(params, restored)
    return model.replace(params=params)


def _process_local():
    """Orbax's options for a restore that this process does alone.

    Under `jax.distributed` orbax restores collectively by default: every process joins barriers
    and the checkpoint's recorded sharding (the saving process's device) is read against the
    global topology, so a load fails ("Topology mismatch", or a key-value timeout in the process
    that waits). A model's parameters are small and every process wants all of them, so each
    process reads the whole checkpoint itself, with barriers over itself only (a no-op without
    `jax.distributed`).
    """
    import orbax.checkpoint as ocp

    me = jax.process_index()
    return ocp.options.MultiprocessingOptions(primary_host=me, active_processes={me},
                                              barrier_sync_key_prefix=f"jaxprobe_load_{me}")


def _on_local_device(abstract):
    """The restore target with every array on this process's first device (whole, not sharded)."""
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device), abstract)


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


def _check_structure(model: Model, manifest: dict, path) -> None:
    """The network built from the manifest takes its `input_shape` and has its `layer_names`."""
    names = manifest.get("layer_names")
    if names is not None and tuple(names) != model.layer_names:
        raise JaxprobeError(f"manifest: {path}: layer_names {names} are not the network's "
                            f"{list(model.layer_names)}")
    x = jax.ShapeDtypeStruct((1,) + model.input_shape, np.float32)
    try:
        jax.eval_shape(model.forward, model.params, x)
    except Exception as e:  # a shape error from any layer of any builder
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise JaxprobeError(f"manifest: {path}: input_shape {list(model.input_shape)} does not fit the network "
                            f"its architecture builds ({first[:200]})") from None


def _quiet_failed_restore_reports() -> None:
    """Drop the reports a failed orbax restore leaves behind it on stderr, and nothing else.

    When one read fails, orbax closes its asyncio loop while TensorStore still completes the other
    reads: each completion's `loop.call_soon_threadsafe` raises "Event loop is closed" in a
    TensorStore thread (reported through `sys.unraisablehook` as a bare traceback), and each
    failed read's future is logged by asyncio as "Future exception was never retrieved", all after
    jaxprobe's own one-line error. Reads not yet started when the restore failed are closed
    coroutines, whose GeneratorExit orbax reports as a read error when they are collected.
    """
    import logging

    previous = sys.unraisablehook
    if getattr(previous, "_jaxprobe_quiet", False):
        return

    def hook(report):
        frames = [f.f_code.co_name for f, _ in traceback.walk_tb(report.exc_traceback)]
        loop_closed = (isinstance(report.exc_value, RuntimeError) and str(report.exc_value) == "Event loop is closed"
                       and "call_soon_threadsafe" in frames)
        # A read coroutine of the failed restore closed before it ran (its GeneratorExit wrapped
        # by orbax): collected later, it would be reported under whatever runs then.
        read_closed = (getattr(report.object, "__qualname__", "") == "_read_array_index_and_device_put"
                       and str(report.exc_value).startswith("Encountered error while reading array index"))
        if not (loop_closed or read_closed):
            previous(report)

    def unretrieved_tensorstore_error(record) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (str(record.msg).startswith(("Future exception was never retrieved",
                                                "Task exception was never retrieved"))
                    and "tensorstore_spec=" in str(exc))

    hook._jaxprobe_quiet = True
    sys.unraisablehook = hook
    logging.getLogger("asyncio").addFilter(unretrieved_tensorstore_error)
