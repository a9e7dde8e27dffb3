"""A/B timing of the rewrites in jaxprobe.models.layers at paper scale:
`python -m benchmarks.bench_layers [--net caffenet|deepsim] [--batch 10] [--rounds 5] [--out FILE.json]`.

DeePSim's fc6 generator (`--net deepsim`): "plain" (the 4x4 stride-2 transposed convolutions'
sub-pixel form with XLA's own gradient) against "new" (its input gradient one stride-2
convolution), timed on deconv1 forward+backward to its input, the whole generator forward+backward
to the code, and its forward. CaffeNet (`--net caffenet`, the default):

Variants, each its own jitted program in one process, timed in interleaved rounds (medians and
spread): "plain" (XLA's own gradients: the strided conv1 transposed, max pooling as a running
maximum of slices, LRN by autodiff), "new" (strided_conv2d, the custom max-pooling and LRN
gradients), and "new" with each rewrite reverted alone. Timed: CaffeNet's conv1 block (conv1, relu,
pool1, norm1) forward+backward to the image, the whole CaffeNet forward+backward to the image
(random He-scaled weights, 227 x 227), and the forward alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxprobe.models import caffe_layers, layers


def plain_pool(x, kernel, stride, pads, out):
    """The former max_pool_slices: a running maximum of strided slices, XLA's gradient."""
    xp = jnp.pad(x, [(0, 0), tuple(pads[0]), tuple(pads[1]), (0, 0)], constant_values=-jnp.inf)
    y = None
    for _, _, part in layers._pool_taps(xp, kernel, stride, out):
        y = part if y is None else jnp.maximum(y, part)
    return y


def plain_lrn(x, window, pads, coef, k, beta):
    return x * jnp.power(k + coef * layers.window_sum(jnp.square(x), window, pads), -beta)


def plain_conv(x, kernel, stride, pad):
    return layers._conv_plain(x, kernel, stride, pad)


REVERT = {"conv": (layers, "strided_conv2d", plain_conv), "pool": (caffe_layers, "max_pool_slices", plain_pool),
          "lrn": (layers, "local_response_norm", plain_lrn), "subpixel": (layers, "_subpixel", layers._subpixel.fun)}


@contextlib.contextmanager
def reverted(names):
    """Module attributes swapped for their plain forms while a program is traced."""
    saved = [(mod, attr, getattr(mod, attr)) for mod, attr, _ in (REVERT[n] for n in names)]
    for n in names:
        mod, attr, f = REVERT[n]
        setattr(mod, attr, f)
    try:
        yield
    finally:
        for mod, attr, f in saved:
            setattr(mod, attr, f)


def programs(cls, batch, names):
    """Jitted (block fwd+bwd, net fwd+bwd, net fwd) traced with `names` reverted."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((batch, 227, 227, 3), np.float32) * 50)

    def block(p, v):
        net = nnx.merge(cls.graphdef, p)
        return net.layers[0](v)

    def net_out(p, v):
        return cls.forward(p, v)

    out_b = jax.eval_shape(block, cls.params, x)
    out_n = jax.eval_shape(net_out, cls.params, x)
    cb = jnp.asarray(rng.standard_normal(out_b.shape, np.float32))
    cn = jnp.asarray(rng.standard_normal(out_n.shape, np.float32))
    fb = jax.jit(lambda p, v, c: jax.vjp(lambda u: block(p, u), v)[1](c)[0])
    fn = jax.jit(lambda p, v, c: jax.vjp(lambda u: net_out(p, u), v)[1](c)[0])
    ff = jax.jit(net_out)
    with reverted(names):  # trace and compile now, while the swap holds
        fb = fb.lower(cls.params, x, cb).compile()
        fn = fn.lower(cls.params, x, cn).compile()
        ff = ff.lower(cls.params, x).compile()
    p = cls.params
    return {"block fwd+bwd": lambda: fb(p, x, cb), "net fwd+bwd": lambda: fn(p, x, cn), "net fwd": lambda: ff(p, x)}


def generator_programs(gen, batch, names, layer="deconv1"):
    """Jitted (layer fwd+bwd, generator fwd+bwd, generator fwd) of DeePSim's generator, traced with
    `names` reverted."""
    rng = np.random.default_rng(0)
    code = jnp.asarray(rng.standard_normal((batch,) + tuple(gen.input_shape), np.float32))
    i = gen.layer_names.index(layer)

    def before(p, z):  # the layer's input: the layers before it, their activations included
        net = nnx.merge(gen.graphdef, p)
        for j in range(i):
            z = net.layers[j](z)
        return z

    x = jax.jit(before)(gen.params, code)

    def one(p, v):
        return nnx.merge(gen.graphdef, p).layers[i](v)

    cl = jnp.asarray(rng.standard_normal(jax.eval_shape(one, gen.params, x).shape, np.float32))
    cg = jnp.asarray(rng.standard_normal(jax.eval_shape(gen.forward, gen.params, code).shape, np.float32))
    fl = jax.jit(lambda p, v, c: jax.vjp(lambda u: one(p, u), v)[1](c)[0])
    fg = jax.jit(lambda p, z, c: jax.vjp(lambda u: gen.forward(p, u), z)[1](c)[0])
    ff = jax.jit(gen.forward)
    with reverted(names):
        fl = fl.lower(gen.params, x, cl).compile()
        fg = fg.lower(gen.params, code, cg).compile()
        ff = ff.lower(gen.params, code).compile()
    p = gen.params
    return {f"{layer} fwd+bwd": lambda: fl(p, x, cl), "G fwd+bwd": lambda: fg(p, code, cg),
            "G fwd": lambda: ff(p, code)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--net", choices=("caffenet", "deepsim"), default="caffenet")
    ap.add_argument("--variants", nargs="*", default=None,
                    help="plain, new, new-conv, new-pool, new-lrn (caffenet); plain, new (deepsim)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from benchmarks.models import paper_models
    gen, cls = paper_models(False)
    if args.net == "deepsim":
        reverts, make, net = {"plain": ("subpixel",), "new": ()}, generator_programs, gen
    else:
        reverts = {"plain": ("conv", "pool", "lrn"), "new": ()}
        reverts.update({f"new-{n}": (n,) for n in ("conv", "pool", "lrn")})
        make, net = programs, cls
    fns = {}
    for v in args.variants or list(reverts):
        for k, f in make(net, args.batch, reverts[v]).items():
            fns[(v, k)] = f
    for f in fns.values():
        jax.block_until_ready(f())
    samples = {k: [] for k in fns}
    for _ in range(args.rounds):
        for k, f in fns.items():
            t = time.perf_counter()
            jax.block_until_ready(f())
            samples[k].append(time.perf_counter() - t)
    res = []
    for (v, k), s in samples.items():
        res.append({"variant": v, "what": k, "median_s": statistics.median(s), "min_s": min(s), "max_s": max(s)})
        print(f"{v:10s} {k:14s} median {statistics.median(s) * 1e3:7.1f} ms  (min {min(s) * 1e3:7.1f}, "
              f"max {max(s) * 1e3:7.1f})")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"net": args.net, "batch": args.batch, "rounds": args.rounds, "rows": res}, fh, indent=2)


if __name__ == "__main__":
    main()
