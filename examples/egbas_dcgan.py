"""E-GBAS on the shipped dcgan: BerOpt, GB-RRT in the selected region, and the eps-ball baselines.

Writes to OUT:
  egbas_region.png   a 2-D slice of the 100-d latent space through the query z0: where the slice
                     lies in the region GR_V* (green) and the margin min_i V*_i h_i(z) (contours),
                     with the tree's nodes and edges projected onto the slice;
  egbas_samples.png  G(z) for the query and for samples of E-GBAS, the L2 ball and the Linf cube.

    python examples/egbas_dcgan.py --out examples-out/egbas [--layer 2] [--seed 0] [--smoke]

`--smoke` (or JAXPROBE_EXAMPLES_SMOKE=1) runs a few steps only, to check that the example works.
"""

from __future__ import annotations

import argparse
import sys
import os
from pathlib import Path

import jax
import numpy as np
from matplotlib.colors import ListedColormap

import jaxprobe
from jaxprobe.io import atomic_dir
from jaxprobe.experiments.figures import pyplot, save_figure, save_grid


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="examples-out/egbas", help="directory for the figures")
    p.add_argument("--force", action="store_true", help="replace --out even if jaxprobe did not write it")
    p.add_argument("--layer", default="2", help="generator layer, a number 1..4 or a name (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", default=os.environ.get("JAXPROBE_EXAMPLES_SMOKE") == "1",
                   help="a few steps only (also JAXPROBE_EXAMPLES_SMOKE=1)")
    return p.parse_args(argv)


def slice_axes(result, rng):
    """Two orthonormal latent directions through z0: towards the two tree nodes farthest from it
    (the directions the tree explored), completed by random directions when the tree is small."""
    z0 = result.query.reshape(-1)
    offsets = result.samples.reshape(len(result.samples), -1)[1:] - z0
    order = np.argsort(-np.linalg.norm(offsets, axis=1))
    candidates = [offsets[i] for i in order[:2]] + [rng.normal(size=z0.size) for _ in range(2)]
    axes = []
    for v in candidates:
        for a in axes:
            v = v - (v @ a) * a
        if np.linalg.norm(v) > 1e-6:
            axes.append(v / np.linalg.norm(v))
        if len(axes) == 2:
            return np.stack(axes)


def region_picture(path, g, result, axes, side: int):
    """The slice z0 + s a_1 + t a_2: membership of GR_V* and its margin, the tree projected on it."""
    z0 = result.query.reshape(-1)
    rel = result.samples.reshape(len(result.samples), -1) - z0
    coords = rel @ axes.T  # the nodes' projections onto the slice
    lim = max(1.0, 1.5 * float(np.abs(coords).max()))
    s = np.linspace(-lim, lim, side, dtype=np.float32)
    grid = z0 + s[None, :, None] * axes[0] + s[:, None, None] * axes[1]  # (side, side, d), rows = t
    z = grid.reshape(-1, *g.input_shape).astype(np.float32)
    margin = np.asarray(jaxprobe.region_margin(g, g.params, z, result.layer, result.v_star)).reshape(side, side)
    inside = margin >= 0  # region_membership's test, from the same forward pass

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4.6), dpi=100)
    ax.imshow(inside.astype(float), origin="lower", extent=(-lim, lim, -lim, lim), vmin=0, vmax=1,
              cmap=ListedColormap(["white", "#b7e4b0"]), interpolation="nearest")
    ax.contour(s, s, margin, levels=8, colors="0.5", linewidths=0.5)
    ax.contour(s, s, margin, levels=[0.0], colors="tab:green", linewidths=1.5)
    parents = result.tree.accepted_parents()
    for i, p in enumerate(parents):
        if p >= 0:
            ax.plot(coords[[p, i], 0], coords[[p, i], 1], color="tab:blue", lw=0.6)
    ax.scatter(coords[1:, 0], coords[1:, 1], s=6, color="tab:blue", label="tree nodes (projected)")
    ax.scatter([0], [0], marker="*", s=160, color="tab:red", zorder=5, label="query z0")
    ax.set_xlabel("a1 (towards the farthest node)")
    ax.set_ylabel("a2")
    n_sel = int(np.count_nonzero(result.v_star))
    ax.set_title(f"dcgan layer {result.layer}: region of {n_sel} selected boundaries on a 2-D slice\n"
                 "green: in GR_V*, white: outside; lines: margin min_i V*_i h_i(z), thick at 0", fontsize=8)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    save_figure(fig, path)
    return float(inside.mean())


def main(argv=None) -> None:
    args = parse_args(argv)
    with atomic_dir(args.out, force=args.force, name="--out") as out:
        layer = int(args.layer) if args.layer.isdigit() else args.layer

        g = jaxprobe.load("dcgan")
        k_query, k_run = jax.random.split(jax.random.PRNGKey(args.seed))
        z0 = g.sample_prior(k_query, 1)[0]
        if args.smoke:
            settings = dict(capacity=16, max_candidates=64, batch=16, beropt_options={"steps": 10})
        else:
            settings = dict(capacity=256, max_candidates=4096, batch=64, beropt_options={"steps": 300})
        # delta 0.5 as `jaxprobe reproduce egbas`: large enough that trees at every layer reach the
        # region's boundary and reject candidates, so both eps-ball baselines exist.
        r = jaxprobe.egbas(k_run, g, g.params, z0, layer, delta=0.5, **settings)

        fraction = region_picture(out / "egbas_region.png", g, r, slice_axes(r, np.random.default_rng(args.seed)),
                                  side=24 if args.smoke else 96)
        shown = 4 if args.smoke else 12
        sets = [("query", r.query[None]), ("E-GBAS", r.samples[1:]), ("L2 ball", r.l2_samples),
                ("Linf cube", r.linf_samples)]
        sets = [(label, np.asarray(z)) for label, z in sets if len(z) and np.all(np.isfinite(z))]
        # One forward pass for every set (eager calls compile each operation anew per batch shape).
        images = np.asarray(g.forward(g.params, np.concatenate([z for _, z in sets])))
        per_set = np.split(images, np.cumsum([len(z) for _, z in sets])[:-1])
        rows = []
        for x in per_set:
            x = np.asarray(g.pixels.to_canonical(x[:shown]))
            rows.append(np.concatenate([x, np.ones((shown - len(x),) + x.shape[1:], x.dtype)]))
        save_grid(out / "egbas_samples.png", np.concatenate(rows), shown,
                  f"dcgan layer {r.layer}: the query, then samples of each set", row_labels=[lb for lb, _ in sets])

        # Table 1's sigma (eq. 3): the mean over pixels of the per-pixel population std over a set.
        sigma = {label: float(np.mean(np.std(x, axis=0))) for (label, _), x in zip(sets, per_set)
                 if label != "query" and len(x) > 1}
        print(f"layer {r.layer}: {int(np.count_nonzero(r.v_star))} of {r.v_star.size} boundaries selected; "
              f"tree {int(r.tree.count)} nodes, {int(r.tree.n_rejected)} rejected ({r.tree.stop_reason_name()}); "
              f"eps_L2 {r.eps_l2:.3f}, eps_Linf {r.eps_linf:.4f}; slice inside the region: {fraction:.0%}")
        if sigma:
            print("sigma (Table 1, lower = more consistent): " + ", ".join(f"{k} {v:.4f}" for k, v in sigma.items()))
        print(f"wrote {Path(args.out) / 'egbas_region.png'} and {Path(args.out) / 'egbas_samples.png'}")


if __name__ == "__main__":
    try:
        main()
    except jaxprobe.JaxprobeError as e:  # bad input: one line and status 2, as the command line gives
        print(f"{Path(__file__).name}: error: {e}", file=sys.stderr)
        sys.exit(2)
