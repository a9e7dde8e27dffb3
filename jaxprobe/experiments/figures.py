"""Figures of the experiments, as PNG files written atomically (matplotlib, Agg backend).

Images passed in are NHWC on the canonical [0, 1] scale (`PixelConvention.to_canonical`); one
(H, W, 1) channel is drawn in grey.

Each `save_*` draws with the matching `*_figure` (which returns the matplotlib Figure, so that a
test can inspect it) and writes it with `save_figure`. Every plot states its axes and carries a
legend or a colour bar; `figure_gaps` lists where one does not (pictures, the image grids, are not
plots).
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
    """Draw one canonical (H, W, C) image on `ax`, grey for one channel, without interpolation;
    the axes are marked as holding a picture (`figure_gaps` asks no axis labels of them)."""
    image = np.clip(np.asarray(image), 0.0, 1.0)
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_gid(PICTURE)


PICTURE = "jaxprobe-picture"  # the gid of axes that show generated or real images, not a plot


def figure_gaps(fig) -> list[str]:
    """What a reader of `fig` would miss: for every plot (axes with lines, markers, patches, a
    contour or an image that is not a picture drawn by `show_image`), a missing x or y axis label,
    or neither a legend nor a colour bar. Colour-bar axes and empty axes are skipped.

    Returns one line per gap, naming the axes by its title (empty: nothing is missing).
    """
    gaps = []
    for i, ax in enumerate(fig.axes):
        if hasattr(ax, "_colorbar") or not ax.get_visible():
            continue
        pictures_only = ax.get_gid() == PICTURE
        drawn = ax.lines or ax.collections or ax.patches or (ax.images and not pictures_only)
        if not drawn:
            continue
        name = f"axes {i} ({ax.get_title()!r})"
        if not ax.get_xlabel():
            gaps.append(f"{name}: no x axis label")
        if not ax.get_ylabel():
            gaps.append(f"{name}: no y axis label")
        mappables = list(ax.images) + list(ax.collections)
        if ax.get_legend() is None and not fig.legends and not any(getattr(m, "colorbar", None) for m in mappables):
            gaps.append(f"{name}: neither a legend nor a colour bar")
    return gaps


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


def grid_figure(images, nrow: int, title: str = "", row_labels=None, *, xlabel: str = "", ylabel: str = "",
                column_values=None, row_values=None):
    """A grid of canonical images as a Figure, with an optional title and per-row labels.

    For a grid over a plane (image (r, c) = G at point (column_values[c], row_values[r])), the
    values label the columns and rows and `xlabel`, `ylabel` name the axes.
    """
    plt = pyplot()
    images = np.asarray(images)
    grid = image_grid(images, nrow)
    h, w = images.shape[1:3]
    fig, ax = plt.subplots(figsize=(max(3, grid.shape[1] / 40), max(2, grid.shape[0] / 40 + 0.4)), dpi=100)
    show_image(ax, grid)
    if column_values is not None or row_values is not None:
        ax.set_xticks([w * (i + 0.5) for i in range(len(column_values))], [f"{v:.3g}" for v in column_values],
                      fontsize=7)
        ax.set_yticks([h * (i + 0.5) for i in range(len(row_values))], [f"{v:.3g}" for v in row_values], fontsize=7)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
    elif row_labels:
        ax.set_yticks([h * (i + 0.5) for i in range(len(row_labels))], row_labels)
        ax.set_xticks([])
    else:
        ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def save_grid(path, images, nrow: int, title: str = "", row_labels=None, **axes) -> None:
    """Save a grid of canonical images as a PNG (`grid_figure`; `axes`: its plane's labels and values)."""
    save_figure(grid_figure(images, nrow, title, row_labels, **axes), path)


def heatmaps_figure(maps, title: str, *, row_labels, column_labels, xlabel: str, ylabel: str, label: str):
    """Scalar maps (rows, columns, H, W) tiled into one heatmap on one colour scale (white lines
    between the maps), rows and columns labelled, with a colour bar saying what the values are."""
    plt = pyplot()
    maps = np.asarray(maps, np.float64)
    rows, cols, h, w = maps.shape
    tiled = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1), np.nan)
    for r in range(rows):
        for c in range(cols):
            tiled[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = maps[r, c]
    finite = maps[np.isfinite(maps)]
    vmax = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")
    fig, ax = plt.subplots(figsize=(1.3 * cols + 2.4, 1.3 * rows + 1.0), dpi=100)
    im = ax.imshow(tiled, cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest")
    ax.set_xticks([c * (w + 1) + (w - 1) / 2 for c in range(cols)], column_labels, fontsize=8)
    ax.set_yticks([r * (h + 1) + (h - 1) / 2 for r in range(rows)], row_labels, fontsize=8)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.9).set_label(label, fontsize=8)
    fig.tight_layout()
    return fig


def save_heatmaps(path, maps, title: str, **kwargs) -> None:
    """Save `heatmaps_figure` as a PNG."""
    save_figure(heatmaps_figure(maps, title, **kwargs), path)


def _rows(values) -> np.ndarray:
    """values as (m, p) float64, one row per sample; (0, p) for an empty set (reshape(0, -1) fails)."""
    values = np.asarray(values, np.float64)
    p = values.shape[-1] if values.ndim > 1 else 1
    return values.reshape(len(values), -1) if values.size else values.reshape(0, p)


def evenly_sorted(values, shown: int) -> np.ndarray:
    """Indices of rows of values (m, p) sorted by column 0, high to low; when m > shown, `shown` of
    them picked evenly along that order (so the whole range of values is shown, not just its top)."""
    values = _rows(values)
    order = np.argsort(-values[:, 0], kind="stable")
    if len(order) > shown:
        order = order[np.unique(np.linspace(0, len(order) - 1, shown).round().astype(int))]
    return order


def save_sorted_samples(path, sets, title: str, *, shown: int = 100, ncol: int = 10) -> None:
    """Save `sorted_samples_figure` as a PNG."""
    save_figure(sorted_samples_figure(sets, title, shown=shown, ncol=ncol), path)


def sorted_samples_figure(sets, title: str, *, shown: int = 100, ncol: int = 10):
    """Sample sets, each sorted by its first value (high to low) and labelled with its values.

    Args:
      sets: a list of (label, images (m, H, W, C) canonical, values (m, p)); each set takes
        ceil(min(m, shown) / ncol) rows (one when empty), its label left of its first row.
      shown: at most this many panels per set, picked evenly along the sorted order (`evenly_sorted`).
      ncol: panels per row.
    """
    plt = pyplot()
    prepared, rows = [], 0
    for label, images, values in sets:
        values = _rows(values)
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
    return fig


def save_histograms(path, panels, title: str = "") -> None:
    """Save `histograms_figure` as a PNG."""
    save_figure(histograms_figure(panels, title), path)


def histograms_figure(panels, title: str = ""):
    """One histogram per panel (label, values (m,), (z1, z2)), [z1, z2] shaded."""
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
    return fig
