"""Shared pieces of the benchmark suite: timing, the machine's measured peaks, rows, outputs.

Every row times a JAX computation against its baseline (eager PyTorch on the same weights, or the
sequential GB-RRT reference) and against its floor (the jitted bare forward+backward of the models
the step uses), interleaved within each round so that load from neighbours on a shared machine
hits all of them alike; the figure kept is the median over rounds after a warm-up call (whose
time, for JAX, is recorded as compile seconds).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np


def cores() -> int:
    """The cores this process may run on (what XLA's CPU thread pool sizes itself to)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def block(x):
    """Wait for JAX arrays (and leave torch tensors, already computed eagerly, alone)."""
    return jax.block_until_ready(x)


@dataclasses.dataclass
class Timing:
    """Median seconds per function over `repeats` interleaved rounds, and the warm-up seconds."""

    median: dict
    first: dict
    samples: dict


def interleaved(fns: dict, repeats: int, warm: bool = True) -> Timing:
    """Time each of `fns` (name -> zero-argument callable) `repeats` times, alternating within each
    round, after one warm-up call each (its time is `first`: compile plus one run for JAX; skipped
    with `warm=False`, for long runs whose JAX side is compiled already)."""
    first, samples = {}, {k: [] for k in fns}
    for k, f in fns.items() if warm else ():
        t = time.perf_counter()
        block(f())
        first[k] = time.perf_counter() - t
    for _ in range(repeats):
        for k, f in fns.items():
            t = time.perf_counter()
            block(f())
            samples[k].append(time.perf_counter() - t)
    return Timing({k: statistics.median(v) for k, v in samples.items()}, first, samples)


def first_call(fn) -> float:
    """Seconds of the first call of a jitted function: compilation plus one run."""
    t = time.perf_counter()
    block(fn())
    return time.perf_counter() - t


def compiled_flops(fn: Callable, *args) -> float | None:
    """XLA's FLOP count of `fn` (jitted or not) at `args` from its cost analysis, or None where the
    backend reports none. A `lax.while_loop` or `scan` body is counted once: callers count per step.
    """
    f = fn if hasattr(fn, "lower") else jax.jit(fn)
    for get in (lambda: f.lower(*args).cost_analysis(), lambda: f.lower(*args).compile().cost_analysis()):
        try:
            cost = get()
        except Exception:  # noqa: BLE001 - a backend without cost analysis
            continue
        if isinstance(cost, (list, tuple)):
            cost = cost[0] if cost else None
        if cost and cost.get("flops"):
            return float(cost["flops"])
    return None


def measure_machine(quick: bool, repeats: int) -> dict:
    """The float32 matmul peak (GFLOP/s, an n x n product) and the memory read bandwidth (GB/s, a
    sum over a large array), measured now: the machine is shared, so every row is judged against
    figures from the same run."""
    n = 512 if quick else 2048
    ka, kb = jax.random.split(jax.random.PRNGKey(0))
    a = jax.random.normal(ka, (n, n), jnp.float32)
    b = jax.random.normal(kb, (n, n), jnp.float32)
    mm = jax.jit(lambda a, b: a @ b)
    words = (4 if quick else 64) * 2**20  # 16 MB quick, 256 MB full: well beyond the caches
    big = jnp.ones((words,), jnp.float32)
    total = jax.jit(jnp.sum)
    t = interleaved({"matmul": lambda: mm(a, b), "read": lambda: total(big)}, max(repeats, 5))
    return {"matmul_n": n, "matmul_peak_gflops": 2.0 * n**3 / t.median["matmul"] / 1e9,
            "read_bytes": 4 * words, "bandwidth_gbs": 4 * words / t.median["read"] / 1e9}


def environment(threads: int) -> dict:
    """Versions, backend, devices and CPU model, for results.json."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    env = {"jax": jax.__version__, "jaxlib": getattr(jax.lib, "__version__", None) or _version("jaxlib"),
           "flax": _version("flax"), "optax": _version("optax"), "numpy": np.__version__,
           "python": platform.python_version(), "platform": platform.platform(), "backend": jax.default_backend(),
           "devices": [str(d) for d in jax.devices()], "cpu": cpu, "cpu_count": os.cpu_count(), "cores_used": cores(),
           "threads": {"xla": threads, "torch": None}, "xla_flags": os.environ.get("XLA_FLAGS", ""),
           "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    try:
        import torch
        env["torch"] = torch.__version__
        env["threads"]["torch"] = torch.get_num_threads()
    except ImportError:
        env["torch"] = None
    return env


def _version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:  # noqa: BLE001
        return None


def target(name: str, value, goal: float, *, at_least: bool = True, note: str = "") -> dict:
    """One target of a row: `value` against `goal` (>= goal, or <= goal with at_least=False)."""
    met = None if value is None else bool(value >= goal if at_least else value <= goal)
    return {"name": name, "value": value, "goal": goal, "op": ">=" if at_least else "<=", "met": met,
            "note": note}


def row(name: str, group: str, timing: Timing | None = None, *, jax_s=None, baseline_s=None, floor_s=None,
        compile_s=None, flops=None, peak=None, baseline="torch eager", **extra) -> dict:
    """A result row. Times default to `timing`'s medians of "jax", "baseline" and "floor"."""
    if timing is not None:
        jax_s = timing.median.get("jax") if jax_s is None else jax_s
        baseline_s = timing.median.get("baseline") if baseline_s is None else baseline_s
        floor_s = timing.median.get("floor") if floor_s is None else floor_s
        compile_s = timing.first.get("jax") if compile_s is None else compile_s
    gflops = None if not flops or not jax_s else flops / jax_s / 1e9
    r = {"name": name, "group": group, "jax_s": jax_s, "baseline": baseline, "baseline_s": baseline_s,
         "ratio": None if baseline_s is None or not jax_s else baseline_s / jax_s,
         "flops": flops, "gflops": gflops,
         "fraction_of_peak": None if gflops is None or not peak else gflops / peak,
         "floor_s": floor_s, "overhead": None if floor_s is None or not jax_s else jax_s / floor_s,
         "compile_s": compile_s, "targets": []}
    r.update(extra)
    return r


def loop_pair(fns: dict, make, steps: int) -> None:
    """Put the public function's whole call twice into `fns`: "loop" running `steps` steps and
    "loop_base" running steps // 2 (`make(n)` returns the call for n steps), timed interleaved with
    the rest, so that `loop_fields` separates the loop's seconds per step from what every call
    costs besides its steps."""
    fns["loop"] = make(steps)
    fns["loop_base"] = make(max(1, steps // 2))


def loop_fields(r: dict, timing: Timing, steps: int, base_steps: int | None = None, key: str = "loop") -> dict:
    """Add to row `r` the sampler as users run it: `timing`'s `key` entry is a whole call of the
    public function (`jaxprobe.dgn_am`, `ppgn`, `excite`) running `steps` steps, timed beside the
    single jitted step (`r["jax_s"]`) after a first call that compiled it; with `base_steps`, the
    "loop_base" entry is the same call for that many steps (`loop_pair`). Fields: loop_s (seconds
    per step of the loop: the difference of the two calls over their difference in steps, so a
    slowdown only the loop has shows whatever the call's fixed cost), call_s (the rest of a call:
    checks, initial codes, dispatch, the final readout), call_per_step_s (a whole call over
    `steps`), loop_ratio = loop_s / jax_s, loop_overhead = loop_s / floor_s, loop_compile_s (the
    first call: tracing, compilation and one run), loop_steps; and the target loop_overhead <= 1.1."""
    whole = timing.median[key]
    if base_steps is not None and f"{key}_base" in timing.median and steps > base_steps:
        loop_s = (whole - timing.median[f"{key}_base"]) / (steps - base_steps)
    else:
        loop_s = whole / steps
    r.update(loop_s=loop_s, loop_steps=steps, loop_compile_s=timing.first.get(key), call_s=whole - loop_s * steps,
             call_per_step_s=whole / steps,
             loop_ratio=None if not r.get("jax_s") else loop_s / r["jax_s"],
             loop_overhead=None if not r.get("floor_s") else loop_s / r["floor_s"])
    if str(r.get("baseline", "")).startswith("torch") and r.get("baseline_s") is not None:
        r["targets"].append(target("loop x eager torch", r["baseline_s"] / loop_s, 1.0))
    if r["loop_overhead"] is not None:
        r["targets"].append(target("loop per step vs floor", r["loop_overhead"], 1.1, at_least=False,
                                   note=f"{steps} steps, loop/step {fmt(r['loop_ratio'])}, fixed "
                                        f"{fmt(r['call_s'])} s a call"))
    return r


def fmt(x, spec=".3g"):
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return format(x, spec)
    return str(x)


def markdown(results: dict) -> str:
    """The results as a markdown table (one line per row) plus targets and notes."""
    env, m = results["environment"], results["machine"]
    lines = [f"# jaxprobe benchmark suite{' (--quick)' if results['quick'] else ''}", "",
             f"Machine: {env['cpu']}, {env['cores_used']} cores used of {env['cpu_count']}; backend "
             f"{env['backend']}; jax {env['jax']}, torch {env['torch']}; threads XLA {env['threads']['xla']}, "
             f"torch {env['threads']['torch']} (OMP_WAIT_POLICY={env.get('omp_wait_policy')}). Same-run float32 "
             f"matmul peak {m['matmul_peak_gflops']:.1f} GFLOP/s ({m['matmul_n']}^2), memory read bandwidth "
             f"{m['bandwidth_gbs']:.1f} GB/s. Total {results['total_s']:.0f} s.",
             "",
             "ratio = baseline_s / jax_s (> 1: JAX faster); overhead = jax_s / floor_s; times are medians (s).", "",
             "loop_s = seconds per step of the public function's loop, from two whole calls of N and N/2 "
             "steps (compile apart); loop/step = loop_s / jax_s; call_s = the rest of a call (checks, "
             "dispatch, initial codes, final readout).", "",
             "| row | jax_s | baseline | baseline_s | ratio | GFLOP/s | % peak | floor_s | overhead | compile_s "
             "| loop_s | loop/step | call_s | targets |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        tg = "; ".join(f"{t['name']} {fmt(t['value'])} {t['op']} {fmt(t['goal'])}: "
                       f"{'met' if t['met'] else ('missed' if t['met'] is False else 'n/a')}" for t in r["targets"])
        pct = None if r.get("fraction_of_peak") is None else 100 * r["fraction_of_peak"]
        lines.append(f"| {r['name']} | {fmt(r['jax_s'])} | {r['baseline']} | {fmt(r['baseline_s'])} | "
                     f"{fmt(r['ratio'])} | {fmt(r['gflops'])} | {fmt(pct, '.0f')} | {fmt(r['floor_s'])} | "
                     f"{fmt(r['overhead'])} | {fmt(r['compile_s'])} | {fmt(r.get('loop_s'))} | "
                     f"{fmt(r.get('loop_ratio'))} | {fmt(r.get('call_s'))} | {tg} |")
    if results.get("left_out"):
        lines += ["", "Left out:"] + [f"- {k}: {v}" for k, v in results["left_out"].items()]
    for bd in [results.get("breakdown"), *results.get("breakdowns", [])]:
        if not bd:
            continue
        lines += ["", f"## Where the time goes: {bd.get('what', 'paper-scale DGN-AM')}, batch "
                  f"{bd['batch']}, per layer (forward / forward+backward to the input, s)", "",
                  "| model | layer | jax fwd | torch fwd | jax fwd+bwd | torch fwd+bwd |", "|---|---|---|---|---|---|"]
        for b in bd["layers"] + [{"model": "all", "layer": "total", **bd["totals"]}]:
            lines.append(f"| {b['model']} | {b['layer']} | {fmt(b['jax_fwd'])} | {fmt(b['torch_fwd'])} | "
                         f"{fmt(b['jax_fwdbwd'])} | {fmt(b['torch_fwdbwd'])} |")
    missed = [(r["name"], t) for r in results["rows"] for t in r["targets"] if t["met"] is False]
    lines += ["", f"Targets: {sum(t['met'] is True for r in results['rows'] for t in r['targets'])} met, "
              f"{len(missed)} missed."]
    for name, t in missed:
        lines.append(f"- missed: {name}: {t['name']} = {fmt(t['value'])}, goal {t['op']} {fmt(t['goal'])}"
                     + (f" ({t['note']})" if t["note"] else ""))
    return "\n".join(lines) + "\n"


def plots(results: dict, out: Path) -> list:
    """Scaling curves (one PNG per series of rows sharing a `series` key): seconds against the
    series' size parameter, JAX and baseline. Returns the files written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {}
    for r in results["rows"]:
        if r.get("series"):
            series.setdefault(r["series"], []).append(r)
    written = []
    for name, rows in series.items():
        rows = sorted(rows, key=lambda r: r["size"])
        xs = [r["size"] for r in rows]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for key, label in (("jax_s", "JAX"), ("baseline_s", rows[0]["baseline"]), ("floor_s", "floor")):
            ys = [r[key] for r in rows]
            if all(y is not None for y in ys):
                ax.plot(xs, ys, marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(rows[0].get("size_name", "size"))
        ax.set_ylabel("seconds (median)")
        ax.set_title(name)
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        path = out / f"scaling_{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path.name)
    return written


def write_json(path: Path, data) -> None:
    """Write JSON atomically (a temporary file, then a rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
    os.replace(tmp, path)


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)
