"""Figures of the experiments, as PNG files written atomically (matplotlib, Agg backend).

Images passed in are NHWC on the canonical [0, 1] scale (`PixelConvention.to_canonical`); one
(H, W, 1) channel is drawn in grey.

Each `save_*` draws with the matching `*_figure` (which returns the matplotlib Figure, so that a
test can inspect it) and writes it with `save_figure`. Every plot states its axes and carries a
legend or a colour bar; `figure_gaps` lists where one does not (pictures, the image grids, are not
plots), and any text that falls outside the canvas or a canvas larger than `MAX_PIXELS` a side.

Figures are sized for reading at any input size: at most `MAX_PIXELS` pixels a side whatever the
number of images, steps or panels (long series are subsampled evenly, or wrapped into a grid, and
the figure says so), at least `MIN_WIDTH` inches wide so that a title fits, titles wrapped to the
canvas.
"""

from __future__ import annotations

import textwrap

import numpy as np

from jaxprobe.io import atomic_file

DPI = 100  # every figure's dots per inch: its pixel size is its size in inches times this
MAX_PIXELS = 2400  # the largest side of any figure, in pixels (a 24-inch page at DPI)
MAX_INCHES = MAX_PIXELS / DPI
MIN_WIDTH = 4.0  # inches: narrower canvases cut a one-line title off (170 px excitation figures did)
MAX_COLUMNS = 24  # images per row of a grid; more are subsampled evenly, the figure says so
MAX_ROWS = 24  # rows of a grid, likewise


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path) -> None:
    """Save a matplotlib figure as a PNG at `path` through a temporary file and a rename; close it."""
    try:
        if fig.get_layout_engine() is not None:
            # Constrained layout settles over two passes: savefig's alone left a figure title over
            # the panel titles of the demo's excitation figure.
            fig.canvas.draw()
        with atomic_file(path, suffix=".png") as tmp:
            fig.savefig(tmp)
    finally:
        pyplot().close(fig)


def bounded_size(width: float, height: float, *, min_width: float = MIN_WIDTH) -> tuple[float, float]:
    """A figure size in inches: at least `min_width` wide, then both sides scaled down together
    (the aspect kept) until neither exceeds `MAX_INCHES` (`MAX_PIXELS` at `DPI`)."""
    width = max(float(width), min_width)
    height = max(float(height), 1.0)
    scale = min(1.0, MAX_INCHES / width, MAX_INCHES / height)
    return width * scale, height * scale


def evenly_spaced(n: int, k: int) -> np.ndarray:
    """Indices of k of range(n) spread evenly from the first to the last (all of them when n <= k)."""
    if n <= k:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max(k, 1)).round().astype(int))


def wrap(text: str, width_in: float, fontsize: float) -> str:
    """`text` with each line wrapped to fit `width_in` inches at `fontsize` points (an average
    character taken as 0.55 em wide), so that a title stays inside its canvas."""
    chars = max(12, int(width_in * 72 / (0.55 * fontsize)))
    return "\n".join(textwrap.fill(line, chars) if line else line for line in text.split("\n"))


def farthest_points(images, k: int, first: int = 0) -> np.ndarray:
    """Indices of k mutually distant images (greedy farthest-point selection in pixel space).

    Starting from `first`, each next index is the image whose smallest Euclidean distance to those
    already chosen is largest (Gonzalez 1985's 2-approximation of the k-centre problem), so that
    near-identical samples show as few panels and the visible differences come first.
    Args: images (n, ...); returns (min(k, n),) int indices, in the order chosen.
    """
    x = np.asarray(images, np.float64).reshape(len(images), -1)
    n = len(x)
    if n == 0 or k <= 0:
        return np.zeros(0, int)
    chosen = [int(first)]
    dist = np.linalg.norm(x - x[first], axis=1)
    dist[first] = -1.0  # never chosen twice, even among exact duplicates
    for _ in range(min(k, n) - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(x - x[nxt], axis=1))
        dist[chosen] = -1.0
    return np.asarray(chosen)


def rms_differences(images) -> np.ndarray:
    """The RMS pixel difference of every pair of images (n, ...) on their own scale: (n(n-1)/2,)."""
    x = np.asarray(images, np.float64).reshape(len(images), -1)
    if len(x) < 2:
        return np.zeros(0)
    i, j = np.triu_indices(len(x), 1)
    return np.sqrt(np.mean((x[i] - x[j]) ** 2, axis=1))


def spread_text(images) -> str:
    """How different images (canonical [0, 1]) are, for a title: the range of their pairwise RMS
    pixel differences ("n/a" below two images)."""
    d = rms_differences(images)
    if not d.size:
        return "RMS pixel difference n/a (one image)"
    return f"RMS pixel difference between them {d.min():.3g} to {d.max():.3g} (pixels in [0, 1])"


def show_image(ax, image) -> None:
    """Draw one canonical (H, W, C) image on `ax`, grey for one channel, without interpolation;
    the axes are marked as holding a picture (`figure_gaps` asks no axis labels of them)."""
    image = np.clip(np.asarray(image), 0.0, 1.0)
    ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_gid(PICTURE)


PICTURE = "jaxprobe-picture"  # the gid of axes that show generated or real images, not a plot


def outside_canvas(fig, draw: bool = True) -> list[str]:
    """The texts of `fig` (titles, labels, tick labels, legends) that reach outside its canvas, by
    their text; empty when `fig.get_tightbbox` lies within the figure (a 1-pixel tolerance).
    `draw=False`: the caller has drawn the figure as it will be saved."""
    if draw:
        fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    w, h = fig.bbox.width, fig.bbox.height
    tight = fig.get_tightbbox(renderer).transformed(fig.dpi_scale_trans)  # inches -> pixels
    if tight.x0 >= -1 and tight.y0 >= -1 and tight.x1 <= w + 1 and tight.y1 <= h + 1:
        return []
    out = []
    from matplotlib.text import Text

    for t in fig.findobj(Text):
        if not t.get_visible() or not t.get_text():
            continue
        b = t.get_window_extent(renderer)
        if b.x0 < -1 or b.y0 < -1 or b.x1 > w + 1 or b.y1 > h + 1:
            out.append(f"text {t.get_text()[:40]!r} outside the canvas")
    return out or ["something drawn outside the canvas"]


def overlapping_title(fig, draw: bool = True) -> list[str]:
    """Where the figure's suptitle overlaps an axes or an axes' title (more than a pixel): one line
    each, naming the axes by its title; empty when the suptitle has a band of its own."""
    sup = getattr(fig, "_suptitle", None)
    if sup is None or not sup.get_visible() or not sup.get_text():
        return []
    if draw:
        fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    top = sup.get_window_extent(renderer)
    out = []
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        boxes = [ax.get_window_extent(renderer)] + ([ax.title.get_window_extent(renderer)] if ax.get_title() else [])
        for b in boxes:
            if min(top.x1, b.x1) - max(top.x0, b.x0) > 1 and min(top.y1, b.y1) - max(top.y0, b.y0) > 1:
                out.append(f"axes {i} ({ax.get_title()[:30]!r}): overlapped by the figure's title")
                break
    return out


def figure_gaps(fig) -> list[str]:
    """What a reader of `fig` would miss: for every plot (axes with lines, markers, patches, a
    contour or an image that is not a picture drawn by `show_image`), a missing x or y axis label,
    or neither a legend nor a colour bar; any text outside the canvas (`outside_canvas`); a figure
    title over the panels (`overlapping_title`); a canvas
    larger than `MAX_PIXELS` a side. Colour-bar axes and empty axes are skipped.

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
    w, h = fig.get_size_inches() * fig.dpi
    if max(w, h) > MAX_PIXELS + 0.5:
        gaps.append(f"figure: {w:.0f} x {h:.0f} px, larger than {MAX_PIXELS} px a side")
    fig.canvas.draw()
    if fig.get_layout_engine() is not None:
        fig.canvas.draw()  # as `save_figure` does: constrained layout settles over two passes
    return gaps + outside_canvas(fig, draw=False) + overlapping_title(fig, draw=False)


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


def _layout(fig, heading: str = "", fontsize: float = 9) -> None:
    """Lay `fig` out with matplotlib's constrained layout, which keeps a suptitle (`heading`) and
    every label inside the canvas without overlapping the panels however the size was bounded
    (tight_layout let a four-line suptitle overlap the first row of a scaled-down chains grid)."""
    fig.set_layout_engine("constrained", h_pad=0.02, w_pad=0.02)


def _subsampled(what: str, kept: int, total: int) -> str:
    return f"{what}: {kept} of {total} shown, evenly spaced from the first to the last"


def grid_figure(images, nrow: int, title: str = "", row_labels=None, *, xlabel: str = "", ylabel: str = "",
                column_values=None, row_values=None, max_columns: int = MAX_COLUMNS, max_rows: int = MAX_ROWS):
    """A grid of canonical images as a Figure, `nrow` images a row, with an optional title and
    per-row labels.

    For a grid over a plane (image (r, c) = G at point (column_values[c], row_values[r])), the
    values label the columns and rows and `xlabel`, `ylabel` name the axes. Beyond `max_columns`
    columns or `max_rows` rows, that many are shown, evenly spaced from the first to the last, and
    the title says so; the canvas stays within `MAX_PIXELS` a side.
    """
    plt = pyplot()
    images = np.asarray(images)
    n, h, w = images.shape[:3]
    cols = max(1, int(nrow))
    rows = max(1, -(-n // cols))
    keep_c, keep_r = evenly_spaced(cols, max_columns), evenly_spaced(rows, max_rows)
    index = np.arange(rows * cols).reshape(rows, cols)[np.ix_(keep_r, keep_c)]
    white = np.ones((1,) + images.shape[1:], images.dtype if n else np.float32)
    shown = np.concatenate([images, white])[np.where(index < n, index, n)].reshape((-1,) + images.shape[1:])
    grid = image_grid(shown, len(keep_c))
    notes = []
    if len(keep_c) < cols:
        notes.append(_subsampled("columns", len(keep_c), cols))
    if len(keep_r) < rows:
        notes.append(_subsampled("rows", len(keep_r), rows))
    text = "\n".join([title] * bool(title) + notes)
    # About 2.5 screen pixels per image pixel, more for small grids (at most 10), fewer where the
    # canvas would pass MAX_PIXELS; the height follows the grid's aspect so that no band is blank.
    gw, gh = grid.shape[1], grid.shape[0]
    per = min(max(1 / 40, 3.0 / gw), 0.1, (MAX_INCHES - 1.2) / gw, (MAX_INCHES - 1.6) / gh)
    labelled = column_values is not None or row_values is not None
    left = 0.9 if (labelled or row_labels) else 0.2
    width = max(MIN_WIDTH, gw * per + left + 0.2)
    fontsize = 9
    # The title is centred over the image, not the canvas: wrapped to the image's width.
    text = wrap(text, min(width - 0.2, max(2.5, gw * per)), fontsize) if text else ""
    top = 0.2 + 0.17 * (text.count("\n") + 1) * bool(text)
    bottom = 0.55 if labelled else 0.15
    fig, ax = plt.subplots(figsize=bounded_size(width, gh * per + top + bottom), dpi=DPI)
    show_image(ax, grid)
    if labelled:
        cv = np.asarray(column_values)[keep_c] if column_values is not None else []
        rv = np.asarray(row_values)[keep_r] if row_values is not None else []
        ax.set_xticks([w * (i + 0.5) for i in range(len(cv))], [f"{v:.3g}" for v in cv], fontsize=7)
        ax.set_yticks([h * (i + 0.5) for i in range(len(rv))], [f"{v:.3g}" for v in rv], fontsize=7)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
    elif row_labels or len(keep_r) < rows:
        labels = list(row_labels) if row_labels else []
        labels += [f"row {i}" for i in range(len(labels), rows)]
        ax.set_yticks([h * (i + 0.5) for i in range(len(keep_r))], [labels[i] for i in keep_r], fontsize=8)
        ax.set_xticks([])
    else:
        ax.axis("off")
    if text:
        ax.set_title(text, fontsize=fontsize)
    fig.tight_layout(pad=0.3)
    return fig


def save_grid(path, images, nrow: int, title: str = "", row_labels=None, **axes) -> None:
    """Save a grid of canonical images as a PNG (`grid_figure`; `axes`: its plane's labels and
    values, `max_columns`, `max_rows`)."""
    save_figure(grid_figure(images, nrow, title, row_labels, **axes), path)


def chains_figure(images, steps, probs=None, title: str = "", *, chain_labels=None, value_label: str = "p",
                  max_columns: int = 12, max_chains: int = 10):
    """Sampling chains as a grid: one row per chain, one column per saved step, each image titled
    with its step and its value (the class probability for PPGN), so that what the chain reaches
    and how sure the classifier is are read together.

    Args:
      images: (c, n, H, W, C) canonical images, chain by saved step.
      steps: (n,) the step of each saved column.
      probs: optional (c, n) values printed under the step as `value_label`=value.
      chain_labels: optional c row labels (default "chain i").
      max_columns, max_chains: beyond these, that many columns (steps) or rows (chains) are shown,
        evenly spaced from the first to the last (the last step is always shown); the title
        states the rule. The canvas stays within `MAX_PIXELS` a side whatever c and n.
    """
    plt = pyplot()
    images = np.asarray(images)
    c, n = images.shape[:2]
    steps = np.asarray(steps).reshape(-1)
    keep_t, keep_c = evenly_spaced(n, max_columns), evenly_spaced(c, max_chains)
    labels = list(chain_labels) if chain_labels is not None else [f"chain {i}" for i in range(c)]
    notes = [f"{len(keep_t)} of {n} saved steps shown, evenly spaced from t = {steps[0]} to t = {steps[-1]}"
             if len(keep_t) < n else f"every saved step, t = {steps[0]} to {steps[-1]}" if n else "no saved step"]
    if len(keep_c) < c:
        notes.append(f"{len(keep_c)} of {c} chains shown, evenly spaced")
    if probs is not None:
        notes.append(f"under each image: its step t and {value_label}")
    rows, cols = max(1, len(keep_c)), max(1, len(keep_t))
    panel = 1.0
    width = max(MIN_WIDTH, panel * cols + 0.9)
    fontsize = 9
    text = wrap("\n".join([title] * bool(title) + notes), width - 0.2, fontsize)
    top = 0.25 + 0.17 * (text.count("\n") + 1)
    fig, axes = plt.subplots(rows, cols, figsize=bounded_size(width, (panel + 0.35) * rows + top), dpi=DPI,
                             squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    for r, i in enumerate(keep_c):
        for k, j in enumerate(keep_t):
            ax = axes[r][k]
            show_image(ax, images[i, j])
            caption = f"t = {steps[j]}"
            if probs is not None:
                caption += f"\n{value_label} = {float(np.asarray(probs)[i, j]):.3f}"
            ax.set_xlabel(caption, fontsize=7, labelpad=2)
        axes[r][0].set_ylabel(labels[i], fontsize=8)
    fig.suptitle(text, fontsize=fontsize)
    _layout(fig, text, fontsize)
    return fig


def save_chains(path, images, steps, probs=None, title: str = "", **kwargs) -> None:
    """Save `chains_figure` as a PNG."""
    save_figure(chains_figure(images, steps, probs, title, **kwargs), path)


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
    width = 1.3 * cols + 2.4
    fig, ax = plt.subplots(figsize=bounded_size(width, 1.3 * rows + 1.0), dpi=DPI)
    im = ax.imshow(tiled, cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest")
    ax.set_xticks([c * (w + 1) + (w - 1) / 2 for c in range(cols)], column_labels, fontsize=8)
    ax.set_yticks([r * (h + 1) + (h - 1) / 2 for r in range(rows)], row_labels, fontsize=8)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(wrap(title, fig.get_figwidth() - 1.5, 9), fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.9).set_label(wrap(label, 1.3 * rows + 0.5, 8), fontsize=8)
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


MAX_SAMPLE_ROWS = 10  # panel rows of `sorted_samples_figure`, all sets together
MAX_SAMPLE_COLUMNS = 10  # its panels a row
MAX_VALUES_SHOWN = 4  # values printed above a panel; more are elided


def sorted_samples_figure(sets, title: str, *, shown: int = 100, ncol: int = 10):
    """Sample sets, each sorted by its first value (high to low) and labelled with its values.

    Args:
      sets: a list of (label, images (m, H, W, C) canonical, values (m, p)); each set takes
        ceil(min(m, shown) / ncol) rows (one when empty), its label left of its first row.
      shown: at most this many panels per set, picked evenly along the sorted order (`evenly_sorted`).
      ncol: panels per row (at most `MAX_SAMPLE_COLUMNS`).
    Beyond `MAX_SAMPLE_ROWS` rows, sets are picked evenly (at most that many) and each keeps fewer
    panels, the title saying so; above a panel, at most `MAX_VALUES_SHOWN` of its values.
    """
    plt = pyplot()
    ncol = max(1, min(int(ncol), MAX_SAMPLE_COLUMNS))
    n_sets = len(sets)
    keep = evenly_spaced(n_sets, MAX_SAMPLE_ROWS)
    per_set = max(1, MAX_SAMPLE_ROWS // max(1, len(keep)))  # panel rows each set may take
    prepared, rows = [], 0
    for s in keep:
        label, images, values = sets[s]
        values = _rows(values)
        order = evenly_sorted(values, min(shown, per_set * ncol))
        n_rows = max(1, -(-len(order) // ncol))
        if len(order) < len(values):
            label = f"{label}\n({len(order)} of {len(values)} shown,\nevenly along the order)"
        prepared.append((label, images, values, order, rows))
        rows += n_rows
    p = min(max([v.shape[1] for _, _, v, _, _ in prepared] + [1]), MAX_VALUES_SHOWN + 1)
    label_w = 1.6 if any(label for label, *_ in prepared) else 0.0
    heading = f"{title}\nsorted by the first value, high to low"
    if len(keep) < n_sets:
        heading += f"; {len(keep)} of {n_sets} sets shown, evenly spaced"
    width = max(MIN_WIDTH, 1.0 * ncol + label_w)
    heading = wrap(heading, width - 0.2, 8)
    fig, axes = plt.subplots(rows, ncol, figsize=bounded_size(width, (1.0 + 0.14 * p) * rows + 0.3
                                                                      + 0.15 * (heading.count("\n") + 1)),
                             dpi=DPI, squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    for label, images, values, order, first in prepared:
        for c, i in enumerate(order):
            ax = axes[first + c // ncol][c % ncol]
            show_image(ax, images[i])
            shown_values = [f"{v:.3g}" for v in values[i][:MAX_VALUES_SHOWN]]
            if len(values[i]) > MAX_VALUES_SHOWN:
                shown_values.append(f"(+{len(values[i]) - MAX_VALUES_SHOWN} more)")
            ax.set_title("\n".join(shown_values), fontsize=7)
        if label:
            axes[first][0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
        if not len(order):
            axes[first][0].text(0.5, 0.5, "no samples", ha="center", va="center", fontsize=8)
    fig.suptitle(heading, fontsize=8)
    _layout(fig, heading, 8)
    return fig


def save_histograms(path, panels, title: str = "", **kwargs) -> None:
    """Save `histograms_figure` as a PNG."""
    save_figure(histograms_figure(panels, title, **kwargs), path)


MAX_PANELS = 12  # histogram panels; more are picked evenly, the title says so


def histograms_figure(panels, title: str = "", *, ncol: int = 2):
    """One histogram per panel (label, values (m,), (z1, z2)), [z1, z2] shaded, wrapped into a grid
    of `ncol` panels a row (a single row of many panels is unreadable at page width). Beyond
    `MAX_PANELS` panels, that many are shown, evenly spaced, the title saying so."""
    plt = pyplot()
    keep = evenly_spaced(len(panels), MAX_PANELS)
    ncol = max(1, min(int(ncol), len(keep) or 1))
    nrows = max(1, -(-len(keep) // ncol))
    width = max(MIN_WIDTH, 4.2 * ncol)
    heading = title + (f"\n{len(keep)} of {len(panels)} panels shown, evenly spaced" if len(keep) < len(panels)
                       else "")
    heading = wrap(heading, width - 0.2, 9) if heading else ""
    fig, axes = plt.subplots(nrows, ncol, figsize=bounded_size(width, 2.9 * nrows + 0.2 * (heading.count("\n") + 1)),
                             dpi=DPI, squeeze=False)
    for ax in axes.ravel()[len(keep):]:
        ax.set_visible(False)
    for ax, i in zip(axes.ravel(), keep):
        label, vals, (z1, z2) = panels[i]
        vals = np.asarray(vals).reshape(-1)
        ax.axvspan(z1, z2, color="tab:green", alpha=0.15, label="[z1, z2]")
        ax.axvline(z1, color="tab:green")
        ax.axvline(z2, color="tab:green")
        if len(vals):
            ax.hist(vals, bins=min(30, max(5, len(vals) // 5)), color="tab:blue", label="samples")
        ax.set_title(wrap(f"{label} (n = {len(vals)})\n[z1, z2] = [{z1:.4g}, {z2:.4g}] shaded", 3.9, 8), fontsize=8)
        ax.set_xlabel("activation", fontsize=8)
        ax.set_ylabel("samples", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    if heading:
        fig.suptitle(heading, fontsize=9)
    _layout(fig, heading, 9)
    return fig
