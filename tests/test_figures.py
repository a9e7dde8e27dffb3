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
