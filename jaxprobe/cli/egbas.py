"""`jaxprobe egbas` and `jaxprobe reproduce egbas` (E-GBAS, Jeon et al. 2020).

`jaxprobe egbas` runs E-GBAS (BerOpt, then GB-RRT in the selected region, then the L2 / Linf
eps-ball baselines) for one query drawn from the generator's prior, and writes DIR/egbas.json and
DIR/egbas.png (rows: the query, E-GBAS samples, L2 samples, Linf samples).

`jaxprobe reproduce egbas` measures the paper's Tables 1-2 (`jaxprobe.experiments.egbas_tables`)
for E-GBAS and both baselines, on random queries at generator layers 1-4, and writes
DIR/egbas_tables.json and DIR/egbas_tables.md beside the paper's numbers.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

# Nothing here imports JAX at module level: `jaxprobe --help` builds every command's parser without it.
from jaxprobe.cli.common import load_model, progress_bar
from jaxprobe.errors import JaxprobeError

OUT_JSON = "egbas.json"
OUT_PNG = "egbas.png"
TABLES_JSON = "egbas_tables.json"
TABLES_MD = "egbas_tables.md"
# `jaxprobe.experiments.egbas_tables.REPRO_DEFAULTS` as the parser shows them (a test keeps the two equal).
REPRO_DEFAULTS = dict(delta=None, interval=1.0, max_candidates=1024, capacity=1025, batch=64, p=0.5)


def default_critic_name(generator) -> str:
    """The critic a generator was trained with (its manifest's "critic" field)."""
    name = generator.manifest.get("critic")
    if not name:
        raise JaxprobeError(f"--critic: {generator.name!r} names no critic in its manifest; pass --critic")
    return name


def _check_settings(args) -> None:
    """Refuse bad --delta, --p, --interval before any compilation (the library checks them too,
    but only after BerOpt has run)."""
    from jaxprobe.checks import check_number

    if args.delta is not None:
        check_number("--delta", args.delta, low=0, low_open=True, what="a positive step size")
    check_number("--p", args.p, low=0, high=1, low_open=True, high_open=True, what="a threshold")
    check_number("--interval", args.interval, low=0, low_open=True, what="a positive half-width")


def _out_dir(path: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise JaxprobeError(f"--out: {out} exists and is not a directory")
    return out


def _cmd_egbas(args) -> None:
    import jax
    import numpy as np

    from jaxprobe.checks import check_count
    from jaxprobe.experiments.egbas_tables import sample_rows
    from jaxprobe.experiments.figures import save_grid
    from jaxprobe.gbas.egbas import egbas
    from jaxprobe.gbas.gbrrt import check_delta
    from jaxprobe.gbas.metrics import egbas_metrics
    from jaxprobe.io import write_json

    t0 = time.perf_counter()
    model = load_model(args.model, "--model", "generator")
    l = model.layer(args.layer)
    capacity = check_count("--n", args.n, 1)
    iterations = check_count("--iterations", args.iterations, 0)
    batch = check_count("--batch", args.batch, 1)
    steps = check_count("--beropt-steps", args.beropt_steps, 1)
    _check_settings(args)
    critic = load_model(args.critic, "--critic", "critic") if args.critic else None
    out = _out_dir(args.out)

    k_query, k_run, k_fig = jax.random.split(jax.random.PRNGKey(args.seed), 3)
    z0 = model.sample_prior(k_query, 1)[0]
    if args.delta is not None:
        check_delta("--delta", args.delta, z0, args.interval)
    with progress_bar("egbas", "candidate", iterations) as bar:  # stops short when the tree fills
        r = egbas(k_run, model, model.params, z0, l, p=args.p, delta=args.delta, interval=args.interval,
                  capacity=capacity, max_candidates=iterations, batch=batch,
                  beropt_options=dict(steps=steps), progress=bar)
    metrics = egbas_metrics(r, model, critic)
    grid, labels = sample_rows(r, model, key=k_fig)
    title = f"{model.name} layer {l} ({model.layer_names[l - 1]}): query, E-GBAS, L2, Linf"
    save_grid(out / OUT_PNG, grid.reshape((-1,) + grid.shape[2:]), grid.shape[1], title, row_labels=labels)
    tree = r.tree
    result = {
        "method": "E-GBAS (Jeon et al. 2020, Algorithm 3) with the L2 / Linf eps-ball baselines (section 4)",
        "model": args.model, "layer": l, "layer_name": model.layer_names[l - 1], "seed": args.seed,
        "settings": {"n": capacity, "iterations": iterations, "delta": args.delta, "p": args.p,
                     "interval": args.interval, "batch": batch, "beropt_steps": steps},
        "query": r.query.reshape(-1),
        "v_star": r.v_star.reshape(-1).astype(int), "n_units": int(r.v_star.size),
        "n_selected": int(np.count_nonzero(r.v_star)),
        "beropt_lambda": r.lam, "beropt_final_loss": float(r.beropt_losses[-1]),
        "accepted": r.samples.reshape(r.samples.shape[0], -1), "parents": tree.accepted_parents(),
        "n_accepted": int(tree.count), "n_rejected": int(tree.n_rejected), "n_close": int(tree.n_close),
        "n_candidates": int(tree.n_candidates), "delta": r.delta, "stop_reason": tree.stop_reason_name(),
        "eps_l2": r.eps_l2, "eps_linf": r.eps_linf, "eps_reason": r.eps_reason,
        "n_rejected_stored": int(r.rejected.shape[0]), "rejected_truncated": r.rejected_truncated,
        "exploration": r.exploration,
        "sigma": metrics["sigma"], "n_metric_samples": metrics["n_samples"],
        "metrics_note": "sigma (and similarity) over each set without the query; sigma on the generator's "
                        f"output scale [{model.pixels.low}, {model.pixels.high}]" if model.pixels else
                        "sigma over each set without the query, on the generator's output scale",
        "image": OUT_PNG, "wall_s": round(time.perf_counter() - t0, 2),
    }
    if critic is not None:
        result["critic"] = args.critic
        result["similarity"] = metrics["similarity"]
    write_json(out / OUT_JSON, result)
    if r.eps_reason:
        print(f"jaxprobe: warning: {r.eps_reason}", file=sys.stderr)
    if r.rejected_truncated:
        print(f"jaxprobe: warning: eps from the first {r.rejected.shape[0]} of {int(tree.n_rejected)} rejected "
              "candidates (the rejected buffer was full)", file=sys.stderr)
    print(f"{tree.stop_reason_name()}: {int(tree.count)} nodes (query included), {int(tree.n_rejected)} rejected, "
          f"delta {r.delta:.3g}, eps_L2 {r.eps_l2:.3g}, "
          f"{result['n_selected']}/{result['n_units']} units selected; wrote {out / OUT_JSON} and {out / OUT_PNG}")


def _cmd_reproduce(args) -> None:
    import jax

    from jaxprobe.checks import check_count
    from jaxprobe.experiments.egbas_tables import egbas_tables, tables_markdown
    from jaxprobe.io import write_json, write_text

    t0 = time.perf_counter()
    generator = load_model(args.model, "--model", "generator")
    critic = load_model(args.critic or default_critic_name(generator), "--critic", "critic")
    queries = check_count("--queries", args.queries, 1)
    _check_settings(args)
    iterations = check_count("--iterations", args.iterations, 0)
    capacity = iterations + 1 if args.n is None else check_count("--n", args.n, 1)
    layers = [generator.layer(l) for l in (args.layers or range(1, generator.n_layers + 1))]
    out = _out_dir(args.out)
    batch = check_count("--batch", args.batch, 1)
    steps = check_count("--beropt-steps", args.beropt_steps, 1)
    try:  # egbas_tables checks delta against every query before running any
        with progress_bar("reproduce egbas", "candidate") as bar:
            t = egbas_tables(jax.random.PRNGKey(args.seed), generator, critic, layers=layers, queries=queries,
                             delta=args.delta, interval=args.interval, capacity=capacity,
                             max_candidates=iterations, batch=batch, p=args.p, beropt_options=dict(steps=steps),
                             progress=bar)
    except JaxprobeError as err:
        if str(err).startswith("delta: "):
            raise JaxprobeError(f"--{err}") from None
        raise
    t.update(model=args.model, critic=args.critic or default_critic_name(generator), seed=args.seed,
             total_wall_s=round(time.perf_counter() - t0, 2))
    markdown = tables_markdown(t)
    write_json(out / TABLES_JSON, t)
    write_text(out / TABLES_MD, markdown)
    print(markdown)
    print(f"wrote {out / TABLES_JSON} and {out / TABLES_MD}")


def add_commands(sub, reproduce) -> None:
    """Add `jaxprobe egbas` to `sub` and `jaxprobe reproduce egbas` to `reproduce`."""
    p = sub.add_parser("egbas", help="E-GBAS: sample a generator's region of one query at one layer (Jeon et al. 2020)",
                       description="E-GBAS (Jeon et al. 2020): BerOpt selects the boundaries that support G(z0) at "
                                   "--layer, GB-RRT samples the selected region, L2 / Linf eps-ball baselines.")
    p.add_argument("--model", default="dcgan", help="a generator: shipped name or model directory (default dcgan)")
    p.add_argument("--layer", required=True, help="generator layer, a number 1..L or a name")
    p.add_argument("--seed", type=int, default=0, help="seed of the query and of the sampling (default 0)")
    p.add_argument("--n", type=int, default=128,
                   help="accepted nodes wanted, the query included: the tree's capacity (128)")
    p.add_argument("--iterations", type=int, default=4096, help="candidates drawn at most (4096)")
    p.add_argument("--delta", type=float, default=None,
                   help="GB-RRT step size (default: the library's rule, half the region's median extent along "
                        "32 random directions from the query)")
    p.add_argument("--p", type=float, default=0.5, help="BerOpt threshold on theta, in (0, 1) (0.5)")
    p.add_argument("--interval", type=float, default=1.0, help="half-width I of the sampling box around z0 (1.0)")
    p.add_argument("--batch", type=int, default=64, help="candidates per batched GB-RRT step (64)")
    p.add_argument("--beropt-steps", type=int, default=300, help="BerOpt's Adam steps (300)")
    p.add_argument("--critic", default=None, help="also measure critic feature similarity with this critic")
    p.add_argument("--out", required=True, help="output directory (egbas.json, egbas.png)")
    p.set_defaults(func=_cmd_egbas)

    r = reproduce.add_parser("egbas",
                             help="Jeon et al. 2020, Tables 1-2 (sigma, critic similarity) on the default dcgan")
    r.add_argument("--out", required=True, help="output directory (egbas_tables.json, egbas_tables.md)")
    r.add_argument("--queries", type=int, default=10, help="random queries (10, as the paper)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--model", default="dcgan", help="generator (default dcgan)")
    r.add_argument("--critic", default=None, help="critic (default: the generator manifest's critic)")
    r.add_argument("--layers", nargs="+", default=None, help="generator layers (default all)")
    r.add_argument("--iterations", type=int, default=REPRO_DEFAULTS["max_candidates"],
                   help=f"candidates per tree ({REPRO_DEFAULTS['max_candidates']})")
    r.add_argument("--n", type=int, default=None, help="tree capacity (default iterations + 1: never fills)")
    r.add_argument("--delta", type=float, default=REPRO_DEFAULTS["delta"],
                   help="GB-RRT step size (default: the library's rule, half each region's median extent)")
    r.add_argument("--interval", type=float, default=REPRO_DEFAULTS["interval"])
    r.add_argument("--p", type=float, default=REPRO_DEFAULTS["p"])
    r.add_argument("--batch", type=int, default=REPRO_DEFAULTS["batch"])
    r.add_argument("--beropt-steps", type=int, default=300, help="BerOpt's Adam steps (300)")
    r.set_defaults(func=_cmd_reproduce)
