"""E-GBAS's trade-off between the mask's size and the region's size: a BerOpt lambda sweep
(Jeon et al. 2020, eq. 1's lambda; issue 25, point 7).

BerOpt's lambda prices each kept unit: a larger lambda keeps fewer boundaries, so the region
GR_V* grows and its samples vary more. `egbas_lambda_sweep` runs E-GBAS at multiples of the
default lambda (`jaxprobe.gbas.beropt.default_lambda`, computed per query and layer) and reports,
per multiple, the units kept, the thresholded mask's reconstruction error, the region's extent,
Table 1's sigma and Table 2's critic similarities for E-GBAS and both eps-ball baselines (medians
or means over the queries, as in `egbas_tables`); `lambda_figure` draws them against lambda.

The support error per multiple is what BerOpt's own default reads (`jaxprobe.gbas.beropt.
SUPPORT_RULE`: per query, the largest multiple whose thresholded mask reproduces G(z0) to within
1/4 of the empty mask's error, ||f_{L:l+1}(h0 * 1[V* != 0]) - G(z0)|| <= 1/4 ||f_{L:l+1}(0) -
G(z0)||); `supported_multiple` is the largest multiple that rule accepts at every query of the
sweep.
"""

from __future__ import annotations

import jax
import numpy as np

from jaxprobe.checks import check_count, check_number
from jaxprobe.errors import JaxprobeError
from jaxprobe.experiments.egbas_tables import REPRO_DEFAULTS, METHOD_NAMES
from jaxprobe.gbas.beropt import SUPPORT, SUPPORT_RULE, default_lambda, support_error
from jaxprobe.gbas.egbas import EGBASOptions, beropt_settings, egbas
from jaxprobe.gbas.metrics import METHODS, egbas_metrics
from jaxprobe.checks import with_settings


def egbas_lambda_sweep(key, generator, critic, lambdas, options: EGBASOptions | None = None, *, layer=1,
                       queries: int = 4, progress=None, **settings) -> dict:
    """E-GBAS at `lambdas` times the default lambda, for `queries` prior draws at one `layer`.

    Query q (the same at every lambda) runs with key fold_in(key_run, q), so the multiples differ
    only in lambda. Args as `egbas_tables` (`options` None: `REPRO_DEFAULTS`); `progress(done,
    total)` counts finished runs.

    Returns:
      A JSON-ready dict: "lambdas" (the multiples), per multiple "units_kept" (mean over queries
      of the units with V*_i != 0) and "units" (D_l), "extent" (median over queries of the
      region's median extent), "sigma" {method: [per multiple]} and "similarity" {method:
      [[per critic layer] per multiple]} (means over the queries where the baselines exist),
      "queries_with_baselines" and "per_query" values.
    """
    lambdas = [check_number("lambdas", m, low=0, low_open=True, what="positive multiples of the default lambda")
               for m in (lambdas if np.ndim(lambdas) else [lambdas])]
    if not lambdas:
        raise JaxprobeError("lambdas: expected at least one multiple of the default lambda, got none")
    o = with_settings(EGBASOptions, EGBASOptions(**REPRO_DEFAULTS) if options is None else options, settings)
    q_n, l = check_count("queries", queries, 1), generator.layer(layer)
    k_q, k_run = jax.random.split(key)
    z0s = generator.sample_prior(k_q, q_n)
    base = [float(default_lambda(generator, generator.params, z0s[q], l)) for q in range(q_n)]
    k_crit = critic.n_layers - 1
    kept = np.zeros((len(lambdas), q_n))
    error = np.zeros((len(lambdas), q_n))
    extent = np.full((len(lambdas), q_n), np.nan)
    sigma = np.full((3, len(lambdas), q_n), np.nan)
    sim = np.full((3, len(lambdas), k_crit, q_n), np.nan)
    for i, m in enumerate(lambdas):
        for q in range(q_n):
            ber = beropt_settings(o)._replace(lam=m * base[q])
            r = egbas(jax.random.fold_in(k_run, q), generator, generator.params, z0s[q], l,
                      o._replace(beropt_options=ber))
            met = egbas_metrics(r, generator, critic)
            kept[i, q], extent[i, q] = np.count_nonzero(r.v_star), np.median(r.extent)
            error[i, q] = float(support_error(generator, generator.params, z0s[q], l, r.v_star))
            for mi, meth in enumerate(METHODS):
                sigma[mi, i, q], sim[mi, i, :, q] = met["sigma"][meth], met["similarity"][meth]
            if progress is not None:
                progress(i * q_n + q + 1, len(lambdas) * q_n)
    ok = np.isfinite(sigma).all(0)  # (M, Q): every set exists

    def mean(a):  # over the queries where all three sets exist
        w = np.broadcast_to(ok.reshape(ok.shape[:1] + (1,) * (a.ndim - 3) + ok.shape[1:]), a.shape[1:])
        n = w.sum(-1)
        return np.where(n > 0, np.where(w, a, 0.0).sum(-1) / np.maximum(n, 1), np.nan)

    sig_m, sim_m = mean(sigma), mean(sim)
    return {
        "lambdas": lambdas, "layer": l, "layer_name": generator.layer_names[l - 1], "queries": q_n,
        "default_lambda": base, "units": int(r.v_star.size),
        "units_kept": kept.mean(1).tolist(), "extent": np.nanmedian(extent, 1).tolist(),
        "support_error": error.max(1).tolist(), "support_error_median": np.median(error, 1).tolist(),
        "support_rule": SUPPORT_RULE,
        "supported_multiple": supported_multiple(lambdas, error.max(1)),
        "sigma": {m: sig_m[i].tolist() for i, m in enumerate(METHODS)},
        "similarity": {m: sim_m[i].tolist() for i, m in enumerate(METHODS)},
        "critic_layers": list(critic.layer_names[:k_crit]),
        "queries_with_baselines": ok.sum(1).tolist(),
        "per_query": {"units_kept": kept.astype(int).tolist(), "extent": extent.tolist(), "support_error": error.tolist(),
                      "sigma": {m: sigma[i].tolist() for i, m in enumerate(METHODS)}},
        "settings": {"delta": o.delta, "interval": np.asarray(o.interval).tolist(), "capacity": o.capacity,
                     "max_candidates": o.max_candidates, "batch": o.batch, "p": o.p},
    }


def supported_multiple(lambdas, worst_error) -> float | None:
    """The rule behind the default lambda: the largest of `lambdas` whose worst relative support
    error over the queries (`support_error`) is at most `SUPPORT`; None when none is."""
    ok = [m for m, e in zip(lambdas, worst_error) if e <= SUPPORT]
    return max(ok) if ok else None


def lambda_figure(sweep: dict):
    """A matplotlib figure of `egbas_lambda_sweep`: against lambda / default (log scale), the units
    kept and the region's extent (left), sigma per method (middle) and the critic's layer-1
    similarity per method (right)."""
    from jaxprobe.experiments.figures import pyplot

    plt = pyplot()
    x = np.asarray(sweep["lambdas"], np.float64)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), layout="constrained")
    ax = axes[0]
    ax.plot(x, np.asarray(sweep["units_kept"]) / sweep["units"], "o-", label="units kept (fraction)")
    ax.plot(x, sweep["extent"], "s--", label="region extent (latent units)")
    ax.plot(x, sweep["support_error"], "^:", label="support error (worst query)")
    ax.axhline(SUPPORT, color="grey", lw=0.8)
    ax.set(xscale="log", xlabel="lambda / default lambda", ylabel="fraction / latent units")
    ax.legend(fontsize=8)
    for ax, key, label in ((axes[1], "sigma", "sigma (Table 1)"), (axes[2], "similarity", "critic layer 1 similarity")):
        for m in METHODS:
            y = np.asarray(sweep[key][m], np.float64)
            ax.plot(x, y if y.ndim == 1 else y[:, 0], "o-", label=METHOD_NAMES[m])
        ax.set(xscale="log", xlabel="lambda / default lambda", ylabel=label)
        ax.legend(fontsize=8)
    fig.suptitle(f"E-GBAS lambda sweep, layer {sweep['layer']} ({sweep['layer_name']}), {sweep['queries']} queries")
    return fig


def sweep_markdown(sweep: dict) -> str:
    """The sweep as a markdown table (one row per multiple of the default lambda)."""
    head = ["lambda / default", "units kept", "support error", "extent"] + [f"sigma {METHOD_NAMES[m]}" for m in METHODS] + \
        [f"critic-1 sim. {METHOD_NAMES[m]}" for m in METHODS]
    lines = [f"# E-GBAS lambda sweep: layer {sweep['layer']} ({sweep['layer_name']}), {sweep['queries']} queries", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, m in enumerate(sweep["lambdas"]):
        cells = [f"{m:g}", f"{sweep['units_kept'][i]:.0f} / {sweep['units']}", f"{sweep['support_error'][i]:.3f}",
                 f"{sweep['extent'][i]:.3f}"]
        cells += [f"{sweep['sigma'][k][i]:.4f}" for k in METHODS]
        cells += [f"{sweep['similarity'][k][i][0]:.3f}" for k in METHODS]
        lines.append("| " + " | ".join(cells) + " |")
    chosen = sweep["supported_multiple"]
    lines += ["", "Support error: the worst query's ||f(h0 * 1[V* != 0]) - G(z0)|| / ||f(0) - G(z0)||. BerOpt's "
              f"default lambda, per query: {sweep['support_rule']}. The largest multiple here that supports every "
              "query: " + ("none." if chosen is None else f"{chosen:g}.")]
    return "\n".join(lines) + "\n"
