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
from jaxprobe.experiments.figures import pyplot, save_figure, show_image

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


def excite_images_figure(images, labels, title: str = ""):
    """One panel per generated image (canonical [0, 1], NHWC), labelled; returns the figure."""
    plt = pyplot()
    images = np.asarray(images)
    n = len(images)
    fig, axes = plt.subplots(1, n, figsize=(1.3 * n + 0.4, 1.8), dpi=100, squeeze=False)
    for ax, image, label in zip(axes[0], images, labels):
        show_image(ax, image)
        ax.set_title(label, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return fig


def save_excite_images(path, images, labels, title: str = "") -> None:
    """`excite_images_figure` as a PNG at `path`."""
    save_figure(excite_images_figure(images, labels, title), path)


def loss_curves_figure(losses, labels, title: str = ""):
    """Eq. 2's loss against the step, one line per target; returns the figure."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 3.0), dpi=100)
    for loss, label in zip(losses, labels):
        ax.plot(np.arange(1, len(loss) + 1), loss, label=label, linewidth=1)
    ax.set_xlabel("step", fontsize=8)
    ax.set_ylabel("loss (eq. 2, jittered input)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6)
    if title:
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig


def save_loss_curves(path, losses, labels, title: str = "") -> None:
    """`loss_curves_figure` as a PNG at `path`."""
    save_figure(loss_curves_figure(losses, labels, title), path)
