"""First call against second run of each writing command, with the command line's persistent
compile cache: `python -m benchmarks.bench_commands [--generator G --classifier C] [--out DIR]`.

Each command runs twice as a user runs it (a fresh process, `jaxprobe ...`), both with the same
new, empty cache directory (JAXPROBE_COMPILE_CACHE): the first run compiles its programs and writes
them to the cache, the second finds them there. A third run with `--no-compile-cache` is the second
run without the cache (what a user who turned it off waits). Wall seconds of each run, and the
commands' own `load_s` / `compile_s` / `seconds_per_step` where their JSON records them.

By default the shipped MNIST models; `--generator` and `--classifier` name converted model
directories (the paper's DeePSim fc6 generator and CaffeNet: `jaxprobe convert caffe ...`), whose
commands then read fc8 and the fc6 encoder as docs/paper-scale.md describes. Writes
commands.json and commands.md into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JAXPROBE = [sys.executable, "-m", "jaxprobe"]


def commands(generator: str | None, classifier: str | None, steps: int) -> dict:
    """{name: argv after `jaxprobe`} for the shipped models or a converted generator/classifier pair."""
    if generator is None:
        return {"dgn-am": ["dgn-am", "--neuron", "logits:3", "--steps", str(steps)],
                "ppgn": ["ppgn", "--class", "3", "--chains", "2", "--steps", str(steps)],
                "excite": ["excite", "--target", "logits:3", "--steps", str(steps)],
                "inverse-set": ["inverse-set", "--neuron", "logits:3", "--range", "5", "1000", "--n", "4", "--k", "2"],
                "egbas": ["egbas", "--layer", "3", "--iterations", "64", "--beropt-steps", str(4 * steps)]}
    g, c = ["--generator", generator], ["--classifier", classifier]
    return {"dgn-am": ["dgn-am", *g, *c, "--neuron", "fc8:945", "--steps", str(steps)],
            "ppgn": ["ppgn", *g, *c, "--class", "945", "--prior", "encoder", "--encoder", f"{classifier}:fc6",
                     "--chains", "2", "--steps", str(steps)],
            "excite": ["excite", *c, "--target", "fc8:945", "--steps", str(steps)],
            "inverse-set": ["inverse-set", *g, *c, "--neuron", "fc8:945", "--range", "-1000000000", "1000000000", "--n", "4",
                            "--k", "2"],
            "egbas": ["egbas", "--model", generator, "--layer", "3", "--iterations", "64", "--beropt-steps",
                      str(4 * steps)]}


def recorded(out: Path) -> dict:
    """The timing fields a command's JSON records (top level), if any."""
    fields = {}
    for f in sorted(out.glob("*.json")):
        try:
            rec = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict):
            for k in ("load_s", "compile_s", "first_chunk_s", "seconds_per_step", "wall_s"):
                if isinstance(rec.get(k), (int, float)):
                    fields[k] = rec[k]
    return fields


def run(argv: list[str], out: Path, cache: str) -> dict:
    env = dict(os.environ, JAXPROBE_COMPILE_CACHE=cache)
    t0 = time.perf_counter()
    p = subprocess.run(JAXPROBE + argv + ["--out", str(out), "--force"], env=env, capture_output=True, text=True,
                       cwd=ROOT)
    wall = time.perf_counter() - t0
    rec = {"wall_s": wall, "rc": p.returncode, **{f"json_{k}": v for k, v in recorded(out).items()}}
    if p.returncode:
        rec["stderr_tail"] = p.stderr[-600:]
    return rec


def markdown(res: dict) -> str:
    lines = ["# First call against second run (persistent compile cache)", "",
             f"Models: {res['models']}; jax {res['jax']}; {res['cores']} cores; {res['steps']} steps where a command "
             "takes --steps. Wall seconds of a fresh process each.", "",
             "| command | first call (empty cache) | second run (cache) | second run, --no-compile-cache | "
             "saved by the cache | compile_s first / second |", "|---|---|---|---|---|---|"]
    for name, r in res["commands"].items():
        a, b, c = r["first"], r["second"], r["no_cache"]
        saved = a["wall_s"] - b["wall_s"]
        comp = f"{a.get('json_compile_s', '-'):.3g} / {b.get('json_compile_s', '-'):.3g}" \
            if "json_compile_s" in a and "json_compile_s" in b else "-"
        bad = "" if not (a["rc"] or b["rc"] or c["rc"]) else " (a run failed: see commands.json)"
        lines.append(f"| `{name}` | {a['wall_s']:.1f} | {b['wall_s']:.1f} | {c['wall_s']:.1f} | {saved:.1f} s "
                     f"({100 * saved / a['wall_s']:.0f}%) | {comp} |{bad}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_commands", description=__doc__.splitlines()[0])
    ap.add_argument("--generator", help="a converted generator directory (with --classifier)")
    ap.add_argument("--classifier", help="a converted classifier directory (with --generator)")
    ap.add_argument("--steps", type=int, default=5, help="steps of dgn-am, ppgn and excite (5)")
    ap.add_argument("--only", nargs="*", help="commands to time (default all)")
    ap.add_argument("--label", help="how the results name the models (default their directories)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "commands"), help="output directory")
    args = ap.parse_args(argv)
    if (args.generator is None) != (args.classifier is None):
        ap.error("--generator and --classifier go together")
    import jax

    todo = commands(args.generator, args.classifier, args.steps)
    todo = {k: v for k, v in todo.items() if not args.only or k in args.only}
    res = {"models": args.label or ("shipped MNIST" if args.generator is None
                                    else f"{args.generator} + {args.classifier}"),
           "jax": jax.__version__, "cores": os.cpu_count(), "steps": args.steps, "commands": {}}
    work = Path(tempfile.mkdtemp(prefix="jaxprobe-bench-commands-"))
    try:
        for i, (name, cmd) in enumerate(todo.items()):
            cache = str(work / f"cache-{i}")
            r = {"argv": " ".join(cmd)}
            for label, where in (("first", cache), ("second", cache), ("no_cache", "off")):
                r[label] = run(cmd, work / f"out-{i}-{label}", where)
                print(f"{name} {label}: {r[label]['wall_s']:.1f} s (rc {r[label]['rc']})", file=sys.stderr, flush=True)
            res["commands"][name] = r
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "commands.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / "commands.md").write_text(markdown(res))
    print(markdown(res))
    return 0 if all(r[k]["rc"] == 0 for r in res["commands"].values() for k in ("first", "second", "no_cache")) else 1


if __name__ == "__main__":
    sys.exit(main())
