"""Report section: generators trained to excite a neuron (Despraz et al. 2017) on the classifier.

Both variants of the paper's Table 1 (from scratch: all of a Table-2 generator; pretrained: alpha
of the shipped DAE's decoder) on `TARGETS`: four classes, one conv2 filter (the mean of its
channel over positions) and a two-class compound, every target of a variant in one compiled
program. For each: the target's final activation against the largest other unit of its layer, and
the unmodified classifier's prediction; the images and the loss curves as figures.
"""

from __future__ import annotations

import time

from jaxprobe.experiments.excite import excite_table, save_excite_images, save_loss_curves
from jaxprobe.io import jsonable
from jaxprobe.report.base import Section, render


def excite_conclusion(variants: list) -> str:
    """What the excitation numbers say, from `excite_section`'s variants: per variant, how many
    class targets end first in their layer and are classified as the target (the paper's claim is
    that the trained generator's image excites its target most), and whether the other targets
    (a filter, a compound) rose from their value before training."""
    parts = []
    for v in variants:
        n, first, named = v["n_classes"], v["classes_first"], v["classes_classified"]
        if n and first == n and named == n:
            word = "works on every class"
        elif n and first >= n / 2:
            word = "works on most classes"
        elif n:
            word = "mostly fails on the classes"
        else:
            word = "has no class target"
        text = f"{v['name']} {word} ({first}/{n} first in their layer, {named}/{n} classified as the target)"
        others = [r for r in v["rows"] if r["target"] not in v.get("class_targets", ())]
        rose = [r for r in others if r["start_value"] is not None and r["target_value"] > r["start_value"]]
        if others:
            text += f", and {len(rose)} of its {len(others)} other targets rose above their value before training"
        parts.append(text)
    return ("Training one generator per target: " + "; ".join(parts) + ".") if parts else "No variant ran."

TARGETS = ("logits:0", "logits:3", "logits:7", "logits:8", "conv2:5", "logits:3+logits:8")
# lambda 1 for the classes; 0 for the filter, whose "others" are 63 filters: at lambda 1 silencing
# them outweighed exciting it, and its mean fell (0.087 -> 0.006, measured from scratch).
LAMBDAS = (1.0, 1.0, 1.0, 1.0, 0.0, 1.0)
STEPS = {"scratch": 200, "pretrained": 60}  # scratch needs about 200 (AdaMax, jitter sigma 2); pretrained is done by 60


def excite_section(ctx) -> Section:
    """Both variants on `TARGETS`; writes excite_<variant>.png and excite_loss_<variant>.png."""
    cls = ctx.model("classifier")
    t0 = time.perf_counter()
    runs = excite_table(ctx.key("excite"), cls, TARGETS, steps=STEPS, lam=list(LAMBDAS))
    wall = time.perf_counter() - t0
    figures, variants = [], []
    for name, run in runs.items():
        rows = run["rows"]
        res = run["result"]
        labels = [f"{r['target']}\npredicted {r['predicted']}" for r in rows]
        save_excite_images(ctx.out_dir / f"excite_{name}.png", res.images, labels,
                           f"Despraz et al. 2017, {name}: one generator per target",
                           values=[r["prob"] for r in rows], value_label="p(predicted)")
        save_loss_curves(ctx.out_dir / f"excite_loss_{name}.png", res.loss, list(res.targets),
                         f"eq. 2 loss ({name}, jittered input)")
        figures += [(f"excite_{name}.png", f"{name}: the image each target's generator makes, with the class the "
                                           f"classifier predicts and its probability; a class target's image "
                                           f"should be predicted as that class"),
                    (f"excite_loss_{name}.png", f"{name}: eq. 2's loss per step for each target; a curve still "
                                                f"falling at the last step means more steps would help")]
        classes = [r for r in rows if "+" not in r["target"] and r["target"].startswith(cls.layer_names[-1] + ":")]
        variants.append({"name": name, "steps": STEPS[name], "wall_s": run["wall_s"],
                         "rows": [{k: r[k] for k in ("target", "start_value", "target_value", "max_other", "margin",
                                                     "predicted", "prob")}
                                  | {"loss_first": r["loss"][0], "loss_last": r["loss"][-1]} for r in rows],
                         "classes_first": sum(r["margin"] > 0 for r in classes),
                         "classes_classified": sum(r["predicted"] == int(r["target"].split(":")[1]) for r in classes),
                         "n_classes": len(classes), "class_targets": [r["target"] for r in classes]})
    results = {"targets": list(TARGETS), "lambdas": list(LAMBDAS), "variants": variants, "wall_s": wall}
    body = render("excite.html.j2", **results)
    return Section("excite", "Generators trained to excite a neuron (Despraz et al. 2017)", body, figures,
                   jsonable(results), excite_conclusion(variants))
