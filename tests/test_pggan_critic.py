"""PGGAN's discriminator as a critic: pytorch_GAN_zoo's `DNet` converted (`--arch pggan_d`) and
used by `jaxprobe reproduce egbas --critic`.

The oracle is a PyTorch replica of `DNet` written from the reference
(models/networks/progressive_conv_net.py, custom_layers.py, mini_batch_stddev_module.py), with
random weights and non-zero biases, saved with torch.save as a hub-style checkpoint {"config",
"netG", "netD"} and converted through the command line. Full size is checked by shape only.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from flax import nnx

import jaxprobe.cli
from jaxprobe.cli import main
from jaxprobe.errors import JaxprobeError
from jaxprobe.models import archs_paper
from jaxprobe.models.probe import Model
from jaxprobe.models.store import load
from test_convert_roundtrip import _torch_pggan, needs_torch, nchw
from weights_convert import mapping

pytestmark = needs_torch

DEPTHS = (8, 8, 4)  # 4x4, 8x8, 16x16
LATENT = 16
SLOPE = 0.2


@pytest.fixture(autouse=True)
def only_egbas_commands(monkeypatch):
    # The CLI imports every command module; these tests exercise conversion and E-GBAS only.
    monkeypatch.setattr(jaxprobe.cli, "MODULES", ("egbas",))


def _torch_dnet(depths, channels=3, decision=1, mbstd=True, seed=2):
    """pytorch_GAN_zoo's DNet after len(depths) - 1 `addScale` calls, alpha = 0, random weights.

    `features(x)` returns every learned layer's output after its leaky ReLU (the decision layer's
    raw), in the order the image meets them, and the score."""
    import torch
    import torch.nn as tnn

    class Constrained(tnn.Module):  # ConstrainedLayer: module(x) * sqrt(2 / fan_in), bias included
        def __init__(self, module):
            super().__init__()
            self.module = module
            self.module.weight.data.normal_(0, 1)
            self.module.bias.data.normal_(0, 0.5)
            self.weight = float(np.sqrt(2.0 / np.prod(module.weight.shape[1:])))

        def forward(self, x):
            return self.module(x) * self.weight

    def conv(i, o, k, pad=0):
        return Constrained(tnn.Conv2d(i, o, k, padding=pad))

    def minibatch_stddev(x, sub=4):  # miniBatchStdDev, as the reference writes it
        size = x.size()
        sub = min(size[0], sub)
        if size[0] % sub != 0:
            sub = size[0]
        g = int(size[0] / sub)
        if sub > 1:
            y = x.view(-1, sub, size[1], size[2], size[3])
            y = torch.var(y, 1)
            y = torch.sqrt(y + 1e-8)
            y = y.view(g, -1)
            y = torch.mean(y, 1).view(g, 1)
            y = y.expand(g, size[2] * size[3]).view((g, 1, 1, size[2], size[3]))
            y = y.expand(g, sub, -1, -1, -1)
            y = y.contiguous().view((-1, 1, size[2], size[3]))
        else:
            y = torch.zeros(x.size(0), 1, x.size(2), x.size(3), device=x.device)
        return torch.cat([x, y], dim=1)

    class DNet(tnn.Module):
        def __init__(self):
            super().__init__()
            d0 = depths[0]
            self.scalesDepth = [d0]
            self.scaleLayers = tnn.ModuleList()
            self.fromRGBLayers = tnn.ModuleList([conv(channels, d0, 1)])
            self.mergeLayers = tnn.ModuleList()
            self.decisionLayer = Constrained(tnn.Linear(d0, decision))
            self.groupScaleZero = tnn.ModuleList([conv(d0 + (1 if mbstd else 0), d0, 3, 1),
                                                  Constrained(tnn.Linear(d0 * 16, d0))])
            self.leakyRelu = tnn.LeakyReLU(SLOPE)
            for d in depths[1:]:  # addScale
                last = self.scalesDepth[-1]
                self.scalesDepth.append(d)
                self.scaleLayers.append(tnn.ModuleList([conv(d, d, 3, 1), conv(d, last, 3, 1)]))
                self.fromRGBLayers.append(conv(channels, d, 1))

        def features(self, x):
            feats = []
            x = self.leakyRelu(self.fromRGBLayers[-1](x))
            feats.append(x)
            for group in reversed(self.scaleLayers):  # "we must explore the layers group in reverse order"
                for layer in group:
                    x = self.leakyRelu(layer(x))
                    feats.append(x)
                x = tnn.AvgPool2d((2, 2))(x)
            if mbstd:
                x = minibatch_stddev(x)
            x = self.leakyRelu(self.groupScaleZero[0](x))
            feats.append(x)
            x = x.view(-1, x[0].numel())
            x = self.leakyRelu(self.groupScaleZero[1](x))
            feats.append(x)
            out = self.decisionLayer(x)
            return feats, out

        def forward(self, x):
            return self.features(x)[1]

    torch.manual_seed(seed)
    return DNet().eval()


def _dnet_outputs(net, x_nhwc):
    """(features, score) of the torch DNet on one batch of NHWC images, as numpy."""
    import torch

    with torch.no_grad():
        feats, out = net.features(torch.from_numpy(np.ascontiguousarray(nchw(x_nhwc))))
    return [f.numpy() for f in feats], out.numpy()


def near(got, want, what, rtol=1e-5):
    """max |got - want| within rtol of the reference's scale (max |want|)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    err, scale = float(np.abs(got - want).max()), float(np.abs(want).max())
    assert err <= rtol * scale + 1e-7, f"{what}: max deviation {err} against scale {scale}"
    return err / scale


@pytest.fixture(scope="module")
def pgan(tmp_path_factory):
    """The torch G and D, their hub-style checkpoint, and both converted through the command line."""
    import torch

    root = tmp_path_factory.mktemp("pgan")
    g, d = _torch_pggan(LATENT, DEPTHS, 3), _torch_dnet(DEPTHS)
    ckpt = root / "pgan.pth"
    # getStateDict(): the networks' own state dicts, ConstrainedLayer's `.module.` in every key
    torch.save({"config": {"depthScales": list(DEPTHS), "dimLatentVector": LATENT, "miniBatchStdDev": True,
                           "alpha": 0.0}, "netG": g.state_dict(), "netD": d.state_dict()}, ckpt)
    for arch, key, out in (("pggan", "netG", "G"), ("pggan_d", "netD", "D")):
        assert main(["convert", "torch", str(ckpt), "--arch", arch, "--key", key, "--out", str(root / out)]) == 0
    return {"root": root, "ckpt": ckpt, "g": g, "d": d, "G": load(str(root / "G")), "D": load(str(root / "D"))}


def test_converted_discriminator_equals_dnet(pgan):
    """Scores and every feature layer equal the torch DNet's to 1e-5 of their scale: per image by
    default, and on whole batches (minibatch stddev over groups of 4, and over a batch of 6 that 4
    does not divide) with `pggan_minibatch_group(D, 4)`; the protocol's split at every layer."""
    D, net = pgan["D"], pgan["d"]
    assert D.role == "critic" and D.input_shape == (16, 16, 3) and D.output_shape() == (1,)
    assert D.layer_names == ("from_rgb", "scale2_conv1", "scale2_conv2", "scale1_conv1", "scale1_conv2",
                             "scale0_conv", "scale0_linear", "decision")
    assert D.manifest["architecture"]["kwargs"] == {"depths": list(DEPTHS), "channels": 3, "decision": 1,
                                                    "minibatch_std": True, "minibatch_group": 1}
    assert (D.pixels.low, D.pixels.high, D.pixels.channels) == (-1.0, 1.0, "RGB")
    # the fading-in RGB heads of the coarser scales are named as left out, not dropped unseen
    assert D.manifest["source"]["ignored"] == [f"fromRGBLayers.{j}.module.{p}" for j in (0, 1)
                                               for p in ("bias", "weight")]
    x = np.random.default_rng(0).uniform(-1, 1, size=(8, 16, 16, 3)).astype(np.float32)
    n_feat = D.n_layers - 1

    # Per image: DNet on a batch of one (its stddev channel is zero), image by image.
    alone = [_dnet_outputs(net, x[i:i + 1]) for i in range(len(x))]
    near(D.forward(D.params, x), np.concatenate([o for _, o in alone]), "per-image scores")
    for k in range(1, n_feat + 1):
        want = np.concatenate([f[k - 1] for f, _ in alone])
        near(nchw(D.activation(D.params, x, k)), want, f"per-image {D.layer_names[k - 1]}")

    # DNet's batch statistic: groups of 4 (batch 8), the whole batch (batch 6).
    B = archs_paper.pggan_minibatch_group(D, 4)
    assert B.manifest["architecture"]["kwargs"]["minibatch_group"] == 4
    for n in (8, 6):
        feats, score = _dnet_outputs(net, x[:n])
        near(B.forward(B.params, x[:n]), score, f"batch {n} scores")
        # the statistic matters: the batch's scores are not the per-image ones
        assert np.abs(score - np.concatenate([o for _, o in alone[:n]])).max() > 1e-3 * np.abs(score).max()
        sc = B.layer("scale0_conv")
        near(nchw(B.activation(B.params, x[:n], sc)), feats[sc - 1], f"batch {n} scale0_conv")
        near(B.activation(B.params, x[:n], sc + 1), feats[sc], f"batch {n} scale0_linear")
    # The minibatch channel itself: scale0_conv's input, read off the layer before it.
    net_b = nnx.merge(B.graphdef, B.params)
    h = B.up_to(B.params, x, "scale1_conv2")
    channel = np.asarray(net_b.layers[B.layer("scale1_conv2") - 1].post(h))[..., -1]
    pooled = np.asarray(net_b.layers[B.layer("scale1_conv2") - 1].act(h)).reshape(8, 4, 2, 4, 2, -1).mean((2, 4))
    for grp in (slice(0, 4), slice(4, 8)):
        want = np.mean(np.sqrt(np.var(pooled[grp].astype(np.float64), axis=0, ddof=1) + 1e-8))
        np.testing.assert_allclose(channel[grp], want, rtol=1e-5)

    # The probe protocol's split, at the layers around the minibatch channel, both variants.
    for model in (D, B):
        want = np.asarray(model.forward(model.params, x))
        for l in ("from_rgb", "scale1_conv2", "scale0_conv", "decision"):
            got = model.from_(model.params, model.up_to(model.params, x, l), l)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _reference_shapes(depths, channels=3, decision=1):
    """The full DNet's state dict shapes, from the reference's constructors (torch layouts)."""
    shapes = {"decisionLayer.weight": (decision, depths[0]), "decisionLayer.bias": (decision,),
              "groupScaleZero.0.weight": (depths[0], depths[0] + 1, 3, 3), "groupScaleZero.0.bias": (depths[0],),
              "groupScaleZero.1.weight": (depths[0], 16 * depths[0]), "groupScaleZero.1.bias": (depths[0],)}
    for j, d in enumerate(depths):
        shapes[f"fromRGBLayers.{j}.weight"], shapes[f"fromRGBLayers.{j}.bias"] = (d, channels, 1, 1), (d,)
    for i in range(1, len(depths)):
        last, d = depths[i - 1], depths[i]
        shapes[f"scaleLayers.{i - 1}.0.weight"], shapes[f"scaleLayers.{i - 1}.0.bias"] = (d, d, 3, 3), (d,)
        shapes[f"scaleLayers.{i - 1}.1.weight"], shapes[f"scaleLayers.{i - 1}.1.bias"] = (last, d, 3, 3), (last,)
    return shapes


def test_full_size_discriminator_by_shape():
    """The published 256x256 DNet (depths 512, 512, 512, 512, 256, 128, 64): layers, scores' shape,
    parameter count, and every mapping rule against the reference's tensor shapes, no weights."""
    net = nnx.eval_shape(lambda: archs_paper.pggan_discriminator(rngs=nnx.Rngs(0)))
    assert net.names == ("from_rgb",) + tuple(f"scale{i}_conv{j}" for i in range(6, 0, -1) for j in (1, 2)) + (
        "scale0_conv", "scale0_linear", "decision")
    graphdef, state = nnx.split(net)
    model = Model("pggan_discriminator", graphdef, state, net.names, (256, 256, 3), "critic")
    assert model.output_shape() == (1,) and model.layer_shape("scale0_conv") == (4, 4, 512)
    assert model.layer_output_shape("scale1_conv2") == (4, 4, 513)  # the minibatch channel appended
    shapes = _reference_shapes(archs_paper.PGGAN_DEPTHS)
    used = {k: v for k, v in shapes.items() if not k.startswith("fromRGBLayers.") or k.startswith("fromRGBLayers.6.")}
    n_params = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(nnx.state(net, nnx.Param)))
    assert n_params == sum(int(np.prod(s)) for s in used.values())
    # the table's inference and rules at full size: shapes only (broadcast zeros allocate nothing)
    tensors = {k: np.broadcast_to(np.float32(0), s) for k, s in shapes.items()}
    arch = mapping.ARCHITECTURES["pggan_d"]
    kw = arch.infer(tensors)
    assert kw == {"depths": archs_paper.PGGAN_DEPTHS, "channels": 3, "decision": 1, "minibatch_std": True}
    _, abstract, names = mapping.abstract_network(arch.builder, dict(arch.kwargs, **kw))
    pure = nnx.to_pure_dict(abstract)
    rules = arch.rules(kw)
    assert {r.source for r in rules} == set(used)
    for r in rules:
        leaf = pure["layers"][names.index(r.layer)]
        for part in r.param.split("."):
            leaf = leaf[part]
        perm = mapping.TRANSFORMS[r.transform]
        assert tuple(leaf.shape) == (shapes[r.source] if perm is None else tuple(shapes[r.source][i] for i in perm))
    assert arch.input_shape(kw) == (256, 256, 3)


def test_bad_discriminator_checkpoints(pgan, tmp_path, capsys):
    """A checkpoint without netD, a netD whose shapes do not chain, and each network given the
    other's --arch: one line naming the problem, status 2, nothing written."""
    import torch

    g_sd, d_sd = pgan["g"].state_dict(), pgan["d"].state_dict()
    cases = []
    torch.save({"netG": g_sd}, tmp_path / "no_d.pth")
    cases.append((["no_d.pth", "--arch", "pggan_d", "--key", "netD"], "'netD'"))
    bad = dict(d_sd)  # scale 2's second conv gives 5 channels where scale 1 reads 8
    bad["scaleLayers.1.1.module.weight"] = torch.zeros(5, 4, 3, 3)
    bad["scaleLayers.1.1.module.bias"] = torch.zeros(5)
    torch.save({"netD": bad}, tmp_path / "unchained.pth")
    cases.append((["unchained.pth", "--arch", "pggan_d", "--key", "netD"], "scaleLayers.1.1.weight: expected shape (8, 4, 3, 3)"))
    cases.append((["unchained.pth", "--arch", "pggan", "--key", "netD"], "--arch pggan_d"))
    torch.save({"netG": g_sd}, tmp_path / "g.pth")
    cases.append((["g.pth", "--arch", "pggan_d", "--key", "netG"], "--arch pggan"))
    for args, needle in cases:
        out = tmp_path / "out"
        assert main(["convert", "torch", str(tmp_path / args[0])] + args[1:] + ["--out", str(out)]) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, (args, err)
        assert not out.exists()
    with pytest.raises(JaxprobeError, match="minibatch_group"):
        archs_paper.pggan_discriminator(depths=(8,), minibatch_group=0, rngs=nnx.Rngs(0))
    with pytest.raises(JaxprobeError, match="group"):
        archs_paper.pggan_minibatch_group(pgan["D"], 0)
    with pytest.raises(JaxprobeError, match="not a pggan_discriminator"):
        archs_paper.pggan_minibatch_group(pgan["G"], 4)


def test_reproduce_egbas_with_the_discriminator(pgan, capsys):
    """`jaxprobe reproduce egbas --model PGAN --critic D`: the tables' critic similarities equal
    the torch G and DNet's on the same samples (the run's trees regrown with the same key, since
    the JSON keeps no latents): mean over each set of cos(d_k(G(z)), d_k(G(z0))), DNet on each
    image alone, for every layer but the decision."""
    import torch

    from jaxprobe.gbas.egbas import EGBASOptions, egbas
    from jaxprobe.gbas.metrics import METHODS, sample_sets

    root = pgan["root"]
    layer, seed = 1, 3  # at `format` this tiny G's samples vary enough: 1 - similarity 3e-4 to 3e-2
    argv = ["reproduce", "egbas", "--model", str(root / "G"), "--critic", str(root / "D"), "--queries", "1",
            "--layers", str(layer), "--iterations", "16", "--beropt-steps", "2", "--batch", "8", "--seed", str(seed),
            "--out", str(root / "eg")]
    assert main(argv) == 0
    capsys.readouterr()
    t = json.loads((root / "eg" / "egbas_tables.json").read_text())
    assert t["critic_layers"] == list(pgan["D"].layer_names[:-1]) and t["queries_with_baselines"] == [1]

    G = pgan["G"]
    k_q, k_run = jax.random.split(jax.random.PRNGKey(seed))
    z0 = np.asarray(G.sample_prior(k_q, 1))[0]
    options = EGBASOptions(p=0.5, delta=None, interval=1.0, capacity=17, max_candidates=16, batch=8,
                           beropt_options=dict(steps=2))
    r = egbas(jax.random.fold_in(jax.random.fold_in(k_run, 0), layer), G, G.params, z0, layer, options)
    sets, counts = sample_sets(r)
    assert counts[0] == t["per_query"]["n_samples"][0][0] and counts.min() > 0

    def features(z):
        with torch.no_grad():
            images = pgan["g"](torch.from_numpy(np.array(z, np.float32)))
            feats = [pgan["d"].features(images[i:i + 1])[0] for i in range(len(images))]  # each image alone
        return [np.concatenate([f[k].reshape(1, -1).numpy() for f in feats]).astype(np.float64)
                for k in range(len(feats[0]))]

    ref = features(z0[None])
    for m_i, m in enumerate(METHODS):
        got = np.asarray(t["per_query"]["similarity"][m])[0, :, 0]  # (critic layers,) at the one layer and query
        feats = features(sets[m_i, :counts[m_i]])
        want = [np.mean(f @ r0[0] / (np.linalg.norm(f, axis=1) * np.linalg.norm(r0[0]))) for f, r0 in zip(feats, ref)]
        # the similarities are near 1: compare their distance from 1, to float32's rounding of a cosine
        np.testing.assert_allclose(1 - got, 1 - np.asarray(want), rtol=2e-3, atol=3e-7, err_msg=m)
        assert min(1 - np.asarray(want)) > 1e-4  # the samples differ from the query at every layer
        np.testing.assert_allclose(np.asarray(t["similarity"][m])[0], got, rtol=1e-12, err_msg=m)  # one query


def test_a_hub_checkpoint_with_its_config_object_converts_and_runs_nothing(pgan, tmp_path, monkeypatch):
    """pytorch_GAN_zoo's hub checkpoints pickle its `BaseConfig` object beside the state dicts
    (getStateDict: {"config": self.config, "netG", "netD", "avgG"}). The converter keeps it as
    inert data: the file converts, and the class's own code (here one that would record it ran)
    is never imported or called."""
    import pickle
    import sys
    import types

    import torch

    ran = []

    class BaseConfig:
        def __setstate__(self, state):  # what unpickling the real class would run
            ran.append(state)
            self.__dict__.update(state)

    BaseConfig.__module__, BaseConfig.__qualname__ = "models.utils.config", "BaseConfig"
    for name in ("models", "models.utils", "models.utils.config"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules["models.utils.config"].BaseConfig = BaseConfig
    config = BaseConfig()
    config.__dict__.update(depthScales=list(DEPTHS), dimLatentVector=LATENT, miniBatchStdDev=True, nested={"a": [1]})
    ckpt = tmp_path / "hub.pth"
    torch.save({"config": config, "netG": pgan["g"].state_dict(), "netD": pgan["d"].state_dict(),
                "avgG": pgan["g"].state_dict()}, ckpt, pickle_module=pickle)
    for arch, key in (("pggan", "avgG"), ("pggan_d", "netD")):
        assert main(["convert", "torch", str(ckpt), "--arch", arch, "--key", key, "--out", str(tmp_path / key)]) == 0
    assert ran == []
    x = np.random.default_rng(4).normal(size=(2, LATENT)).astype(np.float32)
    g = load(str(tmp_path / "avgG"))
    np.testing.assert_allclose(g.forward(g.params, x), pgan["G"].forward(pgan["G"].params, x), rtol=1e-6, atol=1e-6)
