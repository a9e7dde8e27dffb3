"""Eager PyTorch implementations of jaxprobe's steps, on the same weights, for the suite's baselines.

`TorchNet` rebuilds a jaxprobe `Model`'s network (the layer types jaxprobe's shipped and paper-scale
models use) as eager PyTorch over NCHW tensors, PyTorch's fast layout, with jaxprobe's parameters
copied into torch tensors. The steps below (DGN-AM, PPGN, the inverse set's sampling step, an
augmented-Lagrangian inner step and a scratch excitation training step with its generator,
`TorchExciteGenerator`) transcribe jaxprobe's equations; each row checks that their
outputs agree with jaxprobe's before timing them.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from flax import nnx

from jaxprobe.models import caffe_layers as cl
from jaxprobe.models import layers as jl


def t(x) -> torch.Tensor:
    """A float32 torch tensor holding a copy of a JAX or numpy array."""
    return torch.from_numpy(np.array(x, np.float32, copy=True))


def nchw(x) -> torch.Tensor:
    """NHWC array -> NCHW torch tensor (other ranks unchanged)."""
    x = t(x)
    return x.permute(0, 3, 1, 2).contiguous() if x.ndim == 4 else x


def to_nhwc(x: torch.Tensor) -> np.ndarray:
    x = x.detach()
    return (x.permute(0, 2, 3, 1) if x.ndim == 4 else x).numpy()


def _act(a: jl.Act):
    if a.kind == "relu":
        return F.relu
    if a.kind == "leaky_relu":
        return lambda h: F.leaky_relu(h, a.slope)
    if a.kind == "tanh":
        return torch.tanh
    if a.kind == "sigmoid":
        return torch.sigmoid
    if a.kind == "identity":
        return lambda h: h
    raise ValueError(f"unsupported activation {a.kind!r}")


def _op(op):
    """A parameter-free jaxprobe op as a function of NCHW tensors."""
    if isinstance(op, jl.Act):
        return _act(op)
    if isinstance(op, cl.CaffePool):
        if op.mode != "MAX" or op.global_pooling:
            raise ValueError(f"unsupported pooling {op}")
        return lambda x: F.max_pool2d(x, op.kernel, op.stride, op.pad, ceil_mode=op.ceil)
    if isinstance(op, jl.MaxPool):
        return lambda x: F.max_pool2d(x, op.window, op.stride, op.pad, ceil_mode=op.ceil)
    if isinstance(op, cl.CaffeLRN):
        if op.region != "ACROSS_CHANNELS":
            raise ValueError(f"unsupported LRN {op}")
        return lambda x: F.local_response_norm(x, op.local_size, op.alpha, op.beta, op.k)
    if isinstance(op, jl.Flatten):
        if op.order == "CHW":
            return lambda x: x.flatten(1)
        return lambda x: (x.permute(0, 2, 3, 1) if x.ndim == 4 else x).flatten(1)
    if isinstance(op, jl.Reshape):  # an HWC shape
        def reshape(x):
            y = x.reshape((x.shape[0],) + tuple(op.shape))
            return y.permute(0, 3, 1, 2) if y.ndim == 4 else y
        return reshape
    if isinstance(op, cl.CaffeReshape):  # Caffe's NCHW shape: what NCHW tensors hold already
        return lambda x: x.reshape([x.shape[i] if d == 0 else d for i, d in enumerate(op.shape)])
    if isinstance(op, cl.Softmax):
        return lambda x: F.softmax(x, dim=1)
    raise ValueError(f"unsupported op {type(op).__name__}")


def _depth_to_space(x, r):
    """jaxprobe's depth_to_space (channel index (dy, dx, c) row-major) on NCHW."""
    n, c, h, w = x.shape
    co = c // (r * r)
    return x.reshape(n, r, r, co, h, w).permute(0, 3, 4, 1, 5, 2).reshape(n, co, h * r, w * r)


def _linear_map(m):
    """A jaxprobe learned map as a function of NCHW tensors, its weights copied to torch."""
    if isinstance(m, cl.CaffeConv):
        kernel = t(m.kernel[...])
        b = None if m.bias is None else t(m.bias[...])
        before = [_op(o) for o in m.before]
        if m.transposed:  # (kh, kw, in, out/g) -> (in, out/g, kh, kw)
            w = kernel.permute(2, 3, 0, 1).contiguous()

            def f(x):
                for o in before:
                    x = o(x)
                return F.conv_transpose2d(x, w, b, m.stride, m.pad, 0, m.group, m.dilation)
        else:  # (kh, kw, in/g, out) -> (out, in/g, kh, kw)
            w = kernel.permute(3, 2, 0, 1).contiguous()

            def f(x):
                for o in before:
                    x = o(x)
                return F.conv2d(x, w, b, m.stride, m.pad, m.dilation, m.group)
        return f
    if isinstance(m, cl.CaffeInnerProduct):
        w = t(m.kernel[...]).T.contiguous()
        b = None if m.bias is None else t(m.bias[...])
        before = [_op(o) for o in m.before]

        def f(x):
            for o in before:
                x = o(x)
            return F.linear(x.flatten(1), w, b)
        return f
    if isinstance(m, nnx.Linear):
        w, b = t(m.kernel[...]).T.contiguous(), t(m.bias[...])
        return lambda x: F.linear(x, w, b)
    if isinstance(m, nnx.Conv):
        strides = m.strides if isinstance(m.strides, (tuple, list)) else (m.strides or 1,)
        if m.padding != "SAME" or any(s != 1 for s in strides) or m.feature_group_count != 1:
            raise ValueError("unsupported nnx.Conv settings")
        w, b = t(m.kernel[...]).permute(3, 2, 0, 1).contiguous(), t(m.bias[...])
        return lambda x: F.conv2d(x, w, b, padding="same")
    if isinstance(m, jl.SubPixelUp):
        conv = _linear_map(m.conv)
        return lambda x: _depth_to_space(conv(x), 2)
    raise ValueError(f"unsupported learned map {type(m).__name__}")


class TorchNet:
    """A jaxprobe `Model`'s network as eager PyTorch on NCHW tensors (parameters copied).

    `up_to(x, l)`, `activation(x, l)` and `forward(x)` mirror `jaxprobe.models.probe.Model`.
    """

    def __init__(self, model, params=None):
        net = nnx.merge(model.graphdef, model.params if params is None else params)
        self.layers = []
        for layer in net.layers:
            if layer.norm is not None:
                raise ValueError("batch norm layers are not needed by the suite's models")
            self.layers.append((_linear_map(layer.linear), _act(layer.act), [_op(o) for o in layer.after]))

    def up_to(self, x, l: int):
        for lin, act, after in self.layers[: l - 1]:
            x = lin(x)
            x = act(x)
            for o in after:
                x = o(x)
        return self.layers[l - 1][0](x)

    def activation(self, x, l: int, nonlinear: bool = True):
        h = self.up_to(x, l)
        return self.layers[l - 1][1](h) if nonlinear else h

    def forward(self, x):
        return self.taps(x, [len(self.layers)], full=True)[len(self.layers)]

    def taps(self, x, ls, *, full: bool = False, nonlinear: bool = True) -> dict:
        """One pass up to max(ls), returning layer l's value (after its act) for every l in ls;
        with `full`, the last layer's full output (post ops included)."""
        out, last = {}, max(ls)
        for i, (lin, act, after) in enumerate(self.layers[:last], 1):
            x = lin(x)
            x = act(x) if nonlinear or i != last else x
            if i in ls and not (full and i == last):
                out[i] = x
            if i < last or full:
                for o in after:
                    x = o(x)
        if full:
            out[last] = x
        return out


def adapt(x, src, dst, side=None):
    """jaxprobe.models.pixels.adapt_images on NCHW torch tensors: convention, then centre crop."""
    if src is not None and dst is not None:
        x = x / src.scale
        if src.mean:
            x = x + torch.tensor(src.mean, dtype=x.dtype).view(1, -1, 1, 1)
        x = (x - src.low) / (src.high - src.low)
        if src.channels == "BGR":
            x = x.flip(1)
        if src.n_channels == 1 and dst.n_channels == 3:
            x = x.repeat(1, 3, 1, 1)
        elif src.n_channels == 3 and dst.n_channels == 1:
            x = x.mean(1, keepdim=True)
        if dst.channels == "BGR":
            x = x.flip(1)
        x = x * (dst.high - dst.low) + dst.low
        if dst.mean:
            x = x - torch.tensor(dst.mean, dtype=x.dtype).view(1, -1, 1, 1)
        x = x * dst.scale
    if side is not None and x.shape[2] != side:
        top, left = (x.shape[2] - side) // 2, (x.shape[3] - side) // 2
        x = x[:, :, top:top + side, left:left + side]
    return x


def side_of(model):
    shape = tuple(model.input_shape)
    return shape[0] if len(shape) == 3 else None


def flat_take(h, flat):
    """Columns `flat` of h flattened in jaxprobe's (H, W, C) order, from an NCHW (or 2-D) tensor."""
    if h.ndim == 4:
        h = h.permute(0, 2, 3, 1)
    return h.reshape(h.shape[0], -1)[:, flat]


# ---------------------------------------------------------------- DGN-AM


def dgn_am_step(gen: TorchNet, cls: TorchNet, generator, classifier, layer: int, flat, weights, step_size: float,
                decay: float, nonlinear: bool = False):
    """y -> y' : one reference DGN-AM step (jaxprobe.codespace.dgn_am.build's kernel, t = 0), the
    neurons read before their layer's nonlinearity unless `nonlinear` (DGNAMOptions.nonlinear); a
    chain whose gradient is zero or not finite stays where it is (no update, no decay)."""
    flat = torch.as_tensor(np.asarray(flat), dtype=torch.long)
    w = t(weights)
    side = side_of(classifier)

    def step(y):
        y = y.detach().requires_grad_(True)
        x = adapt(gen.forward(y), generator.pixels, classifier.pixels, side)
        a = flat_take(cls.activation(x, layer, nonlinear), flat)
        (g,) = torch.autograd.grad((a * w).sum(), y)
        with torch.no_grad():
            scale = g.abs().mean(dim=tuple(range(1, g.ndim)), keepdim=True)
            ok = (scale > 0) & torch.isfinite(scale)
            y2 = y + step_size * g / torch.where(ok, scale, torch.ones_like(scale))
            return torch.where(ok, decay * y2, y)

    return step


# ---------------------------------------------------------------- PPGN


def ppgn_terms(gen: TorchNet, cls: TorchNet, generator, classifier, layer: int, channels, unit: int, prior=None,
               prior_layer=None, prior_model=None, nonlinear: bool = False):
    """h (c, d) -> (drift, grad, prob): jaxprobe.codespace.ppgn.condition_terms, batched over chains
    (exact gradient of log p(y = unit | G(h))), the conditioned layer read before its nonlinearity
    unless `nonlinear` (PPGNOptions.nonlinear)."""
    channels = torch.as_tensor(np.asarray(channels), dtype=torch.long)
    side = side_of(classifier)

    def terms(h):
        h = h.detach().requires_grad_(True)
        x = gen.forward(h)
        a = flat_take(cls.activation(adapt(x, generator.pixels, classifier.pixels, side), layer, nonlinear), channels)
        log_p = F.log_softmax(a, dim=1)[:, unit]
        (g,) = torch.autograd.grad(log_p.sum(), h)
        with torch.no_grad():
            if prior_layer is None:
                r = prior.forward(h)
            else:
                r = prior.activation(adapt(x, generator.pixels, prior_model.pixels, side_of(prior_model)), prior_layer)
                r = r.reshape(h.shape)
            return r - h, g, log_p.exp()

    return terms


def ppgn_step(terms, *, step_size=1.0, eps1=1e-5, eps2=1.0, eps3=1e-17):
    """(h, drift, grad, noise) -> (h', drift', grad', prob'): one normalized MALA-approx step
    (jaxprobe.codespace.ppgn.build's kernel at t = 0, per chain mean |d|; `noise` the chain's n_t,
    `jaxprobe.codespace.ppgn.draw_noise` of its step key), then the terms at h'."""
    def step(h, drift, grad, noise):
        with torch.no_grad():
            d = eps1 * drift + eps2 * grad + eps3 * noise
            scale = d.abs().mean(dim=tuple(range(1, d.ndim)), keepdim=True)
            ok = (scale > 0) & torch.isfinite(scale)
            h = h + torch.where(ok, step_size * d / torch.where(ok, scale, torch.ones_like(scale)), 0.0)
        return (h,) + terms(h)

    return step


# ---------------------------------------------------------------- inverse set


def inverse_forward(gen: TorchNet, cls: TorchNet, generator, classifier, layer: int, flat, emb_layer: int):
    """c -> (values (K, p), E(G(c)) (K, d)): one pass of G and one of the classifier reading both the
    neurons' layer and the embedding's layer (jaxprobe.inverse_sets.problem.make_problem)."""
    flat = torch.as_tensor(np.asarray(flat), dtype=torch.long)
    side = side_of(classifier)

    def forward(c):
        x = adapt(gen.forward(c), generator.pixels, classifier.pixels, side)
        out = cls.taps(x, sorted({layer, emb_layer}))
        e = out[emb_layer]
        e = (e.permute(0, 2, 3, 1) if e.ndim == 4 else e).reshape(e.shape[0], -1)
        return flat_take(out[layer], flat), e

    return forward


def slack_terms(g, lam, mu):
    s = torch.clamp(g - lam / mu, min=0.0)
    r = g - s
    return -lam * r + 0.5 * mu * r * r


def inverse_pieces(ranges, scale: float):
    """The normalized two-sided constraints (margin = width/4), spread and repulsion of make_problem."""
    ranges = t(ranges)
    z1, z2 = ranges[:, 0], ranges[:, 1]
    margin, unit = (z2 - z1) / 4.0, z2 - z1

    def constraints(v):
        return torch.cat([(v - (z1 + margin)) / unit, ((z2 - margin) - v) / unit], dim=-1).reshape(-1)

    def in_range(v):
        return ((v >= z1) & (v <= z2)).all(dim=-1)

    def spread(e):
        k = e.shape[0]
        return (2.0 * k * (e * e).sum() - 2.0 * e.sum(0).square().sum()) / (k * k * scale)

    def repulsion(e, sum_a, sumsq_a, m):
        r = m * (e * e).sum() - 2.0 * torch.dot(e.sum(0), sum_a) + e.shape[0] * sumsq_a
        return r / (e.shape[0] * torch.clamp(m, min=1.0) * scale)

    return constraints, in_range, spread, repulsion


def inverse_sample_step(forward, ranges, scale: float, lam, mu, step_length: float):
    """One sampling step (jaxprobe.inverse_sets.sampling.build's kernel, repel="new") over a dict
    state {codes, fresh, buf_codes, buf_values, buf_embed, count}."""
    constraints, in_range, spread, repulsion = inverse_pieces(ranges, scale)
    lam, mu = t(lam), float(mu)

    def step(s):
        c = s["codes"].detach().requires_grad_(True)
        v, e = forward(c)
        n = s["buf_codes"].shape[0]
        with torch.no_grad():
            ok = in_range(v) & s["fresh"]
            slot = s["count"] + torch.cumsum(ok.long(), 0) - 1
            kept = ok & (slot < n)
            idx = slot[kept]
            buf_codes, buf_values, buf_embed = s["buf_codes"].clone(), s["buf_values"].clone(), s["buf_embed"].clone()
            buf_codes[idx], buf_values[idx], buf_embed[idx] = c[kept], v[kept], e[kept]
            w = kept.to(e.dtype)[:, None]
            m, sum_a, sumsq_a = w.sum(), (w * e).sum(0), (w * e * e).sum()
        loss = slack_terms(constraints(v), lam, mu).sum() - spread(e) - repulsion(e, sum_a, sumsq_a, m)
        (grad,) = torch.autograd.grad(loss, c)
        with torch.no_grad():
            g2 = grad.reshape(grad.shape[0], -1)
            norm = g2.norm(dim=1, keepdim=True)
            direction = torch.where(norm > 0, g2 / torch.where(norm > 0, norm, torch.ones_like(norm)), 0.0)
            new_c = c - step_length * direction.reshape(c.shape)
            moved = (new_c != c).reshape(c.shape[0], -1).any(1)
        return {"codes": new_c, "fresh": moved, "buf_codes": buf_codes, "buf_values": buf_values,
                "buf_embed": buf_embed, "count": s["count"] + kept.sum()}

    return step


def seed_inner_step(forward, ranges, scale: float, lr: float, *, b1=0.9, b2=0.999, eps=1e-8):
    """One inner step of the seeds' augmented Lagrangian (eq. 7-8): value and gradient of
    psi(C) = -D(C) + sum slack_terms(g(C)), then an Adam update (optax.adam's formula) of C.
    State: (codes, m, v, count, lam, mu)."""
    constraints, _, spread, _ = inverse_pieces(ranges, scale)

    def step(c, m, v, count, lam, mu):
        c = c.detach().requires_grad_(True)
        val, e = forward(c)
        psi = -spread(e) + slack_terms(constraints(val), lam, mu).sum()
        (g,) = torch.autograd.grad(psi, c)
        with torch.no_grad():
            count = count + 1
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            mhat, vhat = m / (1 - b1 ** count), v / (1 - b2 ** count)
            return c - lr * mhat / (vhat.sqrt() + eps), m, v, count, psi.detach()

    return step, constraints


# ---------------------------------------------------------------- excitation training (Despraz et al. 2017)


class TorchExciteGenerator:
    """jaxprobe.models.excite_gen's generator as eager PyTorch on NCHW tensors, its learned
    parameters copied into leaf tensors that require grad (`params`, keyed by jaxprobe's state path
    "layers/i/linear/kernel", ...). Conv3x3 (im2col in jaxprobe) is `F.conv2d` with zero padding 1;
    batch norms normalise with the image's own statistics (`F.batch_norm` in training mode, biased
    variance, jaxprobe.codespace.excite.generate with `batch_stats`)."""

    def __init__(self, model, params=None):
        from jaxprobe.models import excite_gen as eg

        net = nnx.merge(model.graphdef, model.params if params is None else params)
        self.params, self.layers = {}, []

        def leaf(path, value, conv=False):
            x = t(value)
            if conv:  # (3, 3, in, out) -> (out, in, 3, 3)
                x = x.permute(3, 2, 0, 1).contiguous()
            self.params[path] = x.requires_grad_(True)
            return path

        for i, layer in enumerate(net.layers):
            m, spec = layer.linear, {}
            if isinstance(m, eg.Scale):
                spec["alpha"] = leaf(f"layers/{i}/linear/alpha", m.alpha[...])
            elif isinstance(m, eg.Conv3x3):
                spec["kernel"] = leaf(f"layers/{i}/linear/kernel", m.kernel[...], conv=True)
                spec["bias"] = leaf(f"layers/{i}/linear/bias", m.bias[...])
            else:
                raise ValueError(f"unsupported generator map {type(m).__name__}")
            if layer.norm is not None:
                spec["scale"] = leaf(f"layers/{i}/norm/scale", layer.norm.scale[...])
                spec["shift"] = leaf(f"layers/{i}/norm/bias", layer.norm.bias[...])
                spec["eps"] = float(layer.norm.epsilon)
            after = []
            for op in layer.after:
                up = isinstance(op, eg.Upsample2)  # nearest 2x: each pixel repeated along H and W
                after.append((lambda x: x.repeat_interleave(2, 2).repeat_interleave(2, 3)) if up else _op(op))
            self.layers.append((spec, _act(layer.act), after))

    def forward(self, x):
        """x (1, n) code -> (1, C, H, W) images in [0, 1]."""
        p = self.params
        for spec, act, after in self.layers:
            if "alpha" in spec:
                x = x * p[spec["alpha"]]
            else:
                x = F.conv2d(x, p[spec["kernel"]], p[spec["bias"]], padding=1)
            if "scale" in spec:
                x = F.batch_norm(x, None, None, p[spec["scale"]], p[spec["shift"]], training=True, eps=spec["eps"])
            x = act(x)
            for o in after:
                x = o(x)
        return x

    def jax_layout(self) -> dict:
        """The parameters as numpy arrays in jaxprobe's layouts (conv kernels back to HWIO)."""
        return {k: (v.detach().permute(2, 3, 1, 0) if v.ndim == 4 else v.detach()).numpy().copy()
                for k, v in self.params.items()}


def excite_scratch_step(gen: TorchExciteGenerator, cls: TorchNet, generator, classifier, layer: int, units,
                        lam: float, reg_weight: float, lr: float, *, b1=0.9, b2=0.999, eps=1e-8):
    """x -> loss: one scratch excitation training step (jaxprobe.codespace.excite.excite_step,
    Despraz et al. 2017 eq. 2-3) on the jittered code x (1, n), updating `gen.params` in place with
    `torch.optim.Adamax` (optax.adamax's formula). Target: units of a fully connected layer, read
    before the ReLU that replaces the output; the others after it. R = reg_weight sum |gamma| of
    the last (image channels') batch norm."""
    w = torch.zeros(int(np.prod(classifier.layer_shape(layer))))
    w[list(units)] = 1.0
    side = side_of(classifier)
    gamma = gen.params[[k for k in gen.params if k.endswith("/norm/scale")][-1]]
    opt = torch.optim.Adamax(list(gen.params.values()), lr=lr, betas=(b1, b2), eps=eps)

    def step(x):
        opt.zero_grad(set_to_none=True)
        images = adapt(gen.forward(x), generator.pixels, classifier.pixels, side)
        a = cls.up_to(images, layer).flatten(1)[0]
        loss = -(w * a).sum() + lam * ((1.0 - w) * F.relu(a)).sum() + reg_weight * gamma.abs().sum()
        loss.backward()
        opt.step()
        return loss.detach()

    return step
