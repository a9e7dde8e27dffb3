"""`jaxprobe excite` (Despraz et al. 2017): train generators to excite targets of a classifier.

Runs `jaxprobe.experiments.excite.excite_targets` for every --target in one program and writes
DIR/excite.json ({"targets": [{"target", "final_activations" (one per output unit, ReLU in place
of the output), "target_activations", "margin", "predicted", "prob", "loss"}], and the settings),
DIR/excite_images.png (one image per target), DIR/excite_loss.png (the loss curves) and
DIR/images.npz, and lists every file written. `seconds_per_step` is the steps' own time (the
chunks after the first); `compile_s` and `load_s` are reported apart. DIR is replaced only when
it is new, empty or written by jaxprobe, unless --force.

`jaxprobe reproduce excite` measures Despraz et al. 2017's question for each target, from scratch
and from the pretrained decoder (`jaxprobe.experiments.excite.excite_reproduction`): the target's
final activation and its rank among its layer's units (rank 1: the generator excites it most),
and with real images its place in their distribution; writes DIR/reproduce_excite.json, .md,
.png (the generators' images, labelled with their ranks) and DIR/images.npz.
"""

from __future__ import annotations

import time
from pathlib import Path

# Nothing here imports JAX at module level: `jaxprobe --help` builds every command's parser without it.
from jaxprobe.cli.common import load_model, progress_bar
from jaxprobe.errors import JaxprobeError

# `jaxprobe.codespace.excite.DEFAULT_LAMBDA` and `DEFAULT_STEPS` as the parser offers them (a test
# keeps them equal).
DEFAULT_LAMBDA = 0.01
DEFAULT_STEPS = {"scratch": 200, "pretrained": 100}
OUT_FILE = "excite.json"
IMAGES_PNG = "excite_images.png"
LOSS_PNG = "excite_loss.png"
CHUNKS = 20  # compiled chunks per run: one progress tick each
REPRO_JSON, REPRO_MD, REPRO_PNG = "reproduce_excite.json", "reproduce_excite.md", "reproduce_excite.png"
VARIANTS = ("scratch", "pretrained")


def _cmd_excite(args) -> None:
    import jax
    import numpy as np

    from jaxprobe.checks import check_count
    from jaxprobe.experiments.excite import excite_targets, save_excite_images, save_loss_curves
    from jaxprobe.io import atomic_dir, check_replaceable, write_json

    variant = "pretrained" if args.pretrained else "scratch"
    steps = check_count("--steps", DEFAULT_STEPS[variant] if args.steps is None else args.steps, 1)
    check_replaceable(args.out, force=args.force, name="--out")
    t0 = time.perf_counter()
    classifier = load_model(args.classifier, "--classifier", "classifier")
    load_s = time.perf_counter() - t0
    with progress_bar(f"excite ({variant})", "step", steps) as bar:
        try:
            run = excite_targets(jax.random.key(args.seed), classifier, args.target, pretrained=args.pretrained,
                                 steps=steps, lam=args.lam, chunks=CHUNKS, progress=bar)
        except JaxprobeError as e:
            raise JaxprobeError(flag_names(str(e))) from None
    res, rows = run["result"], run["rows"]
    timing = {"load_s": load_s, **run["timing"], "wall_s": time.perf_counter() - t0}
    files = [OUT_FILE, "images.npz", IMAGES_PNG, LOSS_PNG]
    record = {"classifier": classifier.name, "variant": variant, "seed": args.seed, "steps": steps,
              "lambda": args.lam, "targets": rows,
              **{k: None if v is None else round(v, 6) for k, v in timing.items()}, "files": files}
    labels = [f"{r['target']}\n(pred {r['predicted']})" for r in rows]
    with atomic_dir(args.out, force=args.force, name="--out") as tmp:
        write_json(tmp / OUT_FILE, record)
        np.savez(tmp / "images.npz", images=res.images, targets=np.asarray(res.targets))
        save_excite_images(tmp / IMAGES_PNG, res.images, labels,
                           f"Despraz et al. 2017 ({variant}): one generator per target, {steps} steps",
                           values=[r["prob"] for r in rows], value_label="p(predicted)")
        save_loss_curves(tmp / LOSS_PNG, res.loss, list(res.targets), f"eq. 2 loss ({variant})")
    for r in rows:
        print(f"{r['target']}: value {r['target_value']:.3g} (from {r['start_value']:.3g}), margin {r['margin']:.3g}, "
              f"predicted {r['predicted']}")
    per = timing["seconds_per_step"]
    print(f"{'-' if per is None else format(per, '.4g')} s per step, compile "
          f"{'-' if timing['compile_s'] is None else format(timing['compile_s'], '.3g')} s, load {load_s:.3g} s")
    out = Path(args.out).resolve()
    for name in files:
        print(f"wrote {out / name}")


def flag_names(message: str) -> str:
    """A library error message with its leading argument name spelled as the command's flag."""
    for name, flag in (("target", "--target"), ("lambda", "--lambda"), ("steps", "--steps"), ("classes", "--classes"),
                       ("images", "--images"),
                       ("classifier", "--classifier"), ("generator", "--classifier")):
        if message.startswith(name):
            return flag + message[len(name):]
    return message


def _cmd_reproduce(args) -> None:
    import jax
    import numpy as np

    from jaxprobe.checks import check_count
    from jaxprobe.experiments.codespace import check_classes
    from jaxprobe.experiments.excite import excite_markdown, excite_reproduction, save_excite_images
    from jaxprobe.io import atomic_dir, check_replaceable, write_json, write_text

    if args.steps is not None:
        check_count("--steps", args.steps, 1)
    if args.target and args.classes is not None:
        raise JaxprobeError("--target, --classes: expected one of them (targets, or the classes to target)")
    check_replaceable(args.out, force=args.force, name="--out")
    t0 = time.perf_counter()
    classifier = load_model(args.classifier, "--classifier", "classifier")
    if args.classes is not None:
        check_classes(classifier, args.classes, "--classes")
    try:
        images = None
        if args.images is not None:
            from jaxprobe.real_images import load_images

            images = load_images(args.images, tuple(classifier.input_shape)).images
        with progress_bar("reproduce excite", "step") as bar:
            rep = excite_reproduction(jax.random.key(args.seed), classifier, args.target or None, classes=args.classes,
                                      variants=tuple(args.variants or VARIANTS), steps=args.steps, lam=args.lam, images=images,
                                      progress=bar)
    except JaxprobeError as e:
        raise JaxprobeError(flag_names(str(e))) from None
    variants = {v: {"steps": run["steps"], "targets": run["rows"],
                    **{k: None if x is None else round(x, 6) for k, x in run["timing"].items()}}
                for v, run in rep["variants"].items()}
    record = {"paper": "Despraz et al. 2017: generators trained to excite a target; its final activation and rank",
              "classifier": args.classifier, "seed": args.seed, "lambda": args.lam, "images": args.images,
              "rank": "1 + the units of the target's layer outside it whose activation (eq. 2's readout, ReLU in "
                      "place of the output) is at least the target's weakest unit's: 1 = excited most",
              "comparison": rep["comparison"], "skipped": rep["skipped"], "targets": rep["targets"],
              "variants": variants, "wall_s": round(time.perf_counter() - t0, 3),
              "files": [REPRO_JSON, REPRO_MD, REPRO_PNG, "images.npz"]}
    markdown = excite_markdown(rep)
    pics = [(v, row, run["images"][i]) for v, run in rep["variants"].items() for i, row in enumerate(run["rows"])]
    with atomic_dir(args.out, force=args.force, name="--out") as tmp:
        write_json(tmp / REPRO_JSON, record)
        write_text(tmp / REPRO_MD, markdown)
        np.savez(tmp / "images.npz", targets=np.asarray(rep["targets"]),
                 **{f"images_{v}": run["images"] for v, run in rep["variants"].items()})
        if pics:
            save_excite_images(tmp / REPRO_PNG, np.stack([p for _, _, p in pics]),
                               [f"{v} {r['target']}\nrank {r['rank']} of {r['units']}" for v, r, _ in pics],
                               "Despraz et al. 2017: each generator's image, its target's rank",
                               values=[r["target_value"] for _, r, _ in pics], value_label="value")
    print(markdown, end="")
    out = Path(args.out).resolve()
    print(f"wrote {out / REPRO_JSON}, {out / REPRO_MD}, {out / REPRO_PNG} and {out / 'images.npz'}")


def add_commands(sub, reproduce) -> None:
    """Add `excite` to `sub` (the jaxprobe subparsers) and `excite` to `reproduce`."""
    p = sub.add_parser("excite", help="train generators to excite a neuron (Despraz et al. 2017)",
                       description="Train a generator coupled to a frozen classifier (ReLU in place of its "
                                   "output) so that its image excites each target (eq. 2).")
    p.add_argument("--target", action="append", required=True, metavar="LAYER:UNIT[@Y,X][+...]",
                   help="a class (logits:3), a whole filter (conv2:5), one unit (conv2:5@3,3) or a sum of "
                        "units of one layer (logits:3+logits:8); repeat for several")
    p.add_argument("--classifier", default="classifier", help="target network: a shipped name or a model directory")
    p.add_argument("--pretrained", action="store_true",
                   help="train only alpha of the shipped DAE's decoder (default: all of a fresh generator)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"training steps (default {DEFAULT_STEPS['scratch']} scratch, "
                        f"{DEFAULT_STEPS['pretrained']} pretrained)")
    p.add_argument("--lambda", dest="lam", type=float, default=DEFAULT_LAMBDA,
                   help=f"weight of the other units in eq. 2 (default {DEFAULT_LAMBDA}, the reference notebooks')")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output directory (created, or replaced if jaxprobe wrote it)")
    p.add_argument("--force", action="store_true", help="replace --out even if jaxprobe did not write it")
    p.set_defaults(func=_cmd_excite)

    r = reproduce.add_parser("excite", help="Despraz et al. 2017: each target's activation and rank, scratch and "
                                            "pretrained generators")
    r.add_argument("--classifier", default="classifier", help="target network: a shipped name or a model directory")
    r.add_argument("--images", default=None, metavar="PATH",
                   help="real images (a folder or an .npz of NHWC arrays): each target's value against its "
                        "distribution over them; default MNIST test digits for MNIST classifiers")
    r.add_argument("--target", action="append", default=None, metavar="LAYER:UNIT[@Y,X][+...]",
                   help="a target, repeatable (default: the shipped classifier's six of docs/methods/excite.md, "
                        "or every class of another classifier)")
    r.add_argument("--classes", type=int, nargs="+", default=None, help="or: these output units as the targets")
    r.add_argument("--variants", nargs="+", choices=VARIANTS, default=None,
                   help="scratch (a fresh generator), pretrained (alpha of the shipped DAE's decoder; MNIST only); "
                        "default both")
    r.add_argument("--steps", type=int, default=None,
                   help=f"training steps of every variant (default {DEFAULT_STEPS['scratch']} scratch, "
                        f"{DEFAULT_STEPS['pretrained']} pretrained)")
    r.add_argument("--lambda", dest="lam", type=float, default=DEFAULT_LAMBDA,
                   help=f"weight of the other units in eq. 2 (default {DEFAULT_LAMBDA})")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", required=True, help="output directory (created, or replaced if jaxprobe wrote it)")
    r.add_argument("--force", action="store_true", help="replace --out even if jaxprobe did not write it")
    r.set_defaults(func=_cmd_reproduce)
