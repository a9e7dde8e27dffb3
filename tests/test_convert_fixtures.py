"""Real third-party weight files (../shared/fixtures) convert and reproduce their reference outputs.

The references were computed by OpenCV's Caffe importer (Caffe files) and by PyTorch (torch and
safetensors files), NCHW; jaxprobe is NHWC. Tolerance: atol 1e-4 + rtol 1e-5 (float32 rounding of
different summation orders; pool2 values reach ~280), intermediate blobs included.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxprobe
from jaxprobe import JaxprobeError
from jaxprobe.models import caffe_net
import torch_zip_writer
from weights_convert import caffe, mapping, torch_files
from weights_convert.__main__ import main as convert_main

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
REPO = Path(__file__).resolve().parents[1]
ATOL, RTOL = 1e-4, 1e-5

CAFFE = {
    "lenet": ("caffe/lenet/lenet.prototxt", "caffe/lenet/lenet_iter_10000.caffemodel", "caffe_lenet.npz"),
    "cifar10_full": ("caffe/cifar10_full/cifar10_full.prototxt",
                     "caffe/cifar10_full/cifar10_full_iter_70000.caffemodel", "caffe_cifar10_full.npz"),
}
TORCH = {
    "lenet5": ("torch/lenet5/lenet.pth", "torch_lenet5.npz"),
    "simple_cnn": ("safetensors/simple_cnn/model-mnist.safetensors", "safetensors_simple_cnn.npz"),
    "torch_dcgan_generator": ("torch/dcgan_generator/generator.pth", "torch_dcgan_generator.npz"),
}


@pytest.fixture(scope="module")
def fx() -> Path:
    if not (FIXTURES / "README.md").is_file():
        pytest.skip(f"third-party weight fixtures not found at {FIXTURES}: they live in ../shared/fixtures "
                    "beside the repository")
    return FIXTURES


def to_nhwc(a):
    return np.transpose(a, (0, 2, 3, 1)) if a.ndim == 4 else a


def deviation(got, want):
    """Max |got - want| and whether it is within atol + rtol * |want| everywhere."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    err = np.abs(got - want)
    return float(err.max()), bool(np.all(err <= ATOL + RTOL * np.abs(want)))


def check_caffe_reference(model, ref):
    """Compare prob_zeros, prob_rand and every <layer>_rand blob; returns {key: max deviation}."""
    x = to_nhwc(ref["input_rand"])
    outs = jax.jit(lambda p, x: caffe_net.layer_outputs(model, p, x))(model.params, x)
    devs = {}
    for key in ref.files:
        if key == "input_rand":
            continue
        if key == "prob_zeros":
            got = model.forward(model.params, np.zeros_like(x))
        elif key == "prob_rand":
            got = outs[model.manifest["caffe"]["output"]]
        else:
            got = outs[key[: -len("_rand")]]
        devs[key], ok = deviation(got, to_nhwc(ref[key]))
        assert ok, f"{key}: max deviation {devs[key]}"
    return devs


@pytest.mark.parametrize("name", sorted(CAFFE))
def test_caffe_fixture_reproduces_reference(fx, tmp_path, name):
    proto, weights, ref_name = CAFFE[name]
    ref = np.load(fx / "reference" / ref_name)
    assert {"input_rand", "prob_zeros", "prob_rand"} <= set(ref.files) and len(ref.files) >= 5
    converted = caffe.convert_caffe(fx / proto, fx / weights, tmp_path / name)
    loaded = jaxprobe.load(tmp_path / name)
    assert loaded.layer_names == converted.layer_names
    for model in (converted, loaded):
        devs = check_caffe_reference(model, ref)
    print(f"{name}: max deviation " + ", ".join(f"{k} {v:.2e}" for k, v in sorted(devs.items())))


@pytest.mark.parametrize("arch", sorted(TORCH))
def test_torch_fixture_reproduces_reference(fx, tmp_path, arch):
    path, ref_name = TORCH[arch]
    ref = np.load(fx / "reference" / ref_name)
    x = ref["input0"] if "input0" in ref.files else ref["input"]
    x = x.reshape(len(x), -1) if arch == "torch_dcgan_generator" else to_nhwc(x)  # z is (N, 64, 1, 1)
    converted = torch_files.convert_torch(fx / path, arch, tmp_path / arch)
    loaded = jaxprobe.load(tmp_path / arch)
    for model in (converted, loaded):
        dev, ok = deviation(model.forward(model.params, x), to_nhwc(ref["output"]))
        assert ok, f"{arch}: max deviation {dev}"
    print(f"{arch}: max deviation output {dev:.2e}")


def _readme_sha256(fx):
    """{folder: sha256} from the fixtures README's table."""
    rows = re.findall(r"^\| ([\w/]+) \|[^|]*\|[^|]*\| ([0-9a-f]{64}) \|", (fx / "README.md").read_text(), re.M)
    return dict(rows)


def test_manifest_records_sources_mapping_and_preprocessing(fx, tmp_path):
    listed = _readme_sha256(fx)
    assert len(listed) == 5
    out = tmp_path / "lenet"
    caffe.convert_caffe(fx / CAFFE["lenet"][0], fx / CAFFE["lenet"][1], out)
    manifest = json.loads((out / "manifest.json").read_text())
    files = {f["format"]: f for f in manifest["source"]["files"]}
    model_file = fx / CAFFE["lenet"][1]
    assert files["caffemodel"]["sha256"] == hashlib.sha256(model_file.read_bytes()).hexdigest() == listed["caffe/lenet"]
    assert files["prototxt"]["sha256"] == hashlib.sha256((fx / CAFFE["lenet"][0]).read_bytes()).hexdigest()
    assert (out / "net.prototxt").read_bytes() == (fx / CAFFE["lenet"][0]).read_bytes()
    assert manifest["architecture"] == {"builder": "caffe_prototxt", "kwargs": {"prototxt": "net.prototxt"}}
    assert [m["target"] for m in manifest["mapping"]] == [
        f"{l}.linear.{p}" for l in ("conv1", "conv2", "ip1", "ip2") for p in ("kernel", "bias")]
    ip1 = next(m for m in manifest["mapping"] if m["source"] == "ip1[0]")
    assert ip1["source_shape"] == [500, 800] and ip1["shape"] == [800, 500] and ip1["transform"] == "oi_to_io"
    assert manifest["preprocessing"] == {"channel_order": "gray", "mean": [], "scale": 1.0, "range": [0.0, 1.0]}
    assert manifest["role"] == "classifier" and manifest["input_shape"] == [28, 28, 1]

    for arch, folder in (("lenet5", "torch/lenet5"), ("torch_dcgan_generator", "torch/dcgan_generator"),
                         ("simple_cnn", "safetensors/simple_cnn")):
        out = tmp_path / arch
        torch_files.convert_torch(fx / TORCH[arch][0], arch, out)
        manifest = json.loads((out / "manifest.json").read_text())
        (src,) = manifest["source"]["files"]
        assert src["sha256"] == listed[folder], arch
        assert src["format"] == ("safetensors" if arch == "simple_cnn" else "pytorch-zip")
        assert manifest["source"]["architecture"] == arch
        assert len(manifest["mapping"]) == len(mapping.ARCHITECTURES[arch].rules)
    # LeNet-5's normalization and the generator's latent prior are recorded
    lenet5 = jaxprobe.load(tmp_path / "lenet5")
    assert lenet5.pixels.mean == (0.1307,) and abs(lenet5.pixels.scale - 1 / 0.3081) < 1e-12
    gen = jaxprobe.load(tmp_path / "torch_dcgan_generator")
    assert gen.role == "generator" and gen.manifest["latent"] == {"dim": 64, "prior": "normal"}
    assert gen.sample_prior(jax.random.key(0), 3).shape == (3, 64)


def test_probe_protocol_on_converted_models(fx):
    models = [caffe.caffe_model(fx / CAFFE["cifar10_full"][0], fx / CAFFE["cifar10_full"][1]),
              torch_files.torch_model(fx / TORCH["torch_dcgan_generator"][0], "torch_dcgan_generator")]
    for model in models:
        x = jax.random.normal(jax.random.key(1), (2,) + model.input_shape)
        full = model.forward(model.params, x)
        for l in range(1, model.n_layers + 1):
            h = model.up_to(model.params, x, l)
            np.testing.assert_allclose(model.from_(model.params, h, l), full, atol=1e-5, rtol=1e-5)
    # cifar10_full: pool1 comes before relu1, so conv1's act is the identity and both are post ops
    assert models[0].layer_names == ("conv1", "conv2", "conv3", "ip1")
    assert models[1].layer_shapes() == {"deconv1": (3, 3, 256), "deconv2": (6, 6, 128), "deconv3": (13, 13, 64),
                                        "out": (28, 28, 1)}


def test_loading_needs_no_weights_convert(fx, tmp_path):
    caffe.convert_caffe(fx / CAFFE["lenet"][0], fx / CAFFE["lenet"][1], tmp_path / "lenet")
    torch_files.convert_torch(fx / TORCH["lenet5"][0], "lenet5", tmp_path / "lenet5")
    script = (
        "import sys, numpy as np, jaxprobe, jaxprobe.models.caffe_net, jaxprobe.models.archs_small\n"
        f"ref = np.load({str(fx / 'reference' / 'caffe_lenet.npz')!r})\n"
        f"m = jaxprobe.load({str(tmp_path / 'lenet')!r})\n"
        "p = np.asarray(m.forward(m.params, ref['input_rand'].transpose(0, 2, 3, 1)))\n"
        "assert np.allclose(p, ref['prob_rand'], atol=1e-4, rtol=1e-5)\n"
        f"m = jaxprobe.load({str(tmp_path / 'lenet5')!r})\n"
        "assert 'weights_convert' not in sys.modules, sorted(k for k in sys.modules if 'weights' in k)\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


def test_cli(fx, tmp_path, capsys):
    rc = convert_main(["caffe", "--prototxt", str(fx / CAFFE["lenet"][0]), "--caffemodel", str(fx / CAFFE["lenet"][1]),
                       "--out", str(tmp_path / "lenet")])
    assert rc == 0 and "wrote" in capsys.readouterr().out
    assert jaxprobe.load(tmp_path / "lenet").layer_names == ("conv1", "conv2", "ip1", "ip2")
    rc = convert_main(["torch", str(fx / TORCH["lenet5"][0]), "--arch", "simple_cnn", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("weights_convert: error:") and "fc2.weight" in err
    assert not (tmp_path / "x").exists()
    rc = convert_main(["caffe", "--prototxt", str(fx / CAFFE["lenet"][0]), "--caffemodel", str(fx / CAFFE["lenet"][1]),
                       "--out", str(tmp_path / "y"), "--range", "0,1,2"])
    assert rc == 2 and "range" in capsys.readouterr().err


def test_every_problem_reported_in_one_error(fx, tmp_path):
    sd = dict(torch_files.load_state_dict(fx / TORCH["lenet5"][0]).tensors)
    del sd["fc2.bias"]  # missing
    sd["fc9.weight"] = np.zeros((3, 3), np.float32)  # unexpected
    sd["conv2.weight"] = sd["conv2.weight"][:, :5]  # misshaped
    sd["fc3.bias"] = sd["fc3.bias"].astype(np.int32)  # wrong dtype
    sd["fc1.bias"] = np.full_like(sd["fc1.bias"], np.nan)  # non-finite
    torch_zip_writer.save_torch_zip(tmp_path / "bad.pth", sd)
    with pytest.raises(JaxprobeError) as info:
        torch_files.convert_torch(tmp_path / "bad.pth", "lenet5", tmp_path / "out")
    msg = str(info.value)
    for needle in ("1 missing: fc2.bias", "1 unexpected: fc9.weight", "conv2.weight: expected shape (16, 6, 5, 5)",
                   "fc3.bias: expected a floating-point tensor, got int32", "fc1.bias: holds non-finite values"):
        assert needle in msg, (needle, msg)
    assert not (tmp_path / "out").exists()


def test_caffe_weights_of_another_net_are_all_reported(fx):
    with pytest.raises(JaxprobeError) as info:
        caffe.caffe_model(fx / CAFFE["cifar10_full"][0], fx / CAFFE["lenet"][1])
    msg = str(info.value)
    for needle in ("missing: conv3[0]", "ip2[0] (10, 500) float32", "conv1[0]: expected shape (32, 3, 5, 5)",
                   "ip1[0]: expected shape (10, 1024)"):
        assert needle in msg, (needle, msg)


def test_bad_arguments(fx, tmp_path):
    with pytest.raises(JaxprobeError, match="unknown architecture 'vgg99'"):
        torch_files.convert_torch(fx / TORCH["lenet5"][0], "vgg99", tmp_path / "o")
    with pytest.raises(JaxprobeError, match="role: expected"):
        caffe.caffe_model(fx / CAFFE["lenet"][0], fx / CAFFE["lenet"][1], role="judge")
    with pytest.raises(JaxprobeError, match="channels: 'BGR' does not fit an input with 1 channel"):
        caffe.caffe_model(fx / CAFFE["lenet"][0], fx / CAFFE["lenet"][1], channels="BGR")
    with pytest.raises(JaxprobeError, match="cannot read"):
        caffe.caffe_model(tmp_path / "nope.prototxt", fx / CAFFE["lenet"][1])
    with pytest.raises(JaxprobeError, match="has no entry 'netG'"):
        torch_files.load_state_dict(fx / TORCH["lenet5"][0], key="netG")
    # a checkpoint holding a state dict under a key converts with --key
    sd = dict(torch_files.load_state_dict(fx / TORCH["lenet5"][0]).tensors)
    torch_zip_writer.save_torch_zip(tmp_path / "ckpt.pth", {"model": sd, "epoch": 7})
    with pytest.raises(JaxprobeError, match=r"choose a state dict with --key \(model\)"):
        torch_files.torch_model(tmp_path / "ckpt.pth", "lenet5")
    model = torch_files.torch_model(tmp_path / "ckpt.pth", "lenet5", key="model")
    assert model.manifest["source"]["key"] == "model"
