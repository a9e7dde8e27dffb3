"""`jaxprobe inverse-set` and `jaxprobe reproduce inverse-set` (Hada & Carreira-Perpiñán 2019).

`jaxprobe inverse-set` samples n images of a generator whose constrained neurons of a classifier lie
in their ranges and rechecks them by a fresh forward pass
(`jaxprobe.experiments.inverse_set_repro.inverse_set_run`), then writes DIR/inverse_set.json plus
two PNGs: the samples sorted by activation, labelled with their values, and a histogram of the
activations with [z1, z2] marked; it prints one summary line (which says so when the seeds ended
infeasible). When no sample is accepted (an unreachable range, or one-sided seeds above it) it
writes the JSON alone, with the stop reason, and exits with status 2 on one line saying why.
`jaxprobe reproduce inverse-set` runs `jaxprobe.experiments.inverse_set_repro.reproduction` and
writes DIR/reproduce_inverse_set.{json,md}. Both replace DIR only when it is new, empty or written
by jaxprobe, unless --force (`jaxprobe.io.check_replaceable`).

Ranges left out (every --range of `inverse-set`, or `reproduce`'s one) are chosen before sampling
from real images, `--images PATH` (`jaxprobe.real_images.load_images`) or MNIST test digits for the
shipped 28 x 28 x 1 classifiers (`inverse_set_repro.reference_range`); each JSON records every
reference value, the image bridge (`jaxprobe.models.pixels.image_bridge`), and a `skipped` list
saying why no real images were used where none were at hand.
"""

from __future__ import annotations

import re
from pathlib import Path

# Nothing here imports JAX at module level: `jaxprobe --help` builds every command's parser without it.
from jaxprobe.cli.common import load_model, progress_bar
from jaxprobe.errors import JaxprobeError

OUT_FILE = "inverse_set.json"
SAMPLES_PNG = "samples_by_activation.png"
HISTOGRAM_PNG = "activation_histogram.png"
# `jaxprobe.inverse_sets.inverse_set.REPEL` as the parser offers it (a test keeps the two equal).
REPEL = ("new", "all")
REPRO_JSON = "reproduce_inverse_set.json"
REPRO_MD = "reproduce_inverse_set.md"
# `jaxprobe.experiments.inverse_set_repro.CLASS_RANGES["high"]`: the quantiles of a range chosen
# without --range (a test keeps the two equal).
DEFAULT_QUANTILES = (0.75, 0.95)
# `inverse_set`'s argument names as the command spells them.
_FLAGS = {"ranges": "--range", "range": "--range", "value_range": "--range", "neurons": "--neuron",
          "neuron": "--neuron", "n": "--n", "k": "--k", "max_outer": "--max-outer",
          "max_sampling_steps": "--max-sampling-steps", "repel": "--repel", "images": "--images",
          "reference": "--images", "quantiles": "--quantiles"}
# Any float literal with a leading minus: argparse's own pattern leaves out exponents and inf, so
# it would read `--range -1e3 1` as an unknown flag.
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)


def pair_neurons_ranges(neurons, ranges) -> tuple[list, list | None]:
    """Pair the repeated `--neuron` and `--range` arguments: one (z1, z2) per neuron, in order, or
    no `--range` at all (None: every range chosen from real images).

    Raises JaxprobeError when no neuron is given or the counts differ (an intersection repeats the pair).
    """
    neurons, ranges = list(neurons or []), list(ranges or [])
    if not neurons:
        raise JaxprobeError("--neuron: expected at least one neuron 'layer:unit' (with its --range Z1 Z2)")
    if not ranges:
        return neurons, None
    if len(neurons) != len(ranges):
        raise JaxprobeError(
            f"--neuron/--range: expected one --range Z1 Z2 per --neuron (an intersection repeats the pair), "
            f"or none to choose every range from real images, got {len(neurons)} --neuron and {len(ranges)} --range")
    return neurons, [tuple(float(v) for v in r) for r in ranges]


def flag_names(message: str) -> str:
    """An `inverse_set` error message with its leading argument name spelled as the command's flag
    ("ranges: ..." -> "--range: ..."); other messages unchanged."""
    name, sep, rest = message.partition(":")
    if sep and name in _FLAGS:
        return f"{_FLAGS[name]}:{rest}"
    return f"--neuron: {message}" if message.startswith("neuron ") else message


def print_reference(record) -> None:
    """Print where each chosen range came from and each comparison skipped (one line each)."""
    refs = record.get("reference") or []
    for ref in [refs] if isinstance(refs, dict) else refs:  # the reproduction's one, or one per neuron
        z1, z2 = ref["range"]
        print(f"range of {ref['neuron']}: [{z1:.6g}, {z2:.6g}], quantiles {tuple(ref['quantiles'])} over "
              f"{ref['source']}")
    for skip in record.get("skipped") or []:
        print(f"skipped {skip['comparison']}: {skip['reason']}")


def write_outputs(out, result, generator, record, *, force: bool = False) -> Path:
    """Write DIR/inverse_set.json and, when there are samples, the two PNGs, atomically (all appear
    or none)."""
    import numpy as np

    from jaxprobe.experiments.figures import save_histograms, save_sorted_samples
    from jaxprobe.experiments.inverse_set_repro import canonical_images
    from jaxprobe.io import atomic_dir, write_json

    neurons = list(result.neurons)
    values = np.asarray(result.activations).reshape(result.n_accepted, len(neurons))
    with atomic_dir(out, force=force, name="--out") as tmp:
        write_json(tmp / OUT_FILE, record)
        if result.n_accepted:
            samples = [(" / ".join(neurons), canonical_images(generator, result.images), values)]
            histograms = [(name, values[:, j], tuple(result.ranges[j])) for j, name in enumerate(neurons)]
            save_sorted_samples(tmp / SAMPLES_PNG, samples, f"inverse set: {result.n_accepted} samples "
                                                            f"({result.stop_reason})")
            save_histograms(tmp / HISTOGRAM_PNG, histograms, title="activations of the accepted samples")
    return Path(out).resolve()


def _cmd_inverse_set(args) -> None:
    import jax

    from jaxprobe.experiments.inverse_set_repro import inverse_set_run
    from jaxprobe.inverse_sets.inverse_set import InverseSetOptions
    from jaxprobe.io import check_replaceable
    from jaxprobe.models.pixels import image_bridge

    neurons, ranges = pair_neurons_ranges(args.neuron, args.range)
    if ranges is not None and args.images is not None:
        raise JaxprobeError("--images: real images choose the ranges when --range is omitted; got --range too "
                            "(drop one of them)")
    if ranges is not None and args.quantiles is not None:
        raise JaxprobeError("--quantiles: they choose the ranges when --range is omitted; got --range too "
                            "(drop one of them)")
    check_replaceable(args.out, force=args.force, name="--out")
    generator = load_model(args.generator, "--generator", "generator")
    classifier = load_model(args.classifier, "--classifier", "classifier")
    bridge = image_bridge(generator, classifier)  # refused here, before any work, when it cannot be made
    options = InverseSetOptions(n=args.n, k=args.k, diversity=args.diversity, nonlinear=not args.pre_activation,
                                one_sided=args.one_sided, max_outer=args.max_outer,
                                max_sampling_steps=args.max_sampling_steps, repel=args.repel)
    # Every check of neurons, ranges, n and k happens inside inverse_set before any work; its
    # messages name the function's arguments, which the command line spells as flags.
    try:
        with progress_bar("inverse-set", "step") as bar:  # the seeds' inner steps, then the sampling steps
            run = inverse_set_run(jax.random.key(args.seed), generator, classifier, neurons, ranges, options,
                                  seed=args.seed, progress=bar, images=args.images,
                                  quantiles=DEFAULT_QUANTILES if args.quantiles is None else tuple(args.quantiles))
    except JaxprobeError as e:
        raise JaxprobeError(flag_names(str(e))) from None
    result = run.result
    record = dict(run.record, image_bridge=bridge)
    path = write_outputs(args.out, result, generator, record, force=args.force) / OUT_FILE
    print_reference(record)
    if not result.n_accepted:
        raise JaxprobeError(f"--range: {result.stop_reason}: {result.stop_message}; wrote {path}")
    print(run.summary)
    print(f"wrote {path}")


def _cmd_reproduce(args) -> None:
    from jaxprobe.experiments.inverse_set_repro import reproduction
    from jaxprobe.io import atomic_dir, check_replaceable, write_json, write_text
    from jaxprobe.models.pixels import image_bridge

    if args.range is not None and args.images is not None:
        raise JaxprobeError("--images: real images choose the range when --range is omitted; got --range too "
                            "(drop one of them)")
    check_replaceable(args.out, force=args.force, name="--out")
    generator = load_model(args.generator, "--generator", "generator")
    classifier = load_model(args.classifier, "--classifier", "classifier")
    bridge = image_bridge(generator, classifier)  # refused here, before any work, when it cannot be made
    try:
        with progress_bar("reproduce inverse-set", "step") as bar:
            rep = reproduction(args.seed, generator, classifier, neuron=args.neuron,
                               value_range=None if args.range is None else tuple(args.range), n=args.n, k=args.k,
                               reference=args.images, progress=bar)
    except JaxprobeError as e:
        raise JaxprobeError(flag_names(str(e))) from None
    report = dict(rep.report, image_bridge=bridge)
    with atomic_dir(args.out, force=args.force, name="--out") as tmp:
        write_json(tmp / REPRO_JSON, report)
        write_text(tmp / REPRO_MD, rep.markdown)
    print(rep.table, end="")
    print_reference(report)
    print(f"wrote {Path(args.out).resolve() / REPRO_JSON}")


def _output_arguments(parser, what: str) -> None:
    parser.add_argument("--out", required=True, help=f"{what} (created, or replaced if jaxprobe wrote it)")
    parser.add_argument("--force", action="store_true", help="replace --out even if jaxprobe did not write it")


def add_commands(sub, reproduce) -> None:
    """Add `inverse-set` to `sub` (the jaxprobe subparsers) and `inverse-set` to `reproduce`."""
    p = sub.add_parser("inverse-set", help="sample diverse images whose neurons lie in given ranges "
                                           "(Hada & Carreira-Perpiñán 2019)",
                       description="Sample n generator images whose neuron(s) of a classifier lie in [z1, z2] "
                                   "(an intersection repeats --neuron/--range).")
    p.add_argument("--generator", default="fc_generator", help="generator: a shipped name or a model directory")
    p.add_argument("--classifier", default="classifier", help="target network: a shipped name or a model directory")
    p.add_argument("--neuron", action="append", metavar="LAYER:UNIT[@Y,X]",
                   help="a neuron (units from 0); repeat with --range for an intersection")
    p.add_argument("--range", action="append", nargs=2, type=float, metavar=("Z1", "Z2"),
                   help="its activation range [z1, z2], one per --neuron; omit every --range to choose each "
                        "neuron's range before sampling as the --quantiles of its value over real images: "
                        "G(E(x)), the generator's reconstructions of them, when it inverts E (so a range it "
                        "reaches), else the images' own values")
    p.add_argument("--images", default=None, metavar="PATH",
                   help="real images for ranges chosen without --range (a folder of image files or an .npz of "
                        "NHWC arrays, brought to the classifier's input size and pixel convention). Without "
                        "it: MNIST test digits (of the neuron's class for an output unit) where the classifier "
                        "reads 28x28x1 and the generator inverts E; otherwise no real images (uniform random "
                        "images through E, or the generator's prior), and the JSON's 'skipped' says why")
    p.add_argument("--quantiles", nargs=2, type=float, default=None, metavar=("Q1", "Q2"),
                   help="the quantiles of the reference values that make a range chosen without --range "
                        "(default 0.75 0.95, the reproduction's high range)")
    p.add_argument("--n", type=int, default=500, help="samples wanted (default 500)")
    p.add_argument("--k", type=int, default=10, help="codes optimized together, K (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--diversity", choices=("embedding", "code", "none"), default="embedding",
                   help="embedding: eq. 5 (default); code: eq. 13; none: eq. 14")
    p.add_argument("--one-sided", action="store_true",
                   help="the paper's seed constraint f >= (z1 + z2)/2 instead of both sides")
    p.add_argument("--pre-activation", action="store_true",
                   help="read neurons before their layer's nonlinearity (default: after)")
    p.add_argument("--max-outer", type=int, default=6, help="outer-iteration budget of the seeds")
    p.add_argument("--max-sampling-steps", type=int, default=None,
                   help="sampling-step budget (default 10 x ceil((n - k)/k))")
    p.add_argument("--repel", choices=REPEL, default="new",
                   help="the accepted codes the sampler moves away from: new (the latest step's, the "
                        "paper's; default) or all")
    _output_arguments(p, "output directory")
    p.set_defaults(func=_cmd_inverse_set)

    r = reproduce.add_parser("inverse-set", help="Hada & Carreira-Perpiñán 2019: seeds' iterations, sampling "
                                                 "steps, eq. 5/13/14 diversity")
    _output_arguments(r, "output directory for the JSON and markdown")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--generator", default="fc_generator")
    r.add_argument("--classifier", default="classifier")
    r.add_argument("--neuron", default="logits:3", help="the logit neuron (default logits:3)")
    r.add_argument("--range", nargs=2, type=float, default=None, metavar=("Z1", "Z2"),
                   help="default: the 0.75 and 0.95 quantiles of the neuron over G(E(x)) for real images x "
                        "(--images; MNIST test digits of its class for 28x28x1 classifiers), chosen before "
                        "sampling")
    r.add_argument("--images", default=None, metavar="PATH",
                   help="real images for the default range (a folder of image files or an .npz of NHWC arrays, "
                        "brought to the classifier's input size and pixel convention); without them a non-MNIST "
                        "classifier's range comes from uniform random images or the prior, and the JSON's "
                        "'skipped' says so")
    r.add_argument("--n", type=int, default=500)
    r.add_argument("--k", type=int, default=10)
    r.set_defaults(func=_cmd_reproduce)
    for parser in (p, r):
        parser._negative_number_matcher = _NEGATIVE_NUMBER  # the attribute argparse reads it from
