"""weights_convert never executes what a file contains, and fails only with JaxprobeError.

- A zip-format .pth whose pickle calls a non-admitted global (os.system writing a marker file, in
  every pickle protocol and opcode that names a global) is refused and the marker never appears;
  so is a BUILD on an admitted global, and the legacy format goes through the same unpickler.
- Shared objects stay shared and memory stays within the file's storages (pickle bombs of nested
  shared lists, 4096 views of one storage), each read in a subprocess under CPU and memory limits.
- Fuzzing: a seeded loop of >= 200 generated cases (truncated and bit-flipped real files and a
  legacy-format copy of one, or generated files in the same formats where ../shared/fixtures is
  absent, random bytes under every extension, crafted pickles with out-of-range storages, state
  dicts with wrong shapes and dtypes) through the complete in-memory conversion: each either
  converts or raises JaxprobeError (the one documented error type), within a time limit.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jaxprobe import JaxprobeError
import torch_zip_writer
from weights_convert import caffe, torch_files
from torch_zip_writer import _pickle_global, _pickle_int, _pickle_str, write_torch_zip

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


class Evil:
    """Pickles as a call of `fn(*args)`, the classic pickle exploit."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _marker_command(marker: Path) -> str:
    return f"touch {marker}"


def crafted_pickles(marker: Path):
    """(description, pickle bytes) of state dicts that try to run code."""
    cmd = _marker_command(marker)
    out = []
    for proto in (0, 1, 2, 4, 5):  # GLOBAL, and STACK_GLOBAL from protocol 4 on
        out.append((f"os.system protocol {proto}", pickle.dumps({"w": Evil(os.system, cmd)}, protocol=proto)))
    out.append(("builtins.exec", pickle.dumps({"w": Evil(exec, f"import os; os.system({cmd!r})")}, protocol=2)))
    out.append(("builtins.eval", pickle.dumps(Evil(eval, f"__import__('os').system({cmd!r})"), protocol=4)))
    # a valid tensor first, then the payload hidden as a backward hook argument of a second tensor
    head = b"\x80\x02" + _pickle_global("collections", "OrderedDict") + b")R("
    tensor = (_pickle_str("ok") + _pickle_global("torch._utils", "_rebuild_tensor_v2") + b"((" + _pickle_str("storage")
              + _pickle_global("torch", "FloatStorage") + _pickle_str("0") + _pickle_str("cpu") + _pickle_int(1)
              + b"tQ" + _pickle_int(0) + b"(t(t\x89" + _pickle_global("collections", "OrderedDict") + b")RtR")
    payload = _pickle_global("posix", "system") + _pickle_str(cmd) + b"\x85R"  # TUPLE1, REDUCE
    hidden = (_pickle_str("bad") + _pickle_global("torch._utils", "_rebuild_tensor_v2") + b"((" + _pickle_str("storage")
              + _pickle_global("torch", "FloatStorage") + _pickle_str("0") + _pickle_str("cpu") + _pickle_int(1)
              + b"tQ" + _pickle_int(0) + b"(t(t\x89" + payload + b"tR")
    out.append(("hidden in a tensor's hooks", head + tensor + hidden + b"u."))
    # protocol-0 INST and protocol-1 OBJ opcodes also name globals
    out.append(("INST opcode", b"(S'" + cmd.encode() + b"'\nios\nsystem\n."))
    out.append(("OBJ opcode", b"\x80\x01(cos\nsystem\nS'" + cmd.encode() + b"'\no."))
    out.append(("torch.load itself", b"\x80\x02" + _pickle_global("torch", "load") + _pickle_str("x") + b"\x85R."))
    return out


def test_malicious_pickles_are_refused_and_run_nothing(tmp_path):
    marker = tmp_path / "marker"
    cases = crafted_pickles(marker)
    # positive control: unpickled by the standard pickle module, these payloads do run
    pickle.loads(cases[0][1])
    assert marker.exists()
    marker.unlink()
    for what, data in cases:
        path = tmp_path / "evil.pth"
        write_torch_zip(path, data, {"0": np.zeros(1, np.float32).tobytes()})
        with pytest.raises(JaxprobeError, match=r"refused to load the global \S+\.(system|exec|eval|load):") as info:
            torch_files.convert_torch(path, "lenet5", tmp_path / "out")
        assert "only tensor-rebuild and container globals" in str(info.value), what
        assert not marker.exists(), f"{what}: the payload ran"
        assert not (tmp_path / "out").exists()


def test_admitted_globals_are_inert_stand_ins():
    # find_class never hands out torch's (or anything else's) real callables
    for (module, name), obj in torch_files._ADMITTED.items():
        assert getattr(obj, "__module__", "") in ("collections", "weights_convert.torch_files") or \
            isinstance(obj, torch_files._StorageType), (module, name)


def test_round_trip_of_the_writer(tmp_path):
    rng = np.random.default_rng(0)
    sd = {"a": rng.normal(size=(3, 4, 2)).astype(np.float32), "b": np.arange(5, dtype=np.int64),
          "c": rng.normal(size=(2,)).astype(np.float16), "d": np.array(1.5, np.float64)}
    torch_zip_writer.save_torch_zip(tmp_path / "x.pth", sd)
    back = torch_files.load_state_dict(tmp_path / "x.pth")
    assert back.format == "pytorch-zip" and list(back.tensors) == list(sd)
    for k in sd:
        assert back.tensors[k].dtype == sd[k].dtype and np.array_equal(back.tensors[k], sd[k])


def test_strided_views_and_shared_storages(tmp_path):
    """Two tensors viewing one storage (offset and transposed strides), as torch saves views."""
    storage = np.arange(12, dtype=np.float32)

    def rebuild(key, offset, size, stride):
        return (_pickle_str(key) + _pickle_global("torch._utils", "_rebuild_tensor_v2") + b"((" + _pickle_str("storage")
                + _pickle_global("torch", "FloatStorage") + _pickle_str("0") + _pickle_str("cpu") + _pickle_int(12)
                + b"tQ" + _pickle_int(offset) + b"(" + b"".join(map(_pickle_int, size)) + b"t("
                + b"".join(map(_pickle_int, stride)) + b"t\x89" + _pickle_global("collections", "OrderedDict") + b")RtR")

    data = (b"\x80\x02" + _pickle_global("collections", "OrderedDict") + b")R(" + rebuild("t", 2, (3, 2), (1, 3))
            + rebuild("s", 0, (2, 2), (4, 1)) + b"u.")
    write_torch_zip(tmp_path / "v.pth", data, {"0": storage.tobytes()})
    out = torch_files.read_torch_zip(tmp_path / "v.pth")
    np.testing.assert_array_equal(out["t"], np.lib.stride_tricks.as_strided(storage[2:], (3, 2), (4, 12)))
    np.testing.assert_array_equal(out["s"], [[0, 1], [4, 5]])


# ------------------------------------------------------------------ the legacy format


def _arrays_in_order(tensors):
    """The arrays of a (nested) state dict in the order `state_dict_pickle` numbers their storages."""
    for v in tensors.values():
        if isinstance(v, dict):
            yield from _arrays_in_order(v)
        elif isinstance(v, np.ndarray):
            yield v


def legacy_bytes(main: bytes, storages: dict) -> bytes:
    """PyTorch's legacy file layout, written independently of the reader (torch/serialization.py,
    `_legacy_save`): magic number, protocol 1001 and system-info pickles, the object pickle, the
    storage key list, then per key its element count (int64) and little-endian bytes.
    `storages` maps keys to 1-D arrays."""
    keys = sorted(storages)
    out = (pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2)
           + pickle.dumps({"protocol_version": 1001, "little_endian": True,
                           "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2) + main
           + pickle.dumps(keys, protocol=2))
    for key in keys:
        out += struct.pack("<q", storages[key].size) + storages[key].astype(storages[key].dtype.newbyteorder("<")).tobytes()
    return out


def legacy_state_dict(tensors: dict) -> bytes:
    main, _ = torch_zip_writer.state_dict_pickle(tensors, legacy=True)
    return legacy_bytes(main, {str(i): np.ravel(a) for i, a in enumerate(_arrays_in_order(tensors))})


def test_legacy_format_is_read_without_torch(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # importing torch now fails: the reader must not need it
    rng = np.random.default_rng(1)
    sd = {"w": rng.normal(size=(3, 4)).astype(np.float32), "i": np.arange(5, dtype=np.int64),
          "h": rng.normal(size=2).astype(np.float16), "inner": {"b": np.array([True, False])}, "n": 7}
    (tmp_path / "old.pth").write_bytes(legacy_state_dict(sd))
    assert torch_files.detect_format(tmp_path / "old.pth") == "pytorch-legacy"
    got = torch_files.read_legacy_torch(tmp_path / "old.pth")
    assert list(got) == list(sd) and got["n"] == 7
    for k in ("w", "i", "h"):
        assert got[k].dtype == sd[k].dtype and np.array_equal(got[k], sd[k]), k
    np.testing.assert_array_equal(got["inner"]["b"], sd["inner"]["b"])
    # a storage record cut short, a count that disagrees with the pickle, a malicious object pickle
    data = legacy_state_dict(sd)
    for what, bad in (("cut", data[:-3]), ("count", data.replace(struct.pack("<q", 12), struct.pack("<q", 13), 1)),
                      ("global", legacy_bytes(pickle.dumps(Evil(os.system, f"touch {tmp_path / 'm'}"), protocol=2), {}))):
        (tmp_path / "bad.pth").write_bytes(bad)
        with pytest.raises(JaxprobeError, match=r"torch file: .*bad\.pth: "):
            torch_files.load_state_dict(tmp_path / "bad.pth")
        assert not (tmp_path / "m").exists(), what


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch not installed (pip install torch==2.13.0)")
def test_legacy_reader_agrees_with_torch(tmp_path):
    import torch

    torch.manual_seed(0)
    base = torch.randn(5, 7)
    saved = {"transposed": base.t(), "strided": base[1:4, ::3], "bf16": torch.randn(3, 2, dtype=torch.bfloat16),
             "param": torch.nn.Parameter(torch.randn(4)), "half": torch.randn(6).half(), "int": torch.arange(5),
             "scalar": torch.tensor(2.5), "nested": {"a": torch.ones(2), "n": 3}}
    torch.save(saved, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    assert torch_files.detect_format(tmp_path / "old.pth") == "pytorch-legacy"
    got = torch_files.read_legacy_torch(tmp_path / "old.pth")
    for k in ("transposed", "strided", "bf16", "param", "half", "int", "scalar"):
        np.testing.assert_array_equal(np.asarray(got[k], np.float64), saved[k].detach().double().numpy(), err_msg=k)
    assert got["nested"]["n"] == 3
    # and torch reads the test's own legacy writer the same way (the writer is not the reader's echo)
    sd = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "h": np.ones(2, np.float16)}
    (tmp_path / "ours.pth").write_bytes(legacy_state_dict(sd))
    back = torch.load(tmp_path / "ours.pth", weights_only=True)
    for k, v in sd.items():
        np.testing.assert_array_equal(back[k].numpy(), v)


# ------------------------------------------------------------------ shared objects and memory


def _rebuild_ops(numel: int, size: tuple, legacy: bool) -> bytes:
    """Pickle opcodes pushing one tensor of storage "0" (memo 0: the rebuild global, 1: the storage)."""
    pid = (b"(" + _pickle_str("storage") + _pickle_global("torch", "FloatStorage") + _pickle_str("0")
           + _pickle_str("cpu") + _pickle_int(numel) + b"N" * legacy + b"t")
    stride = tuple(int(np.prod(size[i + 1:])) for i in range(len(size)))
    return (_pickle_global("torch._utils", "_rebuild_tensor_v2") + b"q\x00(" + pid + b"Qq\x01" + _pickle_int(0)
            + b"(" + b"".join(map(_pickle_int, size)) + b"tq\x02(" + b"".join(map(_pickle_int, stride)) + b"tq\x03"
            + b"\x89Nt" + b"R")


def _another_view() -> bytes:
    """A new tensor object (a REDUCE of its own) over the memoized global, storage, sizes and strides."""
    return b"h\x00(h\x01" + _pickle_int(0) + b"h\x02h\x03\x89NtR"


def _bomb(levels, width, numel, legacy=False, distinct=False) -> bytes:
    """{"w": one tensor of `numel` floats inside `levels` of `width`-way lists, each level's items
    one shared object (memo GETs), or with `distinct` one flat list of width**levels separate
    tensor objects (REDUCEs) viewing the same storage."""
    def put(i):  # LONG_BINPUT i, POP: each level is built from memo references alone
        return b"r" + struct.pack("<I", i) + b"0"

    def get(i):  # LONG_BINGET
        return b"j" + struct.pack("<I", i)

    ops = _rebuild_ops(numel, (numel,), legacy) + put(4)  # memo 4: the tensor
    if distinct:
        ops += b"](" + get(4) + _another_view() * (width ** levels - 1) + b"e" + put(5)
    for level in range(0 if distinct else levels):
        ops += b"](" + get(4 + level) * width + b"e" + put(5 + level)
    ops += get(5 if distinct else 4 + levels)
    head = b"\x80\x02" + _pickle_global("collections", "OrderedDict") + b")R(" + _pickle_str("w")
    return head + ops + b"u."


_BOMB_CHILD = r"""
import json, resource, signal, sys, time, tracemalloc
import numpy as np
from weights_convert import torch_files


def hang(signum, frame):
    raise TimeoutError("over 5 CPU seconds")


signal.signal(signal.SIGPROF, hang)

vm = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (3 << 30), vm + (3 << 30)))  # a regression fails, not swaps
report = {}
for name, path, levels, numel, distinct in json.loads(sys.argv[1]):
    tracemalloc.start()
    start = time.process_time()
    signal.setitimer(signal.ITIMER_PROF, 5.0)
    try:
        read = torch_files.read_torch_zip if torch_files.detect_format(path) == "pytorch-zip" else torch_files.read_legacy_torch
        x = read(path)["w"]
        seconds, peak = time.process_time() - start, tracemalloc.get_traced_memory()[1]
        if distinct:
            ok = len(x) == 2 ** levels and all(np.shares_memory(v, x[0]) for v in x)
            x = x[0]
        else:
            for _ in range(levels):
                ok = len(x) >= 2 and all(v is x[0] for v in x)
                x = x[0]
        ok = ok and x.shape == (numel,) and not np.any(np.asarray(x))
        report[name] = {"seconds": seconds, "peak": peak, "ok": bool(ok)}
    except Exception as e:
        report[name] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
    signal.setitimer(signal.ITIMER_PROF, 0)
    tracemalloc.stop()
    if "error" in report[name]:
        break  # one failure says it; the next cases would only add their 5 s each
print(json.dumps(report))
"""


def test_shared_objects_stay_shared_and_memory_is_bounded(tmp_path):
    """Issue cases: 40 nested [x, x] levels (849 bytes; a per-reference copy visits 2**40 leaves),
    a 4 MiB tensor through 3 levels of 16-way lists (a per-reference copy asks for 16 GiB), the
    same as 4096 separate tensor objects over one storage, zip and legacy; torch.save's own 22-level
    shared list when torch is installed. Each must load in seconds with the tensor's bytes once."""
    mib4 = 1 << 20  # floats
    cases = []
    for legacy in (False, True):
        for label, levels, width, numel, distinct in (("nested40", 40, 2, 1, False), ("fan16", 3, 16, mib4, False),
                                                      ("views4096", 12, 2, mib4, True)):
            data = _bomb(levels, width, numel, legacy, distinct)
            if label == "nested40" and not legacy:
                assert len(data) < 1000, len(data)
            path = tmp_path / f"{label}{'_legacy' * legacy}.pth"
            if legacy:
                path.write_bytes(legacy_bytes(data, {"0": np.zeros(numel, np.float32)}))
            else:
                write_torch_zip(path, data, {"0": np.zeros(numel, np.float32).tobytes()})
            cases.append([path.stem, str(path), levels, numel, distinct])
    if importlib.util.find_spec("torch") is not None:
        import torch

        for legacy in (False, True):
            x = torch.zeros(3)
            for _ in range(22):
                x = [x, x]
            path = tmp_path / f"torch22{'_legacy' * legacy}.pth"
            torch.save({"w": x}, path, _use_new_zipfile_serialization=not legacy)
            cases.append([path.stem, str(path), 22, 3, False])
    try:
        res = subprocess.run([sys.executable, "-c", _BOMB_CHILD, json.dumps(cases)], capture_output=True, text=True,
                             timeout=120, cwd=Path(__file__).resolve().parents[1])
    except subprocess.TimeoutExpired:
        pytest.fail("reading the shared-reference pickles did not finish in 120 s (a copy per reference?)")
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout.strip().splitlines()[-1])
    for name, path, levels, numel, distinct in cases:
        r = report.get(name, {"error": "not run after an earlier failure"})
        assert "error" not in r, (name, r)
        assert r["ok"], f"{name}: shared objects were copied or the tensor is wrong"
        assert r["seconds"] < 5, (name, r)  # CPU seconds
        assert r["peak"] < 2 * 4 * numel + (4 << 20), f"{name}: {r['peak']} bytes for a {4 * numel}-byte storage"


def _setattr_pickle(module: str, name: str, state: bytes) -> bytes:
    return b"\x80\x02" + _pickle_global(module, name) + state + b"b."  # BUILD


def test_build_cannot_set_state_of_admitted_globals(tmp_path):
    """BUILD with a dict state writes the object's __dict__; with (None, slotstate) it runs setattr
    (a function's `__defaults__` would change for the whole process). Both refused for every
    admitted global, and nothing about the admitted objects changes."""
    attrs = ("__defaults__", "__kwdefaults__", "__doc__", "__call__", "fn", "dtype", "x")

    def state(attr, slot):
        d = b"}" + _pickle_str(attr) + _pickle_int(0) + b"\x85s"  # {attr: (0,)}
        return b"N" + d + b"\x86" if slot else d  # (None, {attr: ...}) or {attr: ...}

    # positive control: the standard unpickler applies the payload to a plain function
    def victim(a=1):
        return a

    class Plain(pickle.Unpickler):
        def find_class(self, module, name):
            return victim

    Plain(io.BytesIO(_setattr_pickle("m", "victim", state("__defaults__", True)))).load()
    assert victim() == 0  # its default is now 0

    def snapshot(obj):
        return {a: repr(getattr(obj, a, None)) for a in attrs} | {"vars": repr(getattr(obj, "__dict__", None))}

    before = {key: snapshot(obj) for key, obj in torch_files._ADMITTED.items()}
    for module, name in torch_files._ADMITTED:
        for attr in attrs:
            for slot in (False, True):
                write_torch_zip(tmp_path / "b.pth", _setattr_pickle(module, name, state(attr, slot)), {})
                with pytest.raises(JaxprobeError, match="torch file: "):
                    torch_files.read_torch_zip(tmp_path / "b.pth")
    assert {key: snapshot(obj) for key, obj in torch_files._ADMITTED.items()} == before
    test_round_trip_of_the_writer(tmp_path)  # and the rebuild functions still rebuild tensors


def test_caffemodel_dims_count_in_python_ints(tmp_path):
    """dims (2**32, 2**32): 2**64 elements, 0 as an int64 product, which an empty blob would match."""
    from jaxprobe.models.caffe_schema import NetParameter

    net = NetParameter()
    layer = net.layer.add()
    layer.name, layer.type = "ip", "InnerProduct"
    layer.blobs.add().shape.dim.extend([2 ** 32, 2 ** 32])
    (tmp_path / "big.caffemodel").write_bytes(net.SerializeToString())
    with pytest.raises(JaxprobeError, match=r"caffemodel: ip\[0\]: shape \(4294967296, 4294967296\) needs "
                                            r"18446744073709551616 values, the blob holds 0"):
        caffe.read_caffemodel(tmp_path / "big.caffemodel")


# ------------------------------------------------------------------ fuzzing


class _Timeout(Exception):
    pass


def _run_case(fn, seconds=20.0):
    """Run one case: returns "ok" or "error"; any exception but JaxprobeError fails the test.

    A hang is `seconds` of CPU time (ITIMER_PROF), not of wall time: the shared test machine's
    load must not turn a slow case into a false hang.
    """
    def alarm(signum, frame):
        raise _Timeout()

    old = signal.signal(signal.SIGPROF, alarm)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        fn()
        return "ok"
    except JaxprobeError:
        return "error"
    except _Timeout:
        pytest.fail(f"a case used more than {seconds} CPU seconds (hang)")
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, old)


_LAYER = 'layer {{ name: "{0}" type: "{1}" bottom: "{2}" top: "{0}" {3} }}\n'
GENERATED_LENET = (
    'name: "LeNet"\nlayer { name: "data" type: "Input" top: "data" '
    'input_param { shape: { dim: 1 dim: 1 dim: 28 dim: 28 } } }\n'
    + _LAYER.format("conv1", "Convolution", "data", "convolution_param { num_output: 20 kernel_size: 5 }")
    + _LAYER.format("pool1", "Pooling", "conv1", "pooling_param { pool: MAX kernel_size: 2 stride: 2 }")
    + _LAYER.format("conv2", "Convolution", "pool1", "convolution_param { num_output: 50 kernel_size: 5 }")
    + _LAYER.format("pool2", "Pooling", "conv2", "pooling_param { pool: MAX kernel_size: 2 stride: 2 }")
    + _LAYER.format("ip1", "InnerProduct", "pool2", "inner_product_param { num_output: 500 }")
    + 'layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }\n'  # in place, as Caffe nets do
    + _LAYER.format("ip2", "InnerProduct", "ip1", "inner_product_param { num_output: 10 }")
    + _LAYER.format("prob", "Softmax", "ip2", ""))


def fuzz_sources(tmp_path, rng) -> dict:
    """The files the fuzz cases mutate: the real fixtures where ../shared/fixtures exists, else
    generated stand-ins in the same formats (a LeNet prototxt and caffemodel through the schema,
    zip .pth state dicts of lenet5 and the DCGAN generator, a safetensors simple CNN), so that the
    fuzzing runs in a bare clone too."""
    if (FIXTURES / "README.md").is_file():
        lenet_proto = (FIXTURES / "caffe/lenet/lenet.prototxt").read_bytes()
        return {
            "lenet.prototxt": lenet_proto,
            "cifar.prototxt": (FIXTURES / "caffe/cifar10_full/cifar10_full.prototxt").read_bytes(),
            "lenet.caffemodel": (FIXTURES / "caffe/lenet/lenet_iter_10000.caffemodel").read_bytes(),
            "cifar.caffemodel": (FIXTURES / "caffe/cifar10_full/cifar10_full_iter_70000.caffemodel").read_bytes(),
            "lenet.pth": (FIXTURES / "torch/lenet5/lenet.pth").read_bytes(),
            "gen.pth": (FIXTURES / "torch/dcgan_generator/generator.pth").read_bytes(),
            "cnn.safetensors": (FIXTURES / "safetensors/simple_cnn/model-mnist.safetensors").read_bytes(),
        }
    from safetensors.numpy import save as save_safetensors

    from jaxprobe.models import caffe_spec
    from test_convert_roundtrip import write_caffemodel

    def normal(*shape):
        return rng.normal(scale=0.1, size=shape).astype(np.float32)

    write_caffemodel(tmp_path / "gen.caffemodel", caffe_spec.parse_prototxt(GENERATED_LENET), rng)
    lenet5 = {"conv1.weight": normal(6, 1, 5, 5), "conv1.bias": normal(6), "conv2.weight": normal(16, 6, 5, 5),
              "conv2.bias": normal(16), "fc1.weight": normal(120, 256), "fc1.bias": normal(120),
              "fc2.weight": normal(84, 120), "fc2.bias": normal(84), "fc3.weight": normal(10, 84), "fc3.bias": normal(10)}
    torch_zip_writer.save_torch_zip(tmp_path / "gen_lenet.pth", lenet5)
    gen = {}
    for i, (cin, cout, k) in enumerate([(64, 256, 3), (256, 128, 4), (128, 64, 3), (64, 1, 4)]):
        gen[f"gen.{i}.0.weight"], gen[f"gen.{i}.0.bias"] = normal(cin, cout, k, k), normal(cout)
        if i < 3:
            gen[f"gen.{i}.1.weight"], gen[f"gen.{i}.1.bias"] = 1 + normal(cout), normal(cout)
            gen[f"gen.{i}.1.running_mean"], gen[f"gen.{i}.1.running_var"] = normal(cout), 1 + np.abs(normal(cout))
    torch_zip_writer.save_torch_zip(tmp_path / "gen_dcgan.pth", gen)
    cnn = {"conv1.weight": normal(8, 1, 3, 3), "conv1.bias": normal(8), "conv2.weight": normal(16, 8, 3, 3),
           "conv2.bias": normal(16), "fc1.weight": normal(10, 784), "fc1.bias": normal(10)}
    proto = GENERATED_LENET.encode()
    return {"lenet.prototxt": proto, "cifar.prototxt": proto,
            "lenet.caffemodel": (tmp_path / "gen.caffemodel").read_bytes(),
            "cifar.caffemodel": (tmp_path / "gen.caffemodel").read_bytes(),
            "lenet.pth": (tmp_path / "gen_lenet.pth").read_bytes(), "gen.pth": (tmp_path / "gen_dcgan.pth").read_bytes(),
            "cnn.safetensors": save_safetensors(cnn)}


def test_fuzz_sources_convert_before_mutation(tmp_path):
    """The unmutated sources convert (else every mutated case would fail for the wrong reason)."""
    sources = fuzz_sources(tmp_path, np.random.default_rng(0))
    (tmp_path / "l.prototxt").write_bytes(sources["lenet.prototxt"])
    for name, arch in (("lenet.pth", "lenet5"), ("gen.pth", "torch_dcgan_generator"), ("cnn.safetensors", "simple_cnn")):
        (tmp_path / name).write_bytes(sources[name])
        assert torch_files.torch_model(tmp_path / name, arch).n_layers >= 3
    (tmp_path / "l.caffemodel").write_bytes(sources["lenet.caffemodel"])
    assert caffe.caffe_model(tmp_path / "l.prototxt", tmp_path / "l.caffemodel").layer_names[-1] == "ip2"


def test_fuzz_only_documented_errors(tmp_path):
    rng = np.random.default_rng(20261123)
    sources = fuzz_sources(tmp_path, rng)
    lenet_proto, cifar_proto = sources.pop("lenet.prototxt"), sources.pop("cifar.prototxt")
    files = sources
    (tmp_path / "lenet_src.pth").write_bytes(files["lenet.pth"])  # the same state dict in the legacy format
    files["lenet_legacy.pth"] = legacy_state_dict(dict(torch_files.load_state_dict(tmp_path / "lenet_src.pth").tensors))
    (tmp_path / "lenet.caffemodel").write_bytes(files["lenet.caffemodel"])
    good_proto = tmp_path / "good.prototxt"
    good_proto.write_bytes(lenet_proto)
    (tmp_path / "cifar.prototxt").write_bytes(cifar_proto)
    arch_of = {"lenet.pth": "lenet5", "lenet_legacy.pth": "lenet5", "gen.pth": "torch_dcgan_generator",
               "cnn.safetensors": "simple_cnn",
               "random.pth": "lenet5", "random.pt": "lenet5", "random.safetensors": "simple_cnn"}

    def converter(name, path):
        if name.endswith(".caffemodel"):
            proto = good_proto if name.startswith("lenet") or name.startswith("random") else tmp_path / "cifar.prototxt"
            return lambda: caffe.caffe_model(proto, path)
        return lambda: torch_files.torch_model(path, arch_of[name])

    cases = []  # (label, expected outcome: "error", "ok" or "any", callable)
    n = 0

    def add_file(label, name, data, expect="error"):
        nonlocal n
        n += 1
        path = tmp_path / f"case{n}_{name}"
        path.write_bytes(data)
        cases.append((label, expect, converter(name, path)))

    for name, data in files.items():
        for cut in rng.integers(0, len(data), size=18):  # truncated files
            add_file(f"{name} truncated at {cut}", name, data[:cut])
        for _ in range(8):  # random bit flips
            mutated = bytearray(data)
            for pos in rng.integers(0, len(data), size=rng.integers(1, 8)):
                mutated[pos] ^= 1 << int(rng.integers(0, 8))
            add_file(f"{name} bit-flipped", name, bytes(mutated), "any")  # flipped weights may still load
    for name in ("random.caffemodel", "random.pth", "random.pt", "random.safetensors"):
        for size in (0, 1, 8, 17, 100, 4096):  # random bytes
            add_file(f"{name} {size} random bytes", name, rng.bytes(size))
    for size in (4, 30, 200):  # a zip header followed by garbage, and a safetensors header claiming too much
        add_file("zip magic + garbage", "random.pth", b"PK\x03\x04" + rng.bytes(size))
        add_file("safetensors huge header", "random.safetensors", (2 ** 60 + size).to_bytes(8, "little") + b"{}")
    for cut in rng.integers(0, len(lenet_proto), size=12):  # truncated and corrupted prototxts
        proto = tmp_path / f"proto{cut}.prototxt"
        text = bytearray(lenet_proto[:cut])
        if len(text) > 10 and rng.random() < 0.5:
            text[int(rng.integers(0, len(text)))] = int(rng.choice(list(b"{}:\"#x9 ")))
        proto.write_bytes(bytes(text))
        # "any": a cut between layers (before `prob`, say) leaves a valid shorter net
        cases.append((f"prototxt cut at {cut}", "any", lambda p=proto: caffe.caffe_model(
            p, tmp_path / "lenet.caffemodel")))
    # state dicts with wrong shapes and dtypes
    (tmp_path / "base_lenet.pth").write_bytes(files["lenet.pth"])
    base = dict(torch_files.load_state_dict(tmp_path / "base_lenet.pth").tensors)
    keys = sorted(base)
    for i in range(24):
        sd = dict(base)
        key = keys[int(rng.integers(0, len(keys)))]
        kind, expect = i % 4, "error"
        if kind == 0:
            sd[key] = np.zeros(tuple(int(d) + int(rng.integers(1, 3)) for d in sd[key].shape), np.float32)
        elif kind == 1:
            expect = "ok" if sd[key].ndim == 1 else "error"  # flattening a bias changes nothing
            sd[key] = sd[key].reshape(-1)
        elif kind == 2:
            sd[key] = sd[key].astype(rng.choice([np.int64, np.int8, np.uint8, np.bool_]))
        else:
            sd[key] = sd[key].astype(np.float16)  # a float dtype: converts (to float32)
            expect = "ok"
        path = tmp_path / f"shape{i}.pth"
        torch_zip_writer.save_torch_zip(path, sd)
        cases.append((f"{key} changed ({kind})", expect, lambda p=path: torch_files.torch_model(p, "lenet5")))
    # crafted pickles: storages out of range, wrong record sizes, bad persistent ids
    def tensor_pickle(numel, offset, size, stride, storage_type="FloatStorage", pid=None):
        pid = pid if pid is not None else (b"(" + _pickle_str("storage") + _pickle_global("torch", storage_type)
                                            + _pickle_str("0") + _pickle_str("cpu") + _pickle_int(numel) + b"t")
        return (b"\x80\x02" + _pickle_global("collections", "OrderedDict") + b")R(" + _pickle_str("conv1.weight")
                + _pickle_global("torch._utils", "_rebuild_tensor_v2") + b"(" + pid + b"Q" + _pickle_int(offset)
                + b"(" + b"".join(map(_pickle_int, size)) + b"t(" + b"".join(map(_pickle_int, stride))
                + b"t\x89" + _pickle_global("collections", "OrderedDict") + b")RtRu.")

    crafted = [
        tensor_pickle(150, 0, (6, 1, 5, 5), (25, 25, 5, 1)),  # valid tensor, other keys missing
        tensor_pickle(150, 10, (6, 1, 5, 5), (25, 25, 5, 1)),  # reaches past the storage
        tensor_pickle(150, 0, (6, 1, 5, 5), (250, 25, 5, 1)),  # stride past the storage
        tensor_pickle(150, 0, (10 ** 6, 10 ** 6), (0, 0)),  # a huge broadcast view of a small storage
        tensor_pickle(150, -1, (6,), (1,)),  # negative offset
        tensor_pickle(150, 0, (6,), (-1,)),  # negative stride
        tensor_pickle(10 ** 12, 0, (6,), (1,)),  # storage claims more elements than its record
        tensor_pickle(150, 0, (6, 25), (25,)),  # sizes and strides disagree
        tensor_pickle(150, 0, (6,), (1,), pid=_pickle_str("not a tuple")),
        tensor_pickle(150, 0, (6,), (1,), pid=b"(" + _pickle_str("storage") + _pickle_str("torch.FloatStorage")
                      + _pickle_str("0") + _pickle_str("cpu") + _pickle_int(150) + b"t"),
        tensor_pickle(150, 0, (6,), (1,), pid=b"(" + _pickle_str("storage") + _pickle_global("torch", "FloatStorage")
                      + _pickle_str("../../etc/passwd") + _pickle_str("cpu") + _pickle_int(150) + b"t"),
        b"\x80\x02" + b"(" * 100000 + b".",  # deep nesting
        b"\x80\x02]" + b"]a" * 5000 + b".",  # nested lists
    ]
    for i, data in enumerate(crafted):
        path = tmp_path / f"crafted{i}.pth"
        write_torch_zip(path, data, {"0": np.zeros(150, np.float32).tobytes()})
        cases.append((f"crafted pickle {i}", "error", lambda p=path: torch_files.torch_model(p, "lenet5")))

    assert len(cases) >= 200, len(cases)
    start = time.process_time()
    wrong = []
    for label, expect, fn in cases:
        outcome = _run_case(fn)
        if expect != "any" and outcome != expect:
            wrong.append(f"{label}: expected {expect}, got {outcome}")
    assert not wrong, wrong
    assert sum(e == "error" for _, e, _ in cases) >= 140  # most cases must be refused, not merely survive
    assert time.process_time() - start < 120  # CPU seconds for all cases together
