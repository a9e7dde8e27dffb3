"""`jaxprobe excite` (Despraz et al. 2017): train generators to excite targets of a classifier.

Runs `jaxprobe.experiments.excite.excite_targets` for every --target in one program and writes
DIR/excite.json ({"targets": [{"target", "final_activations" (one per output unit, ReLU in place
of the output), "target_activations", "margin", "predicted", "prob", "loss"}], and the settings),
DIR/excite_images.png (one image per target), DIR/excite_loss.png (the loss curves) and
DIR/images.npz, and lists every file written. `seconds_per_step` is the steps' own time (the
chunks after the first); `compile_s` and `load_s` are reported apart. DIR is replaced only when
it is new, empty or written by jaxprobe, unless --force.
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
    for name, flag in (("target", "--target"), ("lambda", "--lambda"), ("steps", "--steps"),
                       ("classifier", "--classifier"), ("generator", "--classifier")):
        if message.startswith(name):
            return flag + message[len(name):]
    return message


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
                   help=f"weight of the other units in eq. 2 (default {DEFAULT_LAMBDA}, the reference notebooks')")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output directory (created, or replaced if jaxprobe wrote it)")
    p.add_argument("--force", action="store_true", help="replace --out even if jaxprobe did not write it")
    p.set_defaults(func=_cmd_excite)
