"""Despraz et al. 2017's excitation generators as an experiment returning data, and its figures.

`excite_table` trains generators for targets (from scratch and/or from the shipped DAE's decoder)
and returns one record per target: its final activation, the largest other unit of its layer
(the margin between them), the unmodified classifier's prediction and probability, and the loss
curve. `excite_images_figure` and `loss_curves_figure` draw them (`save_*` write the PNGs).
"""

from __future__ import annotations

import time

import numpy as np

from jaxprobe.codespace.excite import excite, parse_target
from jaxprobe.experiments.figures import (DPI, MIN_WIDTH, _layout, bounded_size, evenly_spaced, pyplot, save_figure,
                                          show_image, wrap)

DEFAULT_TARGETS = ("logits:0", "logits:3", "logits:7", "logits:8", "conv2:5", "logits:3+logits:8")


def target_records(classifier, result) -> list:
    """One record per target of an `ExciteResult`: target, final_activations (one per output unit,
    the last layer with ReLU), target_activations (its layer's readout), target_value (the sum
    over its units), start_value (the same for G before training), max_other (the largest other
    unit of its layer), margin, predicted (the
    unmodified softmax classifier's class), prob (its probability of the predicted class), loss."""
    rows = []
    for i, text in enumerate(result.targets):
        units = list(parse_target(classifier, text).units)
        read = np.asarray(result.activations[i], np.float64)
        others = np.delete(read, units)
        value = float(read[units].sum())
        rows.append({"target": text, "final_activations": [float(v) for v in result.outputs[i]],
                     "target_activations": [float(v) for v in read], "target_value": value,
                     "start_value": float(np.asarray(result.start[i], np.float64)[units].sum()),
                     "max_other": float(others.max()) if others.size else None,
                     "margin": float(read[units].min() - others.max()) if others.size else None,
                     "predicted": int(np.argmax(result.probs[i])), "prob": float(np.max(result.probs[i])),
                     "loss": [float(v) for v in result.loss[i]]})
    return rows


def excite_targets(key, classifier, targets, *, pretrained: bool = False, steps=None, lam=None, chunks: int = 20,
                   progress=None) -> dict:
    """Train one generator per target (`jaxprobe.codespace.excite.excite`, in `chunks` compiled
    chunks) and return {"result": ExciteResult, "rows": `target_records`, "variant", "steps",
    "lambda", "timing": {"compile_s", "seconds_per_step" (the steps' own time, from the chunks
    after the first), "run_s"}}."""
    import jax  # noqa: F401  (the library below needs it imported; kept local like the module's others)

    from jaxprobe.codespace.excite import DEFAULT_LAMBDA, DEFAULT_STEPS, chunk_size
    from jaxprobe.experiments.codespace import StepClock

    variant = "pretrained" if pretrained else "scratch"
    steps = DEFAULT_STEPS[variant] if steps is None else steps
    lam = DEFAULT_LAMBDA if lam is None else lam
    clock = StepClock(progress)
    chunk = chunk_size(steps, chunks) if isinstance(steps, int) and steps >= 1 else None
    res = excite(key, list(targets), classifier=classifier, pretrained=pretrained, steps=steps, lam=lam,
                 chunk=chunk, progress=clock)
    run_s = time.perf_counter() - clock.start
    return {"result": res, "rows": target_records(classifier, res), "variant": variant, "steps": steps,
            "lambda": lam, "timing": {**clock.timing(), "run_s": run_s}}


def excite_table(key, classifier, targets=DEFAULT_TARGETS, *, variants=("scratch", "pretrained"), steps=None,
                 lam=None, progress=None) -> dict:
    """Train every target under each variant; {variant: {"result": ExciteResult, "rows": [...],
    "wall_s": seconds}}. `steps` maps a variant to its step count (None: the defaults); `lam` is
    one lambda or one per target (None: `DEFAULT_LAMBDA`)."""
    import jax

    from jaxprobe.codespace.excite import DEFAULT_LAMBDA

    out = {}
    for j, name in enumerate(variants):
        t0 = time.perf_counter()
        res = excite(jax.random.fold_in(key, j), list(targets), classifier=classifier,
                     pretrained=name == "pretrained", steps=(steps or {}).get(name),
                     lam=DEFAULT_LAMBDA if lam is None else lam, progress=progress)
        out[name] = {"result": res, "rows": target_records(classifier, res), "wall_s": time.perf_counter() - t0}
    return out


VARIANTS = ("scratch", "pretrained")


def target_rank(activations, units) -> int:
    """The rank of a target among its layer's units (Despraz et al. 2017's question: does the
    trained generator excite its target more than any other unit?): 1 + the number of units
    outside the target whose activation is at least the target's weakest unit's. Rank 1: every
    unit of the target beats every other unit; ties count against the target, so a layer all at 0
    (a dead ReLU) ranks it last."""
    a = np.asarray(activations, np.float64).reshape(-1)
    units = list(units)
    return 1 + int(np.sum(np.delete(a, units) >= a[units].min()))


def _default_targets(classifier) -> list:
    """`DEFAULT_TARGETS` where the classifier has their layers (the shipped one), else its classes."""
    from jaxprobe.errors import JaxprobeError
    from jaxprobe.experiments.codespace import class_neurons

    try:
        return [parse_target(classifier, t).text for t in DEFAULT_TARGETS]
    except JaxprobeError:
        return class_neurons(classifier)


def _real_target_values(classifier, parsed, images, batch: int = 64) -> np.ndarray:
    """(m, T) each target's value (its units summed, read as eq. 2 reads them) on real canonical images."""
    import jax
    import jax.numpy as jnp

    from jaxprobe.codespace.excite import layer_readout

    x = np.asarray(images, np.float32)
    to_input = (lambda v: v) if classifier.pixels is None else classifier.pixels.from_canonical
    read = jax.jit(lambda p, x: jnp.stack([layer_readout(classifier, p, x, t.readout)[:, list(t.units)].sum(-1)
                                           for t in parsed], -1))
    return np.concatenate([np.asarray(read(classifier.params, to_input(jnp.asarray(x[i:i + batch]))))
                           for i in range(0, len(x), batch)])


def excite_reproduction(key, classifier, targets=None, *, classes=None, variants=VARIANTS, steps=None, lam=None,
                        images=None, progress=None) -> dict:
    """Despraz et al. 2017's measure for each target and variant (scratch: a fresh Table-2
    generator; pretrained: alpha of the shipped DAE's decoder): the target's final value and its
    rank among its layer's units (`target_rank`), from `excite_targets` (`GROUP` targets a program).

    Args:
      targets: target texts (`parse_target`), or None: the output units `classes` when given, else
        `DEFAULT_TARGETS` where the classifier has their layers, else every class.
      steps: one step count for every variant, or None (each variant's default).
      images: None, or real canonical images in the classifier's input shape: each target's value
        is then also set against its values on them (mean, max, 99th percentile; no labels).
        Without them, MNIST test digits for a classifier that reads MNIST, else no comparison.

    Returns {"variants": {variant: {"rows": [`target_records` row + "rank", "units" (layer
    size), "exceeds_real_max", ...], "images": (T, H, W, C) the generators' images ([0, 1]),
    "steps", "timing"}}, "targets", "skipped": [{"comparison" or "variant", "reason"}],
    "comparison": what the real values are, or None}."""
    from jaxprobe.codespace.excite import DEFAULT_STEPS
    from jaxprobe.experiments.codespace import (GROUP, StepClock, against_real, check_classes, class_neurons,
                                                mnist_reads)
    from jaxprobe.experiments.inverse_set_repro import reference_images

    if targets is None:
        targets = ([class_neurons(classifier)[c] for c in check_classes(classifier, classes)]
                   if classes is not None else _default_targets(classifier))
    parsed = [parse_target(classifier, t) for t in targets]
    skipped, runs = [], {}
    todo = [v for v in variants if v == "scratch" or mnist_reads(classifier)]
    for v in variants:
        if v not in todo:
            skipped.append({"variant": v, "reason": f"the pretrained generator is the shipped DAE's decoder of 28x28 "
                                                    f"MNIST digits; {classifier.name!r} reads "
                                                    f"{tuple(classifier.input_shape)} images"})
    counts = {v: DEFAULT_STEPS[v] if steps is None else steps for v in todo}
    groups = [parsed[i:i + GROUP] for i in range(0, len(parsed), GROUP)]
    total, done = sum(counts[v] * len(groups) for v in todo), 0
    for j, v in enumerate(todo):
        clock, rows, pics, t0 = StepClock(progress), [], [], time.perf_counter()
        for g, part in enumerate(groups):
            run = excite_targets(_fold(key, j, g), classifier, [t.text for t in part], pretrained=v == "pretrained",
                                 steps=counts[v], lam=lam,
                                 progress=lambda d, t=None, base=done: clock(base + int(d), total))
            done += counts[v]
            for t, row in zip(part, run["rows"]):
                rows.append(dict(row, rank=target_rank(row["target_activations"], t.units),
                                 units=len(row["target_activations"])))
            pics.append(np.asarray(run["result"].images))
        runs[v] = {"rows": rows, "images": np.concatenate(pics), "steps": counts[v],
                   "timing": {**clock.timing(), "run_s": time.perf_counter() - t0}}
    real, comparison = images, f"each target's value over all {0 if images is None else len(images)} real images " \
                               "given (no labels: its whole distribution)"
    if real is None and mnist_reads(classifier) and reference_images(None, 1) is not None:
        real, comparison = reference_images(None, 500), "each target's value over 500 MNIST test digits (all classes)"
    if real is None:
        comparison = None
        skipped.append({"comparison": "real", "reason": f"{classifier.name!r} reads "
                        f"{tuple(classifier.input_shape)} images, not MNIST digits, and no real images were given "
                        "(--images)"})
    else:
        values = _real_target_values(classifier, parsed, real)
        for run in runs.values():
            for i, row in enumerate(run["rows"]):
                row.update(against_real(row["target_value"], values[:, i]))
    return {"variants": runs, "targets": [t.text for t in parsed], "skipped": skipped, "comparison": comparison}


def _fold(key, *data):
    """`key` folded with each of `data` in turn (one key per variant and group)."""
    import jax

    for d in data:
        key = jax.random.fold_in(key, d)
    return key


def excite_markdown(rep: dict) -> str:
    """The reproduction's table: per variant and target, its final value, its rank among its
    layer's units, and the largest other unit."""
    lines = ["| variant | target | value | rank | of units | largest other | real max | value > real max |",
             "|---|---|---|---|---|---|---|---|"]
    from jaxprobe.io import fmt_number

    def fmt(v):
        return fmt_number(v, ".4g", "-")

    for v, run in rep["variants"].items():
        for r in run["rows"]:
            above = r.get("exceeds_real_max")
            lines.append(f"| {v} | {r['target']} | {fmt(r['target_value'])} | {r['rank']} | {r['units']} | "
                         f"{fmt(r['max_other'])} | {fmt(r.get('real_max'))} | "
                         f"{'-' if above is None else ('yes' if above else 'no')} |")
    lines.append("")
    for v, run in rep["variants"].items():
        first = sum(r["rank"] == 1 for r in run["rows"])
        lines.append(f"{v}: rank 1 for {first} of {len(run['rows'])} targets ({run['steps']} steps).")
    for skip in rep["skipped"]:
        lines.append(f"Skipped {skip.get('variant') or skip.get('comparison')}: {skip['reason']}.")
    return "\n".join(lines) + "\n"


MAX_IMAGES = 24  # panels of `excite_images_figure`; more are picked evenly, the title says so


def excite_images_figure(images, labels, title: str = "", *, ncol: int = 6, values=None,
                         value_label: str = "p"):
    """One panel per generated image (canonical [0, 1], NHWC), labelled, `ncol` panels a row;
    returns the figure. `values`: optional one number per image printed under its label as
    `value_label` = value (the classifier's probability of its predicted class). The canvas is at
    least `MIN_WIDTH` wide (a one-image figure kept its title inside) and at most `MAX_PIXELS` a
    side: beyond `MAX_IMAGES` images, that many are shown, evenly spaced, and the title says so."""
    plt = pyplot()
    images = np.asarray(images)
    labels = list(labels)
    keep = evenly_spaced(len(images), MAX_IMAGES)
    ncol = max(1, min(int(ncol), len(keep) or 1))
    nrows = max(1, -(-len(keep) // ncol))
    width = max(MIN_WIDTH, 1.5 * ncol + 0.4)
    heading = title + (f"\n{len(keep)} of {len(images)} images shown, evenly spaced" if len(keep) < len(images)
                       else "")
    heading = wrap(heading, width - 0.2, 8) if heading else ""
    lines = 2 + (values is not None)
    fig, axes = plt.subplots(nrows, ncol, figsize=bounded_size(width, (1.5 + 0.16 * lines) * nrows + 0.4
                                                                       + 0.2 * (heading.count("\n") + 1)),
                             dpi=DPI, squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_visible(False)
    for ax, i in zip(axes.ravel(), keep):
        ax.set_visible(True)
        show_image(ax, images[i])
        label = labels[i] if i < len(labels) else ""
        if values is not None:
            label += f"\n{value_label} = {float(np.asarray(values)[i]):.3f}"
        ax.set_title(label, fontsize=7)
    if heading:
        fig.suptitle(heading, fontsize=8)
    _layout(fig, heading, 8)
    return fig


def save_excite_images(path, images, labels, title: str = "", **kwargs) -> None:
    """`excite_images_figure` as a PNG at `path` (`kwargs`: its `ncol`, `values`, `value_label`)."""
    save_figure(excite_images_figure(images, labels, title, **kwargs), path)


MAX_NAMED_CURVES = 10  # beyond this, curves are drawn grey with their median, not one legend entry each


MAX_POINTS = 500  # points drawn per curve: a 5-inch plot shows no more, and 20000-step curves drew for minutes


def loss_curves_figure(losses, labels, title: str = ""):
    """Eq. 2's loss against the step, one line per target; returns the figure. Up to
    `MAX_NAMED_CURVES` targets each get a legend entry; more are drawn thin and grey with their
    median over targets in black (a legend of hundreds of entries leaves the canvas). Curves longer
    than `MAX_POINTS` are drawn at that many evenly spaced steps (the first and last included)."""
    from matplotlib.collections import LineCollection

    plt = pyplot()
    fig, ax = plt.subplots(figsize=bounded_size(5.0, 3.0), dpi=DPI)
    losses = [np.asarray(loss, np.float64).reshape(-1) for loss in losses]

    def thinned(loss):
        keep = evenly_spaced(len(loss), MAX_POINTS)
        return keep + 1, loss[keep]

    if len(losses) <= MAX_NAMED_CURVES:
        for loss, label in zip(losses, labels):
            ax.plot(*thinned(loss), label=label, linewidth=1)
    else:
        ax.add_collection(LineCollection([np.column_stack(thinned(loss)) for loss in losses], colors="0.75",
                                         linewidths=0.5, label=f"each of the {len(losses)} targets"))
        m = min(len(loss) for loss in losses)
        ax.plot(*thinned(np.median([loss[:m] for loss in losses], axis=0)), color="k", linewidth=1.2,
                label="median over targets")
        ax.autoscale_view()
    longest = max((len(loss) for loss in losses), default=0)
    ax.set_xlabel("step" + (f" (every {longest / MAX_POINTS:.2g}th drawn)" if longest > MAX_POINTS else ""),
                  fontsize=8)
    ax.set_ylabel("loss (eq. 2, jittered input)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, loc="upper right")
    if title:
        ax.set_title(wrap(title, 4.5, 8), fontsize=8)
    fig.tight_layout()
    return fig


def save_loss_curves(path, losses, labels, title: str = "") -> None:
    """`loss_curves_figure` as a PNG at `path`."""
    save_figure(loss_curves_figure(losses, labels, title), path)
