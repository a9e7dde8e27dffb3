"""Figure helpers shared by report sections (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def image_grid(images, nrow: int) -> np.ndarray:
    """Tile NHWC images (canonical [0, 1]) into one (rows*H, nrow*W, C) array."""
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
    plt = _plt()
    grid = image_grid(images, nrow)
    h = images.shape[1]
    fig, ax = plt.subplots(figsize=(max(3, grid.shape[1] / 40), max(2, grid.shape[0] / 40 + 0.4)), dpi=100)
    ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    if row_labels:
        ax.set_yticks([h * (i + 0.5) for i in range(len(row_labels))], row_labels)
        ax.set_xticks([])
    else:
        ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
