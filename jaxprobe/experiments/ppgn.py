"""PPGN experiments (Nguyen et al. 2017) as functions returning data.

`ppgn_class`: chains conditioned on one class, their kept rate and class rate after burn-in.
`diversity`: the paper's comparison of PPGN with DGN-AM (its section 4.1 and Fig. S13-S14: many
chains against many DGN-AM restarts): for one class, c PPGN chains and c DGN-AM runs from random
starts, each of the same number of steps (the same network evaluations: one forward and backward
pass of G and of the classifier per step; PPGN adds its prior's), the mean pairwise distance of
their c final images in the classifier's penultimate features, with its spread.
`ppgn_classes`: both over the classes (the report and `benchmarks/results/ppgn_classes.json`).
`ppgn_command`: what `jaxprobe ppgn` writes, with the time of the steps apart from compilation
and data loading.
"""

from __future__ import annotations

import time

import jax
import numpy as np

from jaxprobe.codespace.dgn_am import dgn_am
from jaxprobe.checks import with_settings
from jaxprobe.codespace.ppgn import PPGNOptions, check_options, encoder_prior, ppgn
from jaxprobe.errors import JaxprobeError
from jaxprobe.codespace.dgn_am import real_bounds
from jaxprobe.experiments.codespace import (_has_real, class_neurons, code_bounds, mean_pairwise_distance, penultimate,
                                            predicted)

PRIORS = ("dae", "encoder")
CHUNKS = 20  # compiled chunks of a command's run: one progress tick each, and the step timing


def make_prior(generator, prior: str, encoder=None):
    """The PPGN prior by name: "dae" the shipped h-DAE (trained on fc_generator's codes),
    "encoder" R(h) = E(G(h)) with E = `encoder` (a (Model, layer) pair) or, when None, the encoder
    recorded in `generator`'s manifest."""
    if prior not in PRIORS:
        raise JaxprobeError(f"prior: expected one of {', '.join(PRIORS)}, got {prior!r}")
    if prior == "encoder":
        return encoder_prior(generator) if encoder is None else encoder_prior(generator, *encoder)
    if encoder is not None:
        raise JaxprobeError("encoder: given with prior 'dae'; an encoder is the 'encoder' prior's E")
    from jaxprobe.models.store import load

    return load("h_dae")


def kept_after(result, burn_in: int, chain: int = 0) -> np.ndarray:
    """(m, *code_shape) the kept samples of one chain saved at t >= burn_in."""
    chosen = np.asarray(result.kept)[chain] & (np.asarray(result.saved_steps) >= burn_in)
    return np.asarray(result.samples)[chain][chosen]


def ppgn_class(key, generator, classifier, prior, label, *, chains: int, steps: int, burn_in: int,
               lower=None, upper=None, **settings) -> dict:
    """PPGN chains for class `label` (`ppgn`'s `settings`); returns {"result", "kept_rate" (share of
    saved steps kept), "class_rate" (share of kept samples at t >= burn_in classified as `label`),
    "kept_after" (their count)}."""
    res = ppgn(key, generator, classifier, prior, label=label, chains=chains, steps=steps, lower=lower, upper=upper,
               **settings)
    after = np.asarray(res.saved_steps) >= burn_in
    kept = np.asarray(res.kept)
    mask = kept[:, after]
    labels = np.asarray(res.labels)[:, after]
    rate = float(np.mean(labels[mask] == label)) if mask.any() else float("nan")
    return {"result": res, "kept_rate": float(kept.mean()), "class_rate": rate, "kept_after": int(mask.sum())}


def pairwise(features) -> np.ndarray:
    """The m(m-1)/2 Euclidean distances between rows of (m, F) features (float64)."""
    f = np.asarray(features, np.float64).reshape(len(features), -1)
    d = np.sqrt(np.maximum(np.sum((f[:, None] - f[None]) ** 2, -1), 0.0))
    return d[np.triu_indices(len(f), 1)]


def diversity(key, generator, classifier, label: int, ppgn_codes, *, steps: int, lower=None, upper=None) -> dict:
    """PPGN against DGN-AM on class `label` at the same budget: `ppgn_codes` (c, *code_shape) are
    the final codes of c PPGN chains of `steps` steps; DGN-AM runs c times from random starts for
    as many steps (its reference update, the same bounds). Both sets of c images in the
    classifier's penultimate features (after its nonlinearity).

    Returns {"n": c, "ppgn", "dgn_am": mean pairwise distances, "ppgn_sd", "dgn_am_sd": the
    standard deviations of the c(c-1)/2 distances, "ppgn_class_rate", "dgn_am_class_rate": the
    share of the c images classified as `label`}."""
    return _diversity(key, generator, classifier, label, ppgn_codes, steps=steps, lower=lower, upper=upper)[0]


def _diversity(key, generator, classifier, label, ppgn_codes, *, steps, lower, upper) -> tuple:
    """(`diversity`'s record, the c DGN-AM final codes)."""
    codes = np.asarray(ppgn_codes)
    c = len(codes)
    # The class's own neuron alone: the objective a_label is the same as with every class neuron
    # weighted one-hot, and a program reading 1000 neurons one by one took 50 s to compile.
    neurons = [class_neurons(classifier)[int(label)]]
    d = dgn_am(key, generator, classifier, neurons, weights=np.ones((c, 1), np.float32), steps=steps, lower=lower,
               upper=upper)
    out = {"n": c}
    for name, z in (("ppgn", codes), ("dgn_am", np.asarray(d.codes))):
        dist = pairwise(penultimate(generator, classifier, z)) if c >= 2 else np.full(1, np.nan)
        out[name], out[name + "_sd"] = float(dist.mean()), float(dist.std())
        out[name + "_class_rate"] = float(np.mean(predicted(generator, classifier, z) == int(label)))
    return out, np.asarray(d.codes)


def spread(values) -> dict:
    """{"mean", "sd", "min", "max"} of finite values (NaN when there are none)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
    if not len(v):
        return {"mean": float("nan"), "sd": float("nan"), "min": float("nan"), "max": float("nan")}
    return {"mean": float(v.mean()), "sd": float(v.std()), "min": float(v.min()), "max": float(v.max())}


def resolve_bounds(generator, bounds, *, images=None, encoder=None) -> tuple:
    """(lower, upper) code bounds for `bounds` ("real", "none" or a reference bound file, as
    `code_bounds` reads them): "real" with `encoder` ((Model, layer)) and `images` (canonical, in
    its input shape) is 3x the largest E(x) of each unit, through that encoder."""
    if bounds == "real" and encoder is not None and images is not None:  # E(x) through the given encoder
        return real_bounds(generator, images, encoder=encoder[0], layer=encoder[1])
    return code_bounds(generator, bounds, images=images)


def default_bounds(generator, images=None, encoder=None) -> str:
    """The bounds PPGN takes when none are named: "real" where real images are at hand (`images`
    with an encoder, given or recorded in the generator's manifest, or MNIST for the MNIST
    models), else "none"."""
    at_hand = images is not None and (encoder is not None or "encoder" in generator.manifest)
    return "real" if at_hand or _has_real(generator, None) else "none"


def ppgn_classes(key, generator, classifier, prior="dae", *, classes=None, chains: int = 4, steps: int = 100,
                 burn_in: int = 50, bounds="real", dgn_steps: int | None = None, diversity_classes=None,
                 progress=None, **settings) -> dict:
    """`ppgn_class` for each class (default all; one compiled program: the class is an argument),
    and `diversity` (PPGN's chains against as many DGN-AM runs of `dgn_steps` steps, default
    `steps`: the same budget) for each class of `diversity_classes` (default all; other rows get
    None).

    Args:
      prior: a name of `PRIORS` (`make_prior`), or the prior itself (a denoiser `Model` or
        `encoder_prior(...)`).
      bounds: a name `code_bounds` reads, or (lower, upper) arrays (None, None: unbounded).
      progress: None or progress(steps done, steps in all), the PPGN chains' steps and DGN-AM's
        (the chains then run in `CHUNKS` compiled chunks, the same chains).

    Returns {"prior", "classes": [{"label", "kept_rate", "class_rate", "kept_after",
    "diversity"}], "min_class_rate", "diversity": {"ppgn", "dgn_am": `spread` over the measured
    classes, "ppgn_more_diverse": the count of classes where PPGN's distance is larger,
    "measured"}, "results": {label: PPGNResult}, "dgn_am_codes": {label: (c, *code_shape) the
    DGN-AM runs' final codes}}."""
    from jaxprobe.experiments.codespace import check_classes

    classes = check_classes(classifier, None if classes is None else list(classes))
    shown = list(classes) if diversity_classes is None else check_classes(classifier, list(diversity_classes),
                                                                            "diversity_classes")
    lower, upper = code_bounds(generator, bounds) if isinstance(bounds, str) else bounds
    denoiser = make_prior(generator, prior) if isinstance(prior, str) else prior
    if not set(shown) <= set(classes):
        raise JaxprobeError(f"diversity_classes: expected classes among those run ({classes}), got {shown}")
    dgn_steps = steps if dgn_steps is None else dgn_steps
    total = len(classes) * (steps + 1) + len(shown) * dgn_steps
    k_run, k_div = jax.random.split(key)
    runs, div, dgn_codes, done = {}, {}, {}, 0
    for c in classes:
        if progress is not None:  # chunked: the bar moves within each class's chains
            settings = dict(settings, chunk=max(1, (steps + 1) // CHUNKS),
                            progress=lambda d, t=None, base=done: progress(base + int(d), total))
        runs[c] = ppgn_class(jax.random.fold_in(k_run, c), generator, classifier, denoiser, c, chains=chains,
                             steps=steps, burn_in=burn_in, lower=lower, upper=upper, **settings)
        done += steps + 1
    for c in shown:
        div[c], dgn_codes[c] = _diversity(jax.random.fold_in(k_div, c), generator, classifier, c,
                                          runs[c]["result"].codes, steps=dgn_steps, lower=lower, upper=upper)
        done += dgn_steps
        if progress is not None:
            progress(done, total)
    rows = [{"label": c, "kept_rate": one["kept_rate"], "class_rate": one["class_rate"],
             "kept_after": one["kept_after"], "diversity": div.get(c)} for c, one in runs.items()]
    summary = {"ppgn": spread(d["ppgn"] for d in div.values()), "dgn_am": spread(d["dgn_am"] for d in div.values()),
               "ppgn_more_diverse": int(sum(d["ppgn"] > d["dgn_am"] for d in div.values())), "measured": len(div)}
    return {"prior": prior if isinstance(prior, str) else getattr(prior, "name", type(prior).__name__),
            "classes": rows, "min_class_rate": min(r["class_rate"] for r in rows), "diversity": summary,
            "results": {c: one["result"] for c, one in runs.items()}, "dgn_am_codes": dgn_codes}


def classes_table(runs: dict) -> str:
    """The markdown table of `ppgn_classes` runs, one row per prior ({prior: run}): the lowest and
    mean class rate, PPGN's and DGN-AM's diversity (mean +- sd over the measured classes), and in
    how many classes PPGN is the more diverse (what docs/methods/ppgn.md quotes)."""
    lines = ["| prior | lowest class rate | mean class rate | PPGN diversity | DGN-AM diversity | PPGN more diverse |",
             "|---|---|---|---|---|---|"]
    for prior, run in runs.items():
        rates = [r["class_rate"] for r in run["classes"]]
        d = run["diversity"]
        lines.append(f"| {prior} | {min(rates):.3f} | {sum(rates) / len(rates):.3f} | "
                     f"{d['ppgn']['mean']:.2f} +- {d['ppgn']['sd']:.2f} | {d['dgn_am']['mean']:.2f} +- "
                     f"{d['dgn_am']['sd']:.2f} | {d['ppgn_more_diverse']} of {d['measured']} |")
    return "\n".join(lines) + "\n"


def classes_figure(run: dict, title: str = ""):
    """Per class: PPGN's class rate after burn-in (bars), and the diversity of PPGN's chains
    against as many DGN-AM runs (mean pairwise penultimate-feature distance, +- its sd); returns
    the figure."""
    from jaxprobe.experiments.figures import DPI, bounded_size, pyplot, wrap

    plt = pyplot()
    rows = run["classes"]
    x = np.arange(len(rows))
    fig, (a, b) = plt.subplots(2, 1, figsize=bounded_size(max(5.0, 0.35 * len(rows) + 1.5), 4.8), dpi=DPI)
    a.bar(x, [r["class_rate"] for r in rows], color="C0")
    a.set_ylim(0, 1.05)
    a.set_ylabel("class rate\n(kept, after burn-in)", fontsize=7)
    measured = [(i, r["diversity"]) for i, r in enumerate(rows) if r["diversity"] is not None]
    for k, (name, color) in enumerate((("ppgn", "C3"), ("dgn_am", "C7"))):
        b.errorbar([i + (k - 0.5) * 0.3 for i, _ in measured], [d[name] for _, d in measured],
                   yerr=[d[name + "_sd"] for _, d in measured], fmt="o", color=color, markersize=3, capsize=2,
                   label="PPGN chains" if name == "ppgn" else "DGN-AM runs (same steps)")
    b.set_ylabel("diversity (mean pairwise\npenultimate distance)", fontsize=7)
    b.set_xlabel("class", fontsize=8)
    if measured:
        b.legend(fontsize=6)
    for ax in (a, b):
        ax.set_xlim(-0.6, len(rows) - 0.4)
        if len(rows) <= 30:
            ax.set_xticks(x, [str(r["label"]) for r in rows], fontsize=6)
        ax.tick_params(labelsize=7)
    if title:
        a.set_title(wrap(title, 4.5, 8), fontsize=8)
    fig.tight_layout()
    return fig


def step_timing(ticks, load_s: float, wall_s: float) -> dict:
    """Timing of a chunked run from its progress ticks [(seconds since the run began, steps done),
    ...]: seconds_per_step is the median over the chunks after the first of their seconds per
    step (the first chunk compiles the program; a chunk of another length, the last, compiles
    its own, and the median leaves such a chunk out); first_chunk_s is the first chunk's time,
    load_s the loading before the run (bounds, prior), wall_s everything."""
    rates = [(b[0] - a[0]) / (b[1] - a[1]) for a, b in zip(ticks, ticks[1:]) if b[1] > a[1]]
    per_step = float(np.median(rates)) if rates else None
    return {"seconds_per_step": per_step, "first_chunk_s": ticks[0][0], "load_s": load_s, "wall_s": wall_s}


def ppgn_command(key, generator, classifier, *, prior: str = "dae", encoder=None, label=None, neuron=None,
                 chains: int = 1, bounds: str | None = None, images=None, progress=None, **settings) -> dict:
    """What `jaxprobe ppgn` computes: PPGN chains (`ppgn`'s `settings`) under `prior` with the code
    bounds `bounds` ("real", "none" or a reference bound file, as `code_bounds` reads them; None:
    "real" where real images are at hand (`images`, (m, H, W, C) canonical, or MNIST for the MNIST
    models), else "none"), the diversity of chain 0's kept samples in the classifier's penultimate
    features, and the time: model-side loading (bounds, prior) apart from the run, the run's
    first chunk (its compilation) apart from the steps.

    Returns {"result": PPGNResult, "options": the PPGNOptions run, "bounds": the bounds used,
    "kept_rate", "diversity", "diversity_samples", "timing": {"seconds_per_step", "first_chunk_s",
    "load_s", "wall_s"}}."""
    t_start = time.perf_counter()
    options = with_settings(PPGNOptions, None, {k: v for k, v in settings.items() if k in PPGNOptions._fields})
    check_options(options, int(np.prod(generator.input_shape)))  # bad numbers fail before any loading
    bounds = default_bounds(generator, images, encoder) if bounds is None else bounds
    lower, upper = resolve_bounds(generator, bounds, images=images, encoder=encoder)
    denoiser = make_prior(generator, prior, encoder)
    load_s = time.perf_counter() - t_start
    ticks = []
    t_run = time.perf_counter()

    def tick(done, total):
        ticks.append((time.perf_counter() - t_run, int(done)))
        if progress is not None:
            progress(done, total)

    res = ppgn(key, generator, classifier, denoiser, label=label, neuron=neuron, chains=chains, lower=lower,
               upper=upper, chunk=max(1, (options.steps + 1) // CHUNKS), progress=tick,
               **{k: v for k, v in settings.items() if k != "lower" and k != "upper"})
    wall = time.perf_counter() - t_start
    kept = np.asarray(res.kept)
    chosen = np.asarray(res.samples)[0][kept[0]]
    div = mean_pairwise_distance(penultimate(generator, classifier, chosen)) if len(chosen) >= 2 else None
    return {"result": res, "options": options, "bounds": bounds, "kept_rate": float(kept.mean()), "diversity": div,
            "diversity_samples": int(len(chosen)), "timing": step_timing(ticks, load_s, wall)}


__all__ = ["PRIORS", "classes_figure", "classes_table", "default_bounds", "diversity", "kept_after", "make_prior", "pairwise",
           "ppgn_class", "ppgn_classes", "ppgn_command", "resolve_bounds", "spread", "step_timing"]
