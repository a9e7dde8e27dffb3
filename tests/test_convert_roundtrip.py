"""Round trips against independent frameworks: OpenCV's Caffe importer and PyTorch.

Random weights are written in each model's source format (caffemodel through the schema, state
dicts with torch.save), converted, and compared with an OpenCV or torch forward pass of the same
weights, layer by layer where the source names layers. Numerics run at reduced channel widths with
the real layer structure and key names; the full-size models are checked by shape
(`jax.eval_shape`, no weights allocated), plus one full-size numeric round trip: CaffeNet's.

Skips cleanly when torch (torch==2.13.0) or OpenCV (opencv-python-headless<5) is not installed.
Tolerance: float32 rounding of different summation orders, atol 1e-4 + rtol 1e-5 relative to
each blob's scale (max |blob|).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from jaxprobe.io import MARKER
from jaxprobe.models import archs_paper, caffe_net, caffe_spec
from jaxprobe.models.pixels import PixelConvention, center_crop, convert_pixels
from jaxprobe.models.probe import Model
import torch_zip_writer
from weights_convert import caffe, torch_files
from jaxprobe.models.caffe_schema import NetParameter

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_CV2 = importlib.util.find_spec("cv2") is not None
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed (pip install torch==2.13.0)")
needs_cv2 = pytest.mark.skipif(not HAVE_CV2, reason="OpenCV not installed (pip install 'opencv-python-headless<5')")


def close(got, want, what=""):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    tol = 1e-4 + 1e-5 * max(1.0, float(np.abs(want).max()))
    err = float(np.abs(got - want).max())
    assert err <= tol, f"{what}: max deviation {err} > {tol}"


def nchw(a):
    a = np.asarray(a)
    return np.transpose(a, (0, 3, 1, 2)) if a.ndim == 4 else a


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def write_caffemodel(path, spec, rng, legacy=False):
    """Random weights (std 1/sqrt(fan_in)) for every learned layer of `spec`, through the schema.

    `legacy` writes V1 `layers` with the old num/channels/height/width blob shapes. Blob data go
    in as one packed field (the wire format Caffe writes), parsed by protobuf into the message.
    """
    abstract = nnx.eval_shape(lambda: caffe_net.build(spec, rngs=nnx.Rngs(0)))
    net = NetParameter()
    blobs_of = {}
    v1 = {"Convolution": 4, "Deconvolution": 39, "InnerProduct": 14}
    learned = [s for s in spec.layers if s.type in caffe_spec.LEARNED]
    for s, layer in zip(learned, abstract.layers):
        k = layer.linear.kernel.shape
        if s.type == "Convolution":
            w_shape, n_bias = (k[3], k[2], k[0], k[1]), k[3]
        elif s.type == "Deconvolution":
            w_shape, n_bias = (k[2], k[3], k[0], k[1]), k[3] * s.get("group")
        else:
            w_shape, n_bias = (k[1], k[0]), k[1]
        fan_in = int(np.prod(w_shape[1:])) if s.type != "Deconvolution" else w_shape[0] // s.get("group") * k[0] * k[1]
        blobs = [rng.normal(scale=1 / np.sqrt(fan_in), size=w_shape).astype(np.float32),
                 rng.normal(scale=0.1, size=n_bias).astype(np.float32)]
        layer_msg = net.layers.add(name=s.name, type=v1[s.type]) if legacy else net.layer.add(name=s.name, type=s.type)
        for b in blobs:
            bp = layer_msg.blobs.add()
            if legacy:
                dims = (1,) * (4 - b.ndim) + b.shape
                bp.num, bp.channels, bp.height, bp.width = dims
            else:
                bp.shape.dim.extend(b.shape)
            bp.MergeFromString(b"\x2a" + _varint(b.nbytes) + b.astype("<f4").tobytes())
        blobs_of[s.name] = blobs
    # a training-only layer without blobs, as real snapshots hold
    (net.layers.add(name="loss", type=21) if legacy else net.layer.add(name="loss", type="SoftmaxWithLoss"))
    Path(path).write_bytes(net.SerializeToString())
    return blobs_of


def opencv_outputs(prototxt, caffemodel, x, names):
    import cv2

    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    net.setInput(np.ascontiguousarray(x, np.float32))
    return dict(zip(names, net.forward(list(names))))


def ours(model, x):
    return jax.jit(lambda p, x: caffe_net.layer_outputs(model, p, x))(model.params, x)


# ------------------------------------------------------------------ torch: the zip reader


@needs_torch
def test_zip_reader_agrees_with_torch_load(tmp_path):
    import torch

    for path in ("torch/lenet5/lenet.pth", "torch/dcgan_generator/generator.pth"):
        if not (FIXTURES / path).is_file():
            continue
        want = torch.load(FIXTURES / path, weights_only=True)
        got = torch_files.read_torch_zip(FIXTURES / path)
        assert list(got) == list(want)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k].numpy())
    torch.manual_seed(0)
    base = torch.randn(5, 7)
    saved = {"transposed": base.t(), "strided": base[1:4, ::3], "bf16": torch.randn(3, 2, dtype=torch.bfloat16),
             "param": torch.nn.Parameter(torch.randn(4)), "half": torch.randn(6).half(), "int": torch.arange(5),
             "nested": {"a": torch.ones(2), "n": 3}}
    torch.save(saved, tmp_path / "views.pth")
    got = torch_files.read_torch_zip(tmp_path / "views.pth")
    for k in ("transposed", "strided", "bf16", "param", "half", "int"):
        np.testing.assert_array_equal(np.asarray(got[k], np.float64), saved[k].detach().double().numpy(), err_msg=k)
    assert got["nested"]["n"] == 3
    # and torch reads what save_torch_zip writes
    sd = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "h": np.ones(2, np.float16), "s": np.array(2.5)}
    torch_zip_writer.save_torch_zip(tmp_path / "ours.pth", {"model": sd, "epoch": 4})
    back = torch.load(tmp_path / "ours.pth", weights_only=True)
    assert back["epoch"] == 4
    for k, v in sd.items():
        np.testing.assert_array_equal(back["model"][k].numpy(), v)
    # the legacy (pre-zip) format goes through torch.load(weights_only=True)
    torch.save({"w": base}, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    loaded = torch_files.load_state_dict(tmp_path / "legacy.pth")
    assert loaded.format == "pytorch-legacy"
    np.testing.assert_array_equal(loaded.tensors["w"], base.numpy())


# ------------------------------------------------------------------ OpenCV: Caffe


@needs_cv2
@pytest.mark.parametrize("name,proto,weights,blobs", [
    ("lenet", "caffe/lenet/lenet.prototxt", "caffe/lenet/lenet_iter_10000.caffemodel",
     ("conv1", "pool1", "conv2", "pool2", "ip1", "ip2", "prob")),
    ("cifar10_full", "caffe/cifar10_full/cifar10_full.prototxt",
     "caffe/cifar10_full/cifar10_full_iter_70000.caffemodel",
     ("conv1", "pool1", "norm1", "conv2", "pool2", "norm2", "conv3", "pool3", "ip1", "prob")),
])
def test_caffe_fixtures_against_opencv(name, proto, weights, blobs):
    if not (FIXTURES / proto).is_file():
        pytest.skip(f"fixtures not found at {FIXTURES}")
    model = caffe.caffe_model(FIXTURES / proto, FIXTURES / weights)
    rng = np.random.default_rng(7)
    shape = (3,) + tuple(model.input_shape[i] for i in (2, 0, 1))
    x = rng.uniform(0, 1, size=shape).astype(np.float32) * (255 if name == "cifar10_full" else 1)
    x -= 128 if name == "cifar10_full" else 0
    want = opencv_outputs(FIXTURES / proto, FIXTURES / weights, x, blobs)
    got = ours(model, np.transpose(x, (0, 2, 3, 1)))
    for b in blobs:
        close(nchw(got[b]), want[b], f"{name} {b}")


@needs_cv2
@pytest.mark.parametrize("legacy", [False, True])
def test_caffenet_round_trip_layer_by_layer(tmp_path, legacy):
    widths = (8, 16, 12, 12, 16, 32, 32)
    text = archs_paper.caffenet_prototxt(widths, num_classes=10)
    (tmp_path / "deploy.prototxt").write_text(text)
    spec = caffe_spec.parse_prototxt(text)
    write_caffemodel(tmp_path / "w.caffemodel", spec, np.random.default_rng(1), legacy=legacy)
    names = ("conv1", "pool1", "norm1", "conv2", "pool2", "norm2", "conv3", "conv4", "conv5", "pool5", "fc6", "fc7",
             "fc8", "prob")
    x = np.random.default_rng(2).uniform(-120, 130, size=(2, 3, 227, 227)).astype(np.float32)
    want = opencv_outputs(tmp_path / "deploy.prototxt", tmp_path / "w.caffemodel", x, names)
    generic = caffe.caffe_model(tmp_path / "deploy.prototxt", tmp_path / "w.caffemodel")
    named = caffe.caffe_model(None, tmp_path / "w.caffemodel", arch="caffenet")
    assert named.manifest["architecture"]["kwargs"] == {"widths": list(widths), "num_classes": 10}
    assert named.pixels == PixelConvention(0.0, 255.0, "BGR", (104.0, 117.0, 123.0), 1.0)
    for model in (generic, named):
        got = ours(model, np.transpose(x, (0, 2, 3, 1)))
        for n in names:
            close(nchw(got[n]), want[n], n)
    assert named.layer_names == ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
    if not legacy:  # the named architecture's directory holds no prototxt and loads on its own
        import jaxprobe
        from weights_convert.__main__ import main

        assert main(["caffe", "--arch", "caffenet", "--caffemodel", str(tmp_path / "w.caffemodel"),
                     "--out", str(tmp_path / "out")]) == 0
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([MARKER, "manifest.json", "params"])
        loaded = jaxprobe.load(tmp_path / "out")
        close(loaded.forward(loaded.params, np.transpose(x, (0, 2, 3, 1))), want["prob"], "loaded prob")


@needs_cv2
def test_full_size_caffenet_round_trip(tmp_path):
    text = archs_paper.caffenet_prototxt()
    (tmp_path / "deploy.prototxt").write_text(text)
    spec = caffe_spec.parse_prototxt(text)
    write_caffemodel(tmp_path / "full.caffemodel", spec, np.random.default_rng(3))
    names = ("conv1", "pool2", "conv5", "fc6", "fc8", "prob")
    x = np.random.default_rng(4).uniform(-120, 130, size=(1, 3, 227, 227)).astype(np.float32)
    want = opencv_outputs(tmp_path / "deploy.prototxt", tmp_path / "full.caffemodel", x, names)
    model = caffe.caffe_model(None, tmp_path / "full.caffemodel", arch="caffenet")
    assert sum(model.param_counts().values()) == 60_965_224
    got = ours(model, np.transpose(x, (0, 2, 3, 1)))
    for n in names:
        close(nchw(got[n]), want[n], n)


@needs_cv2
def test_deepsim_round_trip_layer_by_layer(tmp_path):
    kwargs = dict(latent_dim=32, fc=(24, 24), base=8, convs=(8, 12, 8, 8, 6, 6, 4, 4))
    text = archs_paper.deepsim_prototxt(**kwargs)
    (tmp_path / "generator.prototxt").write_text(text)
    spec = caffe_spec.parse_prototxt(text)
    write_caffemodel(tmp_path / "g.caffemodel", spec, np.random.default_rng(5))
    names = ("defc7", "defc6", "defc5", "deconv5", "conv5_1", "deconv4", "conv4_1", "deconv3", "conv3_1", "deconv2",
             "deconv1", "deconv0")
    z = np.random.default_rng(6).uniform(0, 8, size=(1, 32)).astype(np.float32)  # fc6 codes are post-ReLU
    want = opencv_outputs(tmp_path / "generator.prototxt", tmp_path / "g.caffemodel", z, names)
    model = caffe.caffe_model(None, tmp_path / "g.caffemodel", arch="deepsim_fc6")
    assert model.role == "generator" and model.input_shape == (32,) and model.output_shape() == (256, 256, 3)
    got = ours(model, z)
    for n in names:
        close(nchw(got[n]), want[n], n)
    # the generator's BGR-minus-mean output feeds CaffeNet after a centre crop to 227
    caffenet_px = PixelConvention(0.0, 255.0, "BGR", (104.0, 117.0, 123.0), 1.0)
    img = center_crop(convert_pixels(got["deconv0"], model.pixels, caffenet_px), 227)
    np.testing.assert_allclose(img, np.asarray(got["deconv0"])[:, 14:241, 14:241], atol=1e-4)


# ------------------------------------------------------------------ torch: VGG-16, AlexNet, PGGAN


def _torch_vgg16(widths, hidden, classes):
    import torch.nn as tnn

    feats, c = [], 3
    for w, n in zip(widths, (2, 2, 3, 3, 3)):
        for _ in range(n):
            feats += [tnn.Conv2d(c, w, 3, padding=1), tnn.ReLU()]
            c = w
        feats.append(tnn.MaxPool2d(2, 2))
    net = tnn.Module()
    net.features = tnn.Sequential(*feats)
    net.avgpool = tnn.AdaptiveAvgPool2d((7, 7))
    net.classifier = tnn.Sequential(tnn.Linear(c * 49, hidden), tnn.ReLU(), tnn.Dropout(), tnn.Linear(hidden, hidden),
                                    tnn.ReLU(), tnn.Dropout(), tnn.Linear(hidden, classes))
    return net


def _torch_alexnet(widths, hidden, classes):
    import torch.nn as tnn

    c1, c2, c3, c4, c5 = widths
    net = tnn.Module()
    net.features = tnn.Sequential(
        tnn.Conv2d(3, c1, 11, 4, 2), tnn.ReLU(), tnn.MaxPool2d(3, 2), tnn.Conv2d(c1, c2, 5, padding=2), tnn.ReLU(),
        tnn.MaxPool2d(3, 2), tnn.Conv2d(c2, c3, 3, padding=1), tnn.ReLU(), tnn.Conv2d(c3, c4, 3, padding=1),
        tnn.ReLU(), tnn.Conv2d(c4, c5, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(3, 2))
    net.avgpool = tnn.AdaptiveAvgPool2d((6, 6))
    net.classifier = tnn.Sequential(tnn.Dropout(), tnn.Linear(c5 * 36, hidden), tnn.ReLU(), tnn.Dropout(),
                                    tnn.Linear(hidden, hidden), tnn.ReLU(), tnn.Linear(hidden, classes))
    return net


def _torch_forward(net, x):
    import torch

    with torch.no_grad():
        h = net.features(torch.from_numpy(x))
        feats = h.numpy()
        return feats, net.classifier(torch.flatten(net.avgpool(h), 1)).numpy()


@needs_torch
@pytest.mark.parametrize("arch", ["vgg16", "alexnet"])
def test_torchvision_round_trip(tmp_path, arch):
    import torch

    torch.manual_seed(0)
    if arch == "vgg16":
        widths, net = (4, 8, 8, 16, 16), _torch_vgg16((4, 8, 8, 16, 16), 32, 10)
    else:
        widths, net = (8, 12, 16, 12, 8), _torch_alexnet((8, 12, 16, 12, 8), 32, 10)
    for m in net.modules():  # He-normal weights keep the signal alive through 13 layers (torch's default
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):  # init shrinks it to the biases alone)
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            torch.nn.init.normal_(m.bias, std=0.1)
    net.eval()
    torch.save(net.state_dict(), tmp_path / "w.pth")
    model = torch_files.torch_model(tmp_path / "w.pth", arch)
    assert model.manifest["architecture"]["kwargs"] == {"widths": list(widths), "hidden": 32, "num_classes": 10}
    rgb = np.random.default_rng(0).uniform(0, 1, size=(2, 224, 224, 3)).astype(np.float32)
    x = np.asarray(model.pixels.from_canonical(rgb))  # RGB minus torchvision's mean (std folded into conv1)
    std = np.asarray([0.229, 0.224, 0.225], np.float32)
    feats, logits = _torch_forward(net, np.transpose(x / std, (0, 3, 1, 2)).astype(np.float32))
    assert np.std(logits) > 0.1 * np.abs(logits).max()  # the logits depend on the input, not just the biases
    close(model.forward(model.params, x), logits, f"{arch} logits")
    last_conv = model.n_layers - 3  # the last conv layer's post ops end in max pool + CHW flatten
    h = jax.jit(lambda p, x: model.from_(p, model.up_to(p, x, last_conv), last_conv))(model.params, x)
    close(h, logits, f"{arch} from_(up_to)")
    pooled = model.up_to(model.params, x, last_conv + 1)  # fc6 pre-activation: features flattened in CHW order
    w6 = net.classifier[0 if arch == "vgg16" else 1]
    with torch.no_grad():
        close(pooled, w6(torch.flatten(torch.from_numpy(feats), 1)).numpy(), f"{arch} fc6")


def _torch_pggan(latent, depths, channels):
    import torch
    import torch.nn as tnn

    class Constrained(tnn.Module):  # pytorch_GAN_zoo's ConstrainedLayer: module(x) * sqrt(2 / fan_in)
        def __init__(self, module):
            super().__init__()
            self.module = module
            self.module.weight.data.normal_(0, 1)
            self.module.bias.data.normal_(0, 0.5)
            self.weight_scale = float(np.sqrt(2.0 / np.prod(module.weight.shape[1:])))

        def forward(self, x):
            return self.module(x) * self.weight_scale

    def norm(x):
        return x * ((x ** 2).mean(dim=1, keepdim=True) + 1e-8).rsqrt()

    def up(x):
        s = x.shape
        return x.view(-1, s[1], s[2], 1, s[3], 1).expand(-1, s[1], s[2], 2, s[3], 2).contiguous().view(
            -1, s[1], 2 * s[2], 2 * s[3])

    class GNet(tnn.Module):
        def __init__(self):
            super().__init__()
            d0 = depths[0]
            self.formatLayer = Constrained(tnn.Linear(latent, 16 * d0))
            self.groupScale0 = tnn.ModuleList([Constrained(tnn.Conv2d(d0, d0, 3, padding=1))])
            self.scaleLayers = tnn.ModuleList()
            self.toRGBLayers = tnn.ModuleList([Constrained(tnn.Conv2d(d0, channels, 1))])
            prev = d0
            for d in depths[1:]:
                self.scaleLayers.append(tnn.ModuleList([Constrained(tnn.Conv2d(prev, d, 3, padding=1)),
                                                        Constrained(tnn.Conv2d(d, d, 3, padding=1))]))
                self.toRGBLayers.append(Constrained(tnn.Conv2d(d, channels, 1)))
                prev = d
            self.lrelu = tnn.LeakyReLU(0.2)

        def forward(self, x):
            x = norm(x).view(len(x), -1)
            x = self.lrelu(self.formatLayer(x)).view(len(x), -1, 4, 4)
            x = norm(x)
            x = norm(self.lrelu(self.groupScale0[0](x)))
            for group in self.scaleLayers:
                x = up(x)
                for conv in group:
                    x = norm(self.lrelu(conv(x)))
            return self.toRGBLayers[-1](x)

    torch.manual_seed(1)
    return GNet().eval()


@needs_torch
@pytest.mark.parametrize("module_keys", [False, True])
def test_pggan_round_trip(tmp_path, module_keys):
    import torch

    net = _torch_pggan(16, (8, 8, 4), 3)
    sd = net.state_dict()  # keys like formatLayer.module.weight
    if not module_keys:  # what ConstrainedLayer.state_dict writes in pytorch_GAN_zoo checkpoints
        sd = {k.replace(".module.", "."): v for k, v in sd.items()}
    torch.save({"config": {"depthScales": [8, 8, 4], "dimLatentVector": 16}, "netG": sd,
                "netD": {"decisionLayer.weight": torch.zeros(1, 8)}}, tmp_path / "pgan.pt")
    model = torch_files.torch_model(tmp_path / "pgan.pt", "pggan", key="netG")
    assert model.role == "generator" and model.input_shape == (16,) and model.output_shape() == (16, 16, 3)
    assert model.layer_names == ("format", "scale0", "scale1_conv1", "scale1_conv2", "scale2_conv1", "scale2_conv2",
                                 "to_rgb")
    z = np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(z)).numpy()
    close(nchw(model.forward(model.params, z)), want, "pggan")
    # the mapping names the source keys as they were in the file
    assert model.manifest["mapping"][0]["source"] == ("formatLayer.module.weight" if module_keys else "formatLayer.weight")


def test_full_size_models_by_shape():
    """Published sizes, shape-only: parameter counts and output shapes of the paper-scale models."""
    cases = [
        (archs_paper.caffenet, {}, (227, 227, 3), 60_965_224, (1000,)),
        (archs_paper.vgg16, {}, (224, 224, 3), 138_357_544, (1000,)),
        (archs_paper.alexnet, {}, (224, 224, 3), 61_100_840, (1000,)),
        (archs_paper.deepsim_fc6, {}, (4096,), None, (256, 256, 3)),
        (archs_paper.pggan_generator, {}, (512,), None, (256, 256, 3)),
        (archs_paper.pggan_generator, {"depths": (512, 512, 512, 512, 256, 128, 64, 32, 16)}, (512,), None,
         (1024, 1024, 3)),
    ]
    for builder, kwargs, in_shape, n_params, out_shape in cases:
        net = nnx.eval_shape(lambda: builder(**kwargs, rngs=nnx.Rngs(0)))
        graphdef, state = nnx.split(net)
        model = Model(builder.__name__, graphdef, state, net.names, in_shape, "classifier")
        count = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(state))
        if n_params is not None:
            assert count == n_params, (builder.__name__, count)
        assert model.output_shape() == out_shape, builder.__name__
    # DeePSim: three 4096-wide fc layers, reshape to 256x4x4, then 8 upsampling/refining deconvs
    net = nnx.eval_shape(lambda: archs_paper.deepsim_fc6(rngs=nnx.Rngs(0)))
    assert net.names == ("defc7", "defc6", "defc5", "deconv5", "conv5_1", "deconv4", "conv4_1", "deconv3", "conv3_1",
                         "deconv2", "deconv1", "deconv0")
