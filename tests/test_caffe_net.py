"""Caffe semantics of jaxprobe.models.caffe_net, caffe_layers and caffe_spec against brute-force numpy
transliterations of Caffe's loops.

References are float64 loops written from BVLC Caffe's C++ (pooling_layer.cpp, lrn_layer.cpp,
im2col/col2im convolution), independent of the vectorized JAX code. Tolerances are float32
rounding of sums of a few hundred terms: atol 1e-5 + rtol 1e-5 on O(1) values.
"""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxprobe import JaxprobeError
from jaxprobe.models import caffe_layers as cl
from jaxprobe.models import caffe_net as cn
from jaxprobe.models import caffe_spec as cs
from jaxprobe.models.layers import Act, conv2d, conv_transpose2d
from jaxprobe.models.probe import Model

ATOL, RTOL = 1e-5, 1e-5


def nhwc(a):
    return jnp.asarray(np.transpose(a, (0, 2, 3, 1)), jnp.float32)


def nchw(a):
    a = np.asarray(a, np.float64)
    return np.transpose(a, (0, 3, 1, 2)) if a.ndim == 4 else a


# ------------------------------------------------------------------ brute-force references


def ref_pool_size(length, k, s, p, ceil=True):
    """pooling_layer.cpp Reshape: float ceil (or floor) division, then the padding clip."""
    rnd = math.ceil if ceil else math.floor
    out = int(rnd(float(length + 2 * p - k) / s)) + 1
    if p and (out - 1) * s >= length + p:
        out -= 1
    return out


def window_outside(length, k, s, p, ceil):
    """Whether Caffe's last window starts past the input (kernel < stride, no pad): -FLT_MAX or 0/0."""
    return (ref_pool_size(length, k, s, p, ceil) - 1) * s - p >= length


def ref_pool(x, mode, kernel, stride, pad, ceil=True):
    """pooling_layer.cpp Forward_cpu (MAX and AVE) with its Reshape's output size, on NCHW."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, pad
    oh, ow = ref_pool_size(h, kh, sh, ph, ceil), ref_pool_size(w, kw, sw, pw, ceil)
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * sh - ph, j * sw - pw
            if mode == "MAX":
                he, we = min(hs + kh, h), min(ws + kw, w)
                hs, ws = max(hs, 0), max(ws, 0)
                out[:, :, i, j] = x[:, :, hs:he, ws:we].max(axis=(2, 3))
            else:
                he, we = min(hs + kh, h + ph), min(ws + kw, w + pw)
                pool_size = (he - hs) * (we - ws)
                hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
                out[:, :, i, j] = x[:, :, hs:he, ws:we].sum(axis=(2, 3)) / pool_size
    return out


def ref_lrn_across(x, size, alpha, beta, k):
    """lrn_layer.cpp CrossChannelForward: scale = k + alpha/size * sum over the channel window."""
    c = x.shape[1]
    pre = (size - 1) // 2
    out = np.empty_like(x)
    for ch in range(c):
        lo, hi = max(0, ch - pre), min(c, ch - pre + size)
        scale = k + alpha / size * (x[:, lo:hi] ** 2).sum(axis=1)
        out[:, ch] = x[:, ch] * scale ** -beta
    return out


def ref_lrn_within(x, size, alpha, beta):
    """lrn_layer.cpp WithinChannelForward: square, AVE pool (pad (size-1)/2), power(1 + alpha*avg, -beta)."""
    avg = ref_pool(x ** 2, "AVE", (size, size), (1, 1), ((size - 1) // 2,) * 2)
    return x * (1.0 + alpha * avg) ** -beta


def ref_conv(x, w, b, stride, pad, dil, group):
    """Direct convolution, NCHW, weights [out, in/group, kh, kw]."""
    n, c, h, wd = x.shape
    o, ci, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    oh = (h + 2 * pad[0] - (dil[0] * (kh - 1) + 1)) // stride[0] + 1
    ow = (wd + 2 * pad[1] - (dil[1] * (kw - 1) + 1)) // stride[1] + 1
    co = o // group
    out = np.zeros((n, o, oh, ow))
    for i in range(oh):
        for j in range(ow):
            rows = i * stride[0] + dil[0] * np.arange(kh)
            cols = j * stride[1] + dil[1] * np.arange(kw)
            patch = xp[:, :, rows][:, :, :, cols]  # n, c, kh, kw
            for g in range(group):
                out[:, g * co:(g + 1) * co, i, j] = np.einsum(
                    "nchw,ochw->no", patch[:, g * ci:(g + 1) * ci], w[g * co:(g + 1) * co])
    return out + (0 if b is None else b[None, :, None, None])


def ref_deconv(x, w, b, stride, pad, dil, group):
    """col2im scatter: out[i*s - p + a*d] += x[i] * w[in, out, a]; weights [in, out/group, kh, kw]."""
    n, c, h, wd = x.shape
    _, co, kh, kw = w.shape
    ci = c // group
    fh, fw = (h - 1) * stride[0] + dil[0] * (kh - 1) + 1, (wd - 1) * stride[1] + dil[1] * (kw - 1) + 1
    full = np.zeros((n, co * group, fh, fw))
    for i in range(h):
        for j in range(wd):
            for a in range(kh):
                for bb in range(kw):
                    r, q = i * stride[0] + a * dil[0], j * stride[1] + bb * dil[1]
                    for g in range(group):
                        full[:, g * co:(g + 1) * co, r, q] += x[:, g * ci:(g + 1) * ci, i, j] @ w[g * ci:(g + 1) * ci, :, a, bb]
    oh, ow = fh - 2 * pad[0], fw - 2 * pad[1]
    out = full[:, :, pad[0]:pad[0] + oh, pad[1]:pad[1] + ow]
    return out + (0 if b is None else b[None, :, None, None])


# ------------------------------------------------------------------ pooling


def test_pool_sizes_caffe_ceil_rounding():
    # The cifar10_full stack: 3x3 stride-2 pooling rounds up, 32 -> 16 -> 8 -> 4 (floor gives 15 -> 7 -> 3).
    sizes, n = [], 32
    for _ in range(3):
        n = cl.pool_output_size(n, 3, 2, 0)
        sizes.append(n)
    assert sizes == [16, 8, 4]
    assert cl.pool_output_size(32, 3, 2, 0, ceil=False) == 15
    # With padding, a last window starting in the padding is dropped: n=5, k=2, s=2, p=1 -> 3, not 4.
    assert cl.pool_output_size(5, 2, 2, 1) == 3


@pytest.mark.parametrize("mode", ["MAX", "AVE"])
def test_pooling_matches_caffe_loops(mode):
    rng = np.random.default_rng(0 if mode == "MAX" else 1)
    checked = 0
    for _ in range(11):
        kh, kw = rng.integers(1, 5, size=2)
        sh, sw = rng.integers(1, 4, size=2)
        ph, pw = rng.integers(0, kh), rng.integers(0, kw)
        h, w = rng.integers(max(kh, 2), 12), rng.integers(max(kw, 2), 12)
        ceil = bool(rng.integers(0, 2))
        x = rng.normal(size=(2, 3, h, w))
        pool = cl.CaffePool(mode, (int(kh), int(kw)), (int(sh), int(sw)), (int(ph), int(pw)), ceil)
        if any(window_outside(n, k, s, p, ceil) for n, k, s, p in ((h, kh, sh, ph), (w, kw, sw, pw))):
            with pytest.raises(JaxprobeError, match="entirely outside"):
                pool(nhwc(x))
            continue
        want = ref_pool(x, mode, (kh, kw), (sh, sw), (ph, pw), ceil)
        got = nchw(pool(nhwc(x)))
        assert got.shape == want.shape, (kh, kw, sh, sw, ph, pw, h, w, ceil)
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL)
        checked += 1
    assert checked >= 8


def test_ave_pool_clipped_window_divisor():
    # All-ones input: Caffe's AVE divides by the window clipped to [-p, n + p), so padded cells count
    # (values < 1 at the border) while the ceil overhang past n + p does not.
    x = np.ones((1, 1, 6, 6))
    got = nchw(cl.CaffePool("AVE", (3, 3), (2, 2), (1, 1))(nhwc(x)))[0, 0]
    # windows start at -1, 1, 3, 5 (ceil: 4 outputs); sizes clipped to [-1, 7): 3, 3, 3, 2
    valid = np.array([2, 3, 3, 1])  # cells inside [0, 6)
    size = np.array([3, 3, 3, 2])
    np.testing.assert_allclose(got, np.outer(valid, valid) / np.outer(size, size), atol=1e-6)


def test_global_pooling():
    x = np.random.default_rng(2).normal(size=(2, 3, 5, 7))
    got = nchw(cl.CaffePool("AVE", global_pooling=True)(nhwc(x)))
    np.testing.assert_allclose(got[:, :, 0, 0], x.mean(axis=(2, 3)), atol=ATOL)
    got = nchw(cl.CaffePool("MAX", global_pooling=True)(nhwc(x)))
    np.testing.assert_allclose(got[:, :, 0, 0], x.max(axis=(2, 3)), atol=ATOL)


# ------------------------------------------------------------------ LRN


@pytest.mark.parametrize("size,alpha,beta,k", [(5, 1e-4, 0.75, 1.0), (3, 0.5, 0.6, 2.0), (1, 0.3, 1.0, 1.5)])
def test_lrn_across_channels(size, alpha, beta, k):
    x = np.random.default_rng(size).normal(scale=3.0, size=(2, 7, 4, 5))
    got = nchw(cl.CaffeLRN("ACROSS_CHANNELS", size, alpha, beta, k)(nhwc(x)))
    np.testing.assert_allclose(got, ref_lrn_across(x, size, alpha, beta, k), atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("size,alpha,beta", [(3, 5e-5, 0.75), (5, 0.2, 0.75), (3, 1.0, 0.5)])
def test_lrn_within_channel(size, alpha, beta):
    x = np.random.default_rng(10 + size).normal(scale=3.0, size=(2, 3, 6, 5))
    got = nchw(cl.CaffeLRN("WITHIN_CHANNEL", size, alpha, beta, 7.0)(nhwc(x)))  # k plays no part
    np.testing.assert_allclose(got, ref_lrn_within(x, size, alpha, beta), atol=ATOL, rtol=RTOL)
    # alpha is divided by local_size^2 within a channel, not by local_size
    assert not np.allclose(got, ref_lrn_within(x, size, alpha * size, beta), atol=1e-4)


# ------------------------------------------------------------------ convolutions


@pytest.mark.parametrize("group,stride,pad,dil", [(1, (1, 1), (0, 0), (1, 1)), (2, (2, 1), (1, 2), (1, 1)),
                                                   (3, (1, 2), (2, 0), (2, 1))])
def test_grouped_conv_matches_direct_sum(group, stride, pad, dil):
    rng = np.random.default_rng(group)
    x = rng.normal(size=(2, 6, 9, 8))
    w = rng.normal(size=(6, 6 // group, 3, 2))
    b = rng.normal(size=6)
    got = conv2d(nhwc(x), jnp.asarray(np.transpose(w, (2, 3, 1, 0)), jnp.float32), jnp.asarray(b, jnp.float32),
                    stride, pad, dil, group)
    np.testing.assert_allclose(nchw(got), ref_conv(x, w, b, stride, pad, dil, group), atol=1e-4, rtol=RTOL)


@pytest.mark.parametrize("group,stride,pad,dil,kernel", [
    (1, (2, 2), (1, 1), (1, 1), (4, 3)), (2, (3, 1), (0, 2), (1, 2), (4, 3)), (1, (1, 1), (2, 0), (1, 1), (4, 3)),
    (1, (2, 2), (1, 1), (1, 1), (4, 4)),  # DeePSim's k4 s2 p1: the sub-pixel fast path
])
def test_deconv_matches_scatter_definition(group, stride, pad, dil, kernel):
    rng = np.random.default_rng(5 + group)
    x = rng.normal(size=(2, 4, 4, 5))
    w = rng.normal(size=(4, 3) + kernel)  # [in, out/group, kh, kw]
    b = rng.normal(size=3 * group)
    got = conv_transpose2d(nhwc(x), jnp.asarray(np.transpose(w, (2, 3, 0, 1)), jnp.float32),
                              jnp.asarray(b, jnp.float32), stride, pad, dil, group)
    np.testing.assert_allclose(nchw(got), ref_deconv(x, w, b, stride, pad, dil, group), atol=1e-4, rtol=RTOL)


# ------------------------------------------------------------------ prototxt -> network

NEW = """
name: "synthetic"   # new-style layers, legacy input_shape
input: "data"
input_shape { dim: 1 dim: 4 dim: 11 dim: 11 }
layer { name: "train_data" type: "Data" top: "data" include { phase: TRAIN } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 6 kernel_size: 3 stride: 2 pad: 1 group: 2 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" relu_param { negative_slope: 0.1 } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
layer { name: "norm1" type: "LRN" bottom: "pool1" top: "norm1"
        lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "norm1" top: "conv2"
        convolution_param { num_output: 4 kernel_h: 2 kernel_w: 3 dilation: 2 pad_h: 1 pad_w: 2 } }
layer { name: "drop2" type: "Dropout" bottom: "conv2" top: "conv2" dropout_param { dropout_ratio: 0.5 } }
layer { name: "tanh2" type: "TanH" bottom: "conv2" top: "conv2" }
layer { name: "deconv3" type: "Deconvolution" bottom: "conv2" top: "deconv3"
        convolution_param { num_output: 4 kernel_size: 4 stride: 2 pad: 1 group: 2 } }
layer { name: "sig3" type: "Sigmoid" bottom: "deconv3" top: "deconv3" }
layer { name: "pool3" type: "Pooling" bottom: "deconv3" top: "pool3" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "norm3" type: "LRN" bottom: "pool3" top: "norm3"
        lrn_param { norm_region: WITHIN_CHANNEL local_size: 3 alpha: 0.3 beta: 0.75 } }
layer { name: "ip4" type: "InnerProduct" bottom: "norm3" top: "ip4" inner_product_param { num_output: 7 } }
layer { name: "ip5" type: "InnerProduct" bottom: "ip4" top: "ip5"
        inner_product_param { num_output: 5 transpose: true } }
layer { name: "prob" type: "Softmax" bottom: "ip5" top: "prob" }
"""

V1 = """
name: "synthetic"
input: "data"
input_dim: 1 input_dim: 4 input_dim: 11 input_dim: 11
layers { name: "train_data" type: DATA top: "data" include { phase: TRAIN } }
layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1"
         convolution_param { num_output: 6 kernel_size: 3 stride: 2 pad: 1 group: 2 } }
layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" relu_param { negative_slope: 0.1 } }
layers { name: "pool1" type: POOLING bottom: "conv1" top: "pool1"
         pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }
layers { name: "norm1" type: LRN bottom: "pool1" top: "norm1" lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 2 } }
layers { name: "conv2" type: CONVOLUTION bottom: "norm1" top: "conv2"
         convolution_param { num_output: 4 kernel_h: 2 kernel_w: 3 dilation: 2 pad_h: 1 pad_w: 2 } }
layers { name: "drop2" type: DROPOUT bottom: "conv2" top: "conv2" }
layers { name: "tanh2" type: TANH bottom: "conv2" top: "conv2" }
layers { name: "deconv3" type: DECONVOLUTION bottom: "conv2" top: "deconv3"
         convolution_param { num_output: 4 kernel_size: 4 stride: 2 pad: 1 group: 2 } }
layers { name: "sig3" type: SIGMOID bottom: "deconv3" top: "deconv3" }
layers { name: "pool3" type: POOLING bottom: "deconv3" top: "pool3" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layers { name: "norm3" type: LRN bottom: "pool3" top: "norm3"
         lrn_param { norm_region: WITHIN_CHANNEL local_size: 3 alpha: 0.3 beta: 0.75 } }
layers { name: "ip4" type: INNER_PRODUCT bottom: "norm3" top: "ip4" inner_product_param { num_output: 7 } }
layers { name: "ip5" type: INNER_PRODUCT bottom: "ip4" top: "ip5" inner_product_param { num_output: 5 transpose: true } }
layers { name: "prob" type: SOFTMAX bottom: "ip5" top: "prob" }
"""


def synthetic_weights(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "conv1": (rng.normal(size=(6, 2, 3, 3)), rng.normal(size=6)),
        "conv2": (rng.normal(scale=0.5, size=(4, 6, 2, 3)), rng.normal(size=4)),
        "deconv3": (rng.normal(scale=0.5, size=(4, 2, 4, 4)), rng.normal(size=4)),
        "ip4": (rng.normal(scale=0.3, size=(7, 64)), rng.normal(size=7)),
        "ip5": (rng.normal(size=(7, 5)), rng.normal(size=5)),  # transpose: true stores [in, out]
    }


def ref_synthetic(x, wts):
    """The synthetic net in float64 from the reference loops; returns every layer's output by name."""
    o = {}
    h = ref_conv(x, *wts["conv1"], (2, 2), (1, 1), (1, 1), 2)
    o["conv1"] = h
    h = o["relu1"] = np.where(h >= 0, h, 0.1 * h)
    h = o["pool1"] = ref_pool(h, "AVE", (3, 3), (2, 2), (1, 1))
    h = o["norm1"] = ref_lrn_across(h, 3, 0.5, 0.75, 2.0)
    h = o["conv2"] = ref_conv(h, *wts["conv2"], (1, 1), (1, 2), (2, 2), 1)
    h = o["tanh2"] = np.tanh(h)
    h = o["deconv3"] = ref_deconv(h, *wts["deconv3"], (2, 2), (1, 1), (1, 1), 2)
    h = o["sig3"] = 1 / (1 + np.exp(-h))
    h = o["pool3"] = ref_pool(h, "MAX", (3, 3), (2, 2), (0, 0))
    h = o["norm3"] = ref_lrn_within(h, 3, 0.3, 0.75)
    h = o["ip4"] = h.reshape(len(h), -1) @ wts["ip4"][0].T + wts["ip4"][1]
    h = o["ip5"] = h @ wts["ip5"][0] + wts["ip5"][1]
    e = np.exp(h - h.max(axis=1, keepdims=True))
    o["prob"] = e / e.sum(axis=1, keepdims=True)
    return o


def load_synthetic(text, wts):
    spec = cs.parse_prototxt(text)
    net = cn.build(spec, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(net)
    pure = nnx.to_pure_dict(state)
    perms = {"conv1": (2, 3, 1, 0), "conv2": (2, 3, 1, 0), "deconv3": (2, 3, 0, 1), "ip4": (1, 0), "ip5": None}
    for i, name in enumerate(net.names):
        w, b = wts[name]
        p = perms[name]
        pure["layers"][i]["linear"]["kernel"] = jnp.asarray(w if p is None else np.transpose(w, p), jnp.float32)
        pure["layers"][i]["linear"]["bias"] = jnp.asarray(b, jnp.float32)
    nnx.replace_by_pure_dict(state, pure)
    return Model(spec.name, graphdef, state, net.names, cs.input_shape(spec), "classifier"), spec


def test_new_and_v1_prototxt_mean_the_same_net():
    new, old = cs.parse_prototxt(NEW), cs.parse_prototxt(V1)
    assert new == old
    assert new.input_shape == (4, 11, 11)
    assert "train_data" not in [s.name for s in new.layers]  # TRAIN-phase layer skipped


def test_synthetic_net_matches_reference_layer_by_layer():
    wts = synthetic_weights()
    model, spec = load_synthetic(NEW, wts)
    assert model.layer_names == ("conv1", "conv2", "deconv3", "ip4", "ip5")
    x = np.random.default_rng(3).normal(size=(2, 4, 11, 11))
    want = ref_synthetic(x, wts)
    got = jax.jit(lambda p, x: cn.layer_outputs(model, p, x))(model.params, nhwc(x))
    assert set(got) == {s.name for s in spec.layers}
    for name, ref in want.items():
        np.testing.assert_allclose(nchw(got[name]), ref, atol=1e-4, rtol=1e-4, err_msg=name)
    # drop2 is the identity: it reports conv2's pre-activation
    np.testing.assert_allclose(nchw(got["drop2"]), want["conv2"], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(model.forward(model.params, nhwc(x))), want["prob"], atol=1e-5)


def test_grouping_and_probe_protocol():
    model, _ = load_synthetic(NEW, synthetic_weights(1))
    net = nnx.merge(model.graphdef, model.params)
    layers = list(net.layers)
    # conv1: ReLU right after the map is its act; pool1 and norm1 follow it
    assert layers[0].act == Act("leaky_relu", np.float32(0.1).item())
    assert [type(op).__name__ for op in layers[0].after] == ["CaffePool", "CaffeLRN"]
    assert layers[1].act.kind == "tanh" and layers[2].act.kind == "sigmoid"  # through the Dropout
    assert layers[4].act.kind == "identity" and isinstance(layers[4].after[-1], cl.Softmax)
    x = nhwc(np.random.default_rng(4).normal(size=(3, 4, 11, 11)))
    full = model.forward(model.params, x)
    for l in range(1, model.n_layers + 1):
        h = model.up_to(model.params, x, l)
        np.testing.assert_allclose(model.from_(model.params, h, l), full, atol=1e-5, rtol=1e-5)
    # the last layer's pre-activation is the logits; forward ends at the softmax
    logits = model.up_to(model.params, x, "ip5")
    np.testing.assert_allclose(full, jax.nn.softmax(logits, axis=-1), atol=1e-6)


def test_inner_product_flattens_chw():
    spec = cs.parse_prototxt(
        'input: "d" input_dim: 1 input_dim: 3 input_dim: 2 input_dim: 4\n'
        'layer { name: "ip" type: "InnerProduct" bottom: "d" top: "ip" inner_product_param { num_output: 5 } }')
    net = cn.build(spec, rngs=nnx.Rngs(0))
    x = np.random.default_rng(0).normal(size=(2, 3, 2, 4))
    w = np.asarray(net.layers[0].linear.kernel[...])
    np.testing.assert_allclose(np.asarray(net(nhwc(x))), x.reshape(2, -1) @ w, atol=1e-5)


def test_input_layer_and_reshape_flatten():
    text = """
    layer { name: "in" type: "Input" top: "z" input_param { shape { dim: 2 dim: 12 } } }
    layer { name: "fc" type: "InnerProduct" bottom: "z" top: "fc" inner_product_param { num_output: 32 } }
    layer { name: "rs" type: "Reshape" bottom: "fc" top: "rs" reshape_param { shape { dim: 0 dim: 2 dim: 4 dim: -1 } } }
    layer { name: "up" type: "Deconvolution" bottom: "rs" top: "up"
            convolution_param { num_output: 3 kernel_size: 4 stride: 2 pad: 1 } }
    layer { name: "fl" type: "Flatten" bottom: "up" top: "fl" }
    """
    spec = cs.parse_prototxt(text)
    assert spec.input_shape == (12,) and cs.input_shape(spec) == (12,)
    net = cn.build(spec, rngs=nnx.Rngs(0))
    z = np.random.default_rng(1).normal(size=(2, 12)).astype(np.float32)
    out = net.layer_outputs(jnp.asarray(z))
    fc = z @ np.asarray(net.layers[0].linear.kernel[...])
    np.testing.assert_allclose(nchw(out["rs"]), fc.reshape(2, 2, 4, 4), atol=1e-5)  # Caffe (C,H,W) order
    w = np.transpose(np.asarray(net.layers[1].linear.kernel[...]), (2, 3, 0, 1))
    up = ref_deconv(fc.reshape(2, 2, 4, 4), w, None, (2, 2), (1, 1), (1, 1), 1)
    np.testing.assert_allclose(np.asarray(out["fl"]), up.reshape(2, -1), atol=1e-4)


CONV_C = 'layer { name: "c" type: "Convolution" bottom: "d" top: "c" convolution_param { num_output: 2 kernel_size: 1 } }\n'


@pytest.mark.parametrize("text,match", [
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
     'layer { name: "e" type: "Eltwise" bottom: "d" top: "e" }', "unsupported layer type 'Eltwise'"),
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
     'layer { name: "c" type: "Convolution" bottom: "d" bottom: "d" top: "c" convolution_param { num_output: 2 kernel_size: 1 } }',
     "feed-forward"),
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
     'layer { name: "c" type: "Convolution" bottom: "x" top: "c" convolution_param { num_output: 2 kernel_size: 1 } }',
     "reads 'x'"),
    ('input: "d" input_dim: 1 input_dim: 3\n'
     'layer { name: "s" type: "Softmax" bottom: "d" top: "s" }\n'
     'layer { name: "f" type: "InnerProduct" bottom: "s" top: "f" inner_product_param { num_output: 2 } }',
     "Softmax is only supported as the final layer"),
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
     'layer { name: "n" type: "LRN" bottom: "d" top: "n" lrn_param { local_size: 4 } }', "odd"),
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
     'layer { name: "p" type: "Pooling" bottom: "d" top: "p" pooling_param { pool: STOCHASTIC kernel_size: 2 } }',
     "STOCHASTIC"),
    ('layer { name: "f" type: "InnerProduct" bottom: "d" top: "f" inner_product_param { num_output: 2 } }', "no input"),
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
     'layer { name: "c" type: "Convolution" bottom: "d" top: "c" convolution_param { kernel_size: 3 } }',
     "num_output must be >= 1"),
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
     'layer { name: "c" type: "Convolution" bottom: "d" top: "c" convolution_param { num_output: 4 kernel_size: 3 group: 3 } }',
     "group 3"),
    ('name: "x"\nlayer {\n  name: "c" type: "ReLU"\n  bottom: "d" top: "c"\n', 'line 4 column 20: Expected "}"'),
    ('name: "x"\n\nlayer { name: "c" ]', "line 3 column 19"),
    ('name: "x"\nname: "y"', 'line 2 column 7: .*multiple "name" fields'),
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
     'layer { name: "b" type: "BatchNorm" bottom: "d" top: "d" }\n' + CONV_C,
     "'b' \\(BatchNorm\\): a BatchNorm before any learned layer"),
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n' + CONV_C
     + 'layer { name: "r" type: "ReLU" bottom: "c" top: "c" }\nlayer { name: "b" type: "BatchNorm" bottom: "c" top: "c" }',
     "'b' \\(BatchNorm\\): a BatchNorm must directly follow a Convolution"),
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n' + CONV_C
     + 'layer { name: "s" type: "Scale" bottom: "c" top: "c" }', "'s' \\(Scale\\): a Scale is supported only directly after"),
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n' + CONV_C
     + 'layer { name: "b" type: "BatchNorm" bottom: "c" top: "c" batch_norm_param { use_global_stats: false } }',
     "use_global_stats: false normalizes by the batch's statistics"),
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n' + CONV_C
     + 'layer { name: "s" type: "Scale" bottom: "c" top: "c" scale_param { num_axes: 0 } }', "per-channel scale"),
    ('input: "d" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n' + CONV_C
     + 'layer { name: "u" type: "Upsample" bottom: "c" top: "u" upsample_param { mode: BILINEAR } }',
     "'u' \\(Upsample\\): scale is required"),
])
def test_bad_prototxt_errors(text, match):
    with pytest.raises(JaxprobeError, match=match):
        cn.build(cs.parse_prototxt(text), rngs=nnx.Rngs(0))


def test_batch_norm_scale_and_upsample():
    """conv -> BatchNorm -> Scale -> ReLU -> Upsample: the batch norm is the conv layer's
    pre-activation; every Caffe layer's output against numpy (nearest upsampling = np.repeat)."""
    spec = cs.parse_prototxt(
        'input: "d" input_dim: 1 input_dim: 3 input_dim: 5 input_dim: 4\n'
        'layer { name: "c" type: "Convolution" bottom: "d" top: "c" convolution_param { num_output: 2 kernel_size: 3 pad: 1 } }\n'
        'layer { name: "b" type: "BatchNorm" bottom: "c" top: "c" batch_norm_param { eps: 0.25 } }\n'
        'layer { name: "s" type: "Scale" bottom: "c" top: "c" scale_param { bias_term: true } }\n'
        'layer { name: "r" type: "ReLU" bottom: "c" top: "c" }\n'
        'layer { name: "u" type: "Upsample" bottom: "c" top: "u" upsample_param { scale_h: 2 scale_w: 3 } }\n'
        'layer { name: "f" type: "InnerProduct" bottom: "u" top: "f" inner_product_param { num_output: 3 } }\n'
        'layer { name: "b2" type: "BatchNorm" bottom: "f" top: "f" }')
    net = cn.build(spec, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(net)
    rng = np.random.default_rng(7)
    mean, var, gamma, beta = rng.normal(size=2), rng.uniform(0.5, 2, size=2), rng.normal(size=2), rng.normal(size=2)
    mean2, var2 = rng.normal(size=3), rng.uniform(0.5, 2, size=3)
    pure = nnx.to_pure_dict(state)
    pure["layers"][0]["norm"].update(mean=mean, var=var, scale=gamma, bias=beta)
    pure["layers"][1]["norm"].update(mean=mean2, var=var2)
    assert set(pure["layers"][1]["norm"]) == {"mean", "var"}  # a BatchNorm without Scale has no affine part
    nnx.replace_by_pure_dict(state, jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), pure))
    model = Model("bn", graphdef, state, net.names, cs.input_shape(spec), "classifier")
    assert model.layer_names == ("c", "f")
    x = rng.normal(size=(2, 3, 5, 4))
    w = np.transpose(np.asarray(pure["layers"][0]["linear"]["kernel"]), (3, 2, 0, 1))
    conv = ref_conv(x, w, np.asarray(pure["layers"][0]["linear"]["bias"]), (1, 1), (1, 1), (1, 1), 1)
    bn = (conv - mean[:, None, None]) / np.sqrt(var[:, None, None] + 0.25) * gamma[:, None, None] + beta[:, None, None]
    up = np.repeat(np.repeat(np.maximum(bn, 0), 2, axis=2), 3, axis=3)
    fc = up.reshape(2, -1) @ np.asarray(pure["layers"][1]["linear"]["kernel"]) + np.asarray(pure["layers"][1]["linear"]["bias"])
    f_bn = (fc - mean2) / np.sqrt(var2 + 1e-5)
    got = cn.layer_outputs(model, model.params, nhwc(x))
    assert set(got) == {"c", "s", "r", "u", "f", "b2"}  # the BatchNorm a Scale follows is reported as the Scale
    for name, want in (("c", conv), ("s", bn), ("r", np.maximum(bn, 0)), ("u", up), ("f", fc), ("b2", f_bn)):
        np.testing.assert_allclose(nchw(got[name]), want, atol=ATOL, rtol=RTOL, err_msg=name)
    np.testing.assert_allclose(nchw(model.up_to(model.params, nhwc(x), 1)), bn, atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(model.up_to(model.params, nhwc(x), 2), f_bn, atol=ATOL, rtol=RTOL)
    h = model.up_to(model.params, nhwc(x), 1)
    np.testing.assert_allclose(model.from_(model.params, h, 1), model.forward(model.params, nhwc(x)), atol=1e-6)


def test_prototxt_errors_name_their_source(tmp_path):
    bad = 'input: "d" input_dim: 1 input_dim: 3\nlayer { name: "e" type: "Eltwise" bottom: "d" top: "e" }'
    with pytest.raises(JaxprobeError, match=r"^prototxt <mine>: layer 'e': unsupported layer type"):
        cs.parse_prototxt(bad, "<mine>")
    path = tmp_path / "net.prototxt"
    path.write_text('name: "x"\nlayer {\n')
    with pytest.raises(JaxprobeError, match=rf'^prototxt {re.escape(str(path))}: line 2 column 7: Expected "}}"'):
        cs.read_prototxt(path)
    path.write_bytes(b'name: "\xff"')
    with pytest.raises(JaxprobeError, match=rf"^prototxt {re.escape(str(path))}: not UTF-8 text"):
        cs.read_prototxt(path)
    with pytest.raises(JaxprobeError, match=r"cannot read .*missing\.prototxt"):
        cs.read_prototxt(tmp_path / "missing.prototxt")
    # one rule: text goes to parse_prototxt, a path to read_prototxt, never guessed
    for not_text in (path, str(path).encode()):
        with pytest.raises(JaxprobeError, match="expected prototxt text"):
            cs.parse_prototxt(not_text)
