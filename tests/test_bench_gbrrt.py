"""The GB-RRT benchmark script runs end to end at toy sizes and writes what its docstring promises.

Speeds are never asserted (they belong to the benchmark's own output); the test checks the run's
bookkeeping against what must hold whatever the machine: both versions saw the same candidates,
the exact-search bound covered the run's steps at the tree sizes it went through, and the distance
summary is ordered.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gbrrt.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_gbrrt", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_gbrrt_runs_and_reports(tmp_path, capsys):
    out = tmp_path / "gbrrt.json"
    load_bench().main(["--model", "random", "--layers", "1", "--batch", "16", "--candidates", "64",
                       "--repeats", "1", "--fixed-sizes", "16", "--out", str(out)])
    res = json.loads(out.read_text())
    row = res["layers"]["1"]
    b, s = row["batched"], row["sequential"]
    assert b["candidates"] == s["candidates"] == 64
    counts = row["exact_search_bound"]["node_counts_per_step"]
    # One entry per batched step, starting from the query alone; the tree only grows, and the last
    # step's start plus what it accepted is the final tree.
    assert len(counts) == 64 // 16 and counts[0] == 1
    assert np.all(np.diff(counts) >= 0) and counts[-1] <= b["accepted"] + 1
    for key in ("fraction_of_floor", "bound_fraction_of_floor", "bound_predrawn_fraction_of_floor",
                "fraction_of_bound", "speedup_vs_sequential"):
        assert np.isfinite(row[key]) and row[key] > 0, key
    dc = row["distance_concentration"]
    assert dc["nodes"] == b["accepted"] + 1
    assert 0 < dc["nearest"] <= dc["median"] <= dc["farthest"]
    assert "exact-search bound" in capsys.readouterr().out
