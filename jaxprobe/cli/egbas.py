"""`jaxprobe egbas` and `jaxprobe reproduce egbas` (paper 001, SPEC section 1).

`jaxprobe egbas` runs E-GBAS (BerOpt, then GB-RRT in the selected region, then the L2 / Linf
eps-ball baselines) for one query drawn from the generator's prior, and writes DIR/egbas.json and
DIR/egbas.png (rows: the query, E-GBAS samples, L2 samples, Linf samples).

`jaxprobe reproduce egbas` measures the paper's Table 1 (sigma, the mean over pixels of the standard
deviation of G(z) over a sample set) and Table 2 (the mean cosine similarity of the critic's
layer-k features of G(z) and G(z0)) for E-GBAS and both baselines, on random queries at generator
layers 1-4, and writes DIR/egbas_tables.json and DIR/egbas_tables.md beside the paper's numbers.

Metrics are taken over each sample set without the query: the tree's root is z0 itself, whose
similarity to G(z0) is exactly 1 and which the baselines (drawn around z0) do not contain, so
keeping it would favour E-GBAS by construction. Every set of one query and layer has as many
samples as the tree accepted (SPEC section 1).
"""

from __future__ import annotations

import functools
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxprobe.cli.common import load_model
from jaxprobe.errors import JaxprobeError

OUT_JSON = "egbas.json"
OUT_PNG = "egbas.png"
TABLES_JSON = "egbas_tables.json"
TABLES_MD = "egbas_tables.md"
METHODS = ("egbas", "l2", "linf")
METHOD_NAMES = {"egbas": "E-GBAS", "l2": "L2-based", "linf": "Linf-based"}

# The paper's DCGAN-MNIST numbers (paper 001, Tables 1 and 2; SPEC section 1). Table 1 is by the
# generator layer whose boundaries constrain the samples, Table 2 by the critic's feature layer
# (the paper does not say at which generator layer).
PAPER = {
    "sigma": {"l2": [0.0819, 0.0711, 0.0718, 0.0343], "linf": [0.0834, 0.0722, 0.0720, 0.0344],
              "egbas": [0.0781, 0.0694, 0.0675, 0.0323]},
    "similarity": {"l2": [0.722, 0.819, 0.864, 0.991], "linf": [0.727, 0.823, 0.867, 0.991],
                   "egbas": [0.747, 0.838, 0.878, 0.992]},
}

# Settings of the reproduction. The paper gives no sample count, step size or interval; it runs
# GB-RRT for N iterations with no capacity (Algorithm 2), so the reproduction's tree never fills
# (capacity = candidates + 1) and every query's sets have as many samples as it accepted.
# delta: eps (hence both baselines) exists only if the tree meets its region's boundary. In a
# pilot on the default dcgan (3 queries from another seed, layers 1-4, 1024 candidates, interval
# 1), trees with delta 0.2 stayed within distance ~1 of z0 and rejected nothing at layer 4 and
# 2-9 candidates at layers 1-2; delta 0.5 was the smallest of {0.2, 0.5, 1} at which every tree
# rejected candidates (12-430). The choice used rejection counts only, no table.
DELTA = 0.5
REPRO_DEFAULTS = dict(delta=DELTA, interval=1.0, max_candidates=1024, capacity=1025, batch=64, p=0.5)


# ---------------------------------------------------------------- argument handling


def default_critic_name(generator) -> str:
    """The critic a generator was trained with (its manifest's "critic" field)."""
    name = generator.manifest.get("critic")
    if not name:
        raise JaxprobeError(f"--critic: {generator.name!r} names no critic in its manifest; pass --critic")
    return name


def _count(flag: str, value, minimum: int, what: str) -> int:
    if value is None or value < minimum:
        raise JaxprobeError(f"{flag}: expected an integer >= {minimum} ({what}), got {value}")
    return int(value)


def _check_settings(args) -> None:
    """Refuse bad --delta, --p, --interval before any compilation (the library checks them too,
    but only after BerOpt has run)."""
    if not (math.isfinite(args.delta) and args.delta > 0):
        raise JaxprobeError(f"--delta: expected a positive step size, got {args.delta}")
    if not 0.0 < args.p < 1.0:
        raise JaxprobeError(f"--p: expected a threshold in (0, 1), got {args.p}")
    if not (math.isfinite(args.interval) and args.interval > 0):
        raise JaxprobeError(f"--interval: expected a positive half-width, got {args.interval}")


def _jsonable(x):
    """Host values for json: arrays to lists, non-finite floats to None (JSON has no NaN)."""
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.ndarray, jax.Array)):
        return _jsonable(np.asarray(x).tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


def _write_json(path: Path, obj) -> None:
    """One top-level key per line, values compact (the latent vectors are long lists)."""
    import json

    from jaxprobe.io import write_text

    obj = _jsonable(obj)
    body = ",\n".join(f" {json.dumps(k)}: {json.dumps(v, allow_nan=False)}" for k, v in obj.items())
    write_text(path, "{\n" + body + "\n}\n")


def _atomic_png(path: Path, draw) -> None:
    """Call draw(tmp_path) to write a PNG at a temporary name beside `path`, then rename it."""
    from jaxprobe.io import atomic_file

    with atomic_file(path, suffix=".png") as tmp:
        draw(str(tmp))


# ---------------------------------------------------------------- metrics on fixed-shape sets


@functools.partial(jax.jit, static_argnums=(0, 2))
def _set_metrics(generator, gparams, critic, cparams, z0, sets, counts):
    """Table 1's sigma and Table 2's similarity for S padded sample sets in one call.

    Args:
      generator, gparams: the generator G (static) and its parameters.
      critic, cparams: the critic (static; None to skip the similarity) and its parameters.
      z0: the query, (*latent_shape).
      sets: (S, N, *latent_shape) latent sample sets, rows [0, counts[s]) of set s valid.
      counts: (S,) int, valid rows per set.

    Returns:
      (sigma, similarity, std):
      sigma (S,): mean over pixels of the population std of G(z) over the valid rows (paper eq. 3,
        the masked form of `jaxprobe.gbas.egbas.sample_sigma`), on the generator's output scale;
      similarity (S, K) for the critic's K = L - 1 feature layers: mean over the valid rows of
        cos(d_k(G(z)), d_k(G(z0))) (paper eq. 2, the masked form of `feature_similarity`);
        (S, 0) without a critic. NaN for a set with no valid row;
      std (S, *image): the per-pixel standard deviation whose mean is sigma.
    The padding keeps one compiled function for every sample count.
    """
    from jaxprobe.models.pixels import convert_pixels

    s, n = sets.shape[:2]
    x = generator.forward(gparams, jnp.concatenate([z0[None], sets.reshape((s * n,) + z0.shape)]))
    imgs = x[1:].reshape((s, n) + x.shape[1:])
    w = (jnp.arange(n)[None, :] < counts[:, None]).astype(x.dtype)  # (S, N)
    wb = w.reshape((s, n) + (1,) * (x.ndim - 1))
    total = jnp.sum(w, axis=1)
    denom = jnp.maximum(total, 1.0).reshape((s, 1) + (1,) * (x.ndim - 1))
    mean = jnp.sum(wb * imgs, axis=1, keepdims=True) / denom
    var = jnp.sum(wb * (imgs - mean) ** 2, axis=1, keepdims=True) / denom
    std = jnp.sqrt(var)[:, 0]  # (S, *image): the per-pixel standard deviation (paper Figure 6)
    sigma = jnp.mean(std.reshape(s, -1), axis=1)
    sigma = jnp.where(total > 0, sigma, jnp.nan)
    if critic is None:
        return sigma, jnp.zeros((s, 0), x.dtype), std
    if generator.pixels is not None and critic.pixels is not None:
        x = convert_pixels(x, generator.pixels, critic.pixels)
    sims = []
    for k in range(1, critic.n_layers):  # every layer but the scalar head; XLA shares the prefixes
        f = critic.activation(cparams, x, k).reshape(x.shape[0], -1)
        norms = jnp.linalg.norm(f, axis=1)
        cos = (f[1:] @ f[0]) / jnp.maximum(norms[1:] * norms[0], 1e-12)
        sims.append(jnp.sum(w * cos.reshape(s, n), axis=1) / jnp.maximum(total, 1.0))
    sim = jnp.stack(sims, axis=1)
    return sigma, jnp.where(total[:, None] > 0, sim, jnp.nan), std


def sample_sets(result, *, include_query: bool = False):
    """The three latent sample sets of an `EGBASResult`, padded: (sets (3, N, *latent), counts (3,)).

    N is the tree's capacity. E-GBAS: the accepted nodes (without the query unless
    `include_query`); L2 and Linf: as many of their draws (none where eps is undefined, i.e. when
    nothing was rejected).
    """
    cap = result.tree.nodes.shape[0]
    nodes = result.samples if include_query else result.samples[1:]
    n = nodes.shape[0]
    sets = np.zeros((3, cap) + result.query.shape, np.float32)
    counts = np.zeros((3,), np.int32)
    sets[0, :n], counts[0] = nodes, n
    if math.isfinite(result.eps_l2):
        sets[1, :n], sets[2, :n] = result.l2_samples[:n], result.linf_samples[:n]
        counts[1:] = n
    return sets, counts


def egbas_metrics(result, generator, critic=None, *, include_query: bool = False) -> dict:
    """sigma and critic similarity of E-GBAS, L2 and Linf sample sets for one `EGBASResult`.

    Returns {"sigma": {method: float}, "similarity": {method: [K floats]}, "n_samples": int,
    "std_maps": (3, *image) per-pixel standard deviations on the output scale (not JSON)};
    NaN where a set is empty.
    """
    sets, counts = sample_sets(result, include_query=include_query)
    sigma, sim, std = _set_metrics(generator, generator.params, critic, None if critic is None else critic.params,
                                   jnp.asarray(result.query), jnp.asarray(sets), jnp.asarray(counts))
    sigma, sim = np.asarray(sigma, np.float64), np.asarray(sim, np.float64)
    out = {"sigma": dict(zip(METHODS, sigma.tolist())), "n_samples": int(counts[0]), "std_maps": np.asarray(std)}
    if critic is not None:
        out["similarity"] = {m: sim[i].tolist() for i, m in enumerate(METHODS)}
    return out


# ---------------------------------------------------------------- jaxprobe egbas


@functools.partial(jax.jit, static_argnums=0)
def _canonical(generator, params, z):
    return generator.pixels.to_canonical(generator.forward(params, z))


def canonical_images(generator, z) -> np.ndarray:
    """G(z) on the canonical [0, 1] scale (jitted once per generator and batch size)."""
    return np.asarray(_canonical(generator, generator.params, jnp.asarray(z, jnp.float32)))


def sample_rows(result, generator, *, columns: int = 12, key=None):
    """Canonical [0, 1] images for the figure: (4, columns, H, W, C) and the rows' labels.

    Row 0 the query (then blank cells), row 1 E-GBAS nodes (a uniform random choice among the
    accepted nodes other than the query, as the paper's Figure 3b), rows 2-3 the L2 and Linf
    draws (blank where eps is undefined). Blank cells are white.
    """
    n = result.samples.shape[0] - 1
    key = jax.random.PRNGKey(0) if key is None else key
    # numpy's generator seeded by the key: a jax permutation of n would compile anew for every n
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).tolist())
    m = min(columns, n)
    pick = np.sort(rng.permutation(n)[:m]) + 1
    has_baselines = math.isfinite(result.eps_l2)
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
    labels = ["query", "E-GBAS", "L2" if has_baselines else "L2 (no eps)", "Linf" if has_baselines else "Linf (no eps)"]
    return grid, labels


def _cmd_egbas(args) -> None:
    from jaxprobe.gbas.egbas import egbas
    from jaxprobe.experiments.figures import save_grid

    t0 = time.perf_counter()
    model = load_model(args.model, "--model", "generator")
    l = model.layer(args.layer)
    capacity = _count("--n", args.n, 1, "accepted nodes wanted, the tree's capacity")
    iterations = _count("--iterations", args.iterations, 0, "candidates at most")
    batch = _count("--batch", args.batch, 1, "candidates per step")
    steps = _count("--beropt-steps", args.beropt_steps, 1, "BerOpt's Adam steps")
    _check_settings(args)
    critic = load_model(args.critic, "--critic", "critic") if args.critic else None
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise JaxprobeError(f"--out: {out} exists and is not a directory")

    k_query, k_run, k_fig = jax.random.split(jax.random.PRNGKey(args.seed), 3)
    z0 = model.sample_prior(k_query, 1)[0]
    r = egbas(k_run, model, model.params, z0, l, p=args.p, delta=args.delta, interval=args.interval,
              capacity=capacity, max_candidates=iterations, batch=batch,
              beropt_options=dict(steps=steps))
    metrics = egbas_metrics(r, model, critic)
    grid, labels = sample_rows(r, model, key=k_fig)
    title = f"{model.name} layer {l} ({model.layer_names[l - 1]}): query, E-GBAS, L2, Linf"
    _atomic_png(out / OUT_PNG, lambda p: save_grid(p, grid.reshape((-1,) + grid.shape[2:]), grid.shape[1], title,
                                                   row_labels=labels))
    tree = r.tree
    result = {
        "method": "E-GBAS (paper 001, Algorithm 3) with the L2 / Linf eps-ball baselines (section 4)",
        "model": args.model, "layer": l, "layer_name": model.layer_names[l - 1], "seed": args.seed,
        "settings": {"n": capacity, "iterations": iterations, "delta": args.delta, "p": args.p,
                     "interval": args.interval, "batch": batch, "beropt_steps": steps},
        "query": r.query.reshape(-1),
        "v_star": r.v_star.reshape(-1).astype(int), "n_units": int(r.v_star.size),
        "n_selected": int(np.count_nonzero(r.v_star)),
        "beropt_lambda": r.lam, "beropt_final_loss": float(r.beropt_losses[-1]),
        "accepted": r.samples.reshape(r.samples.shape[0], -1), "parents": tree.accepted_parents(),
        "n_accepted": int(tree.count), "n_rejected": int(tree.n_rejected), "n_close": int(tree.n_close),
        "n_candidates": int(tree.n_candidates), "delta": args.delta, "stop_reason": tree.stop_reason_name(),
        "eps_l2": r.eps_l2, "eps_linf": r.eps_linf,
        "sigma": metrics["sigma"], "n_metric_samples": metrics["n_samples"],
        "metrics_note": "sigma (and similarity) over each set without the query; sigma on the generator's "
                        f"output scale [{model.pixels.low}, {model.pixels.high}]" if model.pixels else
                        "sigma over each set without the query, on the generator's output scale",
        "image": OUT_PNG, "wall_s": round(time.perf_counter() - t0, 2),
    }
    if critic is not None:
        result["critic"] = args.critic
        result["similarity"] = metrics["similarity"]
    _write_json(out / OUT_JSON, result)
    print(f"{tree.stop_reason_name()}: {int(tree.count)} nodes (query included), {int(tree.n_rejected)} rejected, "
          f"{result['n_selected']}/{result['n_units']} units selected; wrote {out / OUT_JSON} and {out / OUT_PNG}")


# ---------------------------------------------------------------- jaxprobe reproduce egbas


def egbas_tables(key, generator, critic, *, layers=(1, 2, 3, 4), queries: int = 10,
                 delta: float = REPRO_DEFAULTS["delta"], interval=REPRO_DEFAULTS["interval"],
                 capacity: int = REPRO_DEFAULTS["capacity"], max_candidates: int = REPRO_DEFAULTS["max_candidates"],
                 batch: int = REPRO_DEFAULTS["batch"], p: float = REPRO_DEFAULTS["p"],
                 beropt_options: dict | None = None, include_query: bool = False, on_run=None) -> dict:
    """The paper's Tables 1 and 2 measured on `generator` and `critic` (paper 001, section 4.2).

    For `queries` latent vectors drawn from the generator's prior (the same ones at every layer) and
    each generator layer l, E-GBAS (`jaxprobe.gbas.egbas.egbas`, key fold_in(fold_in(key_run, q), l))
    gives three sample sets (E-GBAS nodes, L2 and Linf draws, equally many); sigma (eq. 3) and the
    critic's feature similarity (eq. 2) of each set are averaged over the queries at which all
    three sets exist (a query whose tree rejected nothing has no eps, hence no baseline sets;
    "queries_with_baselines" counts them, "per_query" keeps every value).

    Args:
      key: PRNG key (split into the queries' key and the runs' key).
      generator, critic: probe-able models (the critic's feature layers are all but its head).
      layers: generator layers (numbers or names).
      queries: number of random queries, >= 1.
      delta, interval, capacity, max_candidates, batch, p, beropt_options: as in `egbas`.
      include_query: count the query in the E-GBAS set (default False; see the module docstring).
      on_run: optional callback on_run(q, l, EGBASResult, metrics) after every run.

    Returns:
      A JSON-ready dict: {"sigma": {method: [per layer]}, "similarity": {method: [[per critic layer]
      per generator layer]}, "similarity_mean_over_layers": {method: [per critic layer]},
      "per_query": ..., "counts": ..., "claim": ..., "paper": PAPER, "settings": ...}.
    """
    if isinstance(queries, bool) or int(queries) != queries or queries < 1:
        raise JaxprobeError(f"queries: expected an integer >= 1, got {queries!r}")
    from jaxprobe.gbas.egbas import egbas

    layers = [generator.layer(l) for l in layers]
    k_q, k_run = jax.random.split(key)
    z0s = np.asarray(generator.sample_prior(k_q, int(queries)))
    q_n, l_n = int(queries), len(layers)
    k_crit = critic.n_layers - 1
    sigma = np.full((3, l_n, q_n), np.nan)
    sim = np.full((3, l_n, k_crit, q_n), np.nan)
    info = {k: np.zeros((l_n, q_n), np.int64) for k in ("n_samples", "n_rejected", "n_selected", "n_candidates")}
    reasons = [[None] * q_n for _ in range(l_n)]
    t0 = time.perf_counter()
    for li, l in enumerate(layers):
        for q in range(q_n):
            r = egbas(jax.random.fold_in(jax.random.fold_in(k_run, q), l), generator, generator.params, z0s[q], l,
                      p=p, delta=delta, interval=interval, capacity=capacity, max_candidates=max_candidates,
                      batch=batch, beropt_options=beropt_options)
            m = egbas_metrics(r, generator, critic, include_query=include_query)
            for mi, meth in enumerate(METHODS):
                sigma[mi, li, q] = m["sigma"][meth]
                sim[mi, li, :, q] = m["similarity"][meth]
            info["n_samples"][li, q] = m["n_samples"]
            info["n_rejected"][li, q] = int(r.tree.n_rejected)
            info["n_selected"][li, q] = int(np.count_nonzero(r.v_star))
            info["n_candidates"][li, q] = int(r.tree.n_candidates)
            reasons[li][q] = r.tree.stop_reason_name()
            if on_run is not None:
                on_run(q, l, r, m)
    wall = time.perf_counter() - t0

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
        "queries": q_n,
        "queries_with_baselines": defined.sum(1).tolist(),
        "per_query": {"sigma": {m: sigma[i].tolist() for i, m in enumerate(METHODS)},
                      "similarity": {m: sim[i].tolist() for i, m in enumerate(METHODS)},
                      **{k: v.tolist() for k, v in info.items()}, "stop_reason": reasons},
        "settings": {"delta": delta, "interval": np.asarray(interval).tolist(), "capacity": capacity,
                     "max_candidates": max_candidates, "batch": batch, "p": p,
                     "beropt_options": dict(beropt_options or {}), "include_query": include_query},
        "sigma_scale": f"generator output [{pix.low}, {pix.high}]" if pix else "generator output",
        "metrics_note": "means over the queries whose tree rejected some candidate (eps, hence the "
                        "baselines, exist only then); each set without the query, E-GBAS and the "
                        "baselines equally many samples (as many as the tree accepted)",
        "wall_s": round(wall, 2),
    }


def _fmt(x, digits=4):
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _yes(claim) -> str:
    return "n/a" if claim is None else ("yes" if claim else "no")


def tables_markdown(t: dict) -> str:
    """The measured tables beside the paper's numbers, as markdown."""
    names = t.get("layer_names", [])
    layers = t["layers"]
    lines = ["# E-GBAS: paper 001, Tables 1 and 2, measured (paper's DCGAN-MNIST value in parentheses)", ""]
    s = t["settings"]
    lines += [f"{t['queries']} random queries; delta {s['delta']}, interval {s['interval']}, "
              f"{s['max_candidates']} candidates per tree (capacity {s['capacity']}), p {s['p']}, batch {s['batch']}; "
              f"sigma on the {t['sigma_scale']} scale; {t['metrics_note']}. Wall time {t['wall_s']} s.", ""]
    lines += ["## Table 1: sigma by generator layer (lower = more consistent)", "",
              "| method | " + " | ".join(f"layer {l} ({n})" for l, n in zip(layers, names)) + " |",
              "|---|" + "---|" * len(layers)]
    for m in METHODS:
        cells = [f"{_fmt(v)} ({_fmt(t['paper']['sigma'][m][l - 1]) if l <= 4 else '-'})"
                 for v, l in zip(t["sigma"][m], layers)]
        lines.append(f"| {METHOD_NAMES[m]} | " + " | ".join(cells) + " |")
    lines += ["", "E-GBAS lowest sigma: " + ", ".join(
        f"layer {l}: {_yes(c)}" for l, c in zip(layers, t["claim"]["egbas_lowest_sigma"])),
        "", "Queries with a defined eps (some candidate rejected) per layer: "
        + ", ".join(str(c) for c in t["queries_with_baselines"]), ""]
    crit = t["critic_layers"]
    lines += ["## Table 2: critic feature cosine similarity (higher = more consistent)", ""]

    def table(title, rows, claim):
        head = " | ".join(f"critic {k + 1} ({n})" for k, n in enumerate(crit))
        out = [f"### {title}", "", f"| method | {head} |", "|---|" + "---|" * len(crit)]
        for m in METHODS:
            cells = [f"{_fmt(v, 3)} ({_fmt(t['paper']['similarity'][m][k], 3) if k < 4 else '-'})"
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


def _cmd_reproduce(args) -> None:
    t0 = time.perf_counter()
    generator = load_model(args.model, "--model", "generator")
    critic = load_model(args.critic or default_critic_name(generator), "--critic", "critic")
    queries = _count("--queries", args.queries, 1, "random queries")
    _check_settings(args)
    iterations = _count("--iterations", args.iterations, 0, "candidates per tree")
    capacity = iterations + 1 if args.n is None else _count("--n", args.n, 1, "the tree's capacity")
    layers = [generator.layer(l) for l in (args.layers or range(1, generator.n_layers + 1))]
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise JaxprobeError(f"--out: {out} exists and is not a directory")
    t = egbas_tables(jax.random.PRNGKey(args.seed), generator, critic, layers=layers, queries=queries,
                     delta=args.delta, interval=args.interval, capacity=capacity, max_candidates=iterations,
                     batch=_count("--batch", args.batch, 1, "candidates per step"), p=args.p,
                     beropt_options=dict(steps=_count("--beropt-steps", args.beropt_steps, 1, "BerOpt's Adam steps")))
    t.update(model=args.model, critic=args.critic or default_critic_name(generator), seed=args.seed,
             total_wall_s=round(time.perf_counter() - t0, 2))
    _write_json(out / TABLES_JSON, t)
    from jaxprobe.io import write_text

    write_text(out / TABLES_MD, tables_markdown(t))
    print(tables_markdown(t))
    print(f"wrote {out / TABLES_JSON} and {out / TABLES_MD}")


# ---------------------------------------------------------------- parsers


def add_commands(sub, reproduce) -> None:
    """Add `jaxprobe egbas` to `sub` and `jaxprobe reproduce egbas` to `reproduce`."""
    p = sub.add_parser("egbas", help="E-GBAS: sample a generator's region of one query at one layer (paper 001)",
                       description="E-GBAS (paper 001): BerOpt selects the boundaries that support G(z0) at "
                                   "--layer, GB-RRT samples the selected region, L2 / Linf eps-ball baselines.")
    p.add_argument("--model", default="dcgan", help="a generator: shipped name or model directory (default dcgan)")
    p.add_argument("--layer", required=True, help="generator layer, a number 1..L or a name")
    p.add_argument("--seed", type=int, default=0, help="seed of the query and of the sampling (default 0)")
    p.add_argument("--n", type=int, default=128,
                   help="accepted nodes wanted, the query included: the tree's capacity (128)")
    p.add_argument("--iterations", type=int, default=4096, help="candidates drawn at most (4096)")
    p.add_argument("--delta", type=float, default=DELTA,
                   help=f"GB-RRT step size ({DELTA}: at the library's 0.2, trees at dcgan's layer 4 rejected nothing, "
                        "so the eps-ball baselines were undefined)")
    p.add_argument("--p", type=float, default=0.5, help="BerOpt threshold on theta, in (0, 1) (0.5)")
    p.add_argument("--interval", type=float, default=1.0, help="half-width I of the sampling box around z0 (1.0)")
    p.add_argument("--batch", type=int, default=64, help="candidates per batched GB-RRT step (64)")
    p.add_argument("--beropt-steps", type=int, default=300, help="BerOpt's Adam steps (300)")
    p.add_argument("--critic", default=None, help="also measure critic feature similarity with this critic")
    p.add_argument("--out", required=True, help="output directory (egbas.json, egbas.png)")
    p.set_defaults(func=_cmd_egbas)

    r = reproduce.add_parser("egbas", help="paper 001 Tables 1-2 (sigma, critic similarity) on the default dcgan")
    r.add_argument("--out", required=True, help="output directory (egbas_tables.json, egbas_tables.md)")
    r.add_argument("--queries", type=int, default=10, help="random queries (10, as the paper)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--model", default="dcgan", help="generator (default dcgan)")
    r.add_argument("--critic", default=None, help="critic (default: the generator manifest's critic)")
    r.add_argument("--layers", nargs="+", default=None, help="generator layers (default all)")
    r.add_argument("--iterations", type=int, default=REPRO_DEFAULTS["max_candidates"],
                   help=f"candidates per tree ({REPRO_DEFAULTS['max_candidates']})")
    r.add_argument("--n", type=int, default=None, help="tree capacity (default iterations + 1: never fills)")
    r.add_argument("--delta", type=float, default=REPRO_DEFAULTS["delta"])
    r.add_argument("--interval", type=float, default=REPRO_DEFAULTS["interval"])
    r.add_argument("--p", type=float, default=REPRO_DEFAULTS["p"])
    r.add_argument("--batch", type=int, default=REPRO_DEFAULTS["batch"])
    r.add_argument("--beropt-steps", type=int, default=300, help="BerOpt's Adam steps (300)")
    r.set_defaults(func=_cmd_reproduce)
