"""Per-op profile of the DGN-AM step, on the shipped models at many chains or at paper scale:
`python -m benchmarks.profile_step [--paper] [--chains N] [--runs 5] [--out FILE.md]`.

JAX's profiler (a Perfetto trace of XLA's CPU thunks) over `--runs` calls of the jitted step the
suite times (`benchmarks.rows_codespace.dgn_am_step`: the public kernel under `vmap`, parameters as
arguments): each op's milliseconds per step, grouped by kind: YNNPACK fusions (`ynn_fusion*`, the
convolutions XLA hands to YNNPACK), XLA's own convolutions (`conv*`: Eigen), and XLA's elementwise
and copy fusions. Says where a step's time goes; the suite's per-layer breakdown says which layer.
`--paper`: the DeePSim fc6 generator + CaffeNet at 227 (random weights, `benchmarks.models`), fc8,
default 10 chains; otherwise the shipped fc_generator + classifier, logits, default 256 chains.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import sys
import tempfile
from pathlib import Path

import jax

ROOT = Path(__file__).resolve().parents[1]


def kind(name: str) -> str:
    if name.startswith("ynn_fusion"):
        return "YNNPACK fusions (convolutions)"
    if name.startswith("conv"):
        return "XLA convolutions (Eigen)"
    if "fusion" in name or name.startswith(("copy", "transpose", "broadcast")):
        return "XLA elementwise / copy fusions"
    return "other"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.profile_step", description=__doc__.splitlines()[0])
    ap.add_argument("--paper", action="store_true", help="the paper-scale DeePSim fc6 + CaffeNet")
    ap.add_argument("--chains", type=int, default=None, help="chains (default 256, or 10 with --paper)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default=None, help="markdown file (default benchmarks/results/profile_dgn_am[_paper].md)")
    args = ap.parse_args(argv)
    args.chains = args.chains or (10 if args.paper else 256)
    args.out = args.out or str(ROOT / "benchmarks" / "results" / f"profile_dgn_am{'_paper' if args.paper else ''}.md")

    from benchmarks.models import paper_models, small_models
    from benchmarks.rows_codespace import dgn_am_step

    gen, cls = paper_models(False) if args.paper else small_models()[:2]
    s = dgn_am_step(gen, cls, "fc8" if args.paper else "logits", 3, args.chains)
    for _ in range(3):
        jax.block_until_ready(s.step(*s.args))
    with tempfile.TemporaryDirectory() as where:
        with jax.profiler.trace(where, create_perfetto_trace=True):
            for _ in range(args.runs):
                jax.block_until_ready(s.step(*s.args))
        trace = json.load(gzip.open(glob.glob(f"{where}/**/*.trace.json.gz", recursive=True)[0]))
    spans = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
    step_ms = sum(e["dur"] for e in spans if e["name"] == "ThunkExecutor::Execute (wait for completion)") \
        / args.runs / 1e3
    ops = collections.Counter()
    for e in spans:
        if not e["name"].startswith(("$", "ThunkExecutor", "PjitFunction", "Slinky", "Parse", "Common")):
            ops[e["name"]] += e["dur"] / args.runs / 1e3
    kinds = collections.Counter()
    for name, ms in ops.items():
        kinds[kind(name)] += ms
    which = "random-weight" if args.paper else "shipped"
    lines = [f"# Where a DGN-AM step's time goes: {args.chains} chains, {which} {gen.name} + {cls.name}", "",
             f"jax {jax.__version__}, {jax.default_backend()}; {args.runs} runs; the step {step_ms:.1f} ms "
             f"(XLA's executor, waiting for completion). Milliseconds per step; XLA runs independent ops side "
             f"by side, so the shares can sum above 100%.", "",
             "| kind | ms | share of the step |", "|---|---|---|"]
    lines += [f"| {k} | {ms:.1f} | {100 * ms / step_ms:.0f}% |" for k, ms in kinds.most_common()]
    lines += ["", "| op | ms |", "|---|---|"] + [f"| {n} | {ms:.2f} |" for n, ms in ops.most_common(20)]
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
