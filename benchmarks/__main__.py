"""jaxprobe's benchmark suite: `python -m benchmarks [--quick] [--out DIR]`.

Rows (each: name, jax_s, baseline_s, ratio = baseline_s / jax_s, gflops against the same-run float32
matmul peak, floor_s and overhead = jax_s / floor_s, compile_s apart; medians over interleaved
repeats after compilation):

1. GB-RRT batched against the sequential reference, layers 1-4, with the exact-search bound;
   scaling with tree size and batch (shipped dcgan).
2. Inverse set, K = 10: one augmented-Lagrangian inner step, the seeds, sampling n = 500; the
   sampling step's scaling with K (shipped fc_generator + classifier).
3. DGN-AM and PPGN steps, chains 1..256 (shipped models); excitation training when
   jaxprobe.codespace.excite is there.
4. Paper scale, random He-scaled weights: DeePSim fc6 + CaffeNet 227: DGN-AM at batch 1 and 10, the
   inverse set's step at K = 10, PPGN with 10 chains, and a per-layer breakdown of the DGN-AM step.

Sampler rows also time the sampler as users run it (`common.loop_fields`): the public function
(`jaxprobe.dgn_am`, `ppgn`, `excite`, `inverse_set`) over N steps, seconds per step from the whole
call after a first call that compiled it, beside the single jitted step (loop_s, loop_ratio =
loop_s / jax_s, loop_overhead = loop_s / floor_s, target <= 1.1); --quick does so for the first
DGN-AM row only (compiling each public program costs 10-60 s here). GB-RRT rows already time the
public `gbrrt` whole.

Baselines: eager PyTorch on the same weights (outputs checked against jaxprobe's before timing),
with as many threads as XLA's CPU backend uses; on a GPU/TPU backend the CPU torch baseline is
skipped and marked so. Writes results.json, results.md and scaling_*.png into --out.
"""

from __future__ import annotations

import os

# PyTorch's OpenMP threads spin while they wait; on a machine shared with other processes a
# spinning thread holds a core its partner needs, and eager torch ran 20x slower here (a conv +
# relu at batch 10: 150 ms spinning, 7 ms passive). Set before torch is imported; recorded in
# results.json. An explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
from tqdm import tqdm  # noqa: E402

from benchmarks import common  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class Context:
    quick: bool
    repeats: int
    peak: float
    bandwidth: float
    torch_ok: bool
    chains: tuple
    ks: tuple
    n_samples: int
    gbrrt: dict
    loop_steps: int


FULL = dict(repeats=5, chains=(1, 4, 16, 64, 256), ks=(2, 5, 10, 20, 50), n_samples=500, loop_steps=10,
            gbrrt=dict(layers=(1, 2, 3, 4), batch=256, candidates=1024, tree_sizes=(256, 2048), batches=(64,)))
QUICK = dict(repeats=1, chains=(1, 2), ks=(2,), n_samples=10, loop_steps=3,
             gbrrt=dict(layers=(1,), batch=16, candidates=32, tree_sizes=(), batches=()))


def standard_targets(r: dict) -> None:
    """Targets every row shares: JAX at least as fast as eager torch on the same computation, and a
    sampler step within 1.1x its floor."""
    if r.get("baseline", "").startswith("torch") and r.get("baseline_s") is not None:
        r["targets"].insert(0, common.target("x eager torch", r["ratio"], 1.0))
    if r.get("sampler") or r["group"] in ("codespace", "paper"):
        if r.get("overhead") is not None:
            r["targets"].append(common.target("overhead vs floor", r["overhead"], 1.1, at_least=False))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (the smoke test): checks the suite runs")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "suite"), help="output directory")
    ap.add_argument("--only", nargs="*", default=None, choices=("gbrrt", "inverse_set", "codespace", "paper"),
                    help="groups to run: gbrrt inverse_set codespace paper (default all)")
    ap.add_argument("--no-breakdown", action="store_true", help="skip the per-layer breakdowns")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    threads = common.cores()
    torch_ok = jax.default_backend() == "cpu"
    try:
        import torch
        torch.set_num_threads(threads)  # XLA's CPU backend uses one thread per core it may run on
    except ImportError:
        torch_ok = False
    cfg = QUICK if args.quick else FULL
    machine = common.measure_machine(args.quick, cfg["repeats"])
    ctx = Context(args.quick, cfg["repeats"], machine["matmul_peak_gflops"], machine["bandwidth_gbs"], torch_ok,
                  cfg["chains"], cfg["ks"], cfg["n_samples"], cfg["gbrrt"], cfg["loop_steps"])

    import importlib
    names = ("gbrrt", "inverse_set", "codespace", "paper")
    chosen = args.only or list(names)
    # Only the chosen groups' modules are imported: --only runs whatever the others import.
    groups = {g: importlib.import_module(f"benchmarks.rows_{g}") for g in chosen}
    rows_codespace = importlib.import_module("benchmarks.rows_codespace")
    rows_paper = groups.get("paper")
    pending = [f for g in chosen for f in groups[g].rows(ctx)]
    left_out, failed = {}, {}
    if "codespace" in chosen:
        _, why = rows_codespace.excite_available()
        if why:
            left_out["excitation training step"] = why
    if not torch_ok:
        left_out["torch baselines"] = f"skipped: backend {jax.default_backend()} (the baseline is eager torch on CPU)"
    results_rows = []
    for i, make in enumerate(tqdm(pending, desc="benchmarks", unit="row", file=sys.stderr)):
        t_row = time.perf_counter()
        try:
            r = make()
        except Exception as e:  # noqa: BLE001 - one failing row is reported, the rest still run
            traceback.print_exc()
            failed[f"row {i + 1} of {len(pending)}"] = f"{type(e).__name__}: {e}"
            continue
        r["wall_s"] = time.perf_counter() - t_row
        standard_targets(r)
        results_rows.append(r)
        loop = (f", loop {common.fmt(r['loop_s'])} s/step ({common.fmt(r.get('loop_ratio'))}x the step)"
                if "loop_s" in r else "")
        tqdm.write(f"{r['name']}: jax {common.fmt(r['jax_s'])} s, baseline {common.fmt(r['baseline_s'])} s, "
                   f"ratio {common.fmt(r['ratio'])}, overhead {common.fmt(r['overhead'])}{loop} ({r['wall_s']:.1f} s)",
                   file=sys.stderr)
    breakdown = None
    if "paper" in chosen and not args.no_breakdown:
        try:
            t_b = time.perf_counter()
            breakdown = rows_paper.breakdown(ctx, 10, max_layers=1 if args.quick else None)
            breakdown["wall_s"] = time.perf_counter() - t_b
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            failed["breakdown"] = f"{type(e).__name__}: {e}"
    breakdowns = []
    if "codespace" in chosen and not args.no_breakdown:  # the largest chain count's DGN-AM, per layer
        try:
            t_b = time.perf_counter()
            breakdowns.append(rows_codespace.breakdown(ctx, max(ctx.chains)))
            breakdowns[-1]["wall_s"] = time.perf_counter() - t_b
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            failed["codespace breakdown"] = f"{type(e).__name__}: {e}"
    results = {"quick": args.quick, "environment": common.environment(threads), "machine": machine,
               "settings": {k: v for k, v in dataclasses.asdict(ctx).items()}, "rows": results_rows,
               "left_out": left_out, "failed": failed, "breakdown": breakdown, "breakdowns": breakdowns,
               "total_s": time.perf_counter() - t_start}
    results["plots"] = common.plots(results, out)
    results["total_s"] = time.perf_counter() - t_start
    common.write_json(out / "results.json", results)
    (out / "results.md").write_text(common.markdown(results))
    print(common.markdown(results))
    print(f"wrote {out / 'results.json'}, {out / 'results.md'} and {len(results['plots'])} plots")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
