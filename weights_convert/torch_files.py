"""PyTorch and safetensors weight files, read without executing anything they contain.

- Zip-format `.pth`/`.pt` (PyTorch >= 1.6): always read by `read_torch_zip`, a restricted
  unpickler. `find_class` admits only the globals a state dict's pickle names,
  `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` (and `_rebuild_tensor`,
  `_rebuild_parameter`) and the typed storage classes (`torch.FloatStorage`, ...), and maps each
  to jaxprobe's own inert stand-in, never to torch; any other global (`os.system`,
  `builtins.eval`, a pickled `nn.Module` class) is refused before anything runs. Storages come
  from the archive's `data/<key>` entries through `persistent_load`, checked against the tensor's
  offset, sizes and strides before any array is built.
- Legacy (pre-zip) pickles need torch: `torch.load(weights_only=True)` when torch is importable,
  an error otherwise.
- `.safetensors`: the `safetensors` library (numpy API).

`save_torch_zip` writes the same zip layout from numpy arrays (no torch needed), for round trips
and tests. Every failure raises `JaxprobeError`, whatever the file holds.
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


def _dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


class _Refused(pickle.UnpicklingError):
    pass


class _StorageType(NamedTuple):
    """Stand-in for `torch.<X>Storage`: only a dtype tag inside a persistent id."""

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


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    return _rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if not isinstance(data, _Tensor):
        raise _Refused("a parameter's data is not a tensor")
    return data


_ADMITTED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    **{("torch", name): _StorageType(name, dtype) for name, dtype in _STORAGES.items()},
}
ADMITTED_GLOBALS = tuple(f"{m}.{n}" for m, n in _ADMITTED)


class _Unpickler(pickle.Unpickler):
    """Admits only `_ADMITTED` globals and ('storage', type, key, location, numel) persistent ids."""

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
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)
                and isinstance(pid[4], int) and not isinstance(pid[4], bool) and pid[4] >= 0):
            raise _Refused(f"unsupported persistent id {str(pid)[:80]!r}")
        return _Storage(pid[2], pid[1].dtype, pid[4])


def _prescan(data: bytes) -> None:
    """Check a pickle's opcodes before anything is unpickled.

    Statically named globals (GLOBAL, INST) must be admitted (STACK_GLOBAL's names come off the
    stack and are checked by `find_class`), and memo indices must be small: CPython grows (and
    zero-fills) its memo array up to the largest index a PUT names, so one LONG_BINPUT of 2**31
    would take gigabytes.
    """
    import pickletools

    limit = len(data) + 16  # a well-formed pickle never memoizes more objects than it has bytes
    for op, arg, _pos in pickletools.genops(data):
        if op.name in ("GLOBAL", "INST"):
            module, _, name = str(arg).partition(" ")
            if (module, name) not in _ADMITTED:
                _Unpickler.find_class(None, module, name)  # raises _Refused with the full message
        elif op.name in ("PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"):
            if not isinstance(arg, int) or not 0 <= arg <= limit:
                raise _Refused(f"pickle memo index {arg!r} out of range")


# ================================================================ zip format


def _zip_layout(zf: zipfile.ZipFile):
    pkl = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pkl) != 1:
        raise JaxprobeError(f"expected one <archive>/data.pkl record, found {len(pkl)}")
    return pkl[0][: -len("data.pkl")]


def read_torch_zip(path):
    """The object saved in a zip-format `.pth`, tensors as numpy arrays, through the restricted
    unpickler. Raises `JaxprobeError` for anything but tensors in plain containers."""
    try:
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
            data = zf.read(f"{prefix}data.pkl")
            _prescan(data)
            obj = _Unpickler(io.BytesIO(data)).load()
            cache = {}

            def storage_bytes(st: _Storage):
                if st.key not in cache:
                    name = f"{prefix}data/{st.key}"
                    try:
                        info = zf.getinfo(name)
                    except KeyError:
                        raise JaxprobeError(f"storage {st.key!r} has no record {name} in the archive") from None
                    itemsize = _dtype(st.dtype).itemsize
                    if info.file_size != st.numel * itemsize:
                        raise JaxprobeError(
                            f"storage {st.key!r}: {st.numel} {st.dtype} elements need {st.numel * itemsize} "
                            f"bytes, the record holds {info.file_size}"
                        )
                    cache[st.key] = zf.read(name)
                return cache[st.key]

            return _materialize(obj, storage_bytes, big_endian, 0)
    except JaxprobeError as e:
        raise JaxprobeError(f"torch file: {path}: {e}") from None
    except _Refused as e:
        raise JaxprobeError(f"torch file: {path}: {e}") from None
    except Exception as e:  # BadZipFile, UnpicklingError, EOFError, struct.error, MemoryError...
        raise JaxprobeError(f"torch file: {path}: unreadable ({type(e).__name__}: {str(e)[:200]})") from None


def _tensor_array(t: _Tensor, storage_bytes, big_endian: bool) -> np.ndarray:
    st = t.storage
    dtype = _dtype(st.dtype)
    if big_endian and dtype.itemsize > 1:
        dtype = dtype.newbyteorder(">")
    if t.offset < 0 or any(s < 0 for s in t.size) or any(s < 0 for s in t.stride):
        raise JaxprobeError(f"negative offset, size or stride ({t.offset}, {t.size}, {t.stride})")
    numel = int(np.prod(t.size, dtype=np.int64)) if t.size else 1
    if numel == 0:
        return np.zeros(t.size, dtype.newbyteorder("="))
    if numel > st.numel:
        raise JaxprobeError(f"a tensor of {numel} elements is larger than its storage of {st.numel}")
    last = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride))
    if last >= st.numel:
        raise JaxprobeError(f"a tensor (offset {t.offset}, sizes {t.size}, strides {t.stride}) "
                            f"reaches past its storage of {st.numel} elements")
    buf = np.frombuffer(storage_bytes(st), dtype=dtype, count=st.numel)
    view = np.lib.stride_tricks.as_strided(buf[t.offset:], shape=t.size,
                                           strides=tuple(s * dtype.itemsize for s in t.stride), writeable=False)
    return np.array(view, dtype=dtype.newbyteorder("="))


def _materialize(obj, storage_bytes, big_endian, depth):
    if depth > MAX_DEPTH:
        raise JaxprobeError(f"containers nested deeper than {MAX_DEPTH}")
    if isinstance(obj, _Tensor):
        return _tensor_array(obj, storage_bytes, big_endian)
    if isinstance(obj, (_Storage, _StorageType)):
        raise JaxprobeError("a bare storage where a tensor was expected")
    if isinstance(obj, dict):
        return type(obj)((k, _materialize(v, storage_bytes, big_endian, depth + 1)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v, storage_bytes, big_endian, depth + 1) for v in obj)
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        return obj
    raise JaxprobeError(f"unexpected object of type {type(obj).__name__}")


# ================================================================ writing the zip format


def _pickle_int(v: int) -> bytes:
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if 0 <= v < 65536:
        return b"M" + struct.pack("<H", v)
    if -(2 ** 31) <= v < 2 ** 31:
        return b"J" + struct.pack("<i", v)
    raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw  # LONG1


def _pickle_str(s: str) -> bytes:
    b = s.encode("utf-8")
    return b"X" + struct.pack("<I", len(b)) + b  # BINUNICODE


def _pickle_global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def state_dict_pickle(tensors: dict) -> tuple:
    """(pickle bytes, {storage key: bytes}) of a state dict in PyTorch's zip layout.

    `tensors` maps names to numpy arrays; values may also be nested dicts (a checkpoint holding
    several state dicts) or plain ints, floats, strings and None. The top level is an OrderedDict.
    """
    out = bytearray(b"\x80\x02")
    storages = {}

    def emit(value, depth):
        if depth > MAX_DEPTH:
            raise JaxprobeError("tensors: nested too deep")
        if isinstance(value, dict):
            out.extend(_pickle_global("collections", "OrderedDict") + b")R(" if depth == 0 else b"}(")
            for key, item in value.items():
                if not isinstance(key, str):
                    raise JaxprobeError(f"tensors: keys must be strings, got {key!r}")
                out.extend(_pickle_str(key))
                emit(item, depth + 1)
            out.extend(b"u")  # SETITEMS
        elif value is None:
            out.extend(b"N")
        elif isinstance(value, bool):
            out.extend(b"\x88" if value else b"\x89")
        elif isinstance(value, int):
            out.extend(_pickle_int(value))
        elif isinstance(value, float):
            out.extend(b"G" + struct.pack(">d", value))
        elif isinstance(value, str):
            out.extend(_pickle_str(value))
        else:
            emit_tensor(np.array(value, order="C", copy=True))  # (ascontiguousarray would make 0-d arrays 1-d)

    def emit_tensor(a):
        dname = "bfloat16" if a.dtype.name == "bfloat16" else a.dtype.name
        if dname not in _STORAGE_NAMES:
            raise JaxprobeError(f"tensors: dtype {a.dtype} is not one PyTorch storages hold")
        key = str(len(storages))
        storages[key] = a.astype(a.dtype.newbyteorder("<")).tobytes()
        out.extend(_pickle_global("torch._utils", "_rebuild_tensor_v2") + b"((")
        out.extend(_pickle_str("storage") + _pickle_global("torch", _STORAGE_NAMES[dname]))
        out.extend(_pickle_str(key) + _pickle_str("cpu") + _pickle_int(a.size) + b"tQ")  # TUPLE, BINPERSID
        out.extend(_pickle_int(0) + b"(" + b"".join(_pickle_int(d) for d in a.shape) + b"t(")
        strides = [s // a.itemsize for s in a.strides] if a.size else [0] * a.ndim
        out.extend(b"".join(_pickle_int(s) for s in strides) + b"t\x89")  # NEWFALSE (requires_grad)
        out.extend(_pickle_global("collections", "OrderedDict") + b")RtR")  # hooks; TUPLE, REDUCE

    if not isinstance(tensors, dict):
        raise JaxprobeError(f"tensors: expected a dict, got {type(tensors).__name__}")
    emit(tensors, 0)
    out.extend(b".")  # STOP
    return bytes(out), storages


def write_torch_zip(path, pickle_bytes: bytes, storages: dict, prefix: str = "archive") -> None:
    """Write PyTorch's zip layout: <prefix>/data.pkl, <prefix>/data/<key>, version and byteorder."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{prefix}/data.pkl", pickle_bytes)
        zf.writestr(f"{prefix}/byteorder", "little")
        for key, data in storages.items():
            zf.writestr(f"{prefix}/data/{key}", data)
        zf.writestr(f"{prefix}/version", "3\n")


def save_torch_zip(path, tensors: dict, prefix: str = "archive") -> None:
    """Save {name: numpy array} as a zip-format PyTorch state dict (what `torch.save` writes)."""
    write_torch_zip(path, *state_dict_pickle(tensors), prefix=prefix)


# ================================================================ other formats


def read_legacy_torch(path):
    """A legacy (pre-zip) pickle `.pth` through `torch.load(weights_only=True)`; needs torch."""
    try:
        import torch
    except ImportError:
        raise JaxprobeError(
            f"torch file: {path} is in PyTorch's legacy (pre-1.6) pickle format, which jaxprobe reads only "
            "through torch.load(weights_only=True); install torch (pip install torch==2.13.0) or re-save the "
            "state dict with a current torch"
        ) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise JaxprobeError(f"torch file: {path}: torch.load(weights_only=True) refused it ({type(e).__name__}: "
                            f"{str(e)[:200]})") from None

    def to_numpy(o, depth=0):
        if depth > MAX_DEPTH:
            raise JaxprobeError(f"torch file: {path}: containers nested deeper than {MAX_DEPTH}")
        if isinstance(o, torch.Tensor):
            t = o.detach().cpu()
            return (t.float() if t.dtype == torch.bfloat16 else t).numpy().copy()
        if isinstance(o, dict):
            return type(o)((k, to_numpy(v, depth + 1)) for k, v in o.items())
        if isinstance(o, (list, tuple)):
            return type(o)(to_numpy(v, depth + 1) for v in o)
        return o

    return to_numpy(obj)


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


class Loaded(NamedTuple):
    tensors: dict  # flat {name: numpy array}
    format: str  # "pytorch-zip", "pytorch-legacy" or "safetensors"


def detect_format(path) -> str:
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


def torch_model(path, arch: str, *, key: str | None = None, name: str | None = None):
    """The jaxprobe `Model` of a PyTorch/safetensors state dict of architecture `arch`, in memory.

    `arch` names a table in `weights_convert.mapping.ARCHITECTURES`; `key` selects a nested state
    dict. Its manifest records the source (path, sha256, format), the mapping and the preprocessing.
    """
    if arch not in mapping.ARCHITECTURES:
        raise JaxprobeError(f"arch: unknown architecture {arch!r}; expected one of {', '.join(sorted(mapping.ARCHITECTURES))}")
    spec = mapping.ARCHITECTURES[arch]
    loaded = load_state_dict(path, key=key)
    tensors, origin = mapping.rename_keys(loaded.tensors, spec.rename)
    kwargs = dict(spec.kwargs)
    if spec.infer is not None:
        kwargs.update(spec.infer(tensors))
    graphdef, abstract, names = mapping.abstract_network(spec.builder, kwargs)
    state, records = mapping.map_weights(mapping.resolve(spec.rules, kwargs), tensors, graphdef, abstract, names,
                                         ignore=mapping.resolve(spec.ignore, kwargs),
                                         what=f"{Path(path).name} as {arch}")
    for r in records:
        r["source"] = origin.get(r["source"], r["source"])
    pixels = dict(spec.pixels, mean=list(spec.pixels.get("mean", ())))
    if spec.fold_input_std:
        state = mapping.fold_input_std(state, spec.fold_input_std)
    manifest = {
        "architecture": {"builder": spec.builder, "kwargs": {k: list(v) if isinstance(v, tuple) else v
                                                             for k, v in kwargs.items()}},
        "role": spec.role,
        "input_shape": list(mapping.resolve(spec.input_shape, kwargs)),
        "pixels": pixels,
        "source": {"format": loaded.format, "files": [mapping.source_record(path, loaded.format)],
                   "converter": "weights_convert.torch_files", "architecture": arch, "key": key},
        "mapping": records,
        "preprocessing": {"channel_order": pixels["channels"], "mean": pixels["mean"],
                          "scale": pixels.get("scale", 1.0), "range": [pixels["low"], pixels["high"]]},
    }
    if spec.fold_input_std:
        manifest["preprocessing"]["std_folded_into_first_layer"] = list(spec.fold_input_std)
    if spec.latent:
        manifest["latent"] = dict(mapping.resolve(spec.latent, kwargs))
    return mapping.make_model(name or Path(path).stem, graphdef, state, names, manifest)


def convert_torch(path, arch: str, out, *, key: str | None = None, name: str | None = None, force: bool = False):
    """Convert a PyTorch/safetensors state dict of architecture `arch` into model directory `out`
    (orbax checkpoint + manifest, written atomically; a directory jaxprobe did not write is refused
    before any work unless `force`). Returns the converted `Model`."""
    check_replaceable(out, force=force)
    model = torch_model(path, arch, key=key, name=name)
    out_path = mapping.write_model(model, out, model.manifest, force=force)
    return model.replace(name=name or str(out_path))
