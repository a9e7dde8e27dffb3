"""Figures of the experiments, as PNG files written atomically (matplotlib, Agg backend).

Images passed in are NHWC on the canonical [0, 1] scale (`PixelConvention.to_canonical`); one
(H, W, 1) channel is drawn in grey.
"""

from __future__ import annotations

import numpy as np

from jaxprobe.io import atomic_file


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path) -> None:
    """Save a matplotlib figure as a PNG at `path` through a temporary file and a rename; close it."""
    try:
        with atomic_file(path, suffix=".png") as tmp:
            fig.savefig(tmp)
    finally:
        pyplot().close(fig)


def show_image(ax, image) -> None:
    """Draw one canonical (H, W, C) image on `ax`, grey for one channel, without interpolation."""
    image = np.clip(np.asarray(image), 0.0, 1.0)
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")


def image_grid(images, nrow: int) -> np.ndarray:
    """Tile NHWC images (canonical [0, 1]) into one (rows*H, nrow*W, C) array, white where empty."""
    images = np.clip(np.asarray(images), 0.0, 1.0)
    n, h, w, c = images.shape
    rows = -(-n // nrow)
    grid = np.ones((rows * h, nrow * w, c), images.dtype)
    for i in range(n):
        r, k = divmod(i, nrow)
        grid[r * h : (r + 1) * h, k * w : (k + 1) * w] = images[i]
    return grid


def save_grid(path, images, nrow: int, title: str = "", row_labels=None) -> None:
    """Save a grid of canonical images as a PNG, with an optional title and per-row labels."""
    plt = pyplot()
    images = np.asarray(images)
    grid = image_grid(images, nrow)
    h = images.shape[1]
    fig, ax = plt.subplots(figsize=(max(3, grid.shape[1] / 40), max(2, grid.shape[0] / 40 + 0.4)), dpi=100)
    show_image(ax, grid)
    if row_labels:
        ax.set_yticks([h * (i + 0.5) for i in range(len(row_labels))], row_labels)
        ax.set_xticks([])
    else:
        ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def evenly_sorted(values, shown: int) -> np.ndarray:
    """Indices of rows of values (m, p) sorted by column 0, high to low; when m > shown, `shown` of
    them picked evenly along that order (so the whole range of values is shown, not just its top)."""
    values = np.asarray(values).reshape(len(values), -1)
    order = np.argsort(-values[:, 0], kind="stable")
    if len(order) > shown:
        order = order[np.unique(np.linspace(0, len(order) - 1, shown).round().astype(int))]
    return order


def save_sorted_samples(path, sets, title: str, *, shown: int = 100, ncol: int = 10) -> None:
    """PNG of sample sets, each sorted by its first value (high to low) and labelled with its values.

    Args:
      sets: a list of (label, images (m, H, W, C) canonical, values (m, p)); each set takes
        ceil(min(m, shown) / ncol) rows (one when empty), its label left of its first row.
      shown: at most this many panels per set, picked evenly along the sorted order (`evenly_sorted`).
      ncol: panels per row.
    """
    plt = pyplot()
    prepared, rows = [], 0
    for label, images, values in sets:
        values = np.asarray(values, np.float64).reshape(len(values), -1)
        order = evenly_sorted(values, shown)
        n_rows = max(1, -(-len(order) // ncol))
        if len(order) < len(values):
            label = f"{label}\n({len(order)} of {len(values)} shown,\nevenly along the order)"
        prepared.append((label, images, values, order, rows))
        rows += n_rows
    p = max([v.shape[1] for _, _, v, _, _ in prepared] + [1])
    label_w = 1.6 if any(label for label, *_ in prepared) else 0.0
    fig, axes = plt.subplots(rows, ncol, figsize=(1.0 * ncol + label_w, (1.0 + 0.14 * p) * rows + 0.6), dpi=100,
                             squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    for label, images, values, order, first in prepared:
        for c, i in enumerate(order):
            ax = axes[first + c // ncol][c % ncol]
            show_image(ax, images[i])
            ax.set_title("\n".join(f"{v:.3g}" for v in values[i]), fontsize=7)
        if label:
            axes[first][0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
        if not len(order):
            axes[first][0].text(0.5, 0.5, "no samples", ha="center", va="center", fontsize=8)
    fig.suptitle(f"{title}\nsorted by the first value, high to low", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def save_histograms(path, panels, title: str = "") -> None:
    """PNG with one histogram per panel (label, values (m,), (z1, z2)), [z1, z2] shaded."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 2.8), dpi=100, squeeze=False)
    for ax, (label, vals, (z1, z2)) in zip(axes[0], panels):
        ax.axvspan(z1, z2, color="tab:green", alpha=0.15, label="[z1, z2]")
        ax.axvline(z1, color="tab:green")
        ax.axvline(z2, color="tab:green")
        if len(vals):
            ax.hist(vals, bins=min(30, max(5, len(vals) // 5)), color="tab:blue", label="samples")
        ax.set_title(f"{label} (n = {len(vals)})\n[z1, z2] = [{z1:.4g}, {z2:.4g}] shaded", fontsize=8)
        ax.set_xlabel("activation", fontsize=8)
        ax.set_ylabel("samples", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
