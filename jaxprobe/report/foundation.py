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


def regions_figure(ids, extent, n):
    """The latent plane (n x n points over `extent`) coloured by activation pattern `ids` (n * n,):
    one random colour per pattern, i.e. per region (intersection of halfspaces)."""
    plt = pyplot()
    from matplotlib.patches import Patch

    _, inverse = np.unique(ids, return_inverse=True)
    colours = np.random.default_rng(0).random((inverse.max() + 1, 3)) * 0.8 + 0.2
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.imshow(colours[inverse].reshape(n, n, 3), origin="lower", extent=extent, interpolation="nearest")
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.set_title("dcgan2d latent plane, coloured by layer-1 activation pattern", fontsize=9)
    ax.legend(handles=[Patch(color=colours[inverse[0]], label=f"one colour per pattern (region): "
                                                               f"{len(colours)} in view")],
              fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def foundation_section(ctx) -> Section:
    """The default models: generator samples, the dcgan2d manifold and its layer-1 regions,
    fc_generator reconstructions and every model's quality figures."""
    out = ctx.out_dir
    clf, gen, gen2, inv = (ctx.model(n) for n in ("classifier", "dcgan", "dcgan2d", "fc_generator"))
    results, figures, rows = {}, [], []

    # Generators' samples, on the canonical [0, 1] scale.
    z = gen.sample_prior(ctx.key("dcgan samples"), 64)
    images = CANONICAL.from_canonical(gen.pixels.to_canonical(jax.jit(gen.forward)(gen.params, z)))
    save_grid(out / "dcgan_samples.png", images, 8, "dcgan: 64 samples from N(0, I)")
    figures.append(("dcgan_samples.png", "dcgan samples"))

    n = 12
    axis = np.linspace(-2.5, 2.5, n, dtype=np.float32)
    zz = np.stack(np.meshgrid(axis, axis[::-1]), -1).reshape(-1, 2)
    images = gen2.pixels.to_canonical(jax.jit(gen2.forward)(gen2.params, zz))
    save_grid(out / "dcgan2d_manifold.png", images, n, "dcgan2d: G(z) on a grid over [-2.5, 2.5]^2",
              xlabel="z[0]", ylabel="z[1]", column_values=axis, row_values=axis[::-1])
    figures.append(("dcgan2d_manifold.png", "dcgan2d latent manifold"))

    side, lim = 200, 3.0
    axis = np.linspace(-lim, lim, side, dtype=np.float32)
    plane = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
    ids = activation_pattern_ids(gen2, gen2.params, plane, 1)
    plots.save_figure(regions_figure(ids, (-lim, lim, -lim, lim), side), out / "dcgan2d_layer1_regions.png")
    figures.append(("dcgan2d_layer1_regions.png", "dcgan2d layer-1 regions (halfspace intersections)"))
    results["dcgan2d_layer1_regions_in_view"] = int(len(np.unique(ids)))

    # The fc generator inverts the classifier's fc1 features: x, then G(E(x)).
    try:
        from jaxprobe.train.data import load_mnist

        test = load_mnist().test
        x, y = test.images, test.labels
    except JaxprobeError as e:
        x = y = None
        results["mnist"] = f"unavailable ({e})"
    if x is not None:
        from jaxprobe.train.quality import classifier_accuracy, reconstruction_accuracy

        layer = inv.manifest["encoder"]["layer"]
        results["classifier_test_accuracy"] = classifier_accuracy(clf, x, y)
        results["fc_generator_reconstruction_accuracy"] = reconstruction_accuracy(inv, clf, layer, x[:2000], y[:2000])
        codes = clf.activation(clf.params, x[:16], layer)
        recon = inv.pixels.to_canonical(jax.jit(inv.forward)(inv.params, codes))
        save_grid(out / "fc_generator_reconstructions.png", np.concatenate([x[:16], recon]), 16,
                  "MNIST test digits (top) and fc_generator(E(x)) (bottom)")
        figures.append(("fc_generator_reconstructions.png", "fc_generator reconstructions"))
        rows.append(("classifier test accuracy (10000 test digits)", f"{results['classifier_test_accuracy']:.4f}"))
        rows.append(("classifier accuracy on fc_generator(E(x)) (2000 test digits)",
                     f"{results['fc_generator_reconstruction_accuracy']:.4f}"))

    from jaxprobe.train.quality import generator_quality

    for name, g in (("dcgan", gen), ("dcgan2d", gen2)):
        q = generator_quality(g, clf, ctx.key(f"{name} quality"), n=1000)
        results[f"{name}_quality"] = q
        rows.append((f"{name}: mean max class probability (1000 samples)", f"{q['mean_max_prob']:.3f}"))
        rows.append((f"{name}: rarest digit's share", f"{q['min_digit_fraction']:.3f}"))
    results["models"] = {m.name: {"layers": list(m.layer_names), "training": m.manifest.get("training", {}).get("command")}
                         for m in (clf, gen, gen2, inv)}
    return Section("models", "Default models", render("models.html.j2", rows=rows), figures, results)
