"""Mutation check of the inverse-set sampler: does the test suite catch a broken update line?

Each mutant changes one line of the sampler kernel (`jaxprobe.inverse_sets.sampling`), the problem
(`problem`: constraints, acceptance, diversity terms), the checked defaults (`options`) or the
augmented-Lagrangian kernel (`auglag`) (Hada & Carreira-Perpiñán 2019, eq. 7-10): the repulsion
term and its sign, the diversity term, the set C0 the codes move away from, the seed margin, the
step, the acceptance test, the slack and the multiplier update. For each, a copy of the package
and the tests with that one change runs
`pytest -x` on the inverse-set and solver tests; the mutant is killed when a test fails (exit
status 1) and survives when all pass. A mutant whose copy does not even import would be "killed"
for the wrong reason, so any other exit status is reported as an error.

    python benchmarks/mutants_inverse_set.py [--out benchmarks/results/mutants_inverse_set.json]
        [--only NAME ...] [--tests tests/test_inverse_set.py tests/test_auglag.py]

Writes OUT (JSON: one record per mutant) and OUT with the suffix .md (a table).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jaxprobe.io import write_json, write_text  # noqa: E402

SAMPLER = "jaxprobe/inverse_sets/sampling.py"
PROBLEM = "jaxprobe/inverse_sets/problem.py"
OPTIONS = "jaxprobe/inverse_sets/options.py"
SOLVER = "jaxprobe/inverse_sets/auglag.py"
TESTS = ("tests/test_inverse_set.py", "tests/test_auglag.py")
COPIED = ("jaxprobe", "weights_convert", "tests", "docs", "pyproject.toml")  # docs: a test runs its example


class Mutant(NamedTuple):
    """One line changed: `before` (found exactly once in `path`) becomes `after`."""

    name: str
    what: str
    path: str
    before: str
    after: str


MUTANTS = (
    Mutant("repulsion_deleted", "L_sample without the distance to C0", SAMPLER,
           "return penalty - problem.spread(feats) - problem.repulsion(feats, sum_a, sumsq_a, rep_count)",
           "return penalty - problem.spread(feats)"),
    Mutant("repulsion_sign", "the codes move towards C0 instead of away", SAMPLER,
           "return penalty - problem.spread(feats) - problem.repulsion(feats, sum_a, sumsq_a, rep_count)",
           "return penalty - problem.spread(feats) + problem.repulsion(feats, sum_a, sumsq_a, rep_count)"),
    Mutant("spread_sign", "the K codes move towards each other", SAMPLER,
           "return penalty - problem.spread(feats) - problem.repulsion(",
           "return penalty + problem.spread(feats) - problem.repulsion("),
    Mutant("c0_union_always", "repel='new' repels from every accepted row (not step 4's C0)", SAMPLER,
           'if repel == "all":', 'if repel != "none of these":'),
    Mutant("c0_never_replaced", "C0 stays the initial (empty or earlier) set", SAMPLER,
           "        rep_count, sum_a, sumsq_a = new\n",
           "        rep_count, sum_a, sumsq_a = state.rep_count, state.sum_a, state.sumsq_a\n"),
    Mutant("c0_includes_rejected", "C0's sum takes every row, accepted or not", SAMPLER,
           "new = (jnp.sum(w), jnp.sum(w * feats, axis=0), jnp.sum(w * feats * feats))",
           "new = (jnp.sum(w), jnp.sum(feats, axis=0), jnp.sum(w * feats * feats))"),
    Mutant("repulsion_not_a_mean", "the distance to C0 is not divided by |C0|", PROBLEM,
           "return r / (feats.shape[0] * jnp.maximum(m, 1.0) * feature_scale) if normalize else r",
           "return r / (feats.shape[0] * feature_scale) if normalize else r"),
    Mutant("margin_lower_dropped", "seed constraint f >= z1 instead of z1 + m", PROBLEM,
           "(v - (z1 + margin)) / unit", "(v - z1) / unit"),
    Mutant("margin_lower_sign", "seed constraint f >= z1 - m", PROBLEM,
           "(v - (z1 + margin)) / unit", "(v - (z1 - margin)) / unit"),
    Mutant("margin_upper_dropped", "seed constraint f <= z2 instead of z2 - m", PROBLEM,
           "((z2 - margin) - v) / unit", "(z2 - v) / unit"),
    Mutant("margin_default_halved", "default margin (z2 - z1)/8", OPTIONS,
           "        m = width / 4.0\n", "        m = width / 8.0\n"),
    Mutant("step_sign", "the step climbs L_sample", SAMPLER,
           "new_c = c - step_length * direction.reshape(c.shape)",
           "new_c = c + step_length * direction.reshape(c.shape)"),
    Mutant("step_not_normalized", "the raw gradient instead of its direction", SAMPLER,
           "direction = jnp.where(norm > 0, g2 / jnp.where(norm > 0, norm, 1.0), 0.0)",
           "direction = g2"),
    Mutant("accept_twice", "a row at rest is accepted again at every step", SAMPLER,
           "ok = problem.in_range(v) & state.fresh", "ok = problem.in_range(v)"),
    Mutant("accept_upper_unchecked", "acceptance tests z1 <= f only", PROBLEM,
           "return jnp.all((v >= z1) & (v <= z2), axis=-1)", "return jnp.all(v >= z1, axis=-1)"),
    Mutant("accept_with_tolerance", "acceptance within 10% of the width outside [z1, z2]", PROBLEM,
           "return jnp.all((v >= z1) & (v <= z2), axis=-1)",
           "return jnp.all((v >= z1 - 0.1 * (z2 - z1)) & (v <= z2 + 0.1 * (z2 - z1)), axis=-1)"),
    Mutant("slack_ignores_lambda", "s = max(0, g) instead of max(0, g - lambda/mu)", SOLVER,
           "s = jnp.maximum(0.0, g - lam / mu)", "s = jnp.maximum(0.0, g)"),
    Mutant("multiplier_sign", "lambda <- max(lambda + mu g, 0)", SOLVER,
           "lam = jnp.maximum(lam - mu * g, 0.0)", "lam = jnp.maximum(lam + mu * g, 0.0)"),
    Mutant("multiplier_unclamped", "lambda <- lambda - mu g (may go negative)", SOLVER,
           "lam = jnp.maximum(lam - mu * g, 0.0)", "lam = lam - mu * g"),
    Mutant("multiplier_without_mu", "lambda <- max(lambda - g, 0)", SOLVER,
           "lam = jnp.maximum(lam - mu * g, 0.0)", "lam = jnp.maximum(lam - g, 0.0)"),
    Mutant("multiplier_frozen", "lambda never updated", SOLVER,
           "lam = jnp.maximum(lam - mu * g, 0.0)", "lam = lam"),
    Mutant("penalty_not_growing", "mu <- mu instead of a mu", SOLVER,
           "new = AugLagState(x, lam, mu * growth, opt_state", "new = AugLagState(x, lam, mu, opt_state"),
)


# Run first: the unchanged copy must pass, or every mutant would be "killed" for nothing.
BASELINE = Mutant("unchanged", "no change: the tests must pass", SAMPLER, "", "")


def mutated_copy(mutant: Mutant, root: Path) -> Path:
    """A copy of the package and tests under `root` with `mutant` applied; raises if `before` is
    not found exactly once (the mutant list is stale)."""
    for name in COPIED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, root / name)
    if mutant is BASELINE:
        return root
    target = root / mutant.path
    text = target.read_text()
    if text.count(mutant.before) != 1:
        raise SystemExit(f"mutant {mutant.name}: expected one occurrence of {mutant.before!r} in {mutant.path}, "
                         f"found {text.count(mutant.before)}")
    target.write_text(text.replace(mutant.before, mutant.after))
    return root


def run_mutant(mutant: Mutant, tests) -> dict:
    """Run `tests` against a mutated copy; returns the mutant's record."""
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.name}-") as tmp:
        root = mutated_copy(mutant, Path(tmp))
        t0 = time.perf_counter()
        # cwd first on sys.path (python -m), so the copy shadows the editable install of the repo.
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                              cwd=root, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", out, flags=re.M)
    status = {0: "survived", 1: "killed"}.get(proc.returncode, "error")
    return {"name": mutant.name, "what": mutant.what, "file": mutant.path, "before": mutant.before.strip(),
            "after": mutant.after.strip(), "status": status, "exit_status": proc.returncode,
            "killed_by": failed[0] if failed else None, "wall_s": round(wall, 1),
            "tail": out.strip().splitlines()[-1] if out.strip() else ""}


def table(records) -> str:
    lines = ["| mutant | change | status | first failing test | s |", "|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['name']} | {r['what']} | {r['status']} | {r['killed_by'] or ''} | {r['wall_s']} |")
    killed = sum(r["status"] == "killed" for r in records)
    return "\n".join(lines) + f"\n\n{killed} of {len(records)} mutants killed.\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "mutants_inverse_set.json"))
    parser.add_argument("--only", nargs="*", default=None, help="mutant names (default: all)")
    parser.add_argument("--tests", nargs="*", default=list(TESTS))
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if args.only is None or m.name in args.only]
    base = run_mutant(BASELINE, args.tests)
    if base["status"] != "survived":
        print(f"the unchanged tests do not pass: {base['killed_by'] or base['tail']}", file=sys.stderr)
        return 2
    print(f"unchanged: all pass ({base['wall_s']} s)", flush=True)
    records = []
    for m in chosen:
        records.append(run_mutant(m, args.tests))
        r = records[-1]
        print(f"{r['name']:<24} {r['status']:<9} {r['killed_by'] or r['tail']} ({r['wall_s']} s)", flush=True)
    out = Path(args.out)
    write_json(out, {"tests": args.tests, "unchanged_wall_s": base["wall_s"], "mutants": records})
    write_text(out.with_suffix(".md"), "# Inverse-set sampler: mutation check\n\n"
               f"Tests: {' '.join(args.tests)} (`pytest -x`).\n\n" + table(records))
    print(table(records), end="")
    return 0 if all(r["status"] == "killed" for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
