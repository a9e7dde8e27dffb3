"""Fuzzing the converters and the model store (hypothesis, a bounded number of examples):
mutated prototxts, caffemodels, manifests and key maps, each through `jaxprobe convert ...` or
`load` in this process under a time and a memory limit, must end in success or one line with status 2 (a
`JaxprobeError` from `load`), never a traceback, a hang or a changed --out.

Each test prints its counts (pytest -s): cases that converted or loaded, and cases refused."""

import contextlib
import json
import os
import re
import resource
import shutil
import signal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from jaxprobe import load, save_model
from jaxprobe.cli import main
from jaxprobe.errors import JaxprobeError
from jaxprobe.io import atomic_dir
from jaxprobe.models import caffe_spec
from conftest import tiny_classifier
from test_convert_roundtrip import write_caffemodel
from test_convert_security import GENERATED_LENET

CASE_SECONDS = 15  # one case; a hang is a failure, not a stuck suite
CASE_BYTES = 3 << 30  # memory one case may add to the process: a 12 GB request fails, not the machine
FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


def data_bytes() -> int:
    """The process's data segment now (VmData: heap and private mappings, what RLIMIT_DATA limits)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmData:"))


@contextlib.contextmanager
def time_limit(seconds, extra_bytes=CASE_BYTES):
    """Run the block under a SIGALRM after `seconds` and an RLIMIT_DATA of `extra_bytes` above what
    the process holds now: a case that hangs raises TimeoutError, one that asks for unbounded
    memory gets MemoryError (a failure of that case) instead of exhausting the machine."""
    def expired(signum, frame):
        raise TimeoutError(f"case ran over {seconds} s")

    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    cap = data_bytes() + extra_bytes
    resource.setrlimit(resource.RLIMIT_DATA, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def test_a_case_that_asks_for_unbounded_memory_is_stopped_by_the_limit():
    with pytest.raises(MemoryError):
        with time_limit(CASE_SECONDS):
            np.ones(2 * CASE_BYTES, np.uint8)  # 6 GB: over the case's limit, well under the machine's
    np.ones(2 * CASE_BYTES // 64, np.uint8)  # and the limit is lifted after the case


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Sources that convert, an earlier output directory per case, and a model directory."""
    from safetensors.numpy import save_file

    root = tmp_path_factory.mktemp("fuzz")
    spec = caffe_spec.parse_prototxt(GENERATED_LENET)
    write_caffemodel(root / "lenet.caffemodel", spec, np.random.default_rng(0))
    (root / "lenet.prototxt").write_text(GENERATED_LENET)
    rng = np.random.default_rng(1)
    shapes = {"c1.w": (20, 1, 5, 5), "c1.b": (20,), "c2.w": (50, 20, 5, 5), "c2.b": (50,), "f1.w": (500, 800),
              "f1.b": (500,), "f2.w": (10, 500), "f2.b": (10,)}
    save_file({k: rng.normal(scale=0.05, size=s).astype(np.float32) for k, s in shapes.items()},
              str(root / "lenet.safetensors"))
    save_model(tiny_classifier(), root / "model")
    return root


def _run(world, tmp, argv):
    """`jaxprobe ARGV --out tmp/out` over an earlier output: returns "ok" or "refused"; fails the
    test on anything else (a traceback, another status, two lines, a changed --out)."""
    import io
    import sys

    out = tmp / "out"
    if not out.exists():
        with atomic_dir(out) as d:
            (d / "earlier.json").write_text("{}")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    err = io.StringIO()
    old = sys.stderr
    sys.stderr = err
    try:
        with time_limit(CASE_SECONDS):
            try:
                status = main(argv + ["--out", str(out)])
            except SystemExit as e:
                status = e.code
    finally:
        sys.stderr = old
    text = err.getvalue()
    assert status in (0, 2), (argv, status, text[-2000:])
    if status == 0:
        load(out)  # what was written loads, verified
        shutil.rmtree(out)
        return "ok"
    assert text.count("\n") == 1 and text.startswith("jaxprobe") and "Traceback" not in text, text[-2000:]
    assert len(text) < 1700
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not any(n.startswith(".out.") for n in os.listdir(tmp))
    return "refused"


HOSTILE_NUMBERS = ["0", "-1", "1", "2", "3", "4", "7", "65536", "2147483647", "4294967295", "4294967296",
                   "9223372036854775807", "-9223372036854775808", "99999999999999999999", "nan", "inf", "-inf",
                   "1e38", "-1e-45", "0.5"]


@st.composite
def mutated_prototxt(draw):
    text = GENERATED_LENET
    numbers = [m.span() for m in re.finditer(r"(?<=: )-?[0-9.e]+", text)]
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["number", "field", "drop", "dup", "junk"]))
        lines = text.splitlines(keepends=True)
        if kind == "number" and numbers:
            numbers = [m.span() for m in re.finditer(r"(?<=: )-?[0-9.e]+|(?<=: )nan|(?<=: )-?inf", text)]
            a, b = draw(st.sampled_from(numbers))
            text = text[:a] + draw(st.sampled_from(HOSTILE_NUMBERS)) + text[b:]
        elif kind == "field":  # a layer gains a hostile parameter block
            i = draw(st.integers(1, len(lines) - 1))
            block = draw(st.sampled_from([
                "lrn_param {{ local_size: {n} alpha: {f} beta: {f} k: {f} }}",
                "relu_param {{ negative_slope: {f} }}",
                "upsample_param {{ scale: {n} }}",
                "convolution_param {{ num_output: {n} kernel_size: {n} stride: {n} pad: {n} dilation: {n} }}",
                "pooling_param {{ pool: AVE kernel_size: {n} stride: {n} pad: {n} }}",
                "batch_norm_param {{ eps: {f} }}",
            ])).format(n=draw(st.sampled_from(HOSTILE_NUMBERS[:14])), f=draw(st.sampled_from(HOSTILE_NUMBERS)))
            ltype = draw(st.sampled_from(["LRN", "ReLU", "Upsample", "Convolution", "Pooling", "BatchNorm"]))
            layer = (f'layer {{ name: "z{i}" type: "{ltype}" bottom: "conv1" top: "conv1" {block} }}\n')
            lines.insert(i, layer)
            text = "".join(lines)
        elif kind == "drop" and len(lines) > 2:
            del lines[draw(st.integers(1, len(lines) - 1))]
            text = "".join(lines)
        elif kind == "dup":
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            text = "".join(lines)
        else:
            i = draw(st.integers(0, len(text)))
            junk = draw(st.sampled_from(["{", "}", '"', "\x00", "dim: 0", "{" * 200, "input_dim: -5"]))
            text = text[:i] + junk + text[i:]
    return text


def test_fuzz_prototxts(world, tmp_path_factory):
    seen = {"ok": 0, "refused": 0}

    @FUZZ
    @given(mutated_prototxt())
    def case(text):
        tmp = tmp_path_factory.mktemp("p")
        (tmp / "net.prototxt").write_text(text)
        seen[_run(world, tmp, ["convert", "caffe", "--prototxt", str(tmp / "net.prototxt"),
                               "--caffemodel", str(world / "lenet.caffemodel")])] += 1

    case()
    print(f"\nfuzz prototxts: {seen}")
    assert seen["refused"] >= 10, seen


@st.composite
def mutated_bytes(draw, data: bytes):
    data = bytearray(data)
    kind = draw(st.sampled_from(["flip", "cut", "splice", "varint"]))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 16))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
    elif kind == "cut":
        data = data[:draw(st.integers(0, len(data)))]
    elif kind == "splice":
        i = draw(st.integers(0, len(data)))
        data[i:i] = draw(st.binary(min_size=1, max_size=64))
    else:  # a length or dimension varint made huge
        i = draw(st.integers(0, max(len(data) - 10, 0)))
        data[i:i + 10] = b"\xff" * 9 + b"\x01"
    return bytes(data)


def test_fuzz_caffemodels(world, tmp_path_factory):
    original = (world / "lenet.caffemodel").read_bytes()
    seen = {"ok": 0, "refused": 0}

    @FUZZ
    @given(st.data())
    def case(data):
        tmp = tmp_path_factory.mktemp("m")
        (tmp / "m.caffemodel").write_bytes(data.draw(mutated_bytes(original)))
        seen[_run(world, tmp, ["convert", "caffe", "--prototxt", str(world / "lenet.prototxt"),
                               "--caffemodel", str(tmp / "m.caffemodel")])] += 1

    case()
    print(f"\nfuzz caffemodels: {seen}")
    assert seen["refused"] >= 5, seen


JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70), st.floats(allow_nan=False),
                        st.text(max_size=12), st.sampled_from(["net\x00.prototxt", "../x", "/dev/zero", "params"]))
JSON = st.recursive(JSON_LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                    max_leaves=12)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def test_fuzz_manifests(world, tmp_path_factory):
    manifest = json.loads((world / "model" / "manifest.json").read_text())
    paths = [p for p in _paths(manifest) if p]
    seen = {"ok": 0, "refused": 0}

    @FUZZ
    @given(st.sampled_from(paths), JSON, st.booleans(), st.sampled_from(["", "deep", "raw"]))
    def case(path, value, verify, extra):
        m = json.loads(json.dumps(manifest))
        node = m
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
        tmp = tmp_path_factory.mktemp("man")
        shutil.copytree(world / "model", tmp / "m")
        text = json.dumps(m)
        if extra == "deep":
            text = text[:-1] + ', "x": ' + "[" * 5000 + "]" * 5000 + "}"
        elif extra == "raw":
            text = text[: len(text) // 2]
        (tmp / "m" / "manifest.json").write_text(text)
        try:
            with time_limit(CASE_SECONDS):
                load(tmp / "m", verify=verify)
            seen["ok"] += 1
        except JaxprobeError as e:
            assert "\n" not in str(e) and len(str(e)) < 2000, str(e)[:3000]
            seen["refused"] += 1

    case()
    print(f"\nfuzz manifests: {seen}")
    assert seen["refused"] >= 10, seen


def test_fuzz_key_maps(world, tmp_path_factory):
    keys = ["c1.w", "c1.b", "c2.w", "c2.b", "f1.w", "f1.b", "f2.w", "f2.b"]
    targets = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "ip1.weight", "ip1.bias", "ip2.weight",
               "ip2.bias"]
    seen = {"ok": 0, "refused": 0}
    key_map = st.one_of(
        st.dictionaries(st.sampled_from(keys + ["nope", ""]), st.one_of(st.none(), st.sampled_from(targets + ["x.y"])),
                        max_size=10),
        JSON,
    )

    @FUZZ
    @given(key_map, st.sampled_from(["json", "deep", "bytes"]))
    def case(value, form):
        tmp = tmp_path_factory.mktemp("k")
        if form == "json":
            (tmp / "map.json").write_text(json.dumps(value))
        elif form == "deep":
            (tmp / "map.json").write_text('{"c1.w": ' + "[" * 3000 + "]" * 3000 + "}")
        else:
            (tmp / "map.json").write_bytes(json.dumps(value).encode()[:7] + b"\xff\x00")
        seen[_run(world, tmp, ["convert", "torch", str(world / "lenet.safetensors"), "--prototxt",
                               str(world / "lenet.prototxt"), "--map", str(tmp / "map.json")])] += 1

    case()
    print(f"\nfuzz key maps: {seen}")
    assert seen["refused"] >= 10, seen
