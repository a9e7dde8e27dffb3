"""Every figure states its axes and has a legend or a colour bar (issue 16), and the checker that
says so finds what is missing. No model runs here: the figure builders take arrays."""

import numpy as np
import pytest

from jaxprobe.experiments.figures import (figure_gaps, grid_figure, heatmaps_figure, histograms_figure, pyplot,
                                          sorted_samples_figure)


@pytest.fixture
def plt():
    plt = pyplot()
    yield plt
    plt.close("all")


def test_figure_gaps_finds_missing_labels_legends_and_colour_bars(plt):
    fig, (a, b, c) = plt.subplots(1, 3)
    a.plot([0, 1], [1, 2])  # nothing stated
    b.plot([0, 1], [1, 2], label="series")
    b.set(xlabel="x", ylabel="y")
    b.legend()
    c.imshow(np.random.default_rng(0).random((4, 4)), cmap="viridis")  # a heatmap without a colour bar
    c.set(xlabel="x", ylabel="y")
    gaps = figure_gaps(fig)
    assert sorted(g.split(": ", 1)[1] for g in gaps if g.startswith("axes 0")) == [
        "neither a legend nor a colour bar", "no x axis label", "no y axis label"]
    assert not [g for g in gaps if g.startswith("axes 1")]
    assert [g.split(": ", 1)[1] for g in gaps if g.startswith("axes 2")] == ["neither a legend nor a colour bar"]
    fig.colorbar(c.images[0], ax=c)
    assert [g[:6] for g in figure_gaps(fig)] == ["axes 0"] * 3


def test_every_figure_builder_states_its_axes(plt):
    rng = np.random.default_rng(1)
    images = rng.random((6, 8, 8, 1))
    values = rng.normal(size=(6, 2))
    grid = grid_figure(images, 3, "pictures", row_labels=["a", "b"])
    plane = grid_figure(images, 3, "a plane", xlabel="z[0]", ylabel="z[1]", column_values=[-1, 0, 1],
                        row_values=[1, -1])
    heat = heatmaps_figure(rng.random((2, 3, 8, 8)), "std", row_labels=["E-GBAS", "L2"],
                           column_labels=["layer 1", "layer 2", "layer 3"], xlabel="layer", ylabel="set",
                           label="pixel std")
    hist = histograms_figure([("logits:3", values[:, 0], (-0.5, 0.5)), ("logits:4", values[:0, 1], (0.0, 1.0))])
    samples = sorted_samples_figure([("logits:3", images, values), ("none", images[:0], values[:0])], "samples")
    for fig in (grid, plane, heat, hist, samples):
        assert figure_gaps(fig) == [], fig.axes[0].get_title()
    ax = plane.axes[0]  # a plane's grid names its axes and the coordinates of its rows and columns
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("z[0]", "z[1]")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["-1", "0", "1"]
    bar = [a for a in heat.axes if hasattr(a, "_colorbar")]
    assert len(bar) == 1 and bar[0].get_ylabel() == "pixel std"
    assert [t.get_text() for t in heat.axes[0].get_xticklabels()] == ["layer 1", "layer 2", "layer 3"]
    # The heatmap keeps the values (one colour scale from 0 to the largest), not a rescaled copy.
    assert heat.axes[0].images[0].get_clim()[1] == pytest.approx(float(np.nanmax(heat.axes[0].images[0].get_array())))


def test_regions_figure_has_a_legend(plt):
    from jaxprobe.report.foundation import regions_figure

    ids = np.repeat(np.arange(4), 25)  # 4 regions on a 10 x 10 plane
    fig = regions_figure(ids, (-1, 1, -1, 1), 10)
    assert figure_gaps(fig) == []
    assert "4 in view" in fig.axes[0].get_legend().get_texts()[0].get_text()


def watch_figures(monkeypatch) -> dict:
    """Record `figure_gaps` of every figure saved through `save_figure` from now on: {file name:
    gaps}. Report sections and commands save every figure through it."""
    from jaxprobe.experiments import figures

    seen, save = {}, figures.save_figure

    def recording(fig, path):
        seen[str(getattr(path, "name", path))] = figure_gaps(fig)
        save(fig, path)

    monkeypatch.setattr(figures, "save_figure", recording)
    return seen


# ---------------------------------------------------------------- sized for reading (issue 23)

def _pixels(fig):
    w, h = fig.get_size_inches() * fig.dpi
    return round(w), round(h)


def _texts(fig) -> str:
    """Every text of the figure (suptitle, titles, labels, tick labels), joined."""
    from matplotlib.text import Text

    return "\n".join(t.get_text() for t in fig.findobj(Text))


def _absurd_figures():
    """Every figure builder on absurd inputs: 20000 saved steps, 500 chains / targets / sets /
    panels. Broadcast views keep the memory small; the builders must not copy what they do not show."""
    from jaxprobe.experiments.excite import excite_images_figure, loss_curves_figure
    from jaxprobe.experiments.figures import chains_figure

    rng = np.random.default_rng(2)
    tile = rng.random((1, 1, 8, 8, 1)).astype(np.float32)
    chains = np.broadcast_to(tile, (500, 20000, 8, 8, 1))
    steps = np.arange(20000) * 5
    probs = rng.random((500, 20000))
    flat = np.broadcast_to(tile[0], (2 * 20000, 8, 8, 1))
    values = rng.normal(size=(40, 600))
    return {
        # (at most 4 x 6 panels here, to keep the test short: the bound is the same code at any cap)
        "chains": chains_figure(chains, steps, probs, "PPGN on logits:3", max_columns=6, max_chains=4),
        "grid (2 chains x 20000 steps)": grid_figure(flat, 20000, "PPGN chains", row_labels=["chain 0", "chain 1"]),
        "grid (500 rows)": grid_figure(np.broadcast_to(tile[0], (500 * 12, 8, 8, 1)), 12, "500 rows"),
        "plane grid": grid_figure(np.broadcast_to(tile[0], (300 * 300, 8, 8, 1)), 300, "plane", xlabel="z[0]",
                                  ylabel="z[1]", column_values=np.linspace(-1, 1, 300),
                                  row_values=np.linspace(1, -1, 300)),
        "excite images": excite_images_figure(np.broadcast_to(tile[0], (500, 8, 8, 1)),
                                              [f"logits:{i % 10}\npredicted {i % 10}" for i in range(500)],
                                              "500 targets", values=rng.random(500)),
        "loss curves": loss_curves_figure([rng.random(20000) for _ in range(60)], [str(i) for i in range(60)],
                                          "eq. 2 loss"),
        "histograms": histograms_figure([(f"set {i}", rng.normal(size=20), (-0.5, 0.5)) for i in range(500)],
                                        "500 panels"),
        "sorted samples": sorted_samples_figure([(f"set {i}", np.broadcast_to(tile[0], (40, 8, 8, 1)), values)
                                                 for i in range(500)], "500 sets", shown=1000, ncol=500),
        "heatmaps": heatmaps_figure(rng.random((30, 20, 8, 8)), "std", row_labels=[str(i) for i in range(30)],
                                    column_labels=[str(i) for i in range(20)], xlabel="layer", ylabel="set",
                                    label="pixel std"),
    }


def test_every_figure_builder_is_bounded_labelled_and_inside_its_canvas_for_absurd_inputs(plt, monkeypatch):
    """ppgn_chains.png for 20000 steps was 280 000 x 200 px: every builder now stays within
    MAX_PIXELS a side whatever the run length, says what it left out, and keeps every text inside."""
    from jaxprobe.experiments import excite, figures
    from jaxprobe.experiments.figures import MAX_PIXELS

    # Fewer panels than the defaults (each matplotlib axes costs tens of ms on 2 loaded cores).
    monkeypatch.setattr(figures, "MAX_SAMPLE_ROWS", 4)
    monkeypatch.setattr(figures, "MAX_PANELS", 6)
    monkeypatch.setattr(excite, "MAX_IMAGES", 12)

    for name, fig in _absurd_figures().items():
        w, h = _pixels(fig)
        assert w <= MAX_PIXELS and h <= MAX_PIXELS, (name, w, h)
        assert figure_gaps(fig) == [], name  # axes labelled, titles inside the canvas, size bounded
        plt.close(fig)


def test_long_chains_are_subsampled_with_the_rule_stated_and_each_image_has_its_probability(plt):
    from jaxprobe.experiments.figures import chains_figure

    rng = np.random.default_rng(3)
    c, n = 3, 4000
    images = rng.random((c, n, 6, 6, 1))
    steps = np.arange(n) * 5
    probs = rng.random((c, n))
    fig = chains_figure(images, steps, probs, "chains", max_columns=12, value_label="p")
    text = _texts(fig)
    assert "12 of 4000 saved steps shown, evenly spaced from t = 0 to t = 19995" in text
    panels = [ax for ax in fig.axes if ax.get_gid() == "jaxprobe-picture"]
    assert len(panels) == c * 12
    shown_steps = set()
    for ax in panels:  # the probability beside each image is that image's: look it up by its step
        t, p = (float(line.split(" = ")[1]) for line in ax.get_xlabel().split("\n"))
        j = int(t) // 5
        shown_steps.add(j)
        row = [i for i in range(c) if np.allclose(ax.images[0].get_array(), images[i, j, ..., 0])]
        assert len(row) == 1 and abs(probs[row[0], j] - p) < 5e-4
    assert min(shown_steps) == 0 and max(shown_steps) == n - 1  # first and last always shown
    gaps = np.diff(sorted(shown_steps))
    assert gaps.max() - gaps.min() <= 1  # evenly spaced
    few = chains_figure(images[:, :5], steps[:5], probs[:, :5], "few")
    assert len([a for a in few.axes if a.get_gid() == "jaxprobe-picture"]) == c * 5  # short chains: all shown
    assert "every saved step" in _texts(few)


def test_farthest_points_is_the_greedy_k_centre_choice_and_shows_the_distinct_samples():
    from jaxprobe.experiments.figures import farthest_points, rms_differences, spread_text

    rng = np.random.default_rng(4)
    for _ in range(20):  # against a brute-force greedy over all candidates
        x = rng.normal(size=(int(rng.integers(2, 30)), 5))
        k = int(rng.integers(1, len(x) + 1))
        got = farthest_points(x, k)
        chosen = [0]
        while len(chosen) < k:
            d = [min(np.linalg.norm(x[i] - x[j]) for j in chosen) if i not in chosen else -1 for i in range(len(x))]
            chosen.append(int(np.argmax(d)))
        assert got.tolist() == chosen
        assert len(set(got.tolist())) == len(got)
    # 12 identical samples and 3 distinct ones: the distinct ones come first, never a duplicate.
    base = np.zeros((12, 4, 4, 1))
    odd = rng.random((3, 4, 4, 1))
    pick = farthest_points(np.concatenate([base, odd]), 4)
    assert set(pick.tolist()) >= {12, 13, 14} and len(set(pick.tolist())) == 4
    assert farthest_points(base, 5).tolist() == [0, 1, 2, 3, 4]  # duplicates: still k different indices
    d = rms_differences(odd)
    assert d.shape == (3,) and np.isclose(d[0], np.sqrt(np.mean((odd[0] - odd[1]) ** 2)))
    assert f"{d.min():.3g} to {d.max():.3g}" in spread_text(odd)


def test_a_one_image_figure_keeps_its_title_inside_and_the_check_finds_a_cut_title(plt):
    """excite_images.png was 170 x 180 px with its title cut off."""
    from jaxprobe.experiments.excite import excite_images_figure
    from jaxprobe.experiments.figures import MIN_WIDTH, outside_canvas

    title = "Despraz et al. 2017 (scratch): one generator per target, 200 steps"
    fig = excite_images_figure(np.zeros((1, 28, 28, 1)), ["logits:3\npredicted 3"], title, values=[0.97])
    assert _pixels(fig)[0] >= MIN_WIDTH * fig.dpi and outside_canvas(fig) == []
    assert "p = 0.970" in _texts(fig)  # the probability beside its image
    cut, ax = plt.subplots(figsize=(1.7, 1.8), dpi=100)  # the old size: the check must see the cut title
    ax.imshow(np.zeros((28, 28)))
    cut.suptitle(title, fontsize=8)
    assert outside_canvas(cut) and any("outside the canvas" in g for g in figure_gaps(cut))
    labels = [f"logits:{i}\npredicted {i}" for i in range(6)]
    short = "Despraz et al. 2017, scratch: one generator per target"
    six = excite_images_figure(np.zeros((6, 28, 28, 1)), labels, short, values=np.full(6, 0.9),
                               value_label="p(predicted)")
    assert figure_gaps(six) == []
    over, ax = plt.subplots(figsize=(6, 3), dpi=100)  # a figure title drawn over the panel: the check sees it
    ax.imshow(np.zeros((28, 28)))
    over.suptitle(short, y=0.6)
    assert any("overlapped by the figure's title" in g for g in figure_gaps(over))
    big, _ = plt.subplots(figsize=(30, 3), dpi=100)  # 3000 px wide: the check must see it
    assert any("3000 x 300 px, larger than 2400 px a side" in g for g in figure_gaps(big))


def test_histograms_wrap_into_a_grid_readable_at_page_width(plt):
    """Five panels were one 1800 x 280 row: now at most `ncol` a row."""
    rng = np.random.default_rng(5)
    fig = histograms_figure([(f"p{i}", rng.normal(size=30), (0.0, 1.0)) for i in range(5)], "five", ncol=3)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(shown) == 5
    rows = {round(ax.get_position().y0, 3) for ax in shown}
    assert len(rows) == 2 and _pixels(fig)[0] <= 1300
    assert figure_gaps(fig) == []


def test_a_grid_follows_its_aspect_with_the_title_over_the_images(plt):
    """egbas_plane_samples.png had its title beside the plot and two thirds of the canvas blank."""
    fig = grid_figure(np.random.default_rng(6).random((16, 28, 28, 1)), 8, "the query, then tree nodes")
    fig.canvas.draw()
    ax = fig.axes[0]
    box = ax.get_window_extent()
    image_h = box.width * (2 * 28) / (8 * 28)  # the image's height at the axes' width
    assert image_h / fig.bbox.height > 0.6  # the images fill the canvas, no blank bands
    title = ax.title.get_window_extent()
    assert title.y0 >= box.y0 + image_h - 2  # the title sits above the images


def test_egbas_sample_rows_show_the_most_distinct_samples_with_their_spread():
    """egbas.png showed 12 visually identical digits per row: rows now hold the most distinct
    samples of each set, their spread from the query in the row's label."""
    from types import SimpleNamespace

    import jax.numpy as jnp

    from jaxprobe.experiments.egbas_tables import sample_rows

    class Identity:  # G(z) = z as a 4 x 4 grey image, already on the canonical scale
        pixels = SimpleNamespace(to_canonical=lambda x: x)
        params = None

        def forward(self, params, z):
            return jnp.reshape(z, (z.shape[0], 4, 4, 1))

    rng = np.random.default_rng(7)
    query = np.full(16, 0.5, np.float32)
    near = query + rng.normal(scale=1e-4, size=(20, 16)).astype(np.float32)
    odd = rng.random((3, 16)).astype(np.float32)
    nodes = np.concatenate([query[None], near[:10], odd, near[10:]])
    result = SimpleNamespace(samples=nodes, query=query, eps_l2=0.3, l2_samples=near[:5],
                             linf_samples=np.concatenate([near[:2], odd]))
    grid, labels = sample_rows(result, Identity(), columns=4)
    assert grid.shape == (4, 4, 4, 4, 1)
    row = grid[1].reshape(4, 16)
    for o in odd:  # the three distinct nodes are all shown, and in the Linf row the three distinct draws
        assert np.abs(row - o).max(axis=1).min() < 1e-6
        assert np.abs(grid[3].reshape(4, 16) - o).max(axis=1).min() < 1e-6
    d = np.sqrt(np.mean((row - query) ** 2, axis=1))
    assert labels[1] == f"E-GBAS\nRMS {d.min():.2g}-{d.max():.2g}"
    assert labels[3].startswith("Linf\nRMS")
    grid_random, labels_random = sample_rows(result, Identity(), columns=4, distinct=False)
    assert labels_random[1] == "E-GBAS" and grid_random.shape == grid.shape


def test_the_regions_zoom_goes_where_the_patterns_are_fewest(plt):
    """The layer-1 regions plot was noise ("30477 in view"): the zoom goes where regions are large."""
    from jaxprobe.report.foundation import RESOLVED, quiet_window, regions_figure

    n = 40
    ids = np.arange(n * n).reshape(n, n)  # every point its own pattern...
    ids[20:30, 0:10] = 7  # ...except one 10 x 10 patch, rows 20-29 (z[1] > 0), columns 0-9 (z[0] < -2)
    cx, cy, side = quiet_window(ids.reshape(-1), n, (-4, 4, -4, 4), target=4)
    # the patch centre (-3, 1), moved right until the 4-wide window lies inside the plane
    assert (cx, cy) == pytest.approx((-2.0, 1.0)) and side == pytest.approx(2.0 * np.sqrt(4))
    fine = regions_figure(ids.reshape(-1), (-4, 4, -4, 4), n, counts=np.arange(n * n) % 7,
                          zoom=(np.zeros(100, int), (-4, -2, 0, 2), 10))
    assert len(np.unique(ids)) > RESOLVED * ids.size and figure_gaps(fine) == []
    assert fine.axes[0].images[0].colorbar is not None  # too fine: the count map, with its colour bar
    assert "zoom" in fine.axes[-1].get_title() or "zoom" in fine.axes[1].get_title()
