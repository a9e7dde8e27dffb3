"""Report sections: DGN-AM (Nguyen et al. 2016) and PPGN (Nguyen et al. 2017) on fc_generator + classifier.

DGN-AM: the reference update (200 steps) on the 10 class neurons with per-unit code bounds from real
test digits; each neuron's final activation against its mean over real test digits of its class.
PPGN: `CHAINS` chains per class under the shipped h-DAE prior with the reference's eps, every class
in one compiled program; the share of kept samples after burn-in classified as the class, and the
diversity of one chain against as many DGN-AM images (penultimate features; `DIVERSITY_CLASSES`,
with as many samples as there are classes, so the DGN-AM program of the first section serves).
"""

from __future__ import annotations

import time

import numpy as np

from jaxprobe.experiments.codespace import dgn_am_classes, ppgn_classes
from jaxprobe.experiments.figures import save_grid
from jaxprobe.experiments.inverse_set_repro import canonical_images
from jaxprobe.io import jsonable
from jaxprobe.report.base import Section, render

DGN_STEPS = 200  # the reference's
CHAINS, PPGN_STEPS, BURN_IN, SAVE_EVERY = 2, 200, 100, 10  # 10 saves per chain after burn-in
DIVERSITY_CLASSES = (3, 8)


def dgn_am_section(ctx) -> Section:
    """DGN-AM on every class neuron; writes dgn_am_classes.png into ctx.out_dir."""
    gen, cls = ctx.model("fc_generator"), ctx.model("classifier")
    t0 = time.perf_counter()
    run = dgn_am_classes(ctx.key("dgn-am"), gen, cls, steps=DGN_STEPS, bounds="real")
    wall = time.perf_counter() - t0
    rows = [dict(r, ratio=r["final_activation"] / r["real_mean"], predicted=int(p))
            for r, p in zip(run["neurons"], run["predicted"])]
    images = canonical_images(gen, run["result"].images)
    save_grid(ctx.out_dir / "dgn_am_classes.png", images, len(images),
              "DGN-AM: the image maximizing each class neuron (0..9), real-data bounds")
    codes = np.asarray(run["result"].codes)
    results = {"steps": DGN_STEPS, "bounds": "real", "neurons": rows,
               "above_real_mean": sum(r["final_activation"] > r["real_mean"] for r in rows),
               "classified_as_target": sum(r["predicted"] == j for j, r in enumerate(rows)),
               "codes_in_bounds": bool(np.all(codes >= run["lower"]) and np.all(codes <= run["upper"])),
               "seconds_per_step": wall / DGN_STEPS}
    body = render("dgn_am.html.j2", **results)
    return Section("dgn_am", "DGN-AM (Nguyen et al. 2016)", body,
                   [("dgn_am_classes.png", "DGN-AM images of the 10 class neurons")], jsonable(results))


def ppgn_section(ctx) -> Section:
    """PPGN-h chains for every class under the h-DAE prior; writes ppgn_chains.png into ctx.out_dir."""
    gen, cls = ctx.model("fc_generator"), ctx.model("classifier")
    t0 = time.perf_counter()
    run = ppgn_classes(ctx.key("ppgn"), gen, cls, "dae", chains=CHAINS, steps=PPGN_STEPS, burn_in=BURN_IN,
                       save_every=SAVE_EVERY, dgn_steps=DGN_STEPS, diversity_classes=DIVERSITY_CLASSES)
    wall = time.perf_counter() - t0
    samples = np.stack([np.asarray(r.samples)[0] for r in run["results"].values()])  # chain 0 of each class
    c, n = samples.shape[:2]
    images = canonical_images(gen, gen.forward(gen.params, samples.reshape((c * n,) + samples.shape[2:])))
    save_grid(ctx.out_dir / "ppgn_chains.png", images, n, f"PPGN-h: chain 0 of each class (rows 0..9), every "
                                                          f"{SAVE_EVERY}th step (columns)",
              row_labels=[str(k) for k in run["results"]])
    results = {"prior": run["prior"], "chains": CHAINS, "steps": PPGN_STEPS, "burn_in": BURN_IN,
               "save_every": SAVE_EVERY, "classes": run["classes"], "min_class_rate": run["min_class_rate"],
               "wall_s": wall}
    body = render("ppgn.html.j2", **results)
    return Section("ppgn", "PPGN (Nguyen et al. 2017)", body,
                   [("ppgn_chains.png", "PPGN-h chains: one per class, time left to right")], jsonable(results))
