"""The report's E-GBAS section (Jeon et al. 2020): boundaries and trees in the plane, sample rows, tables.

* dcgan2d, layer 1 (the paper's Figures 2-5): the latent plane split by the selected boundaries
  (SSGBS) with the query's region GR_V* highlighted; a zoom on the tree with those boundaries as
  lines (each selected unit's zero contour), the tree's edges, accepted and rejected candidates and
  the two eps balls of the baselines; the images of some tree nodes (Figure 3b).
* dcgan, layers 1-4 (Figures 6-7): one query's E-GBAS and L2 samples per layer, and per-pixel
  standard deviations.
* A small version of Tables 1-2 (a few queries, short trees; `jaxprobe reproduce egbas` runs the
  full ones), on the same runs as the sample rows.

Settings are smaller than the command's defaults so that the section stays within about 30 s on
2 CPU cores, compilation included; they are recorded in the section's results.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np

from jaxprobe.experiments.egbas_tables import METHOD_NAMES, METHODS, PAPER, canonical_images, egbas_tables
from jaxprobe.experiments import figures as plots  # plots.save_figure: one place a test can watch
from jaxprobe.experiments.figures import farthest_points, pyplot, save_grid, save_heatmaps
from jaxprobe.gbas.egbas import egbas
from jaxprobe.report.base import Section, finite, render, span

# The plane: delta fixed and small beside the plotted region so that the tree's paths show (the
# default rule, half the region's median extent, draws a handful of long edges in 2-D); the tree
# stops at `capacity` nodes or `max_candidates` candidates.
PLANE = dict(delta=0.05, interval=1.0, capacity=256, max_candidates=1024, batch=64)
# The small tables (and the sample rows, taken from their first query): as `reproduce` (delta by
# the library's default rule), with shorter trees and BerOpt runs.
TABLES = dict(queries=2, delta=None, interval=1.0, capacity=129, max_candidates=256, batch=64,
              beropt_options=dict(steps=150))


def distinct_samples(generator, query, samples, k: int, pad_to: int):
    """Canonical images of the query and of the k most distinct of `samples` (latent (m, ...)):
    (1 + min(k, m), H, W, C) by farthest-point selection in pixel space from the query
    (`farthest_points`), and the range of their RMS pixel difference from the query as text.

    All samples go through G in one batch padded to `pad_to` (>= m) rows with the query, so that
    every call with the same `pad_to` reuses one compiled program."""
    samples = np.asarray(samples).reshape((-1,) + np.asarray(query).shape)[:pad_to]
    z = np.repeat(np.asarray(query)[None], max(pad_to, len(samples)) + 1, axis=0)
    z[1:1 + len(samples)] = samples
    x = canonical_images(generator, z)[: 1 + len(samples)]
    pick = farthest_points(x, 1 + k, first=0)
    shown = x[pick]
    d = np.sqrt(np.mean((shown[1:] - shown[0]) ** 2, axis=tuple(range(1, shown.ndim)))) if len(shown) > 1 else []
    return shown, (f"RMS {span(d, '.2g')}" if len(d) else "RMS n/a")


def egbas_conclusion(plane: dict, t: dict, max_candidates: int, paper: dict = PAPER) -> str:
    """What the E-GBAS numbers say, from the section's plane results and small tables `t`
    (`egbas_tables`): E-GBAS sigma against the paper's range (Table 1), whether critic similarities
    near 1 mean the samples barely leave the query (Table 2) with the plane tree's accepted and
    rejected counts, and how often E-GBAS has the lowest sigma (the paper's claim)."""
    mine = finite(t["sigma"]["egbas"])
    ref = paper["sigma"]["egbas"]
    every = [v for m in paper["sigma"] for v in paper["sigma"][m]]
    parts = []
    if mine:
        lo, hi = min(ref), max(ref)
        med, pmed = float(np.median(mine)), float(np.median(ref))
        where = ("below" if max(mine) < lo else "above" if min(mine) > hi else "within")
        rel = (f", about {pmed / med:.2g} times smaller" if where == "below" and med > 0 else
               f", about {med / pmed:.2g} times larger" if where == "above" else "")
        parts.append(f"E-GBAS sigma is {span(mine, '.2g')}, {where} the paper's {lo:.3f}-{hi:.3f} for E-GBAS "
                     f"({min(every):.3f}-{max(every):.3f} over all three methods){rel}")
    sims = finite(v for m in METHODS for v in t["similarity_mean_over_layers"][m])
    tree = (f"the plane's tree accepted {plane['accepted']} nodes and rejected {plane['n_rejected']} candidates, "
            f"stopping on {str(plane['stop_reason']).replace('_', ' ')}")
    if sims and min(sims) >= 0.99:
        parts.append(f"critic similarities of {span(sims, '.3f')} for all three methods mean the samples barely leave "
                     f"the query: with trees of at most {max_candidates} candidates the sets stay next to it "
                     f"({tree}), so the tables cannot separate the methods as the paper's 0.72-0.99 do")
    elif sims:
        parts.append(f"critic similarities of {span(sims, '.3f')} show the samples moving away from the query in the "
                     f"critic's features, as in the paper's 0.72-0.99 ({tree})")
    claim = [c for c in t.get("claim", {}).get("egbas_lowest_sigma", []) if c is not None]
    if claim:
        parts.append(f"E-GBAS has the lowest sigma at {sum(claim)} of {len(claim)} layers (the paper: at every layer)")
    text = "; ".join(parts)
    return (text[0].upper() + text[1:] + ".") if text else "No table value was defined."


def plane_fields(model, params, z, l, v, chunk: int = 4096):
    """Per latent point: an id of its sign pattern over the selected units, and its region margin.

    Args:
      z: (n, 2) latent points (n a multiple of `chunk`, or smaller than it).
      l: the layer; v: the halfspace indicator V* (D_l,).

    Returns:
      ids (n,) uint32, a 32-bit hash of sign(h_i(z)) over the units with V_i != 0 (points with
      equal ids lie in the same cell of the SSGBS, up to hash collisions); margin (n,) float32,
      min_i V_i h_i(z) over the selected units (z is in GR_V* iff margin >= 0).
    """
    v = jnp.asarray(v, jnp.float32).reshape(-1)

    def fields(zz):
        weights = jax.random.randint(jax.random.PRNGKey(0), v.shape, 0, 2**31 - 1, dtype=jnp.int32)
        weights = jnp.where(v != 0, weights.astype(jnp.uint32), jnp.uint32(0))

        def one(zc):
            h = model.up_to(params, zc, l).reshape(zc.shape[0], -1)
            ids = jnp.sum(jnp.where(h > 0, weights, jnp.uint32(0)), axis=1, dtype=jnp.uint32)
            return ids, jnp.min(jnp.where(v != 0, v * h, jnp.inf), axis=1)

        return jax.lax.map(one, zz)  # chunks bound the (chunk, D_l) pre-activation in memory

    z = jnp.asarray(z, jnp.float32)
    n = z.shape[0]
    chunk = min(chunk, n)
    if n % chunk:
        raise ValueError(f"z: expected a multiple of {chunk} points, got {n}")
    ids, margin = jax.jit(fields)(z.reshape(n // chunk, chunk, -1))
    return np.asarray(ids).reshape(n), np.asarray(margin).reshape(n)


def selected_values(model, params, z, l, v):
    """h_i(z) for the selected units only: (n, n_selected) and the units' indices."""
    sel = np.flatnonzero(np.asarray(v).reshape(-1))
    h = jax.jit(lambda zz: model.up_to(params, zz, l).reshape(zz.shape[0], -1)[:, sel])(jnp.asarray(z, jnp.float32))
    return np.asarray(h), sel


def _plane_figure(path, gen2, r, **kwargs) -> dict:
    """Save `plane_figure` at `path`; returns its counts."""
    fig, info = plane_figure(gen2, r, **kwargs)
    plots.save_figure(fig, path)
    return info


def plane_figure(gen2, r, lim: float = 3.0, side: int = 256, zoom_side: int = 128):
    """Figures 2-5 of the paper for a 2-D latent generator at layer r.layer (see module docstring):
    (Figure, {"selected_boundaries_in_zoom", "walls_in_zoom"})."""
    plt = pyplot()
    from matplotlib.patches import Patch

    z0 = r.query.reshape(-1)
    nodes = r.samples.reshape(len(r.samples), -1)
    rej = r.rejected.reshape(len(r.rejected), z0.size)  # (0, 2) when nothing was rejected
    lo, hi = _zoom_box(np.concatenate([nodes, rej, z0[None]]))
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2), dpi=100)
    _whole_plane(axes[0], gen2, r, lim, side, lo, hi)
    crossing, walls = _zoom(axes[1], gen2, r, lo, hi, zoom_side)
    handles = axes[1].get_legend_handles_labels()[0] + [Patch(color=plt.get_cmap("Blues")(1 / 3), label="GR_V*")]
    axes[1].legend(handles=handles, fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig, {"selected_boundaries_in_zoom": crossing, "walls_in_zoom": walls}


def _zoom_box(pts):
    """(lo, hi) corners of the zoom: the square around `pts` (N, 2) with a 15% margin (at least 0.06)."""
    lo, hi = pts.min(0), pts.max(0)
    pad = 0.15 * max(float((hi - lo).max()), 0.4)
    lo, hi = lo - pad, hi + pad
    half = 0.5 * float((hi - lo).max())
    mid = 0.5 * (lo + hi)
    return mid - half, mid + half


def _whole_plane(ax, gen2, r, lim, side, lo, hi):
    """Panel (a), the whole plane: cells of the selected units' sign pattern, GR_V* bright, the zoom's box."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    l, v, z0 = r.layer, r.v_star, r.query.reshape(-1)
    axis = np.linspace(-lim, lim, side, dtype=np.float32)
    plane = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
    ids, margin = plane_fields(gen2, gen2.params, plane, l, v)
    _, cell = np.unique(ids, return_inverse=True)
    colours = np.random.default_rng(0).random((cell.max() + 1, 3)) * 0.35 + 0.55
    img = colours[cell]
    img[margin >= 0] = (0.35, 0.55, 1.0)
    ax.imshow(img.reshape(side, side, 3), origin="lower", extent=(-lim, lim, -lim, lim), interpolation="nearest")
    ax.plot(*z0, "r*", ms=12, mec="k")
    ax.add_patch(Rectangle(lo, *(hi - lo), fill=False, ec="k", lw=1))
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), xlabel="z[0]", ylabel="z[1]")
    ax.set_title(f"SSGBS cells at layer {l} ({int(np.count_nonzero(v))}/{v.size} units selected);\n"
                 "blue: the query's region GR_V*; box: zoom", fontsize=9)
    ax.legend(handles=[Patch(color=(0.35, 0.55, 1.0), label="GR_V* (the query's region)"),
                       Patch(color=colours[0], label="another cell of the selected units' signs"),
                       Line2D([], [], color="r", marker="*", ms=10, mec="k", ls="", label="query"),
                       Patch(fill=False, ec="k", label="zoomed at right")], fontsize=7, loc="lower right")


def _zoom(ax, gen2, r, lo, hi, zoom_side):
    """Panel (b), the zoom: GR_V*, the selected boundaries that delimit it, the tree, rejected points
    and the eps balls; returns (selected boundaries crossing the view, walls drawn)."""
    from matplotlib.collections import LineCollection
    from matplotlib.patches import Circle, Rectangle

    v, z0 = r.v_star, r.query.reshape(-1)
    nodes = r.samples.reshape(len(r.samples), -1)
    rej = r.rejected.reshape(len(r.rejected), z0.size)
    za = np.linspace(lo[0], hi[0], zoom_side, dtype=np.float32)
    zb = np.linspace(lo[1], hi[1], zoom_side, dtype=np.float32)
    grid = np.stack(np.meshgrid(za, zb), -1).reshape(-1, 2)
    h, _ = selected_values(gen2, gen2.params, grid, r.layer, v)
    vh = h.reshape(zoom_side, zoom_side, -1) * np.asarray(v).reshape(-1)[np.flatnonzero(v)]
    # With no unit selected (an empty V*) the region is the whole plane and nothing walls it in;
    # `initial` keeps the reductions defined over the zero selected units.
    member = vh.min(axis=2, initial=np.inf) >= 0
    ax.imshow(member, origin="lower", extent=(lo[0], hi[0], lo[1], hi[1]), cmap="Blues", vmin=0, vmax=3,
              interpolation="nearest", alpha=0.9)
    crossing = int(np.count_nonzero((vh.min(axis=(0, 1), initial=np.inf) < 0)
                                    & (vh.max(axis=(0, 1), initial=-np.inf) > 0)))
    walls = _walls(vh, member)
    for i in walls:  # one zero contour per wall
        ax.contour(za, zb, vh[:, :, i], levels=[0.0], colors="0.25", linewidths=0.9)
    parents = r.tree.accepted_parents()
    edges = np.stack([nodes[parents[1:]], nodes[1:]], axis=1)
    ax.add_collection(LineCollection(edges, colors="k", linewidths=0.6))
    ax.plot(nodes[1:, 0], nodes[1:, 1], "k.", ms=3, label=f"accepted ({len(nodes) - 1})")
    if len(rej):
        ax.plot(rej[:, 0], rej[:, 1], "rx", ms=4, mew=0.8, label=f"rejected ({int(r.tree.n_rejected)})")
    if np.isfinite(r.eps_l2):
        ax.add_patch(Circle(z0, r.eps_l2, fill=False, ec="tab:orange", ls="--", lw=1.2, label="L2 ball"))
        a = r.eps_linf
        ax.add_patch(Rectangle(z0 - a, 2 * a, 2 * a, fill=False, ec="tab:green", ls="--", lw=1.2,
                               label="Linf ball (same area)"))
    ax.plot(*z0, "r*", ms=12, mec="k", label="query")
    ax.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]), xlabel="z[0]", ylabel="z[1]", aspect="equal")
    ax.set_title(f"GB-RRT in GR_V* (delta {PLANE['delta']}); lines: the {len(walls)} selected\n"
                 f"boundaries that wall it in view ({crossing} cross the view)", fontsize=9)
    return crossing, int(len(walls))


def _walls(vh, member):
    """The selected units walling GR_V* in: at grid points just outside it (next to a member), the
    most violated one. Contouring every crossing boundary (hundreds) took seconds."""
    near = np.zeros_like(member)
    near[1:] |= member[:-1]
    near[:-1] |= member[1:]
    near[:, 1:] |= member[:, :-1]
    near[:, :-1] |= member[:, 1:]
    return np.unique(np.argmin(vh[near & ~member], axis=1)) if vh.shape[2] else np.zeros(0, int)


def egbas_section(ctx) -> Section:
    """E-GBAS figures and small tables on the default dcgan2d, dcgan and dcgan's critic."""
    out = ctx.out_dir
    gen2, gen = ctx.model("dcgan2d"), ctx.model("dcgan")
    critic = ctx.model(gen.manifest.get("critic") or "dcgan_critic")
    results, figures = {"settings": {"plane": PLANE, "tables": TABLES}}, []

    # dcgan2d, layer 1: Figures 2-5.
    z0 = gen2.sample_prior(ctx.key("egbas plane query"), 1)[0]
    r = egbas(ctx.key("egbas plane"), gen2, gen2.params, z0, 1, **PLANE)
    results["plane"] = {"query": r.query.tolist(), "selected": int(np.count_nonzero(r.v_star)),
                        "units": int(r.v_star.size), "accepted": int(r.tree.count),
                        "n_rejected": int(r.tree.n_rejected),
                        "stop_reason": r.tree.stop_reason_name(), "eps_l2": r.eps_l2, "eps_linf": r.eps_linf}
    results["plane"].update(_plane_figure(out / "egbas_plane.png", gen2, r))
    figures.append(("egbas_plane.png", "dcgan2d, layer 1: selected boundaries (SSGBS), the query's region, GB-RRT "
                                       "tree, rejected candidates and the eps balls (paper Figures 2-5)"))
    imgs, spread = distinct_samples(gen2, r.query, r.samples[1:], 15, PLANE["capacity"])
    save_grid(out / "egbas_plane_samples.png", imgs, min(8, len(imgs)),
              f"dcgan2d: the query (first), then the {len(imgs) - 1} most distinct of {len(r.samples) - 1} tree "
              f"nodes (farthest-point); {spread} from the query (pixels in [0, 1])")
    results["plane"]["samples_rms_from_query"] = spread
    figures.append(("egbas_plane_samples.png",
                    "G(z) of the query (first) and of the tree nodes that differ most from each other (paper "
                    "Figure 3b): inside one region the digit should keep its identity while its stroke varies; "
                    "a row of near-copies means the tree stayed close to the query"))

    # dcgan, layers 1-4: small tables; the first query's runs give the sample rows (Figures 6-7).
    runs = {}

    def keep(q, l, res, metrics):
        if q == 0:
            runs[l] = (res, metrics["std_maps"])

    t = egbas_tables(ctx.key("egbas tables"), gen, critic, layers=range(1, gen.n_layers + 1), on_run=keep, **TABLES)
    results["tables"] = {k: t[k] for k in ("sigma", "similarity", "similarity_mean_over_layers", "claim",
                                           "queries_with_baselines", "wall_s", "sigma_scale")}
    results["tables"]["n_samples"] = t["per_query"]["n_samples"]
    rows, labels, stds, spreads = [], [], [], {}
    columns = 10
    for l, (res, std) in runs.items():
        row_e, spread_e = distinct_samples(gen, res.query, res.samples[1:], columns - 1, TABLES["capacity"])
        l2 = res.l2_samples if np.isfinite(res.eps_l2) else res.samples[:0]
        row_l2, spread_l2 = distinct_samples(gen, res.query, l2, columns - 1, TABLES["capacity"])
        for row in (row_e, row_l2):
            rows.append(np.concatenate([row, np.ones((columns - len(row),) + row.shape[1:], row.dtype)]))
        labels += [f"l{l} E-GBAS\n{spread_e}", f"l{l} L2\n{spread_l2}" if len(l2) else f"l{l} L2 (no eps)"]
        spreads[l] = {"egbas": spread_e, "l2": spread_l2}
        stds.append(np.nan_to_num(std[:2]))  # E-GBAS and L2 (0 where undefined)
    results["layer_rows_rms_from_query"] = spreads
    save_grid(out / "egbas_layers.png", np.concatenate(rows), columns,
              f"dcgan, first query: the query (first column), then the {columns - 1} most distinct E-GBAS and L2 "
              f"samples (farthest-point) by target layer; each row's label gives the range of their RMS pixel "
              f"difference from the query (pixels in [0, 1])", row_labels=labels)
    figures.append(("egbas_layers.png",
                    "E-GBAS against L2-ball samples for generator layers 1-4 (paper Figures 6-7), the most distinct "
                    "samples of each set: in the paper the samples vary most at layer 1 and least at layer 4 (Table "
                    "1's sigma falls from 0.078 to 0.032); rows of near-copies mean the sets stay at the query"))
    std = np.asarray(stds, np.float64).mean(-1)  # (layers, 2, H, W): over colour channels
    pix = gen.pixels
    scale = f"generator output [{pix.low:g}, {pix.high:g}]" if pix else "generator output scale"
    save_heatmaps(out / "egbas_std.png", std.transpose(1, 0, 2, 3), f"pixel std of the samples, layers 1-{len(runs)}",
                  row_labels=["E-GBAS", "L2"], column_labels=[f"layer {l}" for l in runs],
                  xlabel="generator layer whose boundaries constrain the samples", ylabel="sample set",
                  label=f"per-pixel standard deviation ({scale})")
    figures.append(("egbas_std.png",
                    "Per-pixel standard deviation of each sample set (paper Figure 6, first row): bright where the "
                    "samples differ; E-GBAS should vary along the digit's strokes, L2 everywhere"))

    text = render("egbas.html.j2", plane=results["plane"], t=t, methods=METHODS, names=METHOD_NAMES, paper=PAPER)
    return Section("egbas", "E-GBAS: generative boundaries and regions (Jeon et al. 2020)", text, figures, results,
                   egbas_conclusion(results["plane"], t, TABLES["max_candidates"]))
