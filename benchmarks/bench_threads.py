"""Thread scaling of the large-batch steps, JAX against eager PyTorch:
`python -m benchmarks.bench_threads [--chains 256] [--k 50] [--out FILE]`.

Where JAX trails eager PyTorch at 256 chains and K = 50 on this CPU, is it the work or the use of
the cores? Each row runs twice in a fresh process: on one core (`taskset -c 0`: XLA's thread pool
and torch's OpenMP threads both size themselves to the process's CPU affinity) and on every core.
The same-run ratio torch / JAX on one core says how the single-threaded kernels compare (oneDNN's
blocked layouts against XLA's Eigen/YNNPACK convolutions); the speedup from one core to all says
how each framework spreads a step over the cores. Rows: the DGN-AM step and the PPGN step on the
shipped models at `--chains`, the inverse set's sampling step at K = `--k` (the suite's own rows,
`benchmarks.rows_codespace` / `rows_inverse_set`, each checked against torch before timing).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one(which: str, size: int, repeats: int) -> dict:
    """The suite's row `which` at `size` in this process (its CPU affinity decides the threads)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from benchmarks import common
    from benchmarks.models import small_models
    from benchmarks.rows_codespace import dgn_am_row, ppgn_row
    from jaxprobe.codespace.ppgn import Denoiser

    torch.set_num_threads(common.cores())
    peak = common.measure_machine(False, 3)["matmul_peak_gflops"]
    gen, cls, dae = small_models()
    if which == "dgn_am":
        r = dgn_am_row(f"dgn_am step, {size} chains", gen, cls, "logits", 3, size, repeats=repeats, peak=peak,
                       torch_ok=True)
    elif which == "ppgn":
        r = ppgn_row(f"ppgn step, {size} chains", gen, cls, "logits", 3, Denoiser(dae, None), dae.params, size,
                     repeats=repeats, peak=peak, torch_ok=True)
    else:
        from benchmarks.rows_inverse_set import Setup, sample_step_row
        r = sample_step_row(f"inverse_set sample step, K={size}",
                            Setup(gen, cls, "logits", 3, size, ranges=[[4.0, 6.0]], torch_ok=True),
                            repeats=repeats, peak=peak)
    return {"cores": common.cores(), "jax_s": r["jax_s"], "torch_s": r["baseline_s"], "peak_gflops": peak,
            "gflops": r.get("gflops")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_threads", description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, default=256)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "threads.json"))
    ap.add_argument("--one", nargs=2, metavar=("ROW", "SIZE"), help=argparse.SUPPRESS)  # the child process
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.repeats)))
        return 0
    if shutil.which("taskset") is None:
        print("bench_threads: needs taskset (util-linux) to pin a process to one core", file=sys.stderr)
        return 2
    allcores = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
    res = {"rows": []}
    for which, size in (("dgn_am", args.chains), ("ppgn", args.chains), ("inverse_set", args.k)):
        row = {"row": which, "size": size}
        for label, cpus in (("one_core", "0"), ("all_cores", allcores)):
            p = subprocess.run(["taskset", "-c", cpus, sys.executable, "-m", "benchmarks.bench_threads", "--one", which,
                                str(size), "--repeats", str(args.repeats)], capture_output=True, text=True, cwd=ROOT)
            if p.returncode:
                print(p.stderr[-2000:], file=sys.stderr)
                return 1
            row[label] = json.loads(p.stdout.strip().splitlines()[-1])
        o, a = row["one_core"], row["all_cores"]
        row.update(torch_over_jax_one_core=o["torch_s"] / o["jax_s"], torch_over_jax_all_cores=a["torch_s"] / a["jax_s"],
                   jax_speedup=o["jax_s"] / a["jax_s"], torch_speedup=o["torch_s"] / a["torch_s"])
        print(f"{which} {size}: one core jax {o['jax_s']:.4g} torch {o['torch_s']:.4g}; all {a['cores']} cores jax "
              f"{a['jax_s']:.4g} torch {a['torch_s']:.4g}; speedup jax {row['jax_speedup']:.2f} torch "
              f"{row['torch_speedup']:.2f}", flush=True)
        res["rows"].append(row)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
