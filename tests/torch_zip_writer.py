"""A writer of PyTorch's zip checkpoint format, a test oracle: the tests build state dicts (and
hostile pickles) with it without torch, and check that torch reads what it writes
(tests/test_convert_roundtrip.py). weights_convert only reads this format."""

from __future__ import annotations

import struct
import zipfile

import numpy as np

from weights_convert.torch_files import _STORAGE_NAMES, MAX_DEPTH

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


def state_dict_pickle(tensors: dict, *, legacy: bool = False) -> tuple:
    """(pickle bytes, {storage key: bytes}) of a state dict in PyTorch's zip layout (`legacy`:
    with the legacy format's 6-field storage ids, the object pickle of `read_legacy_torch`).

    `tensors` maps names to numpy arrays; values may also be nested dicts (a checkpoint holding
    several state dicts) or plain ints, floats, strings and None. The top level is an OrderedDict.
    """
    out = bytearray(b"\x80\x02")
    storages = {}

    def emit(value, depth):
        if depth > MAX_DEPTH:
            raise ValueError("tensors: nested too deep")
        if isinstance(value, dict):
            out.extend(_pickle_global("collections", "OrderedDict") + b")R(" if depth == 0 else b"}(")
            for key, item in value.items():
                if not isinstance(key, str):
                    raise ValueError(f"tensors: keys must be strings, got {key!r}")
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
            raise ValueError(f"tensors: dtype {a.dtype} is not one PyTorch storages hold")
        key = str(len(storages))
        storages[key] = a.astype(a.dtype.newbyteorder("<")).tobytes()
        out.extend(_pickle_global("torch._utils", "_rebuild_tensor_v2") + b"((")
        out.extend(_pickle_str("storage") + _pickle_global("torch", _STORAGE_NAMES[dname]))
        out.extend(_pickle_str(key) + _pickle_str("cpu") + _pickle_int(a.size) + b"N" * legacy + b"tQ")  # TUPLE, BINPERSID
        out.extend(_pickle_int(0) + b"(" + b"".join(_pickle_int(d) for d in a.shape) + b"t(")
        strides = [s // a.itemsize for s in a.strides] if a.size else [0] * a.ndim
        out.extend(b"".join(_pickle_int(s) for s in strides) + b"t\x89")  # NEWFALSE (requires_grad)
        out.extend(_pickle_global("collections", "OrderedDict") + b")RtR")  # hooks; TUPLE, REDUCE

    if not isinstance(tensors, dict):
        raise ValueError(f"tensors: expected a dict, got {type(tensors).__name__}")
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
