"""`jaxprobe ppgn` (Nguyen et al. 2017): PPGN-h chains conditioned on a class or a hidden neuron.

Runs `jaxprobe.codespace.ppgn.ppgn` under the chosen prior (the shipped h-DAE or E(G(h))), with the
code bounds from real images (`jaxprobe.experiments.codespace.code_bounds`), and writes
DIR/ppgn.json (every saved sample's chain, step, probability and label; the kept rate; the
diversity of chain 0's kept samples in the classifier's penultimate features), DIR/codes.npz and
DIR/ppgn_chains.png (chains as rows, time as columns). DIR is replaced only when it is new, empty
or written by jaxprobe, unless --force.
"""

from __future__ import annotations

import time
from pathlib import Path

# Nothing here imports JAX at module level: `jaxprobe --help` builds every command's parser without it.
from jaxprobe.cli.common import load_model, progress_bar
from jaxprobe.cli.dgn_am import BOUNDS
from jaxprobe.cli.dgn_am import flag_names as neuron_flag
from jaxprobe.errors import JaxprobeError

OUT_FILE = "ppgn.json"
CODES_FILE = "codes.npz"
CHAINS_PNG = "ppgn_chains.png"
# `jaxprobe.experiments.codespace.PRIORS` as the parser offers it (a test keeps the two equal).
PRIORS = ("dae", "encoder")
CHUNKS = 20  # compiled chunks per run: one progress tick each
_FLAGS = {"label": "--class", "chains": "--chains", "steps": "--steps", "eps1": "--eps1", "eps2": "--eps2",
          "eps3": "--eps3", "save_every": "--save-every", "reset_every": "--reset-every", "threshold": "--threshold"}


def flag_names(message: str) -> str:
    """A `ppgn` error message with its leading argument name spelled as the command's flag."""
    name, sep, rest = message.partition(":")
    return f"{_FLAGS[name]}:{rest}" if sep and name in _FLAGS else neuron_flag(message)


def _cmd_ppgn(args) -> None:
    import jax
    import numpy as np

    from jaxprobe.checks import check_count, check_number
    from jaxprobe.codespace.ppgn import ppgn
    from jaxprobe.experiments.codespace import code_bounds, make_prior, mean_pairwise_distance, penultimate
    from jaxprobe.experiments.figures import save_grid
    from jaxprobe.experiments.inverse_set_repro import canonical_images
    from jaxprobe.io import atomic_dir, check_replaceable, write_json

    if (args.label is None) == (args.neuron is None):
        raise JaxprobeError("--class, --neuron: expected exactly one: a class to condition on, or a neuron")
    for flag, value in (("--steps", args.steps), ("--save-every", args.save_every), ("--chains", args.chains)):
        check_count(flag, value, 1)
    for flag, value in (("--eps1", args.eps1), ("--eps2", args.eps2), ("--eps3", args.eps3)):
        check_number(flag, value, low=0.0, what="a non-negative weight")
    check_replaceable(args.out, force=args.force, name="--out")
    generator = load_model(args.generator, "--generator", "generator")
    classifier = load_model(args.classifier, "--classifier", "classifier")
    lower, upper = code_bounds(generator, args.bounds)
    prior = make_prior(generator, args.prior)
    t0 = time.perf_counter()
    with progress_bar("ppgn", "step", args.steps) as bar:
        try:
            res = ppgn(jax.random.key(args.seed), generator, classifier, prior, label=args.label,
                       neuron=args.neuron, chains=args.chains, steps=args.steps, eps1=args.eps1, eps2=args.eps2,
                       eps3=args.eps3, save_every=args.save_every, reset_every=args.reset_every,
                       threshold=args.threshold, lower=lower, upper=upper, chunk=max(1, args.steps // CHUNKS),
                       progress=bar)
        except JaxprobeError as e:
            raise JaxprobeError(flag_names(str(e))) from None
    wall = time.perf_counter() - t0
    probs, labels, kept = (np.asarray(a) for a in (res.probs, res.labels, res.kept))
    steps = np.asarray(res.saved_steps)
    samples = np.asarray(res.samples)
    chosen = samples[0][kept[0]]
    div = mean_pairwise_distance(penultimate(generator, classifier, chosen)) if len(chosen) >= 2 else None
    record = {"generator": generator.name, "classifier": classifier.name, "prior": args.prior,
              "condition": res.condition, "seed": args.seed, "chains": args.chains, "steps": args.steps,
              "eps": [args.eps1, args.eps2, args.eps3], "save_every": args.save_every,
              "reset_every": args.reset_every, "threshold": args.threshold, "bounds": args.bounds,
              "samples": [{"chain": i, "step": int(steps[j]), "prob": float(probs[i, j]), "label": int(labels[i, j])}
                          for i in range(probs.shape[0]) for j in range(probs.shape[1])],
              "kept_rate": float(kept.mean()), "diversity": div, "diversity_samples": int(len(chosen)),
              "wall_s": round(wall, 2), "seconds_per_step": round(wall / args.steps, 4)}
    c, n = samples.shape[:2]
    flat = samples.reshape((c * n,) + samples.shape[2:])
    images = canonical_images(generator, generator.forward(generator.params, flat))
    with atomic_dir(args.out, force=args.force, name="--out") as tmp:
        write_json(tmp / OUT_FILE, record)
        np.savez(tmp / CODES_FILE, samples=samples, saved_steps=steps, codes=np.asarray(res.codes))
        save_grid(tmp / CHAINS_PNG, images, n, f"PPGN ({args.prior}) on {res.condition}: chains by row, "
                                              f"steps {steps[0]}..{steps[-1]} by column",
                  row_labels=[f"chain {i}" for i in range(c)])
    print(f"{res.condition}: kept rate {record['kept_rate']:.3g}, diversity {div}, {wall:.1f} s")
    print(f"wrote {Path(args.out).resolve() / OUT_FILE}")


def add_commands(sub, reproduce) -> None:
    """Add `ppgn` to `sub` (the jaxprobe subparsers); it has no paper reproduction."""
    p = sub.add_parser("ppgn", help="PPGN-h Langevin chains in a generator's code space (Nguyen et al. 2017)",
                       description="Sample codes whose images the classifier assigns to a class (or that excite "
                                   "a hidden neuron), under a prior on codes (MALA-approx, eq. 11).")
    p.add_argument("--generator", default="fc_generator", help="generator: a shipped name or a model directory")
    p.add_argument("--classifier", default="classifier", help="condition network: a shipped name or a model directory")
    p.add_argument("--class", dest="label", type=int, default=None, help="the class to condition on")
    p.add_argument("--neuron", default=None, metavar="LAYER:UNIT[@Y,X]", help="or a hidden neuron")
    p.add_argument("--chains", type=int, required=True, help="chains run together")
    p.add_argument("--steps", type=int, required=True, help="steps per chain (reference 200)")
    p.add_argument("--prior", choices=PRIORS, default="dae", help="dae: the shipped h-DAE (default); encoder: E(G(h))")
    p.add_argument("--eps1", type=float, default=1e-5, help="prior weight (default 1e-5)")
    p.add_argument("--eps2", type=float, default=1.0, help="condition weight (default 1)")
    p.add_argument("--eps3", type=float, default=1e-17, help="noise weight (default 1e-17)")
    p.add_argument("--save-every", type=int, default=5, help="save every this many steps (default 5)")
    p.add_argument("--reset-every", type=int, default=0, help="redraw the code every this many steps (0: never)")
    p.add_argument("--threshold", type=float, default=0.0, help="keep saved samples with probability above it")
    p.add_argument("--bounds", choices=BOUNDS, default="real", help="code bounds: real (default) or none")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output directory (created, or replaced if jaxprobe wrote it)")
    p.add_argument("--force", action="store_true", help="replace --out even if jaxprobe did not write it")
    p.set_defaults(func=_cmd_ppgn)
