"""`jaxprobe excite` (Despraz et al. 2017): train generators to excite targets of a classifier.

Runs `jaxprobe.codespace.excite.excite` for every --target in one program and writes
DIR/excite.json ({"targets": [{"target", "final_activations" (one per output unit, ReLU in place
of the output), "target_activations", "margin", "predicted", "prob", "loss"}], and the settings),
DIR/excite_images.png (one image per target), DIR/excite_loss.png (the loss curves) and
DIR/images.npz. DIR is replaced only when it is new, empty or written by jaxprobe, unless --force.
"""

from __future__ import annotations

from pathlib import Path

# Nothing here imports JAX at module level: `jaxprobe --help` builds every command's parser without it.
from jaxprobe.cli.common import load_model, progress_bar
from jaxprobe.errors import JaxprobeError

# `jaxprobe.codespace.excite.DEFAULT_LAMBDA` and `DEFAULT_STEPS` as the parser offers them (a test
# keeps them equal).
DEFAULT_LAMBDA = 1.0
DEFAULT_STEPS = {"scratch": 200, "pretrained": 100}
OUT_FILE = "excite.json"
IMAGES_PNG = "excite_images.png"
LOSS_PNG = "excite_loss.png"
CHUNKS = 20  # compiled chunks per run: one progress tick each


def _cmd_excite(args) -> None:
    import time

    import jax
    import numpy as np

    from jaxprobe.checks import check_count, check_number
    from jaxprobe.codespace.excite import chunk_size, excite
    from jaxprobe.experiments.excite import save_excite_images, save_loss_curves, target_records
    from jaxprobe.io import atomic_dir, check_replaceable, write_json

    variant = "pretrained" if args.pretrained else "scratch"
    steps = check_count("--steps", DEFAULT_STEPS[variant] if args.steps is None else args.steps, 1)
    lam = check_number("--lambda", args.lam, low=0.0, what="a non-negative weight")
    check_replaceable(args.out, force=args.force, name="--out")
    classifier = load_model(args.classifier, "--classifier", "classifier")
    t0 = time.perf_counter()
    with progress_bar(f"excite ({variant})", "step", steps) as bar:
        try:
            res = excite(jax.random.key(args.seed), args.target, classifier=classifier, pretrained=args.pretrained,
                         steps=steps, lam=lam, chunk=chunk_size(steps, CHUNKS), progress=bar)
        except JaxprobeError as e:
            msg = str(e)
            for name, flag in (("target", "--target"), ("lambda", "--lambda"), ("steps", "--steps")):
                if msg.startswith(name):
                    msg = flag + msg[len(name):]
                    break
            raise JaxprobeError(msg) from None
    wall = time.perf_counter() - t0
    rows = target_records(classifier, res)
    record = {"classifier": classifier.name, "variant": variant, "seed": args.seed, "steps": steps, "lambda": lam,
              "targets": rows, "wall_s": round(wall, 2), "seconds_per_step": round(wall / steps, 4)}
    labels = [f"{r['target']}\n(pred {r['predicted']})" for r in rows]
    with atomic_dir(args.out, force=args.force, name="--out") as tmp:
        write_json(tmp / OUT_FILE, record)
        np.savez(tmp / "images.npz", images=res.images, targets=np.asarray(res.targets))
        save_excite_images(tmp / IMAGES_PNG, res.images, labels,
                           f"Despraz et al. 2017 ({variant}): one generator per target, {steps} steps")
        save_loss_curves(tmp / LOSS_PNG, res.loss, list(res.targets), f"eq. 2 loss ({variant})")
    for r in rows:
        print(f"{r['target']}: value {r['target_value']:.3g}, margin {r['margin']:.3g}, predicted {r['predicted']}")
    print(f"wrote {Path(args.out).resolve() / OUT_FILE}")


def add_commands(sub, reproduce) -> None:
    """Add `excite` to `sub` (the jaxprobe subparsers); it has no paper reproduction."""
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
                   help=f"weight of the other units in eq. 2 (default {DEFAULT_LAMBDA})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output directory (created, or replaced if jaxprobe wrote it)")
    p.add_argument("--force", action="store_true", help="replace --out even if jaxprobe did not write it")
    p.set_defaults(func=_cmd_excite)
