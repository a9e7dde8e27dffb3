"""weights_convert never executes what a file contains, and fails only with JaxprobeError.

- A zip-format .pth whose pickle calls a non-admitted global (os.system writing a marker file, in
  every pickle protocol and opcode that names a global) is refused and the marker never appears.
- Fuzzing: a seeded loop of >= 200 generated cases (truncated and bit-flipped real files, or
  generated files in the same formats where ../shared/fixtures is absent, random
  bytes under every extension, crafted pickles with out-of-range storages, state dicts with wrong
  shapes and dtypes) through the complete in-memory conversion: each either converts or raises
  JaxprobeError (the one documented error type), within a time limit.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from jaxprobe import JaxprobeError
from weights_convert import caffe, torch_files
from weights_convert.torch_files import _pickle_global, _pickle_int, _pickle_str, write_torch_zip

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
    torch_files.save_torch_zip(tmp_path / "x.pth", sd)
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


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch is installed")
def test_legacy_format_needs_torch(tmp_path):
    path = tmp_path / "legacy.pth"
    path.write_bytes(b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03.")  # legacy magic number
    with pytest.raises(JaxprobeError, match=r"legacy .* install torch"):
        torch_files.load_state_dict(path)


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
    torch_files.save_torch_zip(tmp_path / "gen_lenet.pth", lenet5)
    gen = {}
    for i, (cin, cout, k) in enumerate([(64, 256, 3), (256, 128, 4), (128, 64, 3), (64, 1, 4)]):
        gen[f"gen.{i}.0.weight"], gen[f"gen.{i}.0.bias"] = normal(cin, cout, k, k), normal(cout)
        if i < 3:
            gen[f"gen.{i}.1.weight"], gen[f"gen.{i}.1.bias"] = 1 + normal(cout), normal(cout)
            gen[f"gen.{i}.1.running_mean"], gen[f"gen.{i}.1.running_var"] = normal(cout), 1 + np.abs(normal(cout))
    torch_files.save_torch_zip(tmp_path / "gen_dcgan.pth", gen)
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
    (tmp_path / "lenet.caffemodel").write_bytes(files["lenet.caffemodel"])
    good_proto = tmp_path / "good.prototxt"
    good_proto.write_bytes(lenet_proto)
    (tmp_path / "cifar.prototxt").write_bytes(cifar_proto)
    arch_of = {"lenet.pth": "lenet5", "gen.pth": "torch_dcgan_generator", "cnn.safetensors": "simple_cnn",
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
        torch_files.save_torch_zip(path, sd)
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
