"""Mutation check of E-GBAS: does the test suite catch a broken update line?

Each mutant changes one line of E-GBAS (Jeon et al. 2020): region membership and its NaN
handling, the region margin, GB-RRT's separation test and its rounding tolerance, steer's "moved"
test, the acceptance test and the parent choice (batched kernel and the sequential reference in tests/),
BerOpt's loss (squared norm, lambda's scale rho, the penalty's sign), the default lambda's support rule and eps_L2. For each, a copy
of the package and the tests with that one change (the working tree is never touched) runs
`pytest -x` on the few tests aimed at that line (`-k`); the mutant is killed when a test fails
(exit status 1) and survives when all pass; any other exit status (a copy that does not import,
no test selected) is an error. The copy and the runner are `mutants_inverse_set`'s.

    python benchmarks/mutants_egbas.py [--out benchmarks/results/egbas/mutants.json] [--only NAME ...]

Writes OUT (JSON: one record per mutant) and OUT with the suffix .md (a table).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mutants_inverse_set import BASELINE, REPO, Mutant, run_mutant, table  # noqa: E402

from jaxprobe.io import write_json, write_text  # noqa: E402

B, G, R, E = (f"jaxprobe/gbas/{m}.py" for m in ("boundaries", "gbrrt", "beropt", "epsball"))
S = "tests/gbrrt_reference.py"  # the sequential reference, the tests' oracle
NAN = ["tests/test_boundaries.py", "-k", "nan_is_never"]
STRICT = ["tests/test_gbrrt.py", "-k", "strict"]
REPLAY = ["tests/test_gbrrt.py", "-k", "replay or tiny_region"]
BEROPT = ["tests/test_beropt.py", "-k", "recovers or thresholded or output_layer or default_lambda_is"]
EPS = ["tests/test_epsball.py", "tests/test_egbas.py", "-k", "brute_force or composes or truncated"]

# (mutant, the tests aimed at its line)
MUTANTS = (
    (Mutant("membership_plain_min", "membership is a plain min of V h (NaN left to XLA's min)", B,
            "return jnp.min(jnp.where(jnp.isnan(vh), -1.0, vh), axis=1) >= 0", "return jnp.min(vh, axis=1) >= 0"),
     NAN),
    (Mutant("membership_nan_is_plus_one", "a NaN in V h counts as +1 (a member)", B,
            "jnp.where(jnp.isnan(vh), -1.0, vh)", "jnp.where(jnp.isnan(vh), 1.0, vh)"), NAN),
    (Mutant("margin_nan_override_removed", "the margin is the min over selected units, NaN left to the min", B,
            "return jnp.where(broken, jnp.nan, jnp.min(jnp.where(v != 0, vh, jnp.inf), axis=1))",
            "return jnp.min(jnp.where(v != 0, vh, jnp.inf), axis=1)"),
     ["tests/test_boundaries.py", "tests/test_gbrrt.py", "-k", "nan_is_never or nan_parameters"]),
    (Mutant("direct_close_le", "direct separation test <= (a node at the threshold is too close)", G,
            "return jnp.any(valid & (jnp.sum(diff * diff, axis=-1) < thr2))",
            "return jnp.any(valid & (jnp.sum(diff * diff, axis=-1) <= thr2))"), STRICT),
    (Mutant("direct_close_gt", "direct separation test > (far nodes are too close)", G,
            "return jnp.any(valid & (jnp.sum(diff * diff, axis=-1) < thr2))",
            "return jnp.any(valid & (jnp.sum(diff * diff, axis=-1) > thr2))"), STRICT),
    (Mutant("knn_close_le", "k-nearest separation test <=", G,
            "(jnp.sum(diff * diff, axis=-1) < thr2), axis=1)", "(jnp.sum(diff * diff, axis=-1) <= thr2), axis=1)"),
     STRICT),
    (Mutant("knn_close_gt", "k-nearest separation test >", G,
            "(jnp.sum(diff * diff, axis=-1) < thr2), axis=1)", "(jnp.sum(diff * diff, axis=-1) > thr2), axis=1)"),
     STRICT),
    (Mutant("tolerance_dropped", "separation threshold delta instead of delta (1 - 1e-4)", G,
            "return (jnp.asarray(delta, jnp.float32) * (1.0 - REL_TOL)) ** 2",
            "return jnp.asarray(delta, jnp.float32) ** 2"), STRICT),
    (Mutant("steer_moved_by_norm", "steer's moved test ||z - q|| > 0 instead of z' != q", G,
            "return zp, jnp.any(zp != q, axis=-1)", "return zp, n[..., 0] > 0"),
     ["tests/test_gbrrt.py", "-k", "tiny_delta"]),
    (Mutant("accept_without_membership", "batched acceptance ignores membership (vectorized pass)", G,
            "ok = member & ~close_now", "ok = ~close_now"), REPLAY),
    (Mutant("accept_without_membership_scan", "batched acceptance ignores membership (sequential pass)", G,
            "accept = active & mem & ~close", "accept = active & ~close"), REPLAY),
    (Mutant("sequential_accept_without_membership", "the reference accepts non-members", S,
            "accept, reject = member & ~close, ~member", "accept, reject = ~close, ~member"), REPLAY),
    (Mutant("membership_of_the_draw", "batched membership of the draw z, not of the step z'", G,
            "member = region_membership(model, params, zp.reshape((batch,)",
            "member = region_membership(model, params, z.reshape((batch,)"), REPLAY),
    (Mutant("sequential_membership_of_the_draw", "the reference's membership of z, not of z'", S,
            "member = region_membership(model, params, zp.reshape((1,)",
            "member = region_membership(model, params, z.reshape((1,)"), REPLAY),
    (Mutant("parent_is_root", "batched: every step starts at the query, not the nearest node", G,
            "q = idx[:, 0]", "q = jnp.zeros_like(idx[:, 0])"), REPLAY),
    (Mutant("sequential_parent_is_root", "the reference steps from the query, not the nearest node", S,
            "q = nearest_nodes(z, s.nodes, s.count, z0f)", "q = jnp.zeros((1,), jnp.int32)"), REPLAY),
    (Mutant("beropt_unsquared", "BerOpt's loss with the unsquared norm (the paper's printed eq. 1)", R,
            "err = jnp.sum((out - target) ** 2, axis=tuple(range(1, out.ndim)))",
            "err = jnp.sqrt(jnp.sum((out - target) ** 2, axis=tuple(range(1, out.ndim))))"), BEROPT),
    (Mutant("beropt_rho_one", "lambda's scale rho = 1 instead of 1/16", R, "RHO = 1.0 / 16.0", "RHO = 1.0"), BEROPT),
    (Mutant("support_smallest_multiple", "the default lambda is the smallest supported multiple, not the largest", R,
            "mult.size - 1 - jnp.argmax(ok[::-1])", "jnp.argmax(ok)"), BEROPT),
    (Mutant("support_unbounded", "every multiple counts as supporting (SUPPORT = 1: the largest always wins)", R,
            "SUPPORT = 0.25", "SUPPORT = 1.0"), BEROPT),
    (Mutant("beropt_penalty_sign", "the sparsity penalty rewards kept units", R,
            "return jnp.mean(err) + lam * jnp.sum(jax.nn.sigmoid(logits))",
            "return jnp.mean(err) - lam * jnp.sum(jax.nn.sigmoid(logits))"), BEROPT),
    (Mutant("eps_max_only", "eps_L2 = max / 2 instead of (max + min) / 2", E,
            "0.5 * (hi + lo)", "0.5 * (hi)"), EPS),
    (Mutant("eps_min_max_swapped", "eps_L2's max and min swapped (padding rows then count)", E,
            "hi = jnp.max(jnp.where(wr, dist, -jnp.inf))\n    lo = jnp.min(jnp.where(wr, dist, jnp.inf))",
            "hi = jnp.min(jnp.where(wr, dist, -jnp.inf))\n    lo = jnp.max(jnp.where(wr, dist, jnp.inf))"), EPS),
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "egbas" / "mutants.json"))
    parser.add_argument("--only", nargs="*", default=None, help="mutant names (default: all)")
    args = parser.parse_args(argv)
    chosen = [(m, tests) for m, tests in MUTANTS if args.only is None or m.name in args.only]
    # The unchanged copy must pass every selection, or a mutant would be "killed" for nothing.
    for tests in dict.fromkeys(tuple(t) for _, t in chosen):
        base = run_mutant(BASELINE, list(tests))
        if base["status"] != "survived":
            print(f"the unchanged tests {' '.join(tests)} do not pass: {base['killed_by'] or base['tail']}",
                  file=sys.stderr)
            return 2
    records = []
    for m, tests in chosen:
        records.append(dict(run_mutant(m, list(tests)), tests=" ".join(tests)))
        r = records[-1]
        print(f"{r['name']:<36} {r['status']:<9} {r['killed_by'] or r['tail']} ({r['wall_s']} s)", flush=True)
    out = Path(args.out)
    write_json(out, {"mutants": records})
    write_text(out.with_suffix(".md"), "# E-GBAS: mutation check\n\nEach mutant against its own tests "
               "(`pytest -x`, the `tests` field of the JSON).\n\n" + table(records))
    print(table(records), end="")
    return 0 if all(r["status"] == "killed" for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
