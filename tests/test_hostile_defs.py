"""Hostile network definitions, conversion flags and input files: each refused in one line with
exit status 2, before the output directory is touched, quickly."""

import os
import time

import numpy as np
import pytest

from jaxprobe.cli import main
from jaxprobe.errors import JaxprobeError
from jaxprobe.io import atomic_dir
from jaxprobe.models import caffe_spec
from test_convert_roundtrip import write_caffemodel
from test_convert_security import GENERATED_LENET

HEAD = 'name: "h"\nlayer { name: "data" type: "Input" top: "data" input_param { shape: { dim: 1 %s } } }\n'


def _net(dims, *layers):
    """A prototxt: Input of `dims` (C H W or D), then `layers` as (name, type, params) chained."""
    text = HEAD % " ".join(f"dim: {d}" for d in dims)
    bottom = "data"
    for name, ltype, params in layers:
        text += f'layer {{ name: "{name}" type: "{ltype}" bottom: "{bottom}" top: "{name}" {params} }}\n'
        bottom = name
    return text


CONV = ("conv", "Convolution", "convolution_param { num_output: 4 kernel_size: 3 }")
IP = ("ip", "InnerProduct", "inner_product_param { num_output: 3 }")

HOSTILE = {
    "lrn local_size 4294967295": (_net((3, 8, 8), CONV, ("n", "LRN", "lrn_param { local_size: 4294967295 }"), IP),
                                  r"local_size 4294967295 is wider than the 4 channels"),
    "lrn local_size 5 on 4 channels": (_net((3, 8, 8), CONV, ("n", "LRN", "lrn_param { local_size: 5 }"), IP),
                                       "local_size 5 is wider than the 4 channels"),
    "lrn local_size even": (_net((3, 8, 8), CONV, ("n", "LRN", "lrn_param { local_size: 2 }"), IP), "odd"),
    "lrn within local_size huge": (_net((3, 8, 8), CONV, ("n", "LRN", "lrn_param { norm_region: WITHIN_CHANNEL "
                                                                      "local_size: 99 }"), IP),
                                   "wider than its padded"),
    "lrn alpha nan": (_net((3, 8, 8), CONV, ("n", "LRN", "lrn_param { local_size: 3 alpha: nan }"),
                           IP),
                      "alpha must be a finite number >= 0, got nan"),
    "lrn alpha -1": (_net((3, 8, 8), CONV, ("n", "LRN", "lrn_param { local_size: 3 alpha: -1 }"), IP), "alpha must"),
    "lrn beta inf": (_net((3, 8, 8), CONV, ("n", "LRN", "lrn_param { local_size: 3 beta: inf }"), IP), "beta must"),
    "lrn k -5": (_net((3, 8, 8), CONV, ("n", "LRN", "lrn_param { local_size: 3 k: -5 }"), IP),
                 "k must be a finite number > 0, got -5"),
    "lrn k 0": (_net((3, 8, 8), CONV, ("n", "LRN", "lrn_param { local_size: 3 k: 0 }"), IP), "k must"),
    "relu slope inf": (_net((3, 8, 8), CONV, ("r", "ReLU", "relu_param { negative_slope: inf }"), IP),
                       "negative_slope must be a finite number, got inf"),
    "relu slope nan": (_net((3, 8, 8), CONV, ("r", "ReLU", "relu_param { negative_slope: nan }"), IP),
                       "negative_slope must be a finite number, got nan"),
    "upsample 65536": (_net((3, 8, 8), CONV, ("u", "Upsample", "upsample_param { scale: 65536 }"), IP),
                       r"scale \[65536, 65536\] over the limit of 64"),
    "upsample to 12 GB": (_net((3, 512, 512), CONV, ("u", "Upsample", "upsample_param { scale: 64 }"), IP),
                          "values per sample .* over the limit"),
    "input 32 x (2^59 + 25)": (_net((1, 32, 2 ** 59 + 25), CONV, IP), "has a dimension over the limit"),
    "input wraps int64": (_net((2 ** 32, 2 ** 32, 2 ** 32), CONV, IP), "has a dimension over the limit"),
    "input 3 x 8192 x 8192": (_net((3, 8192, 8192), CONV, IP), "values per sample"),
    "pool window over padded input": (_net((3, 5, 5), CONV, ("p", "Pooling", "pooling_param { pool: MAX "
                                                                             "kernel_size: 6 stride: 4 }"), IP),
                                      r"kernel \[6, 6\] is larger than the padded input"),
    "conv window over input": (_net((3, 5, 5), ("c", "Convolution", "convolution_param { num_output: 2 "
                                                                    "kernel_size: 9 stride: 4 }"), IP),
                               "is larger than the padded input"),
    "conv dilation over input": (_net((3, 5, 5), ("c", "Convolution", "convolution_param { num_output: 2 "
                                                                      "kernel_size: 3 dilation: 100000 }"), IP),
                                 "is larger than the padded input"),
    "conv pad 2^31": (_net((3, 5, 5), ("c", "Convolution", "convolution_param { num_output: 2 kernel_size: 3 "
                                                           "pad: 2147483647 }"), IP), "over the limit"),
    "deconv stride 2^31": (_net((3, 5, 5), ("c", "Deconvolution", "convolution_param { num_output: 2 kernel_size: 3 "
                                                                  "stride: 2147483647 }"), IP), "over the limit"),
    "inner product 2^31 outputs": (_net((3, 8, 8), CONV, ("ip", "InnerProduct", "inner_product_param { "
                                                                                "num_output: 2147483647 }")),
                                   "weights, over the limit"),
    "conv 2^31 outputs": (_net((3, 8, 8), ("c", "Convolution", "convolution_param { num_output: 2147483647 "
                                                               "kernel_size: 3 }"), IP), "weights, over the limit"),
    "batchnorm eps inf": (_net((3, 8, 8), CONV, ("b", "BatchNorm", "batch_norm_param { eps: inf }"), IP), "eps must"),
    "reshape to 2^40": (_net((3, 8, 8), CONV, ("s", "Reshape", "reshape_param { shape { dim: 0 dim: -1 "
                                                               "dim: 1099511627776 } }"), IP), "over the limit"),
}


@pytest.mark.parametrize("label", sorted(HOSTILE))
def test_hostile_definition_is_refused_at_parse(label):
    text, match = HOSTILE[label]
    t = time.monotonic()
    with pytest.raises(JaxprobeError, match=match) as info:
        caffe_spec.parse_prototxt(text)
    assert time.monotonic() - t < 1 and "\n" not in str(info.value)


def test_limits_keep_real_nets():
    """The limits leave room: LeNet, an AlexNet-sized and a VGG-sized first block parse."""
    caffe_spec.parse_prototxt(GENERATED_LENET)
    caffe_spec.parse_prototxt(_net((3, 227, 227), ("c", "Convolution", "convolution_param { num_output: 96 "
                                                                       "kernel_size: 11 stride: 4 }"),
                                   ("n", "LRN", "lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 }"),
                                   ("p", "Pooling", "pooling_param { pool: MAX kernel_size: 3 stride: 2 }"),
                                   ("p2", "Pooling", "pooling_param { pool: MAX kernel_size: 3 stride: 2 }"),
                                   ("ip", "InnerProduct", "inner_product_param { num_output: 4096 }")))
    caffe_spec.parse_prototxt(_net((3, 224, 224), ("c", "Convolution", "convolution_param { num_output: 64 "
                                                                       "kernel_size: 3 pad: 1 }"), IP))


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    root = tmp_path_factory.mktemp("lenet")
    (root / "lenet.prototxt").write_text(GENERATED_LENET)
    write_caffemodel(root / "lenet.caffemodel", caffe_spec.parse_prototxt(GENERATED_LENET), np.random.default_rng(0))
    return root


def _earlier_output(tmp_path):
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "result.json").write_text("{}")
    return {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}


def _refused(capsys, argv, tmp_path, before):
    """`jaxprobe ARGV --out tmp_path/out` ends with status 2 and one line; the earlier output stays."""
    t = time.monotonic()
    try:
        status = main(argv + ["--out", str(tmp_path / "out")])
    except SystemExit as e:  # argparse's own errors
        status = e.code
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err and "Warning" not in err, err
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before
    assert sorted(os.listdir(tmp_path)) == sorted(set(os.listdir(tmp_path)) - {".out.lock"})
    assert not any(n.startswith(".out.") for n in os.listdir(tmp_path))
    assert time.monotonic() - t < 20
    return err


@pytest.mark.parametrize("label", ["lrn local_size 4294967295", "upsample 65536", "relu slope nan", "lrn k -5",
                                   "input 32 x (2^59 + 25)"])
def test_hostile_definition_through_convert_leaves_out_alone(lenet, tmp_path, capsys, label):
    proto = tmp_path / "net.prototxt"
    proto.write_text(HOSTILE[label][0])
    before = _earlier_output(tmp_path)
    err = _refused(capsys, ["convert", "caffe", "--prototxt", str(proto), "--caffemodel",
                            str(lenet / "lenet.caffemodel")], tmp_path, before)
    assert err.startswith("jaxprobe: error: prototxt ")


@pytest.mark.parametrize("flags, match", [
    (["--mean", "nan"], "argument --mean: expected finite numbers"),
    (["--mean", "inf"], "argument --mean: expected finite numbers"),
    (["--mean", "1e308,2"], "argument --mean: expected finite numbers"),
    (["--mean", "1,2,3,4,5"], "argument --mean: expected 1 to 4 numbers"),
    (["--scale", "nan"], "argument --scale: expected a finite positive number"),
    (["--scale", "0"], "argument --scale: expected a finite positive number"),
    (["--scale", "-1"], "argument --scale: expected a finite positive number"),
    (["--range", "nan,1"], "argument --range: expected finite numbers"),
    (["--range", "1,0"], "range: expected low < high"),
    (["--range", "0,1,2"], "range: expected two numbers"),
])
def test_conversion_flags_are_checked_first(lenet, tmp_path, capsys, flags, match):
    before = _earlier_output(tmp_path)
    err = _refused(capsys, ["convert", "caffe", "--prototxt", str(lenet / "lenet.prototxt"), "--caffemodel",
                            str(lenet / "lenet.caffemodel")] + flags, tmp_path, before)
    assert match in err


def test_special_and_oversized_files_are_refused_quickly(lenet, tmp_path, capsys):
    before = _earlier_output(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    big = tmp_path / "big.caffemodel"
    with open(big, "wb") as f:
        f.truncate(2 << 30)  # sparse: over the 2 GiB limit without writing it
    proto, model = str(lenet / "lenet.prototxt"), str(lenet / "lenet.caffemodel")
    cases = [
        (["convert", "caffe", "--prototxt", proto, "--caffemodel", "/dev/zero"], "not a regular file"),
        (["convert", "caffe", "--prototxt", proto, "--caffemodel", str(fifo)], "not a regular file"),
        (["convert", "caffe", "--prototxt", proto, "--caffemodel", str(big)], "over the limit"),
        (["convert", "caffe", "--prototxt", "/dev/zero", "--caffemodel", model], "not a regular file"),
        (["convert", "caffe", "--prototxt", str(fifo), "--caffemodel", model], "not a regular file"),
        (["convert", "caffe", "--prototxt", proto, "--caffemodel", str(tmp_path / "missing")],
         "No such file or directory"),
        (["convert", "torch", "/dev/zero", "--arch", "lenet5"], "not a regular file"),
        (["convert", "torch", str(fifo), "--arch", "lenet5"], "not a regular file"),
    ]
    for argv, match in cases:
        assert match in _refused(capsys, argv, tmp_path, before), argv


@pytest.fixture(scope="module")
def state_dict(tmp_path_factory):
    from safetensors.numpy import save_file

    root = tmp_path_factory.mktemp("sd")
    rng = np.random.default_rng(0)
    spec = caffe_spec.parse_prototxt(GENERATED_LENET)
    del spec
    tensors = {"c1.w": rng.normal(size=(20, 1, 5, 5)).astype(np.float32), "c1.b": np.zeros(20, np.float32),
               "c2.w": rng.normal(size=(50, 20, 5, 5)).astype(np.float32), "c2.b": np.zeros(50, np.float32),
               "f1.w": rng.normal(size=(500, 800)).astype(np.float32), "f1.b": np.zeros(500, np.float32),
               "f2.w": rng.normal(size=(10, 500)).astype(np.float32), "f2.b": np.zeros(10, np.float32)}
    save_file(tensors, str(root / "lenet.safetensors"))
    (root / "lenet.prototxt").write_text(GENERATED_LENET)
    return root


@pytest.mark.parametrize("content, match", [
    (None, "map: cannot read .*No such file or directory"),
    ("/dev/zero", "not a regular file"),
    ("fifo", "not a regular file"),
    ("[" * 100_000 + "]" * 100_000, "nested deeper than 8 levels"),
    ('{"a": ' * 100_000 + "null" + "}" * 100_000, "nested deeper than 8 levels"),
    ('{"c1.w": NaN}', "not valid JSON"),
    ("\xff\xfe", "not UTF-8"),
    ('["conv1.weight"]', "expected a JSON object"),
])
def test_hostile_key_maps(state_dict, tmp_path, capsys, content, match):
    before = _earlier_output(tmp_path)
    path = tmp_path / "map.json"
    if content == "/dev/zero":
        path = "/dev/zero"
    elif content == "fifo":
        os.mkfifo(path)
    elif content is not None:
        path.write_bytes(content.encode("latin-1") if content.startswith("\xff") else content.encode())
    import re

    err = _refused(capsys, ["convert", "torch", str(state_dict / "lenet.safetensors"), "--prototxt",
                            str(state_dict / "lenet.prototxt"), "--map", str(path)], tmp_path, before)
    assert re.search(match, err), err


def test_nul_byte_in_a_path_argument(lenet, tmp_path, capsys):
    before = _earlier_output(tmp_path)
    err = _refused(capsys, ["convert", "caffe", "--prototxt", str(lenet / "lenet.prototxt"), "--caffemodel",
                            str(lenet / "lenet.caffemodel") + "\x00x"], tmp_path, before)
    assert "holds a NUL byte" in err


def test_long_error_messages_are_cut(tmp_path, capsys):
    """A state dict of 20 000 entries (the review used 300 000): its unmatched keys would make a line
    hundreds of kB long."""
    from safetensors.numpy import save_file

    before = _earlier_output(tmp_path)
    save_file({f"k{i}": np.zeros(1, np.float32) for i in range(20_000)}, str(tmp_path / "many.safetensors"))
    err = _refused(capsys, ["convert", "torch", str(tmp_path / "many.safetensors"), "--arch", "lenet5"],
                   tmp_path, before)
    assert len(err) < 1700 and "characters left out) ... " in err


def test_overflowing_doubles_give_the_error_alone(tmp_path, capsys):
    """A caffemodel blob of doubles beyond float32: refused without numpy's RuntimeWarning."""
    import warnings

    from jaxprobe.models.caffe_schema import NetParameter

    spec = caffe_spec.parse_prototxt(GENERATED_LENET)
    write_caffemodel(tmp_path / "m.caffemodel", spec, np.random.default_rng(0))
    net = NetParameter()
    net.ParseFromString((tmp_path / "m.caffemodel").read_bytes())
    blob = next(layer for layer in net.layer if layer.blobs).blobs[1]
    n = len(blob.data)
    del blob.data[:]
    blob.double_data.extend([1e300] * n)
    (tmp_path / "m.caffemodel").write_bytes(net.SerializeToString())
    (tmp_path / "net.prototxt").write_text(GENERATED_LENET)
    before = _earlier_output(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning would fail the conversion's call
        err = _refused(capsys, ["convert", "caffe", "--prototxt", str(tmp_path / "net.prototxt"), "--caffemodel",
                                str(tmp_path / "m.caffemodel")], tmp_path, before)
    assert "non-finite" in err
