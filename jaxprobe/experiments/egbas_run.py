"""One E-GBAS run for the `jaxprobe egbas` command (Jeon et al. 2020, Algorithm 3): the query drawn
from the generator's prior, E-GBAS with its eps-ball baselines, the Table 1-2 metrics of the three
sample sets, the figure's images and the JSON record, returned as data (the command writes them).
"""

from __future__ import annotations

import time
from typing import NamedTuple

import jax
import numpy as np

from jaxprobe.experiments.egbas_tables import sample_rows
from jaxprobe.gbas.egbas import EGBASOptions, EGBASResult, beropt_settings, egbas
from jaxprobe.gbas.metrics import egbas_metrics

METHOD = "E-GBAS (Jeon et al. 2020, Algorithm 3) with the L2 / Linf eps-ball baselines (section 4)"


class EGBASRun(NamedTuple):
    """What `egbas_run` returns.

    Attributes:
      record: the JSON-ready record (settings, query, V*, tree, eps, exploration, sigma and, with
        a critic, similarity).
      result: the `EGBASResult`.
      grid: (4, columns, H, W, C) canonical [0, 1] images of the figure (rows: query, E-GBAS, L2,
        Linf; `sample_rows`), with `labels` (4 strings) and `title`.
      warnings: one line per thing the reader should know (eps undefined, a truncated rejected set).
    """

    record: dict
    result: EGBASResult
    grid: np.ndarray
    labels: list
    title: str
    warnings: list


def egbas_run(model, layer, options: EGBASOptions, *, seed: int = 0, critic=None, model_name: str | None = None,
              critic_name: str | None = None, progress=None) -> EGBASRun:
    """E-GBAS for one query z0 ~ prior (key `split(PRNGKey(seed), 3)[0]`) at `layer`, measured.

    Args:
      model: the generator (a probe-able `Model`); `model_name` names it in the record.
      layer: the layer l (name or number).
      options: `EGBASOptions` (the command's settings).
      seed: seeds the query, the run (second key) and the figure's choice of nodes (third key).
      critic: None, or a critic whose feature similarity (Table 2, eq. 2) is measured too;
        `critic_name` names it in the record.
      progress: as in `jaxprobe.gbas.gbrrt.gbrrt` (the tree's candidates).

    Returns:
      `EGBASRun`.
    """
    t0 = time.perf_counter()
    l = model.layer(layer)
    k_query, k_run, k_fig = jax.random.split(jax.random.PRNGKey(seed), 3)
    z0 = model.sample_prior(k_query, 1)[0]
    r = egbas(k_run, model, model.params, z0, l, options, progress=progress)
    metrics = egbas_metrics(r, model, critic)
    grid, labels = sample_rows(r, model, key=k_fig)
    title = f"{model.name} layer {l} ({model.layer_names[l - 1]}): query, E-GBAS, L2, Linf"
    record = _record(r, model, options, metrics, model_name=model_name or model.name, seed=seed)
    if critic is not None:
        record["critic"] = critic_name or critic.name
        record["similarity"] = metrics["similarity"]
    record["wall_s"] = round(time.perf_counter() - t0, 2)
    warnings = [r.eps_reason] if r.eps_reason else []
    if r.rejected_truncated:
        warnings.append(f"eps from the first {r.rejected.shape[0]} of {int(r.tree.n_rejected)} rejected candidates "
                        "(the rejected buffer was full)")
    return EGBASRun(record, r, grid, labels, title, warnings)


def _record(r: EGBASResult, model, o: EGBASOptions, metrics: dict, *, model_name: str, seed: int) -> dict:
    tree = r.tree
    scale = (f"sigma (and similarity) over each set without the query; sigma on the generator's output scale "
             f"[{model.pixels.low}, {model.pixels.high}]" if model.pixels else
             "sigma over each set without the query, on the generator's output scale")
    return {
        "method": METHOD, "model": model_name, "layer": r.layer, "layer_name": model.layer_names[r.layer - 1],
        "seed": seed,
        "settings": {"n": o.capacity, "iterations": o.max_candidates, "delta": o.delta, "p": o.p,
                     "interval": np.asarray(o.interval).tolist(), "batch": o.batch,
                     "beropt_steps": beropt_settings(o).steps},
        "query": r.query.reshape(-1),
        "v_star": r.v_star.reshape(-1).astype(int), "n_units": int(r.v_star.size),
        "n_selected": int(np.count_nonzero(r.v_star)),
        "beropt_lambda": r.lam, "beropt_final_loss": float(r.beropt_losses[-1]),
        "accepted": r.samples.reshape(r.samples.shape[0], -1), "parents": tree.accepted_parents(),
        "n_accepted": int(tree.count), "n_rejected": int(tree.n_rejected), "n_close": int(tree.n_close),
        "n_candidates": int(tree.n_candidates), "delta": r.delta, "stop_reason": tree.stop_reason_name(),
        "eps_l2": r.eps_l2, "eps_linf": r.eps_linf, "eps_reason": r.eps_reason,
        "n_rejected_stored": int(r.rejected.shape[0]), "rejected_truncated": r.rejected_truncated,
        "exploration": r.exploration,
        "sigma": metrics["sigma"], "n_metric_samples": metrics["n_samples"], "metrics_note": scale,
    }
