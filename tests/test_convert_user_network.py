"""A user's own PyTorch network converted and checked against torch's forward on the same weights.

The networks are built here in torch (a Sequential LeNet-like classifier with BatchNorm2d/1d and
padded AvgPool2d, a generator with nearest and bilinear Upsample), given random weights and batch
statistics, saved with `torch.save(state_dict)` and converted three ways: `--prototxt` with the
state dict's order, `--prototxt --map`, and the Python route (a builder of our own plus `Rule`s).
The reference is always torch's own forward pass. Tolerance: float32 rounding of different
summation orders, atol 1e-5 + rtol 1e-4 on O(1) values.
"""

from __future__ import annotations

import importlib.util
import json
from collections import OrderedDict

import jax
import numpy as np
import pytest
from flax import nnx

import jaxprobe
from jaxprobe import JaxprobeError
from jaxprobe.models import caffe_layers as cl
from jaxprobe.models import zoo
from jaxprobe.models.caffe_schema import NetParameter
from jaxprobe.models.caffe_spec import read_prototxt
from jaxprobe.models.layers import Act, Flatten, Layer, Network
from weights_convert import Arch, Rule, caffe, torch_files, user_network
from weights_convert.__main__ import main as convert_main

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                reason="torch not installed (pip install torch==2.13.0)")
ATOL, RTOL = 1e-5, 1e-4

LENET = """
name: "lenet_bn"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 12 dim: 12 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
        convolution_param { num_output: 6 kernel_size: 3 bias_term: false } }
layer { name: "bn2" type: "BatchNorm" bottom: "conv2" top: "conv2" batch_norm_param { eps: 0.1 } }
layer { name: "scale2" type: "Scale" bottom: "conv2" top: "conv2" scale_param { bias_term: true } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" relu_param { negative_slope: 0.1 } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
        pooling_param { pool: AVE kernel_size: 2 stride: 2 pad: 1 round_mode: FLOOR } }
layer { name: "fc3" type: "InnerProduct" bottom: "pool2" top: "fc3" inner_product_param { num_output: 8 } }
layer { name: "bn3" type: "BatchNorm" bottom: "fc3" top: "fc3" }
layer { name: "relu3" type: "ReLU" bottom: "fc3" top: "fc3" }
layer { name: "fc4" type: "InnerProduct" bottom: "fc3" top: "fc4" inner_product_param { num_output: 3 } }
"""

GENERATOR = """
name: "upsampling_generator"
layer { name: "z" type: "Input" top: "z" input_param { shape { dim: 1 dim: 6 } } }
layer { name: "fc" type: "InnerProduct" bottom: "z" top: "fc" inner_product_param { num_output: 36 } }
layer { name: "bn0" type: "BatchNorm" bottom: "fc" top: "fc" }
layer { name: "scale0" type: "Scale" bottom: "fc" top: "fc" scale_param { bias_term: true } }
layer { name: "relu0" type: "ReLU" bottom: "fc" top: "fc" }
layer { name: "shape" type: "Reshape" bottom: "fc" top: "shape" reshape_param { shape { dim: 0 dim: 4 dim: 3 dim: 3 } } }
layer { name: "up1" type: "Upsample" bottom: "shape" top: "up1" upsample_param { scale: 2 } }
layer { name: "conv1" type: "Convolution" bottom: "up1" top: "conv1" convolution_param { num_output: 3 kernel_size: 3 pad: 1 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "scale1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" relu_param { negative_slope: 0.2 } }
layer { name: "up2" type: "Upsample" bottom: "conv1" top: "up2" upsample_param { scale: 2 mode: BILINEAR } }
layer { name: "deconv2" type: "Deconvolution" bottom: "up2" top: "deconv2"
        convolution_param { num_output: 2 kernel_size: 4 stride: 2 pad: 1 } }
layer { name: "tanh2" type: "TanH" bottom: "deconv2" top: "deconv2" }
"""


def torch_lenet():
    import torch.nn as tnn

    return tnn.Sequential(
        tnn.Conv2d(1, 4, 3, padding=1), tnn.BatchNorm2d(4), tnn.ReLU(),
        tnn.AvgPool2d(3, 2, padding=1, ceil_mode=True, count_include_pad=True),  # 12 -> 7, last window overhangs
        tnn.Conv2d(4, 6, 3, bias=False), tnn.BatchNorm2d(6, eps=0.1), tnn.LeakyReLU(0.1),
        tnn.AvgPool2d(2, 2, padding=1),  # floor rounding: 5 -> 3
        tnn.Flatten(), tnn.Linear(54, 8), tnn.BatchNorm1d(8, affine=False), tnn.ReLU(), tnn.Linear(8, 3))


class TorchGenerator:
    """A generator with named parts, as a researcher writes one (built lazily: torch is optional)."""

    def __new__(cls):
        import torch.nn as tnn

        class Generator(tnn.Module):
            def __init__(self):
                super().__init__()
                self.fc, self.bn0 = tnn.Linear(6, 36), tnn.BatchNorm1d(36)
                self.conv1, self.bn1 = tnn.Conv2d(4, 3, 3, padding=1), tnn.BatchNorm2d(3)
                self.deconv2 = tnn.ConvTranspose2d(3, 2, 4, 2, 1)
                self.up1, self.up2 = tnn.Upsample(scale_factor=2), tnn.Upsample(scale_factor=2, mode="bilinear")

            def forward(self, z):
                h = self.up1(tnn.functional.relu(self.bn0(self.fc(z))).view(-1, 4, 3, 3))
                h = self.up2(tnn.functional.leaky_relu(self.bn1(self.conv1(h)), 0.2))
                return tnn.functional.tanh(self.deconv2(h))

        return Generator()


def randomize(net, seed):
    """Random weights and batch statistics (torch's initial mean 0, var 1 would test nothing)."""
    import torch

    torch.manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.5)
                m.running_var.uniform_(0.3, 2.0)
                if m.affine:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0, 0.3)
    return net.eval()


def torch_out(net, x):
    import torch

    with torch.no_grad():
        return net(torch.from_numpy(np.ascontiguousarray(x))).numpy()


def nchw(a):
    return np.transpose(np.asarray(a), (0, 3, 1, 2)) if np.ndim(a) == 4 else np.asarray(a)


def nhwc(a):
    return np.transpose(a, (0, 2, 3, 1)) if a.ndim == 4 else a


def check_model(model, net, x_nchw):
    """forward equals torch's, and every layer's up_to/from_ split gives the same output."""
    want = torch_out(net, x_nchw)
    x = nhwc(x_nchw)
    full = model.forward(model.params, x)
    np.testing.assert_allclose(nchw(full), want, atol=ATOL, rtol=RTOL)
    assert np.std(want) > 1e-2  # the output depends on the input
    for l in range(1, model.n_layers + 1):
        h = model.up_to(model.params, x, l)
        np.testing.assert_allclose(model.from_(model.params, h, l), full, atol=ATOL, rtol=RTOL, err_msg=f"layer {l}")


@pytest.fixture
def lenet(tmp_path):
    import torch

    net = randomize(torch_lenet(), 0)
    torch.save(net.state_dict(), tmp_path / "lenet.pth")
    (tmp_path / "lenet.prototxt").write_text(LENET)
    return net, tmp_path / "lenet.pth", tmp_path / "lenet.prototxt"


def test_sequential_lenet_by_state_dict_order(lenet, tmp_path, capsys):
    net, pth, proto = lenet
    assert convert_main(["torch", str(pth), "--prototxt", str(proto), "--out", str(tmp_path / "out")]) == 0
    assert "wrote" in capsys.readouterr().out
    model = jaxprobe.load(tmp_path / "out")
    # a layer is one learned map with its batch norm, its nonlinearity and the ops up to the next map
    assert model.layer_names == ("conv1", "conv2", "fc3", "fc4")
    assert model.input_shape == (12, 12, 1) and model.pixels.channels == "gray"
    assert (tmp_path / "out" / "net.prototxt").read_text() == LENET
    m = model.manifest
    assert m["source"]["key_order"] == "state dict order"
    assert [f["format"] for f in m["source"]["files"]] == ["pytorch-zip", "prototxt"]
    assert {r["source"]: r["target"] for r in m["mapping"]}["10.running_var"] == "fc3.norm.var"
    x = np.random.default_rng(1).normal(size=(3, 1, 12, 12)).astype(np.float32)
    check_model(model, net, x)
    # the pre-activation of conv2 is the batch-normalized map (torch's module 5), before the LeakyReLU
    import torch

    with torch.no_grad():
        bn2 = net[:6](torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(nchw(model.up_to(model.params, nhwc(x), "conv2")), bn2, atol=ATOL, rtol=RTOL)


def test_generator_by_key_map(tmp_path):
    import torch

    net = randomize(TorchGenerator(), 1)
    sd = net.state_dict()
    torch.save(OrderedDict(reversed(list(sd.items()))), tmp_path / "g.pth")  # order says nothing here
    (tmp_path / "g.prototxt").write_text(GENERATOR)
    key_map = {"fc.weight": "fc.weight", "fc.bias": "fc.bias", "bn0.weight": "scale0.weight",
               "bn0.bias": "scale0.bias", "bn0.running_mean": "bn0.running_mean", "bn0.running_var": "bn0.running_var",
               "conv1.weight": "conv1.weight", "conv1.bias": "conv1.bias", "bn1.weight": "scale1.weight",
               "bn1.bias": "scale1.bias", "bn1.running_mean": "bn1.running_mean",
               "bn1.running_var": "bn1.running_var", "deconv2.weight": "deconv2.weight",
               "deconv2.bias": "deconv2.bias"}
    (tmp_path / "map.json").write_text(json.dumps(key_map))
    rc = convert_main(["torch", str(tmp_path / "g.pth"), "--prototxt", str(tmp_path / "g.prototxt"),
                       "--map", str(tmp_path / "map.json"), "--role", "generator", "--out", str(tmp_path / "g")])
    assert rc == 0
    model = jaxprobe.load(tmp_path / "g")
    assert model.layer_names == ("fc", "conv1", "deconv2") and model.output_shape() == (24, 24, 2)
    assert model.manifest["latent"] == {"dim": 6, "prior": "normal"} and model.manifest["source"]["key_order"] == "key map"
    assert model.pixels is None  # a 2-channel output is not an image convention jaxprobe names
    z = np.array(model.sample_prior(jax.random.PRNGKey(0), 4))
    check_model(model, net, z)


def test_upsampling_and_padded_average_pooling_match_torch():
    import torch
    import torch.nn.functional as F

    x = np.random.default_rng(2).normal(size=(2, 3, 5, 4)).astype(np.float32)
    for mode, scale, corners in [("NEAREST", (2, 3), False), ("BILINEAR", (2, 2), False), ("BILINEAR", (3, 2), False),
                                 ("BILINEAR", (3, 2), True)]:
        op = cl.Upsample(mode, scale, corners)
        kw = {} if mode == "NEAREST" else {"align_corners": corners}
        want = F.interpolate(torch.from_numpy(x), scale_factor=scale, mode=mode.lower(), **kw).numpy()
        np.testing.assert_allclose(nchw(op(nhwc(x))), want, atol=1e-6, err_msg=f"{mode} {scale} {corners}")
    for n, k, s, p in [(8, 3, 2, 1), (9, 3, 2, 1), (7, 2, 2, 1), (10, 4, 3, 2), (6, 3, 1, 1)]:
        xi = np.random.default_rng(n).normal(size=(1, 2, n, n + 1)).astype(np.float32)
        for ceil in (True, False):
            want = F.avg_pool2d(torch.from_numpy(xi), k, s, p, ceil_mode=ceil, count_include_pad=True).numpy()
            got = cl.CaffePool("AVE", (k, k), (s, s), (p, p), ceil)(nhwc(xi))
            np.testing.assert_allclose(nchw(got), want, atol=1e-6, err_msg=f"{n} {k} {s} {p} ceil={ceil}")


def _python_route_builder(*, rngs: nnx.Rngs) -> Network:
    """The LeNet-like net in code, from the generic layers (a researcher's own builder)."""
    bn = lambda c, eps=1e-5, affine=True: nnx.BatchNorm(c, epsilon=eps, use_scale=affine,  # noqa: E731
                                                        use_bias=affine, rngs=rngs)
    layers = [
        Layer(cl.CaffeConv(1, 4, (3, 3), pad=(1, 1), rngs=rngs), Act("relu"),
              (cl.CaffePool("AVE", (3, 3), (2, 2), (1, 1), True),), norm=bn(4)),
        Layer(cl.CaffeConv(4, 6, (3, 3), bias=False, rngs=rngs), Act("leaky_relu", 0.1),
              (cl.CaffePool("AVE", (2, 2), (2, 2), (1, 1), False), Flatten("CHW")), norm=bn(6, 0.1)),
        Layer(cl.CaffeInnerProduct(54, 8, rngs=rngs), Act("relu"), norm=bn(8, affine=False)),
        Layer(cl.CaffeInnerProduct(8, 3, rngs=rngs)),
    ]
    return Network(layers, ("conv1", "conv2", "fc3", "fc4"))


def _python_route_rules():
    rules = []
    for src, layer, kind in (("0", "conv1", "oihw_to_hwio"), ("4", "conv2", "oihw_to_hwio"), ("9", "fc3", "oi_to_io"),
                             ("12", "fc4", "oi_to_io")):
        rules.append(Rule(f"{src}.weight", layer, "linear.kernel", kind))
        if src != "4":
            rules.append(Rule(f"{src}.bias", layer, "linear.bias", "identity"))
    for src, layer, affine in (("1", "conv1", True), ("5", "conv2", True), ("10", "fc3", False)):
        names = (("weight", "scale"), ("bias", "bias")) if affine else ()
        for a, b in names + (("running_mean", "mean"), ("running_var", "var")):
            rules.append(Rule(f"{src}.{a}", layer, f"norm.{b}", "identity"))
    return tuple(rules)


def test_python_route_builder_and_rules(lenet, tmp_path):
    net, pth, _ = lenet
    zoo.register("test_user_lenet", _python_route_builder)
    arch = Arch(builder="test_user_lenet", kwargs={}, role="classifier", input_shape=(12, 12, 1),
                pixels=dict(low=0.0, high=1.0, channels="gray"), rules=_python_route_rules(),
                ignore=("*.num_batches_tracked",))
    torch_files.convert_torch(pth, arch, tmp_path / "py")
    model = jaxprobe.load(tmp_path / "py")
    assert model.manifest["architecture"]["builder"] == "test_user_lenet"
    check_model(model, net, np.random.default_rng(5).normal(size=(2, 1, 12, 12)).astype(np.float32))
    bad = arch._replace(rules=_python_route_rules()[1:])  # no rule for 0.weight
    with pytest.raises(JaxprobeError, match=r"unexpected: 0\.weight .*unfilled: conv1\.linear\.kernel"):
        torch_files.torch_model(pth, bad)


def test_caffe_batch_norm_blobs_against_torch(tmp_path):
    """A caffemodel of the same LeNet: BatchNorm's blobs hold running sums times a moving-average
    weight s and s itself (blob 2), as Caffe writes them; Scale holds torch's weight and bias."""
    net = randomize(torch_lenet(), 3)
    sd = {k: v.numpy() for k, v in net.state_dict().items()}
    s = 4.0
    blobs = {"conv1": [sd["0.weight"], sd["0.bias"]], "bn1": [sd["1.running_mean"] * s, sd["1.running_var"] * s, [s]],
             "scale1": [sd["1.weight"], sd["1.bias"]], "conv2": [sd["4.weight"]],
             "bn2": [sd["5.running_mean"] * s, sd["5.running_var"] * s, [s]], "scale2": [sd["5.weight"], sd["5.bias"]],
             "fc3": [sd["9.weight"], sd["9.bias"]], "bn3": [sd["10.running_mean"], sd["10.running_var"], [1.0]],
             "fc4": [sd["12.weight"], sd["12.bias"]]}
    msg = NetParameter()
    for name, arrays in blobs.items():
        layer = msg.layer.add(name=name)
        for a in arrays:
            a = np.asarray(a, np.float32)
            blob = layer.blobs.add()
            blob.shape.dim.extend(a.shape)
            blob.data.extend(a.ravel().tolist())
    (tmp_path / "w.caffemodel").write_bytes(msg.SerializeToString())
    (tmp_path / "net.prototxt").write_text(LENET)
    model = caffe.caffe_model(tmp_path / "net.prototxt", tmp_path / "w.caffemodel")
    assert model.manifest["caffe"]["batch_norm_factors"] == {"bn1": 0.25, "bn2": 0.25, "bn3": 1.0}
    check_model(model, net, np.random.default_rng(6).normal(size=(2, 1, 12, 12)).astype(np.float32))


def test_errors(lenet, tmp_path, capsys):
    net, pth, proto = lenet
    keys = [k for k in net.state_dict() if not k.endswith("num_batches_tracked")]
    names = [f"{p.layer}.{p.name}" for p in caffe.caffe_parameters(read_prototxt(proto))]
    good = dict(zip(keys, names))

    def convert(key_map, path=pth, prototxt=proto):
        return user_network.torch_prototxt_model(path, prototxt, key_map=key_map)

    # a map naming a key the file does not hold: reported with the prototxt's tensors and their shapes
    with pytest.raises(JaxprobeError, match=r"missing: 0\.weigth \(for conv1\.linear\.kernel.*unexpected: 0\.weight "
                                            r".*tensors, in order: conv1\.weight \(4, 1, 3, 3\)"):
        convert({("0.weigth" if k == "0.weight" else k): v for k, v in good.items()})
    # a shape mismatch: the two Linear weights swapped
    with pytest.raises(JaxprobeError, match=r"2 misshaped or invalid: 9\.weight: expected shape \(3, 8\) \(for "
                                            r"fc4\.linear\.kernel\), got \(8, 54\); 12\.weight: expected shape \(8, 54\)"):
        convert(dict(good, **{"9.weight": "fc4.weight", "12.weight": "fc3.weight"}))
    # map entries the prototxt cannot take
    with pytest.raises(JaxprobeError, match=r"map: '0\.bias' -> 'conv9\.bias': the prototxt has no tensor 'conv9"
                                            r"\.bias'; its tensors: conv1\.weight \(4, 1, 3, 3\), conv1\.bias \(4,\)"):
        convert(dict(good, **{"0.bias": "conv9.bias"}))
    with pytest.raises(JaxprobeError, match=r"map: '0\.weight' and '0\.bias' both fill 'conv1\.weight'"):
        convert(dict(good, **{"0.bias": "conv1.weight"}))
    with pytest.raises(JaxprobeError, match=r"^map: entry '0\.weight': expected a tensor name .* got 3"):
        convert(dict(good, **{"0.weight": 3}))
    # a prototxt with a type the builder lacks
    bad_proto = tmp_path / "bad.prototxt"
    bad_proto.write_text(LENET.replace('type: "ReLU" bottom: "conv1"', 'type: "Embed" bottom: "conv1"'))
    with pytest.raises(JaxprobeError, match=r"layer 'relu1': unsupported layer type 'Embed'; supported: .*Upsample"):
        convert(None, prototxt=bad_proto)
    # the order route needs as many tensors as the prototxt takes, and a file that keeps its order
    from safetensors.numpy import save_file

    sd = torch_files.load_state_dict(pth).tensors
    save_file({k: np.array(v) for k, v in sd.items()}, str(tmp_path / "w.safetensors"))
    with pytest.raises(JaxprobeError, match="safetensors file does not keep its state dict's order; give --map"):
        convert(None, path=tmp_path / "w.safetensors")
    np.testing.assert_allclose(  # with a map it converts
        convert(good, path=tmp_path / "w.safetensors").params["layers"][0]["linear"]["bias"][...], sd["0.bias"])
    short = tmp_path / "short.prototxt"
    short.write_text(LENET.replace("bias_term: false", ""))
    with pytest.raises(JaxprobeError, match=r"holds 17 tensors .* take 18 .*give --map"):
        convert(None, prototxt=short)
    # a named architecture's missing/unexpected keys say how to convert one's own network
    rc = convert_main(["torch", str(pth), "--arch", "lenet5", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and "missing" in err and "unexpected" in err and "--prototxt NET.prototxt" in err \
        and "--map MAP.json" in err and "zoo.register" in err
    rc = convert_main(["torch", str(pth), "--arch", "lenet5", "--prototxt", str(proto), "--out", str(tmp_path / "x")])
    assert rc == 2 and "either --arch NAME" in capsys.readouterr().err
    rc = convert_main(["torch", str(pth), "--arch", "lenet5", "--map", "m.json", "--out", str(tmp_path / "x")])
    assert rc == 2 and "--map describe a --prototxt network" in capsys.readouterr().err
    (tmp_path / "list.json").write_text("[1, 2]")
    rc = convert_main(["torch", str(pth), "--prototxt", str(proto), "--map", str(tmp_path / "list.json"),
                       "--out", str(tmp_path / "x")])
    assert rc == 2 and "expected a JSON object" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
