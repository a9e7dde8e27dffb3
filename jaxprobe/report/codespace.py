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

from jaxprobe.experiments.codespace import dgn_am_classes
from jaxprobe.experiments.figures import save_chains, save_grid
from jaxprobe.experiments.inverse_set_repro import canonical_images
from jaxprobe.experiments.ppgn import ppgn_classes
from jaxprobe.io import jsonable
from jaxprobe.report.base import Section, finite, render

DGN_STEPS = 200  # the reference's
CHAINS, PPGN_STEPS, BURN_IN, SAVE_EVERY = 2, 200, 100, 10  # 10 saves per chain after burn-in
DIVERSITY_CLASSES = (3, 8)
# Why only those: said on the page. Each measured class costs a DGN-AM run of DGN_STEPS steps from as
# many random starts as it has kept samples; two classes keep the section within its time budget.
DIVERSITY_REASON = ("each measured class needs its own DGN-AM run ({steps} steps from as many random starts as "
                    "the chain kept samples), and {n} classes keep the section within its time budget; the "
                    "other classes show '-' (the PPGN paper's claim is about diversity, not about a class)")


def dgn_am_conclusion(results: dict) -> str:
    """What the DGN-AM numbers say, from `dgn_am_section`'s results: whether the images excite
    their neurons beyond real digits of the class (the paper's claim) and are classified as it."""
    rows = results["neurons"]
    n = len(rows)
    above, named = results["above_real_mean"], results["classified_as_target"]
    ratios = finite(r.get("ratio") for r in rows)
    ratio = f", median {float(np.median(ratios)):.2g}x the real mean" if ratios else ""
    if above == n and named == n:
        verdict = ("DGN-AM does what the paper reports on every class: each image excites its neuron more "
                   "than real digits of the class do, and the classifier names the target")
    elif above >= n / 2 and named >= n / 2:
        verdict = "DGN-AM works on most classes but not all"
    else:
        verdict = "DGN-AM mostly fails here: most images neither beat real digits nor get classified as the target"
    text = f"{verdict} ({above}/{n} above the real mean{ratio}; {named}/{n} classified as the target)."
    if not results.get("codes_in_bounds", True):
        text += " Some codes ended outside their bounds, so the clipping did not hold."
    return text


def ppgn_conclusion(results: dict) -> str:
    """What the PPGN numbers say, from `ppgn_section`'s results: whether the chains stay in their
    class after burn-in, and whether PPGN's samples are more diverse than DGN-AM's (the paper's
    claim) on the classes where diversity was measured."""
    rows = results["classes"]
    rated = [(r["class_rate"], r["label"]) for r in rows if finite([r["class_rate"]])]
    parts = []
    if rated:
        lo, worst = min(rated)
        if lo >= 0.9:
            parts.append(f"The chains stay in their class after burn-in: every class rate is at least {lo:.2f}")
        elif lo >= 0.5:
            parts.append(f"Most kept samples after burn-in are classified as their class, not all "
                         f"(lowest class rate {lo:.2f}, class {worst})")
        else:
            parts.append(f"Some chains leave their class (lowest class rate {lo:.2f}, class {worst})")
    else:
        parts.append("No chain kept a sample after burn-in, so no class rate is defined")
    div = [(r["label"], r["diversity"]["ppgn"], r["diversity"]["dgn_am"]) for r in rows
           if r.get("diversity") and len(finite([r["diversity"]["ppgn"], r["diversity"]["dgn_am"]])) == 2]
    if div:
        pairs = ", ".join(f"class {c}: {p:.3g} against {d:.3g}" for c, p, d in div)
        more = sum(p > d for _, p, d in div)
        if more == len(div):
            parts.append(f"PPGN's samples are more diverse than DGN-AM's, as the paper reports ({pairs})")
        elif more == 0:
            parts.append(f"PPGN's samples are less diverse than DGN-AM's here, against the paper's claim ({pairs})")
        else:
            parts.append(f"PPGN's samples are more diverse than DGN-AM's for {more} of {len(div)} classes ({pairs})")
    else:
        parts.append("diversity could not be measured (fewer than two kept samples)")
    return "; ".join(parts) + "."


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
    caption = (f"The image DGN-AM makes for each class neuron 0-9 after {DGN_STEPS} steps: each should look like "
               f"its digit if the neuron responds to the digit's shape ({results['classified_as_target']}/10 are "
               f"classified as their class)")
    return Section("dgn_am", "DGN-AM (Nguyen et al. 2016)", body, [("dgn_am_classes.png", caption)],
                   jsonable(results), dgn_am_conclusion(results))


def ppgn_section(ctx) -> Section:
    """PPGN-h chains for every class under the h-DAE prior; writes ppgn_chains.png into ctx.out_dir."""
    gen, cls = ctx.model("fc_generator"), ctx.model("classifier")
    t0 = time.perf_counter()
    run = ppgn_classes(ctx.key("ppgn"), gen, cls, "dae", chains=CHAINS, steps=PPGN_STEPS, burn_in=BURN_IN,
                       save_every=SAVE_EVERY, dgn_steps=DGN_STEPS, diversity_classes=DIVERSITY_CLASSES)
    wall = time.perf_counter() - t0
    samples = np.stack([np.asarray(r.samples)[0] for r in run["results"].values()])  # chain 0 of each class
    probs = np.stack([np.asarray(r.probs)[0] for r in run["results"].values()])
    steps = np.asarray(next(iter(run["results"].values())).saved_steps)
    c, n = samples.shape[:2]
    images = canonical_images(gen, gen.forward(gen.params, samples.reshape((c * n,) + samples.shape[2:])))
    save_chains(ctx.out_dir / "ppgn_chains.png", images.reshape((c, n) + images.shape[1:]), steps, probs,
                f"PPGN-h ({run['prior']} prior): chain 0 of each class, a sample every {SAVE_EVERY} steps",
                chain_labels=[f"class {k}" for k in run["results"]], value_label="p(class)", max_columns=10)
    results = {"prior": run["prior"], "chains": CHAINS, "steps": PPGN_STEPS, "burn_in": BURN_IN,
               "save_every": SAVE_EVERY, "classes": run["classes"], "min_class_rate": run["min_class_rate"],
               "diversity_classes": list(DIVERSITY_CLASSES), "wall_s": wall}
    reason = DIVERSITY_REASON.format(steps=DGN_STEPS, n=len(DIVERSITY_CLASSES))
    body = render("ppgn.html.j2", **results, diversity_reason=reason)
    caption = (f"Chain 0 of each class (rows) over time (columns), each image with the classifier's probability "
               f"of the class: the digit should appear within the first steps and stay, with the probability near "
               f"1 after burn-in (t >= {BURN_IN})")
    return Section("ppgn", "PPGN (Nguyen et al. 2017)", body, [("ppgn_chains.png", caption)], jsonable(results),
                   ppgn_conclusion(results))
