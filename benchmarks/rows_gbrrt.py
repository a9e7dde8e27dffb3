"""Rows for GB-RRT (Jeon et al. 2020, Algorithm 2): the batched `gbrrt` against the sequential
reference `gbrrt_sequential` on the same key and candidates, with the floor (the batched forward of
layers 1..l over as many candidates) and the exact-search bound of `bench_gbrrt` (draws, B x n
distances at the run's tree sizes, nearest-node selection, steering, forward; no bookkeeping)."""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp

from benchmarks import bench_gbrrt, common
from jaxprobe.gbas.beropt import beropt
from jaxprobe.gbas.gbrrt import gbrrt
from tests.gbrrt_reference import gbrrt_sequential

DELTA, INTERVAL = 0.2, 1.0


@functools.lru_cache(maxsize=None)
def setup(layer: int):
    """(model, params, z0, v*, key) at `layer` for the shipped dcgan (V* by BerOpt, as E-GBAS)."""
    model, _ = bench_gbrrt.load_generator("dcgan")
    key = jax.random.PRNGKey(0)
    k_query, k_ber, k_tree = jax.random.split(key, 3)
    z0 = jax.random.normal(k_query, model.input_shape)
    v = beropt(k_ber, model, model.params, z0, layer).v_star
    return model, model.params, z0, v, k_tree


def gbrrt_row(name, layer, batch, candidates, *, repeats, peak, series=None, size=None, size_name=None):
    model, params, z0, v, key = setup(layer)
    common_kw = dict(delta=DELTA, interval=INTERVAL, capacity=candidates + 1)
    up_to = jax.jit(lambda p, z: model.up_to(p, z, layer))
    zb = z0[None] + INTERVAL * jax.random.uniform(key, (batch,) + model.input_shape, minval=-1, maxval=1)
    reps = max(1, candidates // batch)
    counts, nodes = bench_gbrrt.grow_by_steps(model, params, z0, layer, v, candidates=candidates,
                                              capacity=candidates + 1, batch=batch, delta=DELTA, interval=INTERVAL,
                                              key=key)
    bound = bench_gbrrt.exact_search_bound(model, params, z0, layer, v, jnp.asarray(nodes), counts=counts, batch=batch,
                                           delta=DELTA, interval=INTERVAL, key=key)
    t0 = time.perf_counter()
    batched = gbrrt(key, model, params, z0, layer, v, max_candidates=candidates, batch=batch, **common_kw)
    n_b = int(batched.n_candidates)
    compile_s = time.perf_counter() - t0
    fns = {"jax": lambda: gbrrt(key, model, params, z0, layer, v, max_candidates=candidates, batch=batch,
                                **common_kw).nodes,
           "floor": lambda: [up_to(params, zb) for _ in range(reps)][-1],
           "bound": bound,
           "baseline": lambda: gbrrt_sequential(key, model, params, z0, layer, v, max_candidates=n_b,
                                                **common_kw).nodes}
    timing = common.interleaved(fns, repeats)
    seq = gbrrt_sequential(key, model, params, z0, layer, v, max_candidates=n_b, **common_kw)
    # Per-candidate forward flops of layers 1..l (the work every candidate needs), times candidates.
    fwd = common.compiled_flops(up_to, params, zb)
    t_j = timing.median["jax"]
    # The floor and the bound cover reps * batch and len(counts) * batch candidates: scale to n_b.
    floor_s = timing.median["floor"] * n_b / (reps * batch)
    bound_s = timing.median["bound"] * n_b / (len(counts) * batch)
    r = common.row(name, "gbrrt", timing, compile_s=compile_s, floor_s=floor_s,
                   flops=None if fwd is None else fwd / batch * n_b,
                   peak=peak, baseline="sequential reference", layer=layer, batch=batch, candidates=n_b,
                   sequential_candidates=int(seq.n_candidates), accepted=int(batched.count) - 1,
                   bound_s=bound_s, fraction_of_bound=bound_s / t_j, fraction_of_floor=floor_s / t_j,
                   bound_fraction_of_floor=floor_s / bound_s, node_counts_per_step=counts,
                   series=series, size=size, size_name=size_name)
    assert int(seq.n_candidates) == n_b, "the sequential reference saw other candidates"
    if layer == 1:
        r["targets"].append(common.target("x sequential (layer 1)", r["ratio"], 5.0))
    r["targets"].append(common.target("fraction of exact-search bound", r["fraction_of_bound"], 0.9))
    if layer >= 2:
        r["targets"].append(common.target("fraction of floor", r["fraction_of_floor"], 0.8))
    return r


def rows(ctx):
    g = ctx.gbrrt
    for layer in g["layers"]:  # layer 1's row is also the tree-size series' point at the main size
        yield lambda layer=layer: gbrrt_row(f"gbrrt layer {layer}, B={g['batch']}, {g['candidates']} candidates",
                                            layer, g["batch"], g["candidates"], repeats=ctx.repeats, peak=ctx.peak,
                                            **(dict(series="gbrrt_tree_size", size=g["candidates"],
                                                    size_name="candidates (tree size)") if layer == 1 else {}))
    for c in g["tree_sizes"]:
        yield lambda c=c: gbrrt_row(f"gbrrt layer 1, B={g['batch']}, tree {c}", 1, g["batch"], c, repeats=ctx.repeats,
                                    peak=ctx.peak, series="gbrrt_tree_size", size=c, size_name="candidates (tree size)")
    for b in g["batches"]:
        yield lambda b=b: gbrrt_row(f"gbrrt layer 1, B={b}, {g['candidates']} candidates", 1, b, g["candidates"],
                                    repeats=ctx.repeats, peak=ctx.peak, series="gbrrt_batch", size=b,
                                    size_name="batch B")
