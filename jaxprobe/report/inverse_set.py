"""Report section: inverse sets of neurons on fc_generator + classifier (Hada & Carreira-Perpiñán 2019).

Four inverse sets, each of `N` samples with K = `K` seeds: two ranges of one class neuron (the
paper's Figure 1 shows several ranges of the volcano neuron), one hidden neuron (the conv2 unit that
digits drive most), and the intersection of the class neuron with the conv2 unit that the class's
digits drive most (eq. 11-12). Ranges are quantiles of each
neuron's value over G(c) for reference codes c = E(MNIST test digits) (`reference_codes`), fixed
before sampling, so they are ranges the generator is known to reach. Every sample's activations go
into the results, and `all_samples_in_range` is computed from a fresh forward pass G -> classifier
on the returned codes (`jaxprobe.experiments.rechecks`), not from the sampler's own values.
"""

from __future__ import annotations

import time

import numpy as np

from jaxprobe.experiments.figures import save_histograms, save_sorted_samples
from jaxprobe.experiments.inverse_set_repro import (CLASS_RANGES, canonical_images, embedding_layer, quantile_range,
                                                    reference_codes, reference_images)
from jaxprobe.experiments.rechecks import fresh_activations, independent_check, layer_values
from jaxprobe.inverse_sets.inverse_set import default_embedding, inverse_set
from jaxprobe.io import jsonable
from jaxprobe.report.base import Section, finite, render

N, K = 50, 10  # samples per inverse set (the paper's n = 500 is `jaxprobe reproduce inverse-set`), seeds
# Gradient steps per outer iteration of the seeds (paper: 100). 25 keeps the section within its 30 s
# on 2 cores (measured 25.6 s, against 30.0 s with 50): XLA's CPU backend runs the inner lax.scan at
# about half the speed of separate jitted steps, and the seeds stop as soon as all are feasible.
INNER_STEPS = 25
CLASS_UNIT = 3  # the class neuron: logit of digit 3
N_REFERENCE = 300  # reference digits per pool (ranges only)
HIDDEN_Q = (0.5, 0.9)  # hidden neuron's range: quantiles over all digits' reference codes
JOINT_Q = (0.25, 0.75)  # intersection: each neuron's quantiles over the class's reference codes
SHOWN = 10  # samples per figure row, picked evenly along the sorted order


def _hidden_layer(classifier, embedding) -> int:
    """The layer below E's (conv2 for the default classifier, whose E is fc1): a hidden layer that
    is neither the code space nor the output."""
    return max(1, embedding.model.layer(embedding.layer) - 1)


def choose_hidden_unit(generator, classifier, layer: int, codes) -> str:
    """The unit of `layer` (read at the centre for a conv layer, after its nonlinearity) with the
    largest median value over G(codes): a unit these images do drive. Returns its address."""
    shape = classifier.layer_shape(layer)
    h = layer_values(generator, classifier, codes, layer).reshape((len(codes),) + tuple(shape))
    if h.ndim == 4:
        h = h[:, shape[0] // 2, shape[1] // 2, :]
    unit = int(np.argmax(np.median(h, axis=0)))
    return f"{classifier.layer_names[layer - 1]}:{unit}"


def inverse_set_conclusion(results: dict) -> str:
    """What the inverse-set numbers say, from `inverse_set_section`'s results: whether every set
    is full and every sample in its range by a fresh forward pass (the method's guarantee), and
    which set is the least and the most diverse (mean pairwise distance in E, eq. 5)."""
    runs = results["runs"]
    short = [r for r in runs if r["n_accepted"] < r["n_requested"]]
    outside = [r for r in runs if not r["fresh_forward_check"]["all_in_range"]]
    checked = results["samples_checked"]
    if not short and not outside:
        text = (f"Every set is full and all {checked} samples, recomputed by a fresh forward pass, lie in their "
                f"ranges: the sampler delivers the inverse sets it claims")
    else:
        bits = [f"{r['label']} ({r['n_accepted']}/{r['n_requested']})" for r in short]
        text = ("Not every set is full: " + ", ".join(bits)) if bits else "Every set is full"
        if outside:
            text += (f"; samples of {', '.join(r['label'] for r in outside)} fall outside their range when recomputed, "
                     f"so those sets are not inverse sets")
        else:
            text += f"; all {checked} samples recomputed lie in their ranges"
    div = [(r["diversity_statistics"].get("mean_pairwise_distance"), r["label"]) for r in runs]
    div = [(d, label) for d, label in div if finite([d])]
    if len(div) >= 2:
        (lo, lo_label), (hi, hi_label) = min(div), max(div)
        text += (f". The {lo_label} set is the least diverse (mean pairwise E-distance {lo:.3g}) and the "
                 f"{hi_label} set the most ({hi:.3g})")
    return text + "."


def _ranges_text(neurons, ranges, sep: str) -> str:
    return sep.join(f"{n} in [{a:.3g}, {b:.3g}]" for n, (a, b) in zip(neurons, ranges))


def inverse_set_section(ctx) -> Section:
    """Two ranges of a class neuron, one hidden neuron and one intersection on fc_generator +
    classifier; writes inverse_set_samples.png and inverse_set_histograms.png into ctx.out_dir."""
    gen, cls = ctx.model("fc_generator"), ctx.model("classifier")
    emb = default_embedding(gen, cls)
    class_neuron = f"{cls.layer_names[-1]}:{CLASS_UNIT}"

    # Ranges from reference codes (fixed before any sampling).
    class_images = reference_images(CLASS_UNIT, N_REFERENCE)
    all_images = reference_images(None, N_REFERENCE)
    codes_c, source_c = reference_codes(ctx.key("inverse set reference, class"), gen, emb, class_images, N_REFERENCE)
    codes_a, source_a = reference_codes(ctx.key("inverse set reference, all"), gen, emb, all_images, N_REFERENCE)
    # The hidden neuron: the unit that digits of every class drive most; the intersection's: the unit
    # that the class's digits drive most (so that its range over them does not sit at the ReLU's 0).
    layer = _hidden_layer(cls, emb)
    hidden = choose_hidden_unit(gen, cls, layer, codes_a)
    hidden_c = choose_hidden_unit(gen, cls, layer, codes_c)
    v_c = fresh_activations(gen, cls, codes_c, [class_neuron, hidden_c])
    v_a = fresh_activations(gen, cls, codes_a, [hidden])[:, 0]
    joint = [quantile_range(v_c[:, 0], JOINT_Q), quantile_range(v_c[:, 1], JOINT_Q)]
    in_joint = np.all((v_c >= [r[0] for r in joint]) & (v_c <= [r[1] for r in joint]), axis=1)
    problems = [
        ("class, typical", [class_neuron], [quantile_range(v_c[:, 0], CLASS_RANGES["typical"])],
         f"quantiles {CLASS_RANGES['typical']} over {source_c} (class {CLASS_UNIT})"),
        ("class, high", [class_neuron], [quantile_range(v_c[:, 0], CLASS_RANGES["high"])],
         f"quantiles {CLASS_RANGES['high']} over {source_c} (class {CLASS_UNIT})"),
        ("hidden", [hidden], [quantile_range(v_a, HIDDEN_Q)], f"quantiles {HIDDEN_Q} over {source_a} (all classes)"),
        ("intersection", [class_neuron, hidden_c], joint,
         f"quantiles {JOINT_Q} of each over {source_c} (class {CLASS_UNIT}); "
         f"{int(in_joint.sum())} of {len(in_joint)} reference codes lie in both"),
    ]

    runs, fig_rows, hist_panels = [], [], []
    for label, neurons, ranges, source in problems:
        t0 = time.perf_counter()
        res = inverse_set(ctx.key(f"inverse set {label}"), gen, cls, neurons, ranges, n=N, k=K, embedding=emb,
                          inner_steps=INNER_STEPS)
        wall = time.perf_counter() - t0
        check = independent_check(res, gen, cls)
        runs.append({
            "label": label, "neurons": list(res.neurons), "reading": res.reading,
            "ranges": res.ranges, "range_source": source,
            "n_requested": res.n_requested, "k": res.k, "n_accepted": res.n_accepted,
            "stop_reason": res.stop_reason, "stop_message": res.stop_message,
            "steps": {"outer_iterations": res.outer_iterations, "inner_steps": res.inner_steps,
                      "sampling_steps": res.sampling_steps},
            "diversity_statistics": res.stats,
            "activations": res.activations,
            "fresh_forward_check": check,
            "wall_s": round(wall, 2),
        })
        images = canonical_images(gen, res.images)
        fig_rows.append((label + "\n" + _ranges_text(res.neurons, res.ranges, "\n"), images, res.activations))
        for j, name in enumerate(res.neurons):
            hist_panels.append((f"{label}: {name}", np.asarray(res.activations)[:, j], tuple(res.ranges[j])))

    out = ctx.out_dir
    save_sorted_samples(out / "inverse_set_samples.png", fig_rows, f"Inverse sets on {gen.name} + {cls.name}",
                        shown=SHOWN, ncol=SHOWN)
    save_histograms(out / "inverse_set_histograms.png", hist_panels, "activations of all accepted samples", ncol=3)
    results = {
        "generator": gen.name, "classifier": cls.name, "n": N, "k": K,
        "embedding": {"model": emb.model.name, "layer": embedding_layer(emb)},
        "all_samples_in_range": all(r["fresh_forward_check"]["all_in_range"] for r in runs),
        "every_set_has_samples": all(r["n_accepted"] > 0 for r in runs),
        "samples_checked": sum(r["fresh_forward_check"]["n_checked"] for r in runs),
        "runs": runs,
    }
    body = render("inverse_set.html.j2", n=N, k=K, inner_steps=INNER_STEPS,
                  embedding_layer=results["embedding"]["layer"],
                  samples_checked=results["samples_checked"], all_in_range=results["all_samples_in_range"],
                  runs=[dict(r, ranges_text=_ranges_text(r["neurons"], r["ranges"], ", ")) for r in runs])
    figures = [("inverse_set_samples.png", f"Each set's samples sorted by the neuron's value (high to low), "
                                           f"{SHOWN} picked evenly along that order, the values above each: "
                                           f"within a set the images should vary while the value stays in range"),
               ("inverse_set_histograms.png", "The neuron's value over every accepted sample, the requested range "
                                              "[z1, z2] shaded: every bar should lie inside the shaded band")]
    return Section("inverse_set", "Inverse set of a neuron (Hada & Carreira-Perpiñán 2019)", body, figures,
                   jsonable(results), inverse_set_conclusion(results))

