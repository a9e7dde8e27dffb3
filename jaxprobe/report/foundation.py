"""The report's first section: the default models, their samples and quality figures."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxprobe.errors import JaxprobeError
from jaxprobe.models.pixels import PixelConvention
from jaxprobe.report.base import Section, render
from jaxprobe.experiments import figures as plots  # plots.save_figure: one place a test can watch
from jaxprobe.experiments.figures import pyplot, save_grid

CANONICAL = PixelConvention(0.0, 1.0, "gray")


def activation_pattern_ids(model, params, z, l, chunk: int = 4096) -> np.ndarray:
    """An id per latent point for its sign pattern at layer l (a 32-bit hash of the pattern).

    Two points share an id iff they lie in the same region, up to hash collisions (about n^2/2^33
    for n distinct patterns: negligible for the few thousand regions a plot shows).
    """
    d = int(np.prod(model.layer_shape(l)))
    weights = jax.random.randint(jax.random.PRNGKey(0), (d,), 0, 2**31 - 1, dtype=jnp.int32).astype(jnp.uint32)

    @jax.jit
    def ids(zc):
        h = model.up_to(params, zc, l).reshape(zc.shape[0], d)
        return jnp.sum(jnp.where(h > 0, weights, jnp.uint32(0)), axis=1, dtype=jnp.uint32)

    z = np.asarray(z, np.float32)
    pad = -len(z) % chunk
    zp = np.concatenate([z, np.zeros((pad, z.shape[1]), np.float32)]) if pad else z
    out = np.concatenate([np.asarray(ids(zp[i : i + chunk])) for i in range(0, len(zp), chunk)])
    return out[: len(z)]


def active_counts(model, params, z, l, chunk: int = 4096) -> np.ndarray:
    """The number of active units (h > 0) at layer l per latent point z (n, d): (n,) int."""
    d = int(np.prod(model.layer_shape(l)))

    @jax.jit
    def count(zc):
        return jnp.sum(model.up_to(params, zc, l).reshape(zc.shape[0], d) > 0, axis=1)

    z = np.asarray(z, np.float32)
    pad = -len(z) % chunk
    zp = np.concatenate([z, np.zeros((pad, z.shape[1]), np.float32)]) if pad else z
    return np.concatenate([np.asarray(count(zp[i : i + chunk])) for i in range(0, len(zp), chunk)])[: len(z)]


# Random colours per region read as regions only while a region spans several grid points; past
# this share of distinct patterns among the points they read as noise (30477 of 40000 did).
RESOLVED = 0.05


def quiet_window(ids, n: int, extent, target: int = 60, block: int = 10):
    """Where to zoom so that regions show: the centre of the `block` x `block` patch of the n x n
    grid `ids` (n * n,) holding the fewest patterns, and a window side expected to hold about
    `target` regions there (regions scale with the area). Returns (cx, cy, side), side at most
    the plane's. The patch with fewest patterns, not the origin: a layer's boundaries crowd where
    its units' hyperplanes meet (dcgan2d's near z = 0, 39890 patterns in a 0.27-wide window)."""
    x0, x1, y0, y1 = extent
    grid = np.asarray(ids).reshape(n, n)
    m = n // block
    counts = np.array([[len(np.unique(grid[r * block:(r + 1) * block, c * block:(c + 1) * block])) for c in range(m)]
                       for r in range(m)])
    r, c = np.unravel_index(np.argmin(counts), counts.shape)
    step = (x1 - x0) / n
    patch = block * step
    k = int(counts[r, c])
    side = patch * np.sqrt(target / k) if k < block * block else patch / 4  # saturated: finer than the grid
    side = float(min(side, x1 - x0))
    cx, cy = x0 + (c + 0.5) * patch, y0 + (r + 0.5) * patch
    half = side / 2
    cx, cy = min(max(cx, x0 + half), x1 - half), min(max(cy, y0 + half), y1 - half)  # inside the plane
    return float(cx), float(cy), side


def regions_figure(ids, extent, n, *, counts=None, zoom=None, layer: int = 1):
    """The latent plane (n x n points over `extent`) coloured by activation pattern `ids` (n * n,):
    one random colour per pattern, i.e. per region (intersection of halfspaces).

    When the patterns are too many to read as regions (more than `RESOLVED` of the points) and
    `counts` (n * n,) is given, the plane is coloured by the number of active units instead (with a
    colour bar). `zoom`: optional (ids, extent, n) of a smaller window, drawn at right with one
    colour per region and its box marked on the plane, so that the regions themselves are seen.
    """
    plt = pyplot()
    from matplotlib.patches import Patch, Rectangle

    ids = np.asarray(ids)
    _, inverse = np.unique(ids, return_inverse=True)
    regions = int(inverse.max() + 1) if inverse.size else 0
    fine = regions > RESOLVED * ids.size
    fig, axes = plt.subplots(1, 2 if zoom is not None else 1, figsize=(10.5 if zoom is not None else 5.2, 5.2),
                             dpi=100, squeeze=False)
    ax = axes[0][0]
    colours = np.random.default_rng(0).random((max(regions, 1), 3)) * 0.8 + 0.2
    if fine and counts is not None:
        im = ax.imshow(np.asarray(counts).reshape(n, n), origin="lower", extent=extent, cmap="viridis",
                       interpolation="nearest")
        fig.colorbar(im, ax=ax, shrink=0.7, pad=0.02).set_label(f"active units at layer {layer}", fontsize=8)
        title = (f"{regions} patterns among {ids.size} grid points:\nregions finer than the grid, so coloured\n"
                 f"by the number of active units")
    else:
        ax.imshow(colours[inverse].reshape(n, n, 3), origin="lower", extent=extent, interpolation="nearest")
        ax.legend(handles=[Patch(color=colours[inverse[0]], label=f"one colour per pattern (region): "
                                                                   f"{regions} in view")],
                  fontsize=7, loc="lower right")
        title = f"one colour per layer-{layer} activation pattern (region)"
        if fine:
            title += f":\n{regions} among {ids.size} grid points,\nmostly finer than the grid"
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.set_title(title, fontsize=8)
    if zoom is not None:
        zids, zext, zn = zoom
        _, zinv = np.unique(np.asarray(zids), return_inverse=True)
        zcol = np.random.default_rng(1).random((zinv.max() + 1, 3)) * 0.8 + 0.2
        ax.add_patch(Rectangle((zext[0], zext[2]), zext[1] - zext[0], zext[3] - zext[2], fill=False, ec="r", lw=1.2,
                               label="zoomed at right"))
        if ax.get_legend() is None:
            ax.legend(fontsize=7, loc="lower right")
        zax = axes[0][1]
        zax.imshow(zcol[zinv].reshape(zn, zn, 3), origin="lower", extent=zext, interpolation="nearest")
        zax.set_xlabel("z[0]")
        zax.set_ylabel("z[1]")
        zax.set_title(f"zoom on a {zext[1] - zext[0]:.2g} x {zext[3] - zext[2]:.2g} window at "
                      f"({(zext[0] + zext[1]) / 2:.2g}, {(zext[2] + zext[3]) / 2:.2g}):\none colour per region",
                      fontsize=8)
        zax.legend(handles=[Patch(color=zcol[zinv[0]], label=f"one colour per pattern (region): {len(zcol)} in view")],
                   fontsize=7, loc="lower right")
    fig.suptitle(f"dcgan2d latent plane by layer-{layer} activation pattern", fontsize=9)
    fig.set_layout_engine("constrained")
    return fig


def models_conclusion(results: dict) -> str:
    """What the default models' numbers say, from `foundation_section`'s results: whether the
    classifier and the fc generator's reconstructions are accurate, whether each generator's
    samples are recognised (mean max class probability) and cover every digit (rarest share
    against 0.1 for a uniform spread)."""
    parts = []
    acc = results.get("classifier_test_accuracy")
    if acc is not None:
        rec = results.get("fc_generator_reconstruction_accuracy")
        word = "accurate" if acc >= 0.98 else "usable" if acc >= 0.9 else "weak"
        parts.append(f"The classifier is {word} ({acc:.4f} on test digits)"
                     + (f" and fc_generator's reconstructions keep their class {rec:.2%} of the time" if rec is not None
                        else ""))
    else:
        parts.append(f"MNIST was {results.get('mnist', 'unavailable')}, so accuracies are missing")
    for name in ("dcgan", "dcgan2d"):
        q = results.get(f"{name}_quality")
        if not q:
            continue
        prob, rare = q["mean_max_prob"], q["min_digit_fraction"]
        seen = ("clear digits" if prob >= 0.9 else "mostly recognisable digits" if prob >= 0.7
                else "often ambiguous images")
        cover = ("every digit" if rare >= 0.05 else "every digit, one rarely" if rare > 0 else "not every digit")
        parts.append(f"{name} makes {seen} (mean max class probability {prob:.3f}) covering {cover} "
                     f"(rarest {rare:.3f} of samples against 0.1 if uniform)")
    return "; ".join(parts) + "."


def foundation_section(ctx) -> Section:
    """The default models: generator samples, the dcgan2d manifold and its layer-1 regions,
    fc_generator reconstructions and every model's quality figures."""
    out = ctx.out_dir
    clf, gen, gen2, inv = (ctx.model(n) for n in ("classifier", "dcgan", "dcgan2d", "fc_generator"))
    results, figures, rows = {}, [], []
    _generator_grids(out, gen, gen2, ctx.key("dcgan samples"), figures)
    _layer1_regions(out, gen2, figures, results)
    _reconstructions(out, clf, inv, figures, rows, results)

    from jaxprobe.train.quality import generator_quality

    for name, g in (("dcgan", gen), ("dcgan2d", gen2)):
        q = generator_quality(g, clf, ctx.key(f"{name} quality"), n=1000)
        results[f"{name}_quality"] = q
        rows.append((f"{name}: mean max class probability (1000 samples)", f"{q['mean_max_prob']:.3f}"))
        rows.append((f"{name}: rarest digit's share", f"{q['min_digit_fraction']:.3f}"))
    results["models"] = {m.name: {"layers": list(m.layer_names),
                                  "training": m.manifest.get("training", {}).get("command")}
                         for m in (clf, gen, gen2, inv)}
    return Section("models", "Default models", render("models.html.j2", rows=rows), figures, results,
                   models_conclusion(results))


# foundation_section's parts: each saves its figures into `out` and appends their (file, caption)
# to `figures`, its table rows to `rows` and its figures to `results`.

def _generator_grids(out, gen, gen2, key, figures: list) -> None:
    """64 dcgan samples (latents from `key`) and dcgan2d's output over a 12 x 12 latent grid, on the
    canonical [0, 1] scale."""
    z = gen.sample_prior(key, 64)
    images = CANONICAL.from_canonical(gen.pixels.to_canonical(jax.jit(gen.forward)(gen.params, z)))
    save_grid(out / "dcgan_samples.png", images, 8, "dcgan: 64 samples from N(0, I)")
    figures.append(("dcgan_samples.png", "64 dcgan images from random latent vectors: they should look like "
                                         "handwritten digits of every class"))

    n = 12
    axis = np.linspace(-2.5, 2.5, n, dtype=np.float32)
    zz = np.stack(np.meshgrid(axis, axis[::-1]), -1).reshape(-1, 2)
    images = gen2.pixels.to_canonical(jax.jit(gen2.forward)(gen2.params, zz))
    save_grid(out / "dcgan2d_manifold.png", images, n, "dcgan2d: G(z) on a grid over [-2.5, 2.5]^2",
              xlabel="z[0]", ylabel="z[1]", column_values=axis, row_values=axis[::-1])
    figures.append(("dcgan2d_manifold.png", "dcgan2d's output over a 12 x 12 grid of its 2-D latent plane: "
                                            "neighbouring images should morph smoothly from one digit into another"))


def _layer1_regions(out, gen2, figures: list, results: dict) -> None:
    """dcgan2d's latent plane [-3, 3]^2 split into its layer-1 activation regions; where they are
    finer than the grid, the count of active units and a zoom where single regions show."""
    side, lim = 200, 3.0
    axis = np.linspace(-lim, lim, side, dtype=np.float32)
    plane = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
    ids = activation_pattern_ids(gen2, gen2.params, plane, 1)
    regions = int(len(np.unique(ids)))
    counts = zoom = None
    if regions > RESOLVED * len(ids):  # too fine to see: a count map, and a zoom where regions show
        counts = active_counts(gen2, gen2.params, plane, 1)
        zoom = _resolved_zoom(gen2, ids, side, lim)
    plots.save_figure(regions_figure(ids, (-lim, lim, -lim, lim), side, counts=counts, zoom=zoom),
                      out / "dcgan2d_layer1_regions.png")
    figures.append(("dcgan2d_layer1_regions.png",
                    "The 2-D latent plane split into regions where the same layer-1 units are active (each a "
                    "polytope on which G is affine up to layer 1)"
                    + (f": {regions} regions among {len(ids)} grid points are finer than the grid, so the plane "
                       f"shows the number of active units and the zoom, where the patterns are fewest, shows "
                       f"single regions" if zoom else "")))
    results["dcgan2d_layer1_regions_in_view"] = regions
    if zoom is not None:
        results["dcgan2d_layer1_zoom"] = {"extent": list(zoom[1]), "regions_in_view": int(len(np.unique(zoom[0])))}


def _resolved_zoom(gen2, ids, side: int, lim: float):
    """(region ids, extent, side) of a side x side window of the plane, centred where the regions are
    fewest and halved (at most 4 times) until its regions show (at most RESOLVED of its points)."""
    cx, cy, width = quiet_window(ids, side, (-lim, lim, -lim, lim))
    for _ in range(4):
        zx = np.linspace(cx - width / 2, cx + width / 2, side, dtype=np.float32)
        zy = np.linspace(cy - width / 2, cy + width / 2, side, dtype=np.float32)
        zids = activation_pattern_ids(gen2, gen2.params, np.stack(np.meshgrid(zx, zy), -1).reshape(-1, 2), 1)
        if len(np.unique(zids)) <= RESOLVED * len(zids):
            break
        width /= 2
    return zids, (float(zx[0]), float(zx[-1]), float(zy[0]), float(zy[-1])), side


def _reconstructions(out, clf, inv, figures: list, rows: list, results: dict) -> None:
    """The fc generator inverts the classifier's fc1 features: x, then G(E(x)), on MNIST test digits,
    with the classifier's accuracy on both (skipped, and said in `results`, without MNIST)."""
    try:
        from jaxprobe.train.data import load_mnist

        test = load_mnist().test
        x, y = test.images, test.labels
    except JaxprobeError as e:
        results["mnist"] = f"unavailable ({e})"
        return
    from jaxprobe.train.quality import classifier_accuracy, reconstruction_accuracy

    layer = inv.manifest["encoder"]["layer"]
    results["classifier_test_accuracy"] = classifier_accuracy(clf, x, y)
    results["fc_generator_reconstruction_accuracy"] = reconstruction_accuracy(inv, clf, layer, x[:2000], y[:2000])
    codes = clf.activation(clf.params, x[:16], layer)
    recon = inv.pixels.to_canonical(jax.jit(inv.forward)(inv.params, codes))
    save_grid(out / "fc_generator_reconstructions.png", np.concatenate([x[:16], recon]), 16,
              "MNIST test digits (top) and fc_generator(E(x)) (bottom)")
    figures.append(("fc_generator_reconstructions.png", "16 test digits (top) and fc_generator's image of "
                                                        "their classifier features (bottom): each pair should "
                                                        "show the same digit"))
    rows.append(("classifier test accuracy (10000 test digits)", f"{results['classifier_test_accuracy']:.4f}"))
    rows.append(("classifier accuracy on fc_generator(E(x)) (2000 test digits)",
                 f"{results['fc_generator_reconstruction_accuracy']:.4f}"))
