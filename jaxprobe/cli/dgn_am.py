"""`jaxprobe dgn-am` (Nguyen et al. 2016): codes of a generator whose images excite classifier neurons.

Runs `jaxprobe.experiments.codespace.dgn_am_classes` (the reference update; per-unit bounds from
real images with `--bounds real`) and writes DIR/dgn_am.json, DIR/codes.npz (last and best codes)
and one PNG per neuron. DIR is replaced only when it is new, empty or written by jaxprobe, unless
--force (`jaxprobe.io.check_replaceable`).
"""

from __future__ import annotations

import time
from pathlib import Path

# Nothing here imports JAX at module level: `jaxprobe --help` builds every command's parser without it.
from jaxprobe.cli.common import load_model, progress_bar
from jaxprobe.errors import JaxprobeError

OUT_FILE = "dgn_am.json"
CODES_FILE = "codes.npz"
# `jaxprobe.experiments.codespace.BOUNDS` as the parser offers it (a test keeps the two equal).
BOUNDS = ("real", "none")
_FLAGS = {"neurons": "--neuron", "steps": "--steps", "bounds": "--bounds"}


def flag_names(message: str) -> str:
    """A library error message with its leading argument name spelled as the command's flag."""
    name, sep, rest = message.partition(":")
    if sep and name in _FLAGS:
        return f"{_FLAGS[name]}:{rest}"
    return f"--neuron: {message}" if message.startswith("neuron ") else message


def image_name(neuron: str) -> str:
    """The PNG file of a neuron: `logits:3` -> `dgn_am_logits_3.png`."""
    return "dgn_am_" + "".join(ch if ch.isalnum() else "_" for ch in neuron) + ".png"


def _cmd_dgn_am(args) -> None:
    import jax
    import numpy as np

    from jaxprobe.checks import check_count
    from jaxprobe.experiments.codespace import dgn_am_classes
    from jaxprobe.experiments.figures import save_grid
    from jaxprobe.experiments.inverse_set_repro import canonical_images
    from jaxprobe.io import atomic_dir, check_replaceable, write_json

    if not args.neuron:
        raise JaxprobeError("--neuron: expected at least one neuron 'layer:unit'")
    check_count("--steps", args.steps, 1)
    check_replaceable(args.out, force=args.force, name="--out")
    generator = load_model(args.generator, "--generator", "generator")
    classifier = load_model(args.classifier, "--classifier", "classifier")
    t0 = time.perf_counter()
    with progress_bar("dgn-am", "step", max(args.steps, 0)) as bar:
        try:
            run = dgn_am_classes(jax.random.key(args.seed), generator, classifier, args.neuron, steps=args.steps,
                                 bounds=args.bounds, progress=bar)
        except JaxprobeError as e:
            raise JaxprobeError(flag_names(str(e))) from None
    wall = time.perf_counter() - t0
    res = run["result"]
    record = {"generator": generator.name, "classifier": classifier.name, "seed": args.seed, "steps": args.steps,
              "bounds": args.bounds, "neurons": run["neurons"],
              "predicted": [int(v) for v in run["predicted"]], "wall_s": round(wall, 2),
              "seconds_per_step": round(wall / args.steps, 4)}
    images = canonical_images(generator, res.images)
    with atomic_dir(args.out, force=args.force, name="--out") as tmp:
        write_json(tmp / OUT_FILE, record)
        arrays = {"codes": np.asarray(res.codes), "best_codes": np.asarray(res.best_codes)}
        if run["upper"] is not None:
            arrays.update(lower=run["lower"], upper=run["upper"])
        np.savez(tmp / CODES_FILE, **arrays)
        for j, row in enumerate(run["neurons"]):
            save_grid(tmp / image_name(row["neuron"]), images[j:j + 1], 1,
                      f"{row['neuron']}: {row['final_activation']:.3g}")
    for row in run["neurons"]:
        print(f"{row['neuron']}: final {row['final_activation']:.4g}, best {row['best_activation']:.4g}, "
              f"real mean {row['real_mean'] if row['real_mean'] is None else format(row['real_mean'], '.4g')}")
    print(f"wrote {Path(args.out).resolve() / OUT_FILE}")


def add_commands(sub, reproduce) -> None:
    """Add `dgn-am` to `sub` (the jaxprobe subparsers); it has no paper reproduction."""
    p = sub.add_parser("dgn-am", help="activation maximization in a generator's code space (Nguyen et al. 2016)",
                       description="Find codes whose generated images maximize classifier neurons (DGN-AM).")
    p.add_argument("--generator", default="fc_generator", help="generator: a shipped name or a model directory")
    p.add_argument("--classifier", default="classifier", help="target network: a shipped name or a model directory")
    p.add_argument("--neuron", action="append", metavar="LAYER:UNIT[@Y,X]", help="a neuron to maximize (repeatable)")
    p.add_argument("--steps", type=int, default=200, help="iterations (default 200, the reference's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bounds", choices=BOUNDS, default="real",
                   help="real: per-unit code bounds from real images (default); none: unbounded")
    p.add_argument("--out", required=True, help="output directory (created, or replaced if jaxprobe wrote it)")
    p.add_argument("--force", action="store_true", help="replace --out even if jaxprobe did not write it")
    p.set_defaults(func=_cmd_dgn_am)
