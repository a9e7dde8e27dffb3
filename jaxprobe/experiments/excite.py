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
