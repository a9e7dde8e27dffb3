"""E-GBAS's Tables 1-2 (Jeon et al. 2020, section 4.2) measured against the paper's numbers.

`egbas_tables` runs E-GBAS (`jaxprobe.gbas.egbas.egbas`) for random queries at generator layers
1-4 and measures, for E-GBAS and both eps-ball baselines, Table 1's sigma (eq. 3, the mean over
pixels of the standard deviation of G(z) over a sample set) and Table 2's similarity (eq. 2, the
mean cosine similarity of the critic's layer-k features of G(z) and G(z0)), with
`jaxprobe.gbas.metrics`; `tables_markdown` writes them beside the paper's numbers. `sample_rows`
gives the images of one run for a figure (the paper's Figures 3b and 6-7).

Metrics are taken over each sample set without the query: the tree's root is z0 itself, whose
similarity to G(z0) is exactly 1 and which the baselines (drawn around z0) do not contain, so
keeping it would favour E-GBAS by construction. Every set of one query and layer has as many
samples as the tree accepted.
"""

from __future__ import annotations

import functools
import math
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxprobe.checks import check_count
from jaxprobe.gbas.egbas import EGBASOptions, beropt_settings, egbas
from jaxprobe.gbas.gbrrt import check_delta, check_interval
from jaxprobe.gbas.metrics import METHODS, egbas_metrics
from jaxprobe.checks import with_settings
from jaxprobe.io import fmt_number

METHOD_NAMES = {"egbas": "E-GBAS", "l2": "L2-based", "linf": "Linf-based"}

# The paper's DCGAN-MNIST numbers (Jeon et al. 2020, Tables 1 and 2). Table 1 is by the generator
# layer whose boundaries constrain the samples, Table 2 by the critic's feature layer (the paper
# does not say at which generator layer).
PAPER = {
    "sigma": {"l2": [0.0819, 0.0711, 0.0718, 0.0343], "linf": [0.0834, 0.0722, 0.0720, 0.0344],
              "egbas": [0.0781, 0.0694, 0.0675, 0.0323]},
    "similarity": {"l2": [0.722, 0.819, 0.864, 0.991], "linf": [0.727, 0.823, 0.867, 0.991],
                   "egbas": [0.747, 0.838, 0.878, 0.992]},
}

# Settings of the reproduction. The paper gives no sample count, step size or interval; it runs
# GB-RRT for N iterations with no capacity (Algorithm 2), so the reproduction's tree never fills
# (capacity = candidates + 1) and every query's sets have as many samples as it accepted.
# delta None: the library's one default rule (`jaxprobe.gbas.exploration.default_delta`, half
# the region's median extent along random directions), chosen by how far pilot trees reached
# (see STEPS_PER_EXTENT there), before and without looking at any table.
REPRO_DEFAULTS = dict(delta=None, interval=1.0, max_candidates=1024, capacity=1025, batch=64, p=0.5)
# Per tree, from `EGBASResult.exploration` and the result (the exploration measure of the tables).
EXPLORATION_KEYS = ("delta", "reach", "node_distance_q90", "extent_median", "eps_over_extent")


# ---------------------------------------------------------------- images of one run


@functools.partial(jax.jit, static_argnums=0)
def _canonical(generator, params, z):
    return generator.pixels.to_canonical(generator.forward(params, z))


def canonical_images(generator, z) -> np.ndarray:
    """G(z) on the canonical [0, 1] scale, (n, H, W, C) (jitted once per generator and batch size)."""
    return np.asarray(_canonical(generator, generator.params, jnp.asarray(z, jnp.float32)))


def sample_rows(result, generator, *, columns: int = 12, key=None, distinct: bool = True):
    """Canonical [0, 1] images for the figure: (4, columns, H, W, C) and the rows' labels.

    Row 0 the query (then blank cells), row 1 E-GBAS nodes (accepted nodes other than the query),
    rows 2-3 the L2 and Linf draws (blank where eps is undefined). Blank cells are white.
    distinct (default): each row shows the `columns` most distinct samples of its set, by greedy
    farthest-point selection in pixel space starting from the query
    (`jaxprobe.experiments.figures.farthest_points`), and its label gives the range of their RMS
    pixel difference from the query: E-GBAS nodes are often near-identical, and a row of 12
    random ones showed 12 identical digits. distinct=False: a uniform random choice among the
    nodes (`key`), as the paper's Figure 3b.
    """
    from jaxprobe.experiments.figures import farthest_points

    n = result.samples.shape[0] - 1
    has_baselines = math.isfinite(result.eps_l2)
    labels = ["query", "E-GBAS", "L2" if has_baselines else "L2 (no eps)", "Linf" if has_baselines else "Linf (no eps)"]
    if distinct:
        sets = [np.asarray(result.samples)[1:]]
        if has_baselines:
            sets += [np.asarray(result.l2_samples), np.asarray(result.linf_samples)]
        sizes = [len(x) for x in sets]
        # One batch for all sets, padded with the query to a power of two: few compilations.
        total = 1 + sum(sizes)
        z = np.repeat(np.asarray(result.query)[None], 1 << (total - 1).bit_length(), axis=0)
        z[1:total] = np.concatenate([x.reshape((-1,) + z.shape[1:]) for x in sets]) if sum(sizes) else z[1:total]
        x = canonical_images(generator, z)
        grid = np.ones((4, columns) + x.shape[1:], np.float32)
        grid[0, 0] = x[0]
        start = 1
        for row, size in enumerate(sizes, start=1):
            images = np.concatenate([x[:1], x[start:start + size]])
            pick = farthest_points(images, columns + 1, first=0)[1:]  # the query starts the selection
            grid[row, :len(pick)] = images[pick]
            if len(pick):
                d = np.sqrt(np.mean((images[pick] - x[0]) ** 2, axis=tuple(range(1, x.ndim))))
                labels[row] += f"\nRMS {d.min():.2g}-{d.max():.2g}"
            start += size
        return grid, labels
    key = jax.random.PRNGKey(0) if key is None else key
    # numpy's generator seeded by the key: a jax permutation of n would compile anew for every n
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).tolist())
    m = min(columns, n)
    pick = np.sort(rng.permutation(n)[:m]) + 1
    # One fixed-shape batch (query, E-GBAS, L2, Linf; padded with the query): one compilation.
    z = np.repeat(result.query[None], 1 + 3 * columns, axis=0)
    z[1:1 + m] = result.samples[pick]
    if has_baselines:
        z[1 + columns:1 + columns + m] = result.l2_samples[:m]
        z[1 + 2 * columns:1 + 2 * columns + m] = result.linf_samples[:m]
    x = canonical_images(generator, z)
    grid = np.ones((4, columns) + x.shape[1:], np.float32)
    grid[0, 0] = x[0]
    grid[1, :m] = x[1:1 + m]
    if has_baselines:
        grid[2, :m], grid[3, :m] = x[1 + columns:1 + columns + m], x[1 + 2 * columns:1 + 2 * columns + m]
    return grid, labels


# ---------------------------------------------------------------- Tables 1-2


def egbas_tables(key, generator, critic, options: EGBASOptions | None = None, *, layers=(1, 2, 3, 4),
                 queries: int = 10, include_query: bool = False, on_run=None, progress=None, **settings) -> dict:
    """The paper's Tables 1 and 2 measured on `generator` and `critic` (Jeon et al. 2020, section 4.2).

    For `queries` latent vectors drawn from the generator's prior (the same ones at every layer) and
    each generator layer l, E-GBAS (`jaxprobe.gbas.egbas.egbas`, key fold_in(fold_in(key_run, q), l))
    gives three sample sets (E-GBAS nodes, L2 and Linf draws, equally many); sigma (eq. 3) and the
    critic's feature similarity (eq. 2) of each set are averaged over the queries at which all
    three sets exist (a query whose tree rejected nothing has no eps, hence no baseline sets;
    "queries_with_baselines" counts them, "per_query" keeps every value).

    Args:
      key: PRNG key (split into the queries' key and the runs' key).
      generator, critic: probe-able models (the critic's feature layers are all but its head).
      options: `EGBASOptions` of every run (None: `REPRO_DEFAULTS`, the reproduction's settings).
      layers: generator layers (numbers or names).
      queries: number of random queries, >= 1.
      include_query: count the query in the E-GBAS set (default False; see the module docstring).
      on_run: optional callback on_run(q, l, EGBASResult, metrics) after every run.
      progress: optional progress(done, total), called on the host: done counts the candidates
        drawn by all trees so far (each tree's budget `max_candidates` counted whole once it
        ends) out of total = len(layers) * queries * max_candidates; about 20 times a tree
        (GB-RRT's `progress` hook) and after each tree, the last time with done == total.
      **settings: `EGBASOptions` fields replacing those of `options`.

    Returns:
      A JSON-ready dict: {"sigma": {method: [per layer]}, "similarity": {method: [[per critic layer]
      per generator layer]}, "similarity_mean_over_layers": {method: [per critic layer]},
      "per_query": ..., "exploration": {measure: [median over queries per layer]}, "claim": ...,
      "paper": PAPER, "settings": ...}; the exploration measures (`EXPLORATION_KEYS`) are the step
      size, the trees' reach (90% node distance from z0 over the region's median extent), the
      90% node distance, the median extent and eps_L2 over the median extent.
    """
    o = with_settings(EGBASOptions, EGBASOptions(**REPRO_DEFAULTS) if options is None else options, settings)
    q_n = check_count("queries", queries, 1)
    layers = [generator.layer(l) for l in layers]
    k_q, k_run = jax.random.split(key)
    z0s = np.asarray(generator.sample_prior(k_q, q_n))
    if o.delta is not None:  # before any run: a step float32 cannot resolve fails at once
        iv = check_interval(generator, o.interval)
        for z0 in z0s:
            check_delta("delta", o.delta, z0, iv)
    t0 = time.perf_counter()
    runs = _run_all(k_run, generator, critic, o, layers, z0s, include_query, on_run, progress)
    out = _summary(runs, generator, critic, layers)
    out["settings"] = {"delta": o.delta, "interval": np.asarray(o.interval).tolist(), "capacity": o.capacity,
                       "max_candidates": o.max_candidates, "batch": o.batch, "p": o.p,
                       "beropt_options": dict(beropt_settings(o)._asdict()), "include_query": include_query}
    out["wall_s"] = round(time.perf_counter() - t0, 2)
    return out


class _Runs(NamedTuple):
    sigma: np.ndarray       # (3, L, Q)
    sim: np.ndarray         # (3, L, K, Q)
    info: dict              # counts, (L, Q) each
    explored: dict          # EXPLORATION_KEYS, (L, Q) each
    reasons: list           # stop reason names, [L][Q]


def _run_all(k_run, generator, critic, o, layers, z0s, include_query, on_run, progress) -> _Runs:
    """E-GBAS and its metrics for every (layer, query)."""
    l_n, q_n, k_crit = len(layers), len(z0s), critic.n_layers - 1
    r_all = _Runs(np.full((3, l_n, q_n), np.nan), np.full((3, l_n, k_crit, q_n), np.nan),
                  {k: np.zeros((l_n, q_n), np.int64) for k in ("n_samples", "n_rejected", "n_selected",
                                                               "n_candidates")},
                  {k: np.full((l_n, q_n), np.nan) for k in EXPLORATION_KEYS}, [[None] * q_n for _ in range(l_n)])
    tick = None
    if progress is not None:
        tick = _TICKS
        tick.target, tick.total, tick.before = progress, l_n * q_n * int(o.max_candidates), 0
    try:
        for li, l in enumerate(layers):
            for q in range(q_n):
                r = egbas(jax.random.fold_in(jax.random.fold_in(k_run, q), l), generator, generator.params, z0s[q],
                          l, o, progress=tick)
                if tick is not None:
                    tick.tree_done(int(o.max_candidates))
                m = egbas_metrics(r, generator, critic, include_query=include_query)
                for mi, meth in enumerate(METHODS):
                    r_all.sigma[mi, li, q] = m["sigma"][meth]
                    r_all.sim[mi, li, :, q] = m["similarity"][meth]
                for k, v in (("n_samples", m["n_samples"]), ("n_rejected", int(r.tree.n_rejected)),
                             ("n_selected", int(np.count_nonzero(r.v_star))),
                             ("n_candidates", int(r.tree.n_candidates))):
                    r_all.info[k][li, q] = v
                r_all.reasons[li][q] = r.tree.stop_reason_name()
                x = r.exploration
                for k, v in zip(EXPLORATION_KEYS, (r.delta, x["reach"], x["node_distance"]["q90"],
                                                   x["extent"]["median"], x["eps_over_extent"])):
                    r_all.explored[k][li, q] = v
                if on_run is not None:
                    on_run(q, l, r, m)
    finally:
        _TICKS.target = None
    return r_all


def _summary(runs: _Runs, generator, critic, layers) -> dict:
    """The tables of `egbas_tables` from every run's metrics (means, claims, per-query values)."""
    sigma, sim = runs.sigma, runs.sim
    l_n, k_crit = sigma.shape[1], sim.shape[2]
    # Means over the queries at which all three sets exist (eps needs a rejected candidate), so
    # that the methods are compared on the same queries; NaN where there is none.
    defined = np.isfinite(sigma).all(axis=0)  # (L, Q)

    def avg(a):
        ok = defined.reshape(defined.shape[:1] + (1,) * (a.ndim - 3) + defined.shape[1:])
        ok = np.broadcast_to(ok, a.shape[1:])
        total = np.where(ok, a, 0.0).sum(-1)
        n = ok.sum(-1)
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)

    sig_m, sim_m = avg(sigma), avg(sim)  # (3, L), (3, L, K)
    sim_mean = np.nanmean(sim_m, axis=1) if np.isfinite(sim_m).any() else np.full((3, k_crit), np.nan)
    both = np.isfinite(sig_m).all(0)
    claim = {
        "egbas_lowest_sigma": [bool(sig_m[0, i] < sig_m[1:, i].min()) if both[i] else None for i in range(l_n)],
        "egbas_highest_similarity": [[bool(sim_m[0, i, k] > sim_m[1:, i, k].max())
                                      if np.isfinite(sim_m[:, i, k]).all() else None for k in range(k_crit)]
                                     for i in range(l_n)],
        "egbas_highest_similarity_mean_over_layers": [bool(sim_mean[0, k] > sim_mean[1:, k].max())
                                                      if np.isfinite(sim_mean[:, k]).all() else None
                                                      for k in range(k_crit)],
    }
    pix = generator.pixels
    return {
        "sigma": {m: sig_m[i].tolist() for i, m in enumerate(METHODS)},
        "similarity": {m: sim_m[i].tolist() for i, m in enumerate(METHODS)},
        "similarity_mean_over_layers": {m: sim_mean[i].tolist() for i, m in enumerate(METHODS)},
        "claim": claim,
        "paper": PAPER,
        "layers": layers,
        "layer_names": [generator.layer_names[l - 1] for l in layers],
        "critic_layers": list(critic.layer_names[:k_crit]),
        "queries": int(sigma.shape[2]),
        "queries_with_baselines": defined.sum(1).tolist(),
        "per_query": {"sigma": {m: sigma[i].tolist() for i, m in enumerate(METHODS)},
                      "similarity": {m: sim[i].tolist() for i, m in enumerate(METHODS)},
                      **{k: v.tolist() for k, v in runs.info.items()}, "stop_reason": runs.reasons,
                      **{k: v.tolist() for k, v in runs.explored.items()}},
        "exploration": {k: [_median(row) for row in v] for k, v in runs.explored.items()},
        "sigma_scale": f"generator output [{pix.low}, {pix.high}]" if pix else "generator output",
        "metrics_note": "means over the queries whose tree rejected some candidate (eps, hence the "
                        "baselines, exist only then); each set without the query, E-GBAS and the "
                        "baselines equally many samples (as many as the tree accepted)",
    }


class _Ticks:
    """GB-RRT's progress hook for a run of many trees: target(candidates before this tree + its
    own, total). One object for the process (`_TICKS`): GB-RRT's compiled loop calls the very
    object it was traced with, so a new one per tree (or per run of the tables) would compile
    every program again."""

    target, total, before = None, 0, 0

    def __call__(self, drawn, _tree_total=None) -> None:
        if self.target is not None:
            self.target(self.before + int(drawn), self.total)

    def tree_done(self, budget: int) -> None:
        jax.effects_barrier()  # this tree's ticks first
        self.before += budget
        if self.target is not None:
            self.target(self.before, self.total)


_TICKS = _Ticks()


def _median(values) -> float:
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else float("nan")


def _yes(claim) -> str:
    return "n/a" if claim is None else ("yes" if claim else "no")


def tables_markdown(t: dict) -> str:
    """The measured tables of `egbas_tables` beside the paper's numbers, as markdown."""
    names = t.get("layer_names", [])
    layers = t["layers"]
    lines = ["# E-GBAS: Jeon et al. 2020, Tables 1 and 2, measured (paper's DCGAN-MNIST value in parentheses)", ""]
    s = t["settings"]
    delta = "half the region's median extent (per tree)" if s["delta"] is None else s["delta"]
    lines += [f"{t['queries']} random queries; delta {delta}, interval {s['interval']}, "
              f"{s['max_candidates']} candidates per tree (capacity {s['capacity']}), p {s['p']}, batch {s['batch']}; "
              f"sigma on the {t['sigma_scale']} scale; {t['metrics_note']}. Wall time {t['wall_s']} s.", ""]
    lines += ["## Table 1: sigma by generator layer (lower = more consistent)", "",
              "| method | " + " | ".join(f"layer {l} ({n})" for l, n in zip(layers, names)) + " |",
              "|---|" + "---|" * len(layers)]
    for m in METHODS:
        cells = [f"{fmt_number(v, '.4f')} ({fmt_number(t['paper']['sigma'][m][l - 1], '.4f') if l <= 4 else '-'})"
                 for v, l in zip(t["sigma"][m], layers)]
        lines.append(f"| {METHOD_NAMES[m]} | " + " | ".join(cells) + " |")
    lines += ["", "E-GBAS lowest sigma: " + ", ".join(
        f"layer {l}: {_yes(c)}" for l, c in zip(layers, t["claim"]["egbas_lowest_sigma"])),
        "", "Queries with a defined eps (some candidate rejected) per layer: "
        + ", ".join(str(c) for c in t["queries_with_baselines"]), ""]
    ex = t["exploration"]
    lines += ["## How far the trees explored (medians over the queries, latent units)", "",
              "| layer | delta | 90% node distance from z0 | region's median extent | reach | eps_L2 / extent |",
              "|---|---|---|---|---|---|"]
    for i, l in enumerate(layers):
        lines.append(f"| {l} | " + " | ".join(fmt_number(ex[k][i], ".3f") for k in
                                               ("delta", "node_distance_q90", "extent_median", "reach",
                                                "eps_over_extent")) + " |")
    lines += ["", "reach = 90% node distance / median extent: about 1 or more when the trees reached the "
              "region's walls in a typical direction (random rays from z0, first exit).", ""]
    crit = t["critic_layers"]
    lines += ["## Table 2: critic feature cosine similarity (higher = more consistent)", ""]

    def table(title, rows, claim):
        head = " | ".join(f"critic {k + 1} ({n})" for k, n in enumerate(crit))
        out = [f"### {title}", "", f"| method | {head} |", "|---|" + "---|" * len(crit)]
        for m in METHODS:
            cells = [f"{fmt_number(v, '.3f')} "
                     f"({fmt_number(t['paper']['similarity'][m][k], '.3f') if k < 4 else '-'})"
                     for k, v in enumerate(rows[m])]
            out.append(f"| {METHOD_NAMES[m]} | " + " | ".join(cells) + " |")
        out += ["", "E-GBAS highest: " + ", ".join(f"critic {k + 1}: {_yes(c)}" for k, c in enumerate(claim)), ""]
        return out

    lines += table("mean over generator layers", t["similarity_mean_over_layers"],
                   t["claim"]["egbas_highest_similarity_mean_over_layers"])
    for i, (l, n) in enumerate(zip(layers, names)):
        lines += table(f"generator layer {l} ({n})", {m: t["similarity"][m][i] for m in METHODS},
                       t["claim"]["egbas_highest_similarity"][i])
    return "\n".join(lines) + "\n"
