"""Benchmark: what the progress hooks cost (issue 16: bars at a cost the benchmark shows).

Times, on the shipped models, each method's run with `progress=` a host function (what the
command line passes to move its tqdm bar) against the same run with `progress=None` (no callback
compiled in), on the same key:

* GB-RRT (`jaxprobe.gbas.gbrrt.gbrrt`): the `dcgan` at `--layer`, V* from BerOpt at a prior
  query, `--candidates` candidates in batches of 64; the hook is `jax.debug.callback` under a
  `lax.cond`, about 20 calls a run;
* the inverse set (`jaxprobe.inverse_sets.inverse_set.inverse_set`): `fc_generator` and
  `classifier`, logits:3 in a range of its values over the generator's reconstructions, n and k
  as given; the hook ticks after each of the seeds' outer iterations and about 20 times while
  sampling.

Both programs are compiled first; then the two are run alternately `--repeats` times (so that load
from neighbours on a shared machine hits both alike) and the ratio of the medians is reported
(1.0 = free). The runs' results are compared too: the hook must not change them.

    nice -n 15 python benchmarks/bench_progress.py [--repeats 7] [--out benchmarks/results/progress.json]
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import numpy as np

import jaxprobe
from jaxprobe.gbas.gbrrt import gbrrt
from jaxprobe.io import write_json

inverse_sets = importlib.import_module("jaxprobe.inverse_sets.inverse_set")
ROOT = Path(__file__).resolve().parents[1]


def _alternate(run_plain, run_hooked, repeats: int) -> dict:
    """Median wall times of two warmed-up callables run alternately, and their ratio."""
    plain, hooked = [], []
    for _ in range(repeats):
        for fn, times in ((run_plain, plain), (run_hooked, hooked)):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    m0, m1 = statistics.median(plain), statistics.median(hooked)
    return {"median_s_without": round(m0, 5), "median_s_with": round(m1, 5), "ratio_with_over_without": round(m1 / m0, 4),
            "times_s_without": [round(t, 5) for t in plain], "times_s_with": [round(t, 5) for t in hooked]}


def bench_gbrrt(layer: int, candidates: int, repeats: int) -> dict:
    g = jaxprobe.load("dcgan")
    z0 = g.sample_prior(jax.random.key(1), 1)[0]
    pilot = jaxprobe.egbas(jax.random.key(2), g, g.params, z0, layer, capacity=16, max_candidates=64)
    v, delta = pilot.v_star, pilot.delta  # BerOpt's V* and the library's default step size
    ticks = []

    def hook(n):
        ticks.append(int(n))

    kw = dict(delta=delta, capacity=candidates + 1, max_candidates=candidates, batch=64)
    run = {None: lambda: gbrrt(jax.random.key(4), g, g.params, z0, layer, v, **kw),
           "hook": lambda: gbrrt(jax.random.key(4), g, g.params, z0, layer, v, progress=hook, **kw)}
    plain, hooked = (jax.block_until_ready(run[k]()) for k in (None, "hook"))  # compile both
    same = bool(np.array_equal(np.asarray(plain.nodes), np.asarray(hooked.nodes))
                and int(plain.count) == int(hooked.count))
    ticks.clear()
    out = _alternate(lambda: jax.block_until_ready(run[None]()), lambda: jax.block_until_ready(run["hook"]()), repeats)
    return {"model": "dcgan", "layer": layer, "candidates": candidates, "batch": 64, "accepted": int(plain.count),
            "ticks_per_run": len(ticks) / repeats, "same_result": same, **out}


def bench_inverse_set(n: int, k: int, repeats: int) -> dict:
    g, c = jaxprobe.load("fc_generator"), jaxprobe.load("classifier")
    codes = g.sample_prior(jax.random.key(5), 256) if g.manifest.get("latent") else None
    if codes is None:  # fc_generator inverts the classifier's fc1: its codes are E(images)
        emb = inverse_sets.default_embedding(g, c)
        x = jax.random.uniform(jax.random.key(5), (256,) + tuple(c.input_shape))
        codes = emb.model.activation(emb.model.params, x, emb.layer)
    from jaxprobe.experiments.rechecks import fresh_activations

    values = np.asarray(fresh_activations(g, c, np.asarray(codes), ["logits:3"]))[:, 0]
    rg = tuple(float(q) for q in np.quantile(values, [0.7, 0.9]))
    ticks = []

    def hook(done, total):
        ticks.append(done)

    kw = dict(n=n, k=k)
    run = {None: lambda: inverse_sets.inverse_set(jax.random.key(6), g, c, "logits:3", rg, **kw),
           "hook": lambda: inverse_sets.inverse_set(jax.random.key(6), g, c, "logits:3", rg, progress=hook, **kw)}
    plain, hooked = run[None](), run["hook"]()  # compile both (the result is on the host)
    same = bool(np.array_equal(plain.codes, hooked.codes) and plain.stop_reason == hooked.stop_reason)
    ticks.clear()
    out = _alternate(run[None], run["hook"], repeats)
    return {"generator": "fc_generator", "classifier": "classifier", "neuron": "logits:3", "range": rg, "n": n,
            "k": k, "accepted": plain.n_accepted, "outer_iterations": plain.outer_iterations,
            "sampling_steps": plain.sampling_steps, "ticks_per_run": len(ticks) / repeats, "same_result": same,
            **out}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--layer", type=int, default=2, help="GB-RRT's generator layer (2)")
    parser.add_argument("--candidates", type=int, default=1024, help="GB-RRT's candidates per run (1024)")
    parser.add_argument("--n", type=int, default=100, help="inverse-set samples (100)")
    parser.add_argument("--k", type=int, default=10, help="inverse-set codes optimized together (10)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "progress.json"))
    args = parser.parse_args(argv)
    result = {
        "what": "wall time of a run with progress= a host function over the same run with progress=None "
                "(medians of alternate runs after compilation); 1.0 means the hook is free",
        "gbrrt": bench_gbrrt(args.layer, args.candidates, args.repeats),
        "inverse_set": bench_inverse_set(args.n, args.k, args.repeats),
        "repeats": args.repeats,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "jax": jax.__version__,
                    "backend": jax.default_backend()},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    write_json(Path(args.out), result)
    for name in ("gbrrt", "inverse_set"):
        r = result[name]
        print(f"{name}: without {r['median_s_without']:.4f} s, with {r['median_s_with']:.4f} s, "
              f"ratio {r['ratio_with_over_without']:.3f}, {r['ticks_per_run']:.0f} ticks a run, "
              f"same result {r['same_result']}")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
