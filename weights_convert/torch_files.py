"""PyTorch and safetensors weight files, read without executing anything they contain.

- `.pth`/`.pt` files, zip format (PyTorch >= 1.6, `read_torch_zip`) and legacy format (the
  pre-1.6 sequence of pickles followed by raw storages, `read_legacy_torch`), are read by one
  restricted unpickler. `find_class` admits only the globals a state dict's pickle names
  (`collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`, `_rebuild_tensor`,
  `_rebuild_parameter`, the typed storage classes `torch.FloatStorage`, ...), each mapped to one of
  jaxprobe's inert stand-ins whose state a pickle's BUILD cannot set, never to torch; any other
  global (`os.system`, `builtins.eval`, a pickled `nn.Module` class) is refused before anything
  runs. Storages come from the file's own records through `persistent_load`, checked against each
  tensor's offset, sizes and strides.
- Memory is bounded by the file: an object the pickle shares (a memo reference) stays one object,
  each storage record is read once, and every tensor is a read-only view of its storage, so a
  small pickle referencing a tensor many times materialises its bytes once.
- `.safetensors`: the `safetensors` library (numpy API).

Every failure raises `JaxprobeError`, whatever the file holds. (The tests write this format with
their own oracle, `tests/torch_zip_writer.py`.)
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxprobe.errors import JaxprobeError
from jaxprobe.io import check_replaceable

from weights_convert import mapping

_STORAGES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16",
    "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
}
_STORAGE_NAMES = {v: k for k, v in _STORAGES.items()}
MAX_DEPTH = 64  # nesting of containers in a checkpoint
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
_LEGACY_PROTOCOL = 1001


def _dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


class _Refused(pickle.UnpicklingError):
    pass


class _StorageType(NamedTuple):
    """Stand-in for `torch.<X>Storage`: only a dtype tag inside a persistent id (immutable)."""

    name: str
    dtype: str


class _Storage:
    __slots__ = ("key", "dtype", "numel")

    def __init__(self, key, dtype, numel):
        self.key, self.dtype, self.numel = key, dtype, numel

    def __setstate__(self, state):
        raise _Refused("BUILD on a storage")


class _Tensor:
    """Stand-in for a rebuilt tensor: a view (offset, sizes, strides in elements) of a storage."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __setstate__(self, state):
        raise _Refused("BUILD on a tensor")


class _Admitted:
    """An admitted global: calls `fn` (REDUCE) and refuses every BUILD and attribute write.

    A bare function would not do: BUILD with a (state, slotstate) pair runs `setattr` on the
    object, so a pickle could set a rebuild function's `__defaults__` for the whole process.
    """

    __slots__ = ("_fn",)

    def __init__(self, fn):
        object.__setattr__(self, "_fn", fn)

    def __call__(self, *args):
        return self._fn(*args)

    def __setattr__(self, name, value):
        raise _Refused(f"a pickle may not set attribute {name!r} of an admitted global")

    def __setstate__(self, state):
        raise _Refused("BUILD on an admitted global")


def _ints(v, what):
    if not isinstance(v, tuple) or not all(isinstance(i, int) and not isinstance(i, bool) for i in v):
        raise _Refused(f"{what} must be a tuple of ints, got {type(v).__name__}")
    return v


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    if not isinstance(storage, _Storage):
        raise _Refused("a tensor's storage is not a storage record")
    if not isinstance(storage_offset, int) or isinstance(storage_offset, bool):
        raise _Refused("a tensor's storage offset is not an int")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride) or len(size) > 8:
        raise _Refused(f"sizes {size} and strides {stride} do not match")
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *_ignored):
    if not isinstance(data, _Tensor):
        raise _Refused("a parameter's data is not a tensor")
    return data


class _Frozen(type):
    """A class whose attributes a pickle cannot set (BUILD applied to the class object itself)."""

    def __setattr__(cls, name, value):
        raise _Refused(f"a pickle may not set attribute {name!r} of an admitted global")


class _Record(metaclass=_Frozen):
    """A pickled Python object the converter does not read, kept as inert data: NEWOBJ makes an
    empty instance and BUILD hands its state to `__setstate__`, which only stores it; no code of
    the object's own class runs (the class is never imported). pytorch_GAN_zoo saves its
    `BaseConfig` beside the state dicts ({"config", "netG", "netD", "avgG"}), so without this its
    hub checkpoints could not be read at all."""

    __slots__ = ("state",)

    def __setstate__(self, state):
        object.__setattr__(self, "state", state)


# Python objects stored beside the weights in known checkpoint formats, admitted as `_Record`s.
_RECORDS = {("models.utils.config", "BaseConfig")}

_ADMITTED = {
    ("collections", "OrderedDict"): _Admitted(collections.OrderedDict),
    ("torch._utils", "_rebuild_tensor_v2"): _Admitted(_rebuild_tensor),
    ("torch._utils", "_rebuild_tensor"): _Admitted(_rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): _Admitted(_rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): _Admitted(_rebuild_parameter),
    **{("torch", name): _StorageType(name, dtype) for name, dtype in _STORAGES.items()},
    **{record: _Record for record in _RECORDS},
}
ADMITTED_GLOBALS = tuple(f"{m}.{n}" for m, n in _ADMITTED)


class _Unpickler(pickle.Unpickler):
    """Admits only `_ADMITTED` globals and ('storage', type, key, location, numel[, None])
    persistent ids (5 fields in the zip format, 6 in the legacy one); `storages` collects
    {key: (dtype, numel)}, one dtype and size per key."""

    def __init__(self, data: bytes):
        super().__init__(io.BytesIO(data))
        self.storages = {}

    def find_class(self, module, name):  # noqa: D401 (also called unbound by _prescan)
        try:
            return _ADMITTED[(module, name)]
        except (KeyError, TypeError):
            raise _Refused(
                f"refused to load the global {module}.{name}: only tensor-rebuild and container globals are "
                f"admitted ({', '.join(ADMITTED_GLOBALS[:5])}, torch.<X>Storage); the file is not a plain "
                "state dict (save model.state_dict(), not the model object) or it is malicious"
            ) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)
                and isinstance(pid[4], int) and not isinstance(pid[4], bool) and pid[4] >= 0
                and (len(pid) == 5 or pid[5] is None)):
            raise _Refused(f"unsupported persistent id {str(pid)[:80]!r}")
        key, dtype, numel = pid[2], pid[1].dtype, pid[4]
        if self.storages.setdefault(key, (dtype, numel)) != (dtype, numel):
            raise _Refused(f"storage {key!r} is named with two dtypes or sizes")
        return _Storage(key, dtype, numel)


def _prescan(data: bytes, start: int = 0) -> int:
    """Check the opcodes of the pickle at `data[start:]` before anything is unpickled; return
    the offset just past its STOP.

    Statically named globals (GLOBAL, INST) must be admitted (STACK_GLOBAL's names come off the
    stack and are checked by `find_class`), and memo indices must be small: CPython grows (and
    zero-fills) its memo array up to the largest index a PUT names, so one LONG_BINPUT of 2**31
    would take gigabytes.
    """
    import pickletools

    stream = io.BytesIO(data)
    stream.seek(start)
    limit = len(data) + 16  # a well-formed pickle never memoizes more objects than it has bytes
    for op, arg, _pos in pickletools.genops(stream):
        if op.name in ("GLOBAL", "INST"):
            module, _, name = str(arg).partition(" ")
            if (module, name) not in _ADMITTED:
                _Unpickler.find_class(None, module, name)  # raises _Refused with the full message
        elif op.name in ("PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"):
            if not isinstance(arg, int) or not 0 <= arg <= limit:
                raise _Refused(f"pickle memo index {arg!r} out of range")
    return stream.tell()


def _unpickle(data: bytes, start: int = 0):
    """(object, storages named {key: (dtype, numel)}, end offset) of the pickle at `data[start:]`."""
    end = _prescan(data, start)
    unpickler = _Unpickler(data[start:end])
    return unpickler.load(), unpickler.storages, end


def _read_failures(path, read):
    """`read()`, every failure turned into one `JaxprobeError` naming the file."""
    try:
        return read()
    except (JaxprobeError, _Refused) as e:
        raise JaxprobeError(f"torch file: {path}: {e}") from None
    except Exception as e:  # BadZipFile, UnpicklingError, EOFError, struct.error, MemoryError...
        raise JaxprobeError(f"torch file: {path}: unreadable ({type(e).__name__}: {str(e)[:200]})") from None


def _storage_array(raw, dtype_name: str, numel: int, big_endian: bool = False) -> np.ndarray:
    """A storage record's bytes as a read-only 1-D array of `numel` native-order elements."""
    dtype = _dtype(dtype_name)
    arr = np.frombuffer(raw, dtype=dtype.newbyteorder(">" if big_endian else "<"), count=numel)
    if arr.dtype != dtype:  # swapped once per storage, not once per tensor
        arr = arr.astype(dtype)
        arr.flags.writeable = False
    return arr


# ================================================================ zip format


def _zip_layout(zf: zipfile.ZipFile):
    pkl = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pkl) != 1:
        raise JaxprobeError(f"expected one <archive>/data.pkl record, found {len(pkl)}")
    return pkl[0][: -len("data.pkl")]


def read_torch_zip(path):
    """The object saved in a zip-format `.pth`, tensors as read-only numpy arrays, through the
    restricted unpickler. Raises `JaxprobeError` for anything but tensors in plain containers."""
    def read():
        with zipfile.ZipFile(path) as zf:
            prefix = _zip_layout(zf)
            big_endian = False
            if f"{prefix}byteorder" in zf.namelist():
                order = zf.read(f"{prefix}byteorder").strip()
                if order not in (b"little", b"big"):
                    raise JaxprobeError(f"unknown byteorder record {order[:20]!r}")
                big_endian = order == b"big"
            for info in zf.infolist():  # zip-bomb guard: torch.save stores records uncompressed
                if info.compress_type != zipfile.ZIP_STORED and info.file_size > 100 * info.compress_size + (1 << 20):
                    raise JaxprobeError(f"record {info.filename} expands {info.file_size / max(info.compress_size, 1):.0f}x")
            obj, named, _end = _unpickle(zf.read(f"{prefix}data.pkl"))
            arrays = {}
            for key, (dtype, numel) in named.items():
                name = f"{prefix}data/{key}"
                try:
                    info = zf.getinfo(name)
                except KeyError:
                    raise JaxprobeError(f"storage {key!r} has no record {name} in the archive") from None
                nbytes = numel * _dtype(dtype).itemsize
                if info.file_size != nbytes:  # checked before the record is read
                    raise JaxprobeError(f"storage {key!r}: {numel} {dtype} elements need {nbytes} bytes, the "
                                        f"record holds {info.file_size}")
                arrays[key] = _storage_array(zf.read(name), dtype, numel, big_endian)
            return _materialize(obj, arrays)

    return _read_failures(path, read)


# ================================================================ legacy format


def read_legacy_torch(path):
    """The object saved in a legacy (pre-1.6, or `_use_new_zipfile_serialization=False`) `.pth`.

    The format is five pickles (magic number, protocol version 1001, system info, the object, the
    sorted storage keys) and then, per key, its element count as a little-endian int64 and its
    little-endian bytes. Every pickle goes through the restricted unpickler; no torch needed.
    """
    def read():
        with open(path, "rb") as f:
            data = f.read()
        magic, _, pos = _unpickle(data)
        if magic != _LEGACY_MAGIC:
            raise JaxprobeError("not a legacy PyTorch file (its first pickle is not torch's magic number)")
        version, _, pos = _unpickle(data, pos)
        if version != _LEGACY_PROTOCOL:
            raise JaxprobeError(f"legacy protocol version {str(version)[:20]}, expected {_LEGACY_PROTOCOL}")
        _sys_info, _, pos = _unpickle(data, pos)
        obj, named, pos = _unpickle(data, pos)
        keys, _, pos = _unpickle(data, pos)
        if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys) and len(set(keys)) == len(keys)):
            raise JaxprobeError("the storage key list is not a list of distinct strings")
        if set(keys) != set(named):
            raise JaxprobeError(f"storage records {sorted(set(keys) ^ set(named))[:5]} are listed or named but not both")
        arrays = {}
        for key in keys:
            (numel,) = struct.unpack_from("<q", data, pos)
            dtype, want = named[key]
            if numel != want:
                raise JaxprobeError(f"storage {key!r} records {numel} elements, its tensors name {want}")
            nbytes = numel * _dtype(dtype).itemsize
            if pos + 8 + nbytes > len(data):
                raise JaxprobeError(f"storage {key!r} needs {nbytes} bytes past the end of the file")
            arrays[key] = _storage_array(memoryview(data)[pos + 8:pos + 8 + nbytes], dtype, numel)
            pos += 8 + nbytes
        return _materialize(obj, arrays)

    return _read_failures(path, read)


def _tensor_view(t: _Tensor, storage: np.ndarray) -> np.ndarray:
    """Tensor `t` as a read-only view of its storage's array, after checking it stays inside."""
    if t.offset < 0 or any(s < 0 for s in t.size) or any(s < 0 for s in t.stride):
        raise JaxprobeError(f"negative offset, size or stride ({t.offset}, {t.size}, {t.stride})")
    numel = 1
    for n in t.size:
        numel *= n  # Python ints: sizes of 2**32 must not wrap
    if numel == 0:
        return np.zeros(t.size, storage.dtype)
    if numel > len(storage):
        raise JaxprobeError(f"a tensor of {numel} elements is larger than its storage of {len(storage)}")
    last = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride))
    if last >= len(storage):
        raise JaxprobeError(f"a tensor (offset {t.offset}, sizes {t.size}, strides {t.stride}) "
                            f"reaches past its storage of {len(storage)} elements")
    item = storage.dtype.itemsize
    return np.lib.stride_tricks.as_strided(storage[t.offset:], shape=t.size,
                                           strides=tuple(s * item for s in t.stride), writeable=False)


def _materialize(root, arrays: dict):
    """`root` with tensors as views of `arrays` ({storage key: array}) and containers rebuilt.

    An object the pickle shares is rebuilt once and stays shared (a memo by identity), so the
    work and memory are linear in the pickle's size, however often it references an object.
    """
    memo = {}

    def walk(obj, depth):
        if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
            return obj
        if id(obj) in memo:
            return memo[id(obj)]
        if depth > MAX_DEPTH:
            raise JaxprobeError(f"containers nested deeper than {MAX_DEPTH}")
        if isinstance(obj, _Tensor):
            out = _tensor_view(obj, arrays[obj.storage.key])
        elif isinstance(obj, (_Storage, _StorageType, _Admitted, _Frozen)):
            raise JaxprobeError("a bare storage or global where a tensor was expected")
        elif isinstance(obj, _Record):
            out = None  # a saved config object: not weights, and never run
        elif isinstance(obj, dict):
            if not all(k is None or isinstance(k, (bool, int, float, str, bytes)) for k in obj):
                raise JaxprobeError("a dict key that is not a string or a number")
            out = type(obj)((k, walk(v, depth + 1)) for k, v in obj.items())
        elif type(obj) in (list, tuple):
            out = type(obj)(walk(v, depth + 1) for v in obj)
        else:
            raise JaxprobeError(f"unexpected object of type {type(obj).__name__}")
        memo[id(obj)] = out
        return out

    return walk(root, 0)


# ================================================================ other formats


def read_safetensors(path) -> dict:
    """{name: numpy array} of a `.safetensors` file (the safetensors library's numpy API)."""
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise JaxprobeError("safetensors: the safetensors package is not installed") from None
    try:
        return dict(load_file(str(path)))
    except Exception as e:  # SafetensorError and friends
        raise JaxprobeError(f"safetensors: {path}: unreadable ({type(e).__name__}: {str(e)[:200]})") from None


MAX_WEIGHTS_BYTES = 16 << 30  # a weights file jaxprobe converts (VGG16's is 528 MB)


class Loaded(NamedTuple):
    """A state dict read from a file: its flat tensors and the file format they came from."""

    tensors: dict  # flat {name: numpy array}
    format: str  # "pytorch-zip", "pytorch-legacy" or "safetensors"


def detect_format(path) -> str:
    """The weight file's format, "pytorch-zip", "pytorch-legacy" or "safetensors", by its leading
    bytes (and a .safetensors suffix); raise for anything else."""
    from jaxprobe.io import check_regular_file

    check_regular_file(path, max_bytes=MAX_WEIGHTS_BYTES, what="file")
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise JaxprobeError(f"file: cannot read {path}: {e.strerror or e}") from None
    if head[:4] == b"PK\x03\x04":
        return "pytorch-zip"
    if path.suffix == ".safetensors":
        return "safetensors"
    if head[:1] == b"\x80":
        return "pytorch-legacy"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    raise JaxprobeError(
        f"file: {path} is neither a PyTorch zip archive, a legacy PyTorch pickle nor a safetensors file"
    )


def _select(obj, key, path):
    if key:
        for part in key.split("."):
            if not isinstance(obj, dict) or part not in obj:
                have = ", ".join(map(str, list(obj)[:20])) if isinstance(obj, dict) else type(obj).__name__
                raise JaxprobeError(f"key: {path} has no entry {part!r} (of --key {key!r}); it has: {have}")
            obj = obj[part]
    if not isinstance(obj, dict):
        raise JaxprobeError(f"file: {path} holds a {type(obj).__name__}, not a state dict")
    arrays = {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}
    others = [k for k in obj if k not in arrays]
    if others:
        dicts = [str(k) for k in others if isinstance(obj[k], dict)]
        hint = f"; choose a state dict with --key ({', '.join(dicts)})" if dicts else ""
        raise JaxprobeError(f"file: {path}: entries that are not tensors: {', '.join(map(str, others[:10]))}{hint}")
    if not all(isinstance(k, str) for k in arrays):
        raise JaxprobeError(f"file: {path}: a state dict's keys must be strings")
    return arrays


def load_state_dict(path, *, key: str | None = None) -> Loaded:
    """The flat {name: numpy array} state dict of a `.pth`/`.pt` (zip or legacy) or `.safetensors`.

    `key` selects a nested state dict ("netG", "model.state_dict") in a checkpoint that holds more.
    """
    fmt = detect_format(path)
    if fmt == "safetensors":
        obj = read_safetensors(path)
    elif fmt == "pytorch-zip":
        obj = read_torch_zip(path)
    else:
        obj = read_legacy_torch(path)
    return Loaded(_select(obj, key, path), fmt)


# How to convert a network no table describes (the end of every named architecture's mapping error).
OWN_NETWORK = ("a network of your own: describe it in a Caffe prototxt and run `jaxprobe convert torch FILE "
               "--prototxt NET.prototxt [--map MAP.json]` (without --map the state dict's order fills the "
               "prototxt's layers), or in Python pass weights_convert.torch_model an Arch whose builder "
               "(registered with jaxprobe.models.zoo.register) builds the network and whose rules map each key")


def torch_model(path, arch, *, key: str | None = None, name: str | None = None):
    """The jaxprobe `Model` of a PyTorch/safetensors state dict of architecture `arch`, in memory.

    `arch` names a table in `weights_convert.mapping.ARCHITECTURES`, or is an `Arch` of the
    caller's own: a builder registered with `jaxprobe.models.zoo.register` (so that
    `jaxprobe.load` rebuilds the network from the manifest), its kwargs, role, input shape, pixel
    convention (or None) and `Rule`s, the key map. `key` selects a nested state dict. Its manifest
    records the source (name, sha256, format), the mapping and the preprocessing.
    """
    if isinstance(arch, mapping.Arch):
        spec, arch_name = arch, arch.builder
    elif isinstance(arch, str) and arch in mapping.ARCHITECTURES:
        spec, arch_name = mapping.ARCHITECTURES[arch], arch
    else:
        raise JaxprobeError(f"arch: unknown architecture {arch!r}; expected one of "
                            f"{', '.join(sorted(mapping.ARCHITECTURES))} or a weights_convert.Arch")
    loaded = load_state_dict(path, key=key)
    tensors, origin = mapping.rename_keys(loaded.tensors, spec.rename)
    kwargs = dict(spec.kwargs)
    if spec.infer is not None:
        kwargs.update(spec.infer(tensors))
    graphdef, abstract, names = mapping.abstract_network(spec.builder, kwargs)
    try:
        state, records = mapping.map_weights(mapping.resolve(spec.rules, kwargs), tensors, graphdef, abstract, names,
                                             ignore=mapping.resolve(spec.ignore, kwargs),
                                             what=f"{Path(path).name} as {arch_name}")
    except JaxprobeError as e:
        raise JaxprobeError(f"{e} | {OWN_NETWORK}" if spec is not arch else str(e)) from None
    for r in records:
        r["source"] = origin.get(r["source"], r["source"])
    # What the table leaves out on purpose (PGAN's fading-in RGB heads) is named, never dropped unseen.
    mapped = {r["source"] for r in records}
    ignored = sorted(origin.get(k, k) for k in tensors if origin.get(k, k) not in mapped)
    if spec.fold_input_std:
        state = mapping.fold_input_std(state, spec.fold_input_std)
    manifest = {
        "architecture": {"builder": spec.builder, "kwargs": {k: list(v) if isinstance(v, tuple) else v
                                                             for k, v in kwargs.items()}},
        "role": spec.role,
        "input_shape": list(mapping.resolve(spec.input_shape, kwargs)),
        "source": {"format": loaded.format, "files": [mapping.source_record(path, loaded.format)],
                   "converter": "weights_convert.torch_files", "architecture": arch_name, "key": key,
                   **({"ignored": ignored} if ignored else {})},
        "mapping": records,
    }
    if spec.pixels is not None:
        pixels = manifest["pixels"] = dict(spec.pixels, mean=list(spec.pixels.get("mean", ())))
        manifest["preprocessing"] = {"channel_order": pixels["channels"], "mean": pixels["mean"],
                                     "scale": pixels.get("scale", 1.0), "range": [pixels["low"], pixels["high"]]}
        if spec.fold_input_std:
            manifest["preprocessing"]["std_folded_into_first_layer"] = list(spec.fold_input_std)
    if spec.latent:
        manifest["latent"] = dict(mapping.resolve(spec.latent, kwargs))
    return mapping.make_model(name or Path(path).stem, graphdef, state, names, manifest)


def convert_torch(path, arch, out, *, key: str | None = None, name: str | None = None, force: bool = False):
    """Convert a PyTorch/safetensors state dict of architecture `arch` (a name or an `Arch`, as
    `torch_model` takes) into model directory `out` (orbax checkpoint + manifest, written
    atomically; a directory jaxprobe did not write is refused before any work unless `force`).
    Returns the converted `Model`."""
    inputs = [path]  # an output directory holding the file it reads would delete it
    check_replaceable(out, force=force, inputs=inputs)
    model = torch_model(path, arch, key=key, name=name)
    out_path = mapping.write_model(model, out, model.manifest, force=force, inputs=inputs)
    return model.replace(name=name or str(out_path))
