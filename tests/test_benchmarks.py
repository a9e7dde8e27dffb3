"""The benchmark suite (`python -m benchmarks --quick`) runs end to end at tiny sizes and writes
what it promises: results.json rows with every field, ratio = baseline_s / jax_s and overhead =
jax_s / floor_s, targets judged consistently, the environment recorded, the markdown table and the
scaling plots. Speeds are never asserted; the suite itself asserts, before timing, that every eager
PyTorch baseline agrees with jaxprobe on the same weights (a disagreement fails its row, and a
failed row makes the run exit non-zero)."""

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ("name", "jax_s", "baseline", "baseline_s", "ratio", "gflops", "fraction_of_peak", "floor_s", "overhead",
          "compile_s", "targets")


def test_quick_suite_writes_consistent_results(tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert res["quick"] and not res["failed"]
    env = res["environment"]
    for key in ("jax", "torch", "backend", "cpu", "threads"):
        assert env[key], key
    assert env["threads"]["torch"] == env["threads"]["xla"]  # same thread count for both
    assert res["machine"]["matmul_peak_gflops"] > 0 and res["machine"]["bandwidth_gbs"] > 0
    groups = {r["group"] for r in res["rows"]}
    assert {"gbrrt", "inverse_set", "codespace", "paper"} <= groups
    for r in res["rows"]:
        for f in FIELDS:
            assert f in r, (r["name"], f)
        assert r["jax_s"] > 0 and r["compile_s"] > 0, r["name"]
        if r["baseline_s"] is not None:
            assert math.isclose(r["ratio"], r["baseline_s"] / r["jax_s"], rel_tol=1e-9)
        if r["floor_s"] is not None:
            assert math.isclose(r["overhead"], r["jax_s"] / r["floor_s"], rel_tol=1e-9)
        if r["gflops"] is not None:
            assert math.isclose(r["gflops"], r["flops"] / r["jax_s"] / 1e9, rel_tol=1e-9)
            assert math.isclose(r["fraction_of_peak"], r["gflops"] / res["machine"]["matmul_peak_gflops"],
                                rel_tol=1e-9)
        for t in r["targets"]:
            if t["value"] is not None:
                assert t["met"] == (t["value"] >= t["goal"] if t["op"] == ">=" else t["value"] <= t["goal"])
        if r.get("loop_s") is not None:  # the sampler as users run it, per step, beside the jitted step
            assert r["loop_steps"] >= 1 and r["loop_compile_s"] > 0, r["name"]
            if "call_s" in r:  # from two calls (N and N/2 steps): the loop's steps and the rest make the call
                whole = r["call_per_step_s"] * r["loop_steps"]
                assert whole > 0 and math.isclose(r["call_s"] + r["loop_s"] * r["loop_steps"], whole, rel_tol=1e-9)
            else:
                assert r["loop_s"] > 0, r["name"]
            if r.get("loop_ratio") is not None:
                assert math.isclose(r["loop_ratio"], r["loop_s"] / r["jax_s"], rel_tol=1e-9)
            if r.get("loop_overhead") is not None:
                assert math.isclose(r["loop_overhead"], r["loop_s"] / r["floor_s"], rel_tol=1e-9)
        if r["baseline"] == "torch eager":  # checked against jaxprobe before it was timed
            assert r["agreement"]["max_rel_err"] <= r["agreement"]["max_tol"]
    # --quick times the first DGN-AM row's loop too (jaxprobe.dgn_am over a few steps).
    assert any(r.get("loop_s") is not None and r["group"] == "codespace" for r in res["rows"])
    # The excitation row is either there or said to be left out, never silently missing.
    names = " ".join(r["name"] for r in res["rows"])
    assert "excit" in names or "excitation training step" in res["left_out"]
    md = (out / "results.md").read_text()
    assert all(r["name"] in md for r in res["rows"]) and "Machine:" in md
    assert res["plots"] and all((out / p).stat().st_size > 0 for p in res["plots"])
    # Both per-layer breakdowns: the paper nets' (batch 10) and the shipped models' at the largest chain count,
    # each layer timed for JAX and torch, forward and forward+backward, with totals.
    bds = [res["breakdown"], *res["breakdowns"]]
    assert len(bds) == 2 and all(b["layers"] for b in bds)
    for b in bds:
        for layer in b["layers"]:
            assert all(layer[k] > 0 for k in ("jax_fwd", "torch_fwd", "jax_fwdbwd", "torch_fwdbwd")), layer
        assert math.isclose(b["totals"]["jax_fwdbwd"], sum(x["jax_fwdbwd"] for x in b["layers"]), rel_tol=1e-9)
        assert f"batch {b['batch']}, per layer" in md


def test_command_timings_run_commands_the_parser_accepts():
    """benchmarks.bench_commands times real command lines: every one it builds, for the shipped models
    and for a converted pair, parses (with the --out and --force it adds)."""
    from benchmarks.bench_commands import commands
    from jaxprobe.cli import build_parser

    for argv in [*commands(None, None, 5).values(), *commands("G", "C", 5).values()]:
        args = build_parser().parse_args(argv + ["--out", "x", "--force"])
        assert args.command == argv[0]
