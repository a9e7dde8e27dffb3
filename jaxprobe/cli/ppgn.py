"""`jaxprobe ppgn` (Nguyen et al. 2017): PPGN-h chains conditioned on a class or a hidden neuron.

Parses, runs `jaxprobe.experiments.ppgn.ppgn_command` (PPGN under the chosen prior, the shipped
h-DAE or E(G(h)) with E recorded in the generator's manifest or given by --encoder MODEL:LAYER,
and the code bounds from real images) and writes DIR/ppgn.json (every saved sample's chain, step,
probability and label; the kept rate; the diversity of chain 0's kept samples in the classifier's
penultimate features; seconds_per_step over the steps alone, the first chunk's compilation and
the loading reported apart), DIR/codes.npz and DIR/ppgn_chains.png (chains as rows, time as
columns), and lists every file written. DIR is replaced only when it is new, empty or written by
jaxprobe, unless --force.

`jaxprobe reproduce ppgn` measures Nguyen et al. 2017's numbers per class
(`jaxprobe.experiments.ppgn.ppgn_classes`, as benchmarks/reproduce_ppgn.py): the class rate (the
share of kept samples after burn-in classified as the class) and the diversity of the chains'
final images against as many DGN-AM runs of as many steps, with its spread; writes
DIR/reproduce_ppgn.json, .md (the table docs/methods/ppgn.md quotes), .png and DIR/codes.npz.
"""

from __future__ import annotations

from pathlib import Path

# Nothing here imports JAX at module level: `jaxprobe --help` builds every command's parser without it.
from jaxprobe.cli.common import load_model, progress_bar
from jaxprobe.cli.dgn_am import flag_names as neuron_flag
from jaxprobe.errors import JaxprobeError

OUT_FILE = "ppgn.json"
CODES_FILE = "codes.npz"
CHAINS_PNG = "ppgn_chains.png"
# `jaxprobe.experiments.ppgn.PRIORS` as the parser offers it (a test keeps the two equal).
PRIORS = ("dae", "encoder")
_FLAGS = {"label": "--class", "chains": "--chains", "steps": "--steps", "eps1": "--eps1", "eps2": "--eps2",
          "eps3": "--eps3", "save_every": "--save-every", "reset_every": "--reset-every", "threshold": "--threshold",
          "prior": "--prior", "encoder": "--encoder", "classes": "--classes", "burn_in": "--burn-in"}
REPRO_JSON, REPRO_MD, REPRO_PNG = "reproduce_ppgn.json", "reproduce_ppgn.md", "reproduce_ppgn.png"
# The reference's settings the reproduction keeps (benchmarks/reproduce_ppgn.py's SETUP).
REPRO_SAVE_EVERY = 5


def flag_names(message: str) -> str:
    """A `ppgn` error message with its leading argument name spelled as the command's flag."""
    name, sep, rest = message.partition(":")
    return f"{_FLAGS[name]}:{rest}" if sep and name in _FLAGS else neuron_flag(message)


def parse_encoder(text):
    """`MODEL:LAYER` (a shipped name or a model directory, then a layer name or number) as
    (model, layer) loaded; None stays None."""
    if text is None:
        return None
    name, sep, layer = text.rpartition(":")
    if not sep or not name or not layer:
        raise JaxprobeError(f"--encoder: expected MODEL:LAYER (e.g. classifier:fc1), got {text!r}")
    model = load_model(name, "--encoder", "classifier")
    return model, int(layer) if layer.isdigit() else layer


def _cmd_ppgn(args) -> None:
    import jax
    import numpy as np

    from jaxprobe.experiments.figures import evenly_spaced, save_chains
    from jaxprobe.experiments.inverse_set_repro import canonical_images
    from jaxprobe.experiments.ppgn import ppgn_command
    from jaxprobe.io import atomic_dir, check_replaceable, write_json
    from jaxprobe.models.pixels import image_bridge

    if (args.label is None) == (args.neuron is None):
        raise JaxprobeError("--class, --neuron: expected exactly one: a class to condition on, or a neuron")
    check_replaceable(args.out, force=args.force, name="--out")
    generator = load_model(args.generator, "--generator", "generator")
    classifier = load_model(args.classifier, "--classifier", "classifier")
    bridge = image_bridge(generator, classifier)  # refused here, before any work, when it cannot be made
    settings = dict(steps=args.steps, eps1=args.eps1, eps2=args.eps2, eps3=args.eps3, save_every=args.save_every,
                    reset_every=args.reset_every, threshold=args.threshold)
    with progress_bar("ppgn", "step", args.steps + 1) as bar:
        try:
            encoder = parse_encoder(args.encoder)
            images = None
            if args.images is not None:
                from jaxprobe.codespace.dgn_am import recorded_encoder
                from jaxprobe.real_images import load_images

                reader = encoder[0] if encoder is not None else recorded_encoder(generator)[0]
                images = load_images(args.images, tuple(reader.input_shape)).images
            run = ppgn_command(jax.random.key(args.seed), generator, classifier, prior=args.prior, encoder=encoder,
                               label=args.label, neuron=args.neuron, chains=args.chains, bounds=args.bounds,
                               images=images, progress=bar, **settings)
        except JaxprobeError as e:
            raise JaxprobeError(flag_names(str(e))) from None
    res = run["result"]
    probs, labels = np.asarray(res.probs), np.asarray(res.labels)
    steps, samples = np.asarray(res.saved_steps), np.asarray(res.samples)
    record = {"generator": generator.name, "classifier": classifier.name, "image_bridge": bridge, "prior": args.prior,
              "encoder": args.encoder, "condition": res.condition, "seed": args.seed, "chains": args.chains,
              "steps": args.steps, "updates": args.steps + 1, "eps": [args.eps1, args.eps2, args.eps3],
              "save_every": args.save_every, "reset_every": args.reset_every, "threshold": args.threshold,
              "bounds": run["bounds"], "images": args.images, "nonlinear": run["options"].nonlinear,
              "samples": [{"chain": i, "step": int(steps[j]), "prob": float(probs[i, j]), "label": int(labels[i, j])}
                          for i in range(probs.shape[0]) for j in range(probs.shape[1])],
              "kept_rate": run["kept_rate"], "diversity": run["diversity"],
              "diversity_samples": run["diversity_samples"], **run["timing"]}
    # Only the chains and steps the figure shows are drawn (at most 10 x 12, whatever the run's length).
    keep_c, keep_t = evenly_spaced(samples.shape[0], 10), evenly_spaced(samples.shape[1], 12)
    shown = samples[np.ix_(keep_c, keep_t)]
    images = canonical_images(generator, generator.forward(generator.params, shown.reshape((-1,) + shown.shape[2:])))
    with atomic_dir(args.out, force=args.force, name="--out") as tmp:
        write_json(tmp / OUT_FILE, record)
        np.savez(tmp / CODES_FILE, samples=samples, saved_steps=steps, codes=np.asarray(res.codes))
        save_chains(tmp / CHAINS_PNG, images.reshape(shown.shape[:2] + images.shape[1:]), steps[keep_t],
                    probs[np.ix_(keep_c, keep_t)], f"PPGN ({args.prior}) on {res.condition}",
                    chain_labels=[f"chain {i}" for i in keep_c], value_label="p(class)")
    per_step = record["seconds_per_step"]
    diversity = record["diversity"]
    print(f"{res.condition}: kept rate {record['kept_rate']:.3g}, diversity "
          f"{'-' if diversity is None else format(diversity, '.3g')} (mean pairwise feature distance), "
          f"{'-' if per_step is None else format(per_step * 1e3, '.3g')} ms a step, {record['wall_s']:.1f} s in all")
    for name in (OUT_FILE, CODES_FILE, CHAINS_PNG):
        print(f"wrote {Path(args.out).resolve() / name}")


def _real_images(args, generator, encoder):
    """--images as canonical arrays in the shape of the encoder whose E(x) gives the bounds."""
    if args.images is None:
        return None
    from jaxprobe.codespace.dgn_am import recorded_encoder
    from jaxprobe.real_images import load_images

    reader = encoder[0] if encoder is not None else recorded_encoder(generator)[0]
    return load_images(args.images, tuple(reader.input_shape)).images


def _kept_arrays(run, burn_in: int) -> dict:
    """codes.npz of the reproduction: every kept sample saved at t >= burn_in (what the class rate
    counts) with its class, chain, step and the label PPGN read; the chains' final codes; the
    DGN-AM runs' final codes (what the diversity compares)."""
    import numpy as np

    cols = {"kept_codes": [], "kept_class": [], "kept_chain": [], "kept_step": [], "kept_label": []}
    for c, res in run["results"].items():
        steps = np.asarray(res.saved_steps)
        mask = np.asarray(res.kept) & (steps >= burn_in)[None]
        chain, col = np.nonzero(mask)
        cols["kept_codes"].append(np.asarray(res.samples)[chain, col])
        cols["kept_class"].append(np.full(len(chain), c))
        cols["kept_chain"].append(chain)
        cols["kept_step"].append(steps[col])
        cols["kept_label"].append(np.asarray(res.labels)[chain, col])
    out = {k: np.concatenate(v) for k, v in cols.items()}
    out["final_codes"] = np.stack([np.asarray(res.codes) for res in run["results"].values()])
    out["classes"] = np.asarray(list(run["results"]))
    if run["dgn_am_codes"]:
        out["dgn_am_codes"] = np.stack(list(run["dgn_am_codes"].values()))
        out["diversity_classes"] = np.asarray(list(run["dgn_am_codes"]))
    return out


def _cmd_reproduce(args) -> None:
    import time

    import jax
    import numpy as np

    from jaxprobe.checks import check_count
    from jaxprobe.experiments.codespace import check_classes
    from jaxprobe.experiments.figures import save_figure
    from jaxprobe.experiments.ppgn import (classes_figure, classes_table, default_bounds, make_prior, ppgn_classes,
                                          resolve_bounds)
    from jaxprobe.io import atomic_dir, check_replaceable, write_json, write_text
    from jaxprobe.models.pixels import image_bridge

    check_count("--steps", args.steps, 1)
    check_count("--chains", args.chains, 1)
    check_count("--burn-in", args.burn_in, 0)
    check_replaceable(args.out, force=args.force, name="--out")
    t0 = time.perf_counter()
    generator = load_model(args.generator, "--generator", "generator")
    classifier = load_model(args.classifier, "--classifier", "classifier")
    bridge = image_bridge(generator, classifier)  # refused here, before any work, when it cannot be made
    classes = check_classes(classifier, args.classes, "--classes")
    try:
        encoder = parse_encoder(args.encoder)
        images = _real_images(args, generator, encoder)
        bounds = default_bounds(generator, images, encoder) if args.bounds is None else args.bounds
        lower, upper = resolve_bounds(generator, bounds, images=images, encoder=encoder)
        denoiser = make_prior(generator, args.prior, encoder)
        with progress_bar("reproduce ppgn", "step") as bar:
            run = ppgn_classes(jax.random.key(args.seed), generator, classifier, denoiser, classes=classes,
                               chains=args.chains, steps=args.steps, burn_in=args.burn_in, bounds=(lower, upper),
                               progress=bar, save_every=REPRO_SAVE_EVERY)
    except JaxprobeError as e:
        raise JaxprobeError(flag_names(str(e))) from None
    rates = [r["class_rate"] for r in run["classes"]]
    record = {"paper": "Nguyen et al. 2017 (PPGN-h): class rate and diversity against DGN-AM",
              "generator": args.generator, "classifier": args.classifier, "image_bridge": bridge,
              "prior": args.prior, "encoder": args.encoder, "seed": args.seed,
              "setup": {"chains": args.chains, "steps": args.steps, "burn_in": args.burn_in,
                        "save_every": REPRO_SAVE_EVERY, "eps": [1e-5, 1.0, 1e-17], "threshold": 0.0,
                        "dgn_am_steps": args.steps, "bounds": bounds, "images": args.images},
              "class_rate": "the share of kept samples saved at t >= burn_in whose top class is the target",
              "diversity_measure": "mean pairwise Euclidean distance of the chains' final images (and of as many "
                                   "DGN-AM runs of as many steps, the same bounds) in the classifier's penultimate "
                                   "layer after its nonlinearity; _sd: the spread of those distances",
              "classes": run["classes"], "min_class_rate": run["min_class_rate"],
              "mean_class_rate": float(np.mean(rates)), "diversity": run["diversity"],
              "wall_s": round(time.perf_counter() - t0, 3),
              "files": [REPRO_JSON, REPRO_MD, REPRO_PNG, CODES_FILE]}
    markdown = classes_table({args.prior: run})
    with atomic_dir(args.out, force=args.force, name="--out") as tmp:
        write_json(tmp / REPRO_JSON, record)
        write_text(tmp / REPRO_MD, markdown)
        np.savez(tmp / CODES_FILE, **_kept_arrays(run, args.burn_in))
        save_figure(classes_figure(run, f"PPGN ({args.prior}) on {classifier.name}: {args.chains} chains of "
                                        f"{args.steps} steps, burn-in {args.burn_in}"), tmp / REPRO_PNG)
    print(markdown, end="")
    out = Path(args.out).resolve()
    print(f"wrote {out / REPRO_JSON}, {out / REPRO_MD}, {out / REPRO_PNG} and {out / CODES_FILE}")


def add_commands(sub, reproduce) -> None:
    """Add `ppgn` to `sub` (the jaxprobe subparsers) and `ppgn` to `reproduce`."""
    p = sub.add_parser("ppgn", help="PPGN-h Langevin chains in a generator's code space (Nguyen et al. 2017)",
                       description="Sample codes whose images the classifier assigns to a class (or that excite "
                                   "a hidden neuron), under a prior on codes (MALA-approx, eq. 11).")
    p.add_argument("--generator", default="fc_generator", help="generator: a shipped name or a model directory")
    p.add_argument("--classifier", default="classifier", help="condition network: a shipped name or a model directory")
    p.add_argument("--class", dest="label", type=int, default=None, help="the class to condition on")
    p.add_argument("--neuron", default=None, metavar="LAYER:UNIT[@Y,X]", help="or a hidden neuron")
    p.add_argument("--chains", type=int, default=1, help="chains run together (default 1)")
    p.add_argument("--steps", type=int, default=200,
                   help="n: each chain makes n + 1 updates and saves at t = 0, save-every, ... <= n (default 200, "
                        "the reference's)")
    p.add_argument("--prior", choices=PRIORS, default="dae", help="dae: the shipped h-DAE (default); encoder: E(G(h))")
    p.add_argument("--encoder", default=None, metavar="MODEL:LAYER",
                   help="with --prior encoder: E, a classifier up to LAYER (default: the encoder recorded in the "
                        "generator's manifest)")
    p.add_argument("--eps1", type=float, default=1e-5, help="prior weight (default 1e-5)")
    p.add_argument("--eps2", type=float, default=1.0, help="condition weight (default 1)")
    p.add_argument("--eps3", type=float, default=1e-17, help="noise weight (default 1e-17)")
    p.add_argument("--save-every", type=int, default=5, help="save every this many steps (default 5)")
    p.add_argument("--reset-every", type=int, default=0, help="redraw the code every this many steps (0: never)")
    p.add_argument("--threshold", type=float, default=0.0, help="keep saved samples with probability above it")
    p.add_argument("--bounds", default=None, metavar="real|none|FILE",
                   help="code bounds: real (per unit, from E(x) of real images), none, or FILE (the reference's "
                        "per-unit upper bounds, space-separated, lower bound 0). Default: real where real images "
                        "are at hand (--images, or MNIST for MNIST models), else none")
    p.add_argument("--images", default=None, metavar="PATH",
                   help="real images (a folder of image files or an .npz of NHWC arrays) for --bounds real")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output directory (created, or replaced if jaxprobe wrote it)")
    p.add_argument("--force", action="store_true", help="replace --out even if jaxprobe did not write it")
    p.set_defaults(func=_cmd_ppgn)

    r = reproduce.add_parser("ppgn", help="Nguyen et al. 2017: PPGN's class rate and diversity against DGN-AM")
    r.add_argument("--generator", default="fc_generator", help="generator: a shipped name or a model directory")
    r.add_argument("--classifier", default="classifier", help="condition network: a shipped name or a model directory")
    r.add_argument("--images", default=None, metavar="PATH",
                   help="real images (a folder or an .npz of NHWC arrays) for --bounds real, read through the encoder")
    r.add_argument("--prior", choices=PRIORS, default="dae", help="dae: the shipped h-DAE (default); encoder: E(G(h))")
    r.add_argument("--encoder", default=None, metavar="MODEL:LAYER",
                   help="with --prior encoder: E (default: the encoder recorded in the generator's manifest)")
    r.add_argument("--classes", type=int, nargs="+", default=None, help="classes to condition on (default all)")
    r.add_argument("--chains", type=int, default=8, help="chains per class, and DGN-AM runs to compare (default 8)")
    r.add_argument("--steps", type=int, default=200, help="steps per chain and per DGN-AM run (default 200)")
    r.add_argument("--burn-in", type=int, default=100, help="samples saved before this step are not counted (100)")
    r.add_argument("--bounds", default=None, metavar="real|none|FILE",
                   help="code bounds as `jaxprobe ppgn --bounds` (default real where real images are at hand)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", required=True, help="output directory (created, or replaced if jaxprobe wrote it)")
    r.add_argument("--force", action="store_true", help="replace --out even if jaxprobe did not write it")
    r.set_defaults(func=_cmd_reproduce)
