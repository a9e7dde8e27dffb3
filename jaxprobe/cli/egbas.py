"""`jaxprobe egbas` and `jaxprobe reproduce egbas` (E-GBAS, Jeon et al. 2020).

`jaxprobe egbas` runs E-GBAS (BerOpt, then GB-RRT in the selected region, then the L2 / Linf
eps-ball baselines) for one query drawn from the generator's prior
(`jaxprobe.experiments.egbas_run`), and writes DIR/egbas.json and DIR/egbas.png (rows: the query,
E-GBAS samples, L2 samples, Linf samples).

`jaxprobe reproduce egbas` measures the paper's Tables 1-2 (`jaxprobe.experiments.egbas_tables`)
for E-GBAS and both baselines, on random queries at generator layers 1-4, and writes
DIR/egbas_tables.json and DIR/egbas_tables.md beside the paper's numbers; with --lambdas, a BerOpt
lambda sweep (`jaxprobe.experiments.egbas_lambdas`) instead, DIR/egbas_lambdas.json, .md and .png.
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
SWEEP_JSON, SWEEP_MD, SWEEP_PNG = "egbas_lambdas.json", "egbas_lambdas.md", "egbas_lambdas.png"
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


_FLAGS = {"lambdas": "--lambdas", "queries": "--queries",
          "delta": "--delta", "interval": "--interval", "p": "--p", "capacity": "--n",
          "max_candidates": "--iterations", "batch": "--batch", "steps": "--beropt-steps", "lam": "--lambda"}


def _flag_names(err: JaxprobeError) -> JaxprobeError:
    """A library error whose leading argument name is spelled as the command's flag."""
    name, sep, rest = str(err).partition(":")
    return JaxprobeError(f"{_FLAGS[name]}:{rest}") if sep and name in _FLAGS else err


def _options(args, capacity: int):
    from jaxprobe.checks import check_count
    from jaxprobe.gbas.egbas import EGBASOptions

    return EGBASOptions(p=args.p, delta=args.delta, interval=args.interval, capacity=capacity,
                        max_candidates=check_count("--iterations", args.iterations, 0),
                        batch=check_count("--batch", args.batch, 1),
                        beropt_options=dict(steps=check_count("--beropt-steps", args.beropt_steps, 1),
                                            lam=getattr(args, "lam", None)))


def _cmd_egbas(args) -> None:
    from jaxprobe.checks import check_count
    from jaxprobe.experiments.egbas_run import egbas_run
    from jaxprobe.experiments.figures import save_grid
    from jaxprobe.io import atomic_dir, check_replaceable, write_json

    check_replaceable(args.out, force=args.force, name="--out")
    model = load_model(args.model, "--model", "generator")
    model.layer(args.layer)
    options = _options(args, check_count("--n", args.n, 1))
    _check_settings(args)
    critic = load_model(args.critic, "--critic", "critic") if args.critic else None
    try:  # the bar's total becomes the candidates drawn when the tree fills first
        with progress_bar("egbas", "candidate", options.max_candidates) as bar:
            run = egbas_run(model, args.layer, options, seed=args.seed, critic=critic, model_name=args.model,
                            critic_name=args.critic, progress=bar)
    except JaxprobeError as err:
        raise _flag_names(err) from None
    run.record["image"] = OUT_PNG
    grid = run.grid
    with atomic_dir(args.out, force=args.force, name="--out") as tmp:
        write_json(tmp / OUT_JSON, run.record)
        save_grid(tmp / OUT_PNG, grid.reshape((-1,) + grid.shape[2:]), grid.shape[1], run.title,
                  row_labels=run.labels)
    for line in run.warnings:
        print(f"jaxprobe: warning: {line}", file=sys.stderr)
    rec, out = run.record, Path(args.out).resolve()
    print(f"{rec['stop_reason']}: {rec['n_accepted']} nodes (query included), {rec['n_rejected']} rejected, "
          f"delta {rec['delta']:.3g}, eps_L2 {rec['eps_l2']:.3g}, {rec['n_selected']}/{rec['n_units']} units selected")
    print(f"wrote {out / OUT_JSON} and {out / OUT_PNG}")


def _cmd_reproduce(args) -> None:
    import jax

    from jaxprobe.checks import check_count
    from jaxprobe.experiments.egbas_tables import egbas_tables, tables_markdown
    from jaxprobe.io import atomic_dir, check_replaceable, write_json, write_text

    check_replaceable(args.out, force=args.force, name="--out")
    t0 = time.perf_counter()
    generator = load_model(args.model, "--model", "generator")
    critic_name = args.critic or default_critic_name(generator)
    critic = load_model(critic_name, "--critic", "critic")
    queries = check_count("--queries", args.queries, 1)
    _check_settings(args)
    iterations = check_count("--iterations", args.iterations, 0)
    options = _options(args, iterations + 1 if args.n is None else check_count("--n", args.n, 1))
    layers = [generator.layer(l) for l in (args.layers or range(1, generator.n_layers + 1))]
    if args.lambdas is not None:
        return _write_sweep(args, generator, critic, options, layers[0], queries, t0)
    try:  # egbas_tables checks delta against every query before running any
        with progress_bar("reproduce egbas", "candidate") as bar:
            t = egbas_tables(jax.random.PRNGKey(args.seed), generator, critic, options, layers=layers,
                             queries=queries, progress=bar)
    except JaxprobeError as err:
        raise _flag_names(err) from None
    t.update(model=args.model, critic=critic_name, seed=args.seed, total_wall_s=round(time.perf_counter() - t0, 2))
    markdown = tables_markdown(t)
    with atomic_dir(args.out, force=args.force, name="--out") as tmp:
        write_json(tmp / TABLES_JSON, t)
        write_text(tmp / TABLES_MD, markdown)
    print(markdown)
    out = Path(args.out).resolve()
    print(f"wrote {out / TABLES_JSON} and {out / TABLES_MD}")


def _write_sweep(args, generator, critic, options, layer, queries: int, t0: float) -> None:
    """`reproduce egbas --lambdas`: the BerOpt lambda sweep at one layer, JSON, markdown and figure."""
    import jax

    from jaxprobe.experiments.egbas_lambdas import egbas_lambda_sweep, lambda_figure, sweep_markdown
    from jaxprobe.experiments.figures import save_figure
    from jaxprobe.io import atomic_dir, write_json, write_text

    try:
        with progress_bar("reproduce egbas --lambdas", "run") as bar:
            sweep = egbas_lambda_sweep(jax.random.PRNGKey(args.seed), generator, critic, args.lambdas, options,
                                       layer=layer, queries=queries, progress=bar)
    except JaxprobeError as err:
        raise _flag_names(err) from None
    sweep.update(model=args.model, critic=args.critic or default_critic_name(generator), seed=args.seed,
                 total_wall_s=round(time.perf_counter() - t0, 2))
    markdown = sweep_markdown(sweep)
    with atomic_dir(args.out, force=args.force, name="--out") as tmp:
        write_json(tmp / SWEEP_JSON, sweep)
        write_text(tmp / SWEEP_MD, markdown)
        save_figure(lambda_figure(sweep), tmp / SWEEP_PNG)
    print(markdown)
    out = Path(args.out).resolve()
    print(f"wrote {out / SWEEP_JSON}, {out / SWEEP_MD} and {out / SWEEP_PNG}")


def _output_arguments(parser, what: str) -> None:
    parser.add_argument("--out", required=True, help=f"output directory ({what}; created, or replaced if jaxprobe "
                                                     "wrote it)")
    parser.add_argument("--force", action="store_true", help="replace --out even if jaxprobe did not write it")


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
    p.add_argument("--lambda", dest="lam", type=float, default=None,
                   help="BerOpt's lambda, >= 0 (default: per query, the largest of 1, 4, 16, 64, 256 x the default "
                        "lambda whose mask still reproduces G(z0) to within 1/4 of the empty mask's error)")
    p.add_argument("--critic", default=None, help="also measure critic feature similarity with this critic")
    _output_arguments(p, "egbas.json, egbas.png")
    p.set_defaults(func=_cmd_egbas)

    r = reproduce.add_parser("egbas",
                             help="Jeon et al. 2020, Tables 1-2 (sigma, critic similarity) on the default dcgan")
    _output_arguments(r, "egbas_tables.json, egbas_tables.md")
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
    r.add_argument("--lambdas", type=float, nargs="+", default=None,
                   help="instead of the tables: a BerOpt lambda sweep at these multiples of the default lambda, "
                        "at the first of --layers (default layer 1), writing egbas_lambdas.json/.md/.png")
    r.set_defaults(func=_cmd_reproduce)
