"""`jaxprobe dgn-am` (Nguyen et al. 2016): codes of a generator whose images excite classifier neurons.

Runs `jaxprobe.experiments.codespace.dgn_am_classes` (the reference update; per-unit bounds from
real images with `--bounds real`, none, or a reference bound file) and writes DIR/dgn_am.json
(`seconds_per_step` the steps' own time; `compile_s` and `load_s` apart; the comparisons it skipped
and why), DIR/codes.npz (last and best codes) and one PNG per neuron, and lists every file
written. DIR is replaced only when it is new, empty or written by jaxprobe, unless --force
(`jaxprobe.io.check_replaceable`).

`jaxprobe reproduce dgn-am` measures Nguyen et al. 2016's comparison
(`jaxprobe.experiments.codespace.dgn_am_reproduction`): per class neuron, the synthesized image's
activation against the same neuron's on real images (its class's MNIST digits, or with --images
the whole distribution over them), and writes DIR/reproduce_dgn_am.json, .md, .png and
DIR/codes.npz (best_codes: the images measured; codes: the last).
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
_FLAGS = {"neurons": "--neuron", "steps": "--steps", "bounds": "--bounds", "images": "--images", "classes": "--classes"}
REPRO_JSON, REPRO_MD, REPRO_PNG = "reproduce_dgn_am.json", "reproduce_dgn_am.md", "reproduce_dgn_am.png"


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
    from jaxprobe.models.pixels import image_bridge

    if not args.neuron:
        raise JaxprobeError("--neuron: expected at least one neuron 'layer:unit'")
    check_count("--steps", args.steps, 1)
    check_replaceable(args.out, force=args.force, name="--out")
    t0 = time.perf_counter()
    generator = load_model(args.generator, "--generator", "generator")
    classifier = load_model(args.classifier, "--classifier", "classifier")
    bridge = image_bridge(generator, classifier)  # refused here, before any work, when it cannot be made
    load_s = time.perf_counter() - t0
    with progress_bar("dgn-am", "step", max(args.steps, 0)) as bar:
        try:
            run = dgn_am_classes(jax.random.key(args.seed), generator, classifier, args.neuron, steps=args.steps,
                                 bounds=args.bounds, images=args.images, progress=bar)
        except JaxprobeError as e:
            raise JaxprobeError(flag_names(str(e))) from None
    res = run["result"]
    timing = dict(run["timing"], load_s=load_s + run["timing"]["load_s"], wall_s=time.perf_counter() - t0)
    files = [OUT_FILE, CODES_FILE] + [image_name(row["neuron"]) for row in run["neurons"]]
    record = {"generator": generator.name, "classifier": classifier.name, "image_bridge": bridge,
              "seed": args.seed, "steps": args.steps,
              "bounds": run["bounds"], "images": args.images, "neurons": run["neurons"], "real_mean": run["real"],
              "skipped": run["skipped"], "predicted": [int(v) for v in run["predicted"]],
              **{k: None if v is None else round(v, 6) for k, v in timing.items()}, "files": files}
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
        real = "" if row["real_mean"] is None else f", real mean {row['real_mean']:.4g}"
        stop = f" (stopped after {row['steps_taken']} steps: zero gradient)" if row["stopped"] else ""
        print(f"{row['neuron']}: final {row['final_activation']:.4g}, best {row['best_activation']:.4g}{real}{stop}")
    for skip in run["skipped"]:
        print(f"skipped {skip['comparison']}: {skip['reason']}")
    per = timing["seconds_per_step"]
    compile_s = timing["compile_s"]
    print(f"bounds: {run['bounds']}; {'-' if per is None else format(per, '.4g')} s per step, compile "
          f"{'-' if compile_s is None else format(compile_s, '.3g')} s, load {timing['load_s']:.3g} s")
    out = Path(args.out).resolve()
    for name in files:
        print(f"wrote {out / name}")


def _cmd_reproduce(args) -> None:
    import jax
    import numpy as np

    from jaxprobe.checks import check_count
    from jaxprobe.experiments.codespace import dgn_am_figure, dgn_am_markdown, dgn_am_reproduction
    from jaxprobe.experiments.figures import evenly_spaced, save_figure
    from jaxprobe.experiments.inverse_set_repro import canonical_images
    from jaxprobe.io import atomic_dir, check_replaceable, write_json, write_text
    from jaxprobe.models.pixels import image_bridge

    check_count("--steps", args.steps, 1)
    check_replaceable(args.out, force=args.force, name="--out")
    t0 = time.perf_counter()
    generator = load_model(args.generator, "--generator", "generator")
    classifier = load_model(args.classifier, "--classifier", "classifier")
    bridge = image_bridge(generator, classifier)  # refused here, before any work, when it cannot be made
    try:
        with progress_bar("reproduce dgn-am", "step") as bar:
            rep = dgn_am_reproduction(jax.random.key(args.seed), generator, classifier, classes=args.classes,
                                      steps=args.steps, bounds=args.bounds, images=args.images, progress=bar)
    except JaxprobeError as e:
        raise JaxprobeError(flag_names(str(e))) from None
    best = rep["best_codes"]
    shown = evenly_spaced(len(best), 12)
    pictures = canonical_images(generator, generator.forward(generator.params, best[shown]))  # the figure's only
    record = {"paper": "Nguyen et al. 2016 (DGN-AM): synthesized images against real images", "generator":
              args.generator, "classifier": args.classifier, "image_bridge": bridge, "seed": args.seed,
              "steps": args.steps, "bounds": rep["bounds"], "images": args.images,
              "activation": "each class neuron before the output's nonlinearity (the logit), as the reference's fc8",
              "am_image": "the best code of each chain (codes.npz best_codes), as the reference keeps",
              "comparison": rep["comparison"], "skipped": rep["skipped"], "summary": rep["summary"],
              "neurons": rep["neurons"], "predicted": [int(v) for v in rep["predicted"]],
              **{k: None if v is None else round(v, 6) for k, v in rep["timing"].items()},
              "wall_s": round(time.perf_counter() - t0, 3), "files": [REPRO_JSON, REPRO_MD, REPRO_PNG, CODES_FILE]}
    markdown = dgn_am_markdown(rep)
    with atomic_dir(args.out, force=args.force, name="--out") as tmp:
        write_json(tmp / REPRO_JSON, record)
        write_text(tmp / REPRO_MD, markdown)
        arrays = {"best_codes": best, "codes": rep["codes"], "labels": np.asarray([r["label"] for r in rep["neurons"]])}
        if rep["upper"] is not None:
            arrays.update(lower=rep["lower"], upper=rep["upper"])
        np.savez(tmp / CODES_FILE, **arrays)
        save_figure(dgn_am_figure(rep, pictures, shown), tmp / REPRO_PNG)
    print(markdown, end="")
    out = Path(args.out).resolve()
    print(f"wrote {out / REPRO_JSON}, {out / REPRO_MD}, {out / REPRO_PNG} and {out / CODES_FILE}")


def add_commands(sub, reproduce) -> None:
    """Add `dgn-am` to `sub` (the jaxprobe subparsers) and `dgn-am` to `reproduce`."""
    p = sub.add_parser("dgn-am", help="activation maximization in a generator's code space (Nguyen et al. 2016)",
                       description="Find codes whose generated images maximize classifier neurons (DGN-AM).")
    p.add_argument("--generator", default="fc_generator", help="generator: a shipped name or a model directory")
    p.add_argument("--classifier", default="classifier", help="target network: a shipped name or a model directory")
    p.add_argument("--neuron", action="append", metavar="LAYER:UNIT[@Y,X]", help="a neuron to maximize (repeatable)")
    p.add_argument("--steps", type=int, default=200, help="iterations (default 200, the reference's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bounds", default=None, metavar="real|none|FILE",
                   help="code bounds: real (per unit, from E(x) of real images), none (unbounded), or FILE (the "
                        "reference's per-unit upper bounds, space-separated, lower bound 0). Default: real where "
                        "real images are at hand (--images, or MNIST for MNIST models), else none")
    p.add_argument("--images", default=None, metavar="PATH",
                   help="real images (a folder of image files or an .npz of NHWC arrays) for the bounds and the "
                        "real-mean comparison; default MNIST test digits for MNIST models")
    p.add_argument("--out", required=True, help="output directory (created, or replaced if jaxprobe wrote it)")
    p.add_argument("--force", action="store_true", help="replace --out even if jaxprobe did not write it")
    p.set_defaults(func=_cmd_dgn_am)

    r = reproduce.add_parser("dgn-am", help="Nguyen et al. 2016: each class neuron's DGN-AM image against real images")
    r.add_argument("--generator", default="fc_generator", help="generator: a shipped name or a model directory")
    r.add_argument("--classifier", default="classifier", help="target network: a shipped name or a model directory")
    r.add_argument("--images", default=None, metavar="PATH",
                   help="real images (a folder or an .npz of NHWC arrays): the bounds and the comparison, "
                        "against each neuron's distribution over them (no labels); default MNIST test digits of "
                        "each class for MNIST models")
    r.add_argument("--classes", type=int, nargs="+", default=None, help="output units to run (default all)")
    r.add_argument("--steps", type=int, default=200, help="iterations (default 200, the reference's)")
    r.add_argument("--bounds", default=None, metavar="real|none|FILE",
                   help="code bounds as `jaxprobe dgn-am --bounds` (default real where real images are at hand)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", required=True, help="output directory (created, or replaced if jaxprobe wrote it)")
    r.add_argument("--force", action="store_true", help="replace --out even if jaxprobe did not write it")
    r.set_defaults(func=_cmd_reproduce)
