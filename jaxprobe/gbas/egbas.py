"""E-GBAS: explorative generative boundary aware sampling (Jeon et al. 2020, Algorithm 3).

Algorithm 3: theta* = BerOpt(z0, G, l); V* = 1[theta* > p] sign(f_{l:1}(z0)); Z = GB-RRT(z0, GR_V*).
`egbas` adds the section-4 baselines: eps_L2 and eps_Linf from the tree's accepted and rejected
sets, and as many uniform draws from each ball around z0 as the tree has nodes, and measures how
far the tree explored its region (`jaxprobe.gbas.exploration`), whose extent also sets the
default step size.

The paper's metrics of the resulting sample sets (Tables 1-2) are in `jaxprobe.gbas.metrics`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxprobe.gbas.beropt import BerOptOptions, beropt
from jaxprobe.gbas.boundaries import check_query
from jaxprobe.gbas.epsball import eps_l2, eps_linf, sample_l2_ball, sample_linf_ball
from jaxprobe.gbas.exploration import box_reach, default_delta, exploration, region_extent
from jaxprobe.gbas.gbrrt import CAPACITY_FULL, GBRRTOptions, GBRRTResult, check_delta, check_interval, gbrrt
from jaxprobe.checks import with_settings


class EGBASResult(NamedTuple):
    """One E-GBAS run for one query and one layer (trimmed, host-side arrays).

    Attributes:
      query: z0, (*latent_shape).
      layer: the layer number l.
      theta: BerOpt's theta*, (D_l,).
      v_star: V*, int (D_l,) in {-1, 0, +1}.
      beropt_losses: BerOpt's loss per step.
      lam: the lambda BerOpt used.
      tree: the full `GBRRTResult` (buffers, parents, counts, stop reason).
      samples: the E-GBAS sample set, the tree's nodes with the query first, (n, *latent_shape).
      rejected: the stored rejected candidates, (m, *latent_shape).
      eps_l2: the L2 baseline's radius (NaN if nothing was rejected).
      eps_linf: the Linf baseline's half-side (same volume).
      l2_samples, linf_samples: n uniform draws from each ball around z0 (NaN when eps is NaN).
      delta: the step size used (the default rule's value when none was given).
      extent: the region's extent along random directions (`exploration.region_extent`).
      exploration: `exploration.exploration` of the tree (node distances against the extent).
      eps_reason: why eps is undefined (NaN), or None when it is defined.
      rejected_truncated: eps came from the first `len(rejected)` of `tree.n_rejected` rejected
        candidates (the buffer was full), not from all of them.
    """

    query: np.ndarray
    layer: int
    theta: np.ndarray
    v_star: np.ndarray
    beropt_losses: np.ndarray
    lam: float
    tree: GBRRTResult
    samples: np.ndarray
    rejected: np.ndarray
    eps_l2: float
    eps_linf: float
    l2_samples: np.ndarray
    linf_samples: np.ndarray
    delta: float
    extent: np.ndarray
    exploration: dict
    eps_reason: str | None
    rejected_truncated: bool


class EGBASOptions(NamedTuple):
    """E-GBAS's settings (Algorithm 3 and the section-4 baselines).

    Attributes:
      p: BerOpt's threshold on theta*, in (0, 1), default 0.5 (the paper's value).
      delta: GB-RRT's step size. Default None: `exploration.default_delta`, half the region's
        median extent along 32 random directions (the paper gives no value; a fixed one was too
        small at one layer and too large at another). A given delta below
        `gbrrt.min_delta(z0, interval)` is refused before BerOpt runs.
      interval: I, GB-RRT's sampling half-width, default 1.0 (`GBRRTOptions`).
      capacity: the tree's capacity, the query included, default 128.
      max_candidates: GB-RRT's candidate budget, default 4096.
      batch: GB-RRT's candidates per step, default 64.
      rejected_capacity: rejected candidates stored, default None (`GBRRTOptions`).
      beropt_options: BerOpt's settings, a `BerOptOptions` or a dict of its fields (lam, tau,
        steps, learning_rate, init, n_masks); None for its defaults. Its p is this `p`.
    """

    p: float = 0.5
    delta: float | None = None
    interval: Any = 1.0
    capacity: int = 128
    max_candidates: int = 4096
    batch: int = 64
    rejected_capacity: int | None = None
    beropt_options: Any = None


def beropt_settings(options: EGBASOptions) -> BerOptOptions:
    """The `BerOptOptions` of an E-GBAS run: `options.beropt_options` (options or a dict of fields,
    unknown names refused) with `options.p`."""
    ber = options.beropt_options
    if isinstance(ber, BerOptOptions):
        return ber._replace(p=options.p)
    return with_settings(BerOptOptions, None, {**dict(ber or {}), "p": options.p})


def egbas(key, model, params, z0, layer, options: EGBASOptions | None = None, *, progress=None,
          **settings) -> EGBASResult:
    """E-GBAS (Jeon et al. 2020, Algorithm 3): BerOpt, then GB-RRT in its region, then the eps baselines.

    Args:
      key: PRNG key (split for BerOpt, the extent's directions, the tree and the two baselines).
      model, params: the generator and its parameters.
      z0: the query, shape `model.input_shape`.
      layer: the layer l (name or number).
      options: `EGBASOptions` (None: its defaults).
      progress: as in `gbrrt` (it follows the tree's candidates).
      **settings: `EGBASOptions` fields (p, delta, interval, capacity, max_candidates, batch,
        rejected_capacity, beropt_options) replacing those of `options`.

    Returns:
      `EGBASResult`. The baselines draw as many samples as the tree has nodes (the query
      included), centred at z0. A region too small for any step gives the query alone. When
      nothing was rejected eps is NaN and `eps_reason` says why.
    """
    o = with_settings(EGBASOptions, options, settings)
    l = model.layer(layer)
    z0 = check_query(model, z0)
    if o.delta is not None:  # before BerOpt: a bad step fails at once
        check_delta("delta", o.delta, z0, check_interval(model, o.interval))
    k_ber, k_tree, k_l2, k_linf, k_ext = jax.random.split(key, 5)
    ber = beropt(k_ber, model, params, z0, l, beropt_settings(o))
    extent = region_extent(k_ext, model, params, z0, l, ber.v_star, t_max=box_reach(z0, o.interval))
    delta = default_delta(extent, z0, o.interval) if o.delta is None else o.delta
    tree = gbrrt(k_tree, model, params, z0, l, ber.v_star,
                 GBRRTOptions(delta=delta, interval=o.interval, capacity=o.capacity, max_candidates=o.max_candidates,
                              batch=o.batch, rejected_capacity=o.rejected_capacity), progress=progress)
    samples, rejected = tree.accepted_nodes(), tree.rejected_candidates()
    n = samples.shape[0]
    reason = None if rejected.shape[0] else no_eps_reason(tree, delta)
    if rejected.shape[0]:
        e2, einf, l2, linf = _baselines(k_l2, k_linf, z0, tree.nodes, tree.count, tree.rejected,
                                        jnp.minimum(tree.n_rejected, tree.rejected.shape[0]))
        e2, einf = float(e2), float(einf)
        l2, linf = np.asarray(l2)[:n], np.asarray(linf)[:n]
    else:  # eps is undefined without a rejected candidate: NaN, and the reason
        e2 = einf = float("nan")
        l2 = linf = np.full_like(samples, np.nan)
    return EGBASResult(
        query=np.asarray(z0), layer=l, theta=np.asarray(ber.theta), v_star=np.asarray(ber.v_star),
        beropt_losses=np.asarray(ber.losses), lam=float(ber.lam), tree=tree, samples=samples,
        rejected=rejected, eps_l2=e2, eps_linf=einf, l2_samples=l2, linf_samples=linf, delta=float(delta),
        extent=extent, exploration=exploration(samples, z0, extent, e2), eps_reason=reason,
        rejected_truncated=int(tree.n_rejected) > rejected.shape[0])


def no_eps_reason(tree: GBRRTResult, delta) -> str:
    """Why a tree that rejected no candidate leaves eps and the L2 / Linf baselines undefined.

    Two cases: the tree filled its capacity before any step left the region (a larger capacity
    helps), or it used every candidate inside the region (a larger delta or more candidates help).
    """
    n, drawn = int(tree.count), int(tree.n_candidates)
    head = "no candidate was rejected, so eps and the L2 / Linf baselines are undefined: the tree"
    if int(tree.stop_reason) == CAPACITY_FULL:
        return (f"{head} filled its capacity ({n} nodes) after {drawn} candidates, before any step (delta "
                f"{float(delta):.3g}) left the region; a larger capacity lets it reach the region's boundary")
    return (f"{head} ({n} nodes, delta {float(delta):.3g}) drew all {drawn} candidates and never stepped out of "
            "its region; a larger delta or more candidates reach the region's boundary")


@jax.jit
def _baselines(k_l2, k_linf, z0, nodes, count, rejected, n_rejected):
    """eps_L2, eps_Linf and capacity-many draws from each ball, on the tree's fixed-size buffers.

    Jitted on the buffers (counts as arguments) rather than on the trimmed sets, so that one
    compilation serves every run with the same capacities: op-by-op on trimmed sets compiled
    every operation anew for each new set size (seconds per E-GBAS run). The first `count`
    draws of each ball are uniform in it, as `count` fresh draws would be.
    """
    e2 = eps_l2(nodes, rejected, n_accepted=count, n_rejected=n_rejected)
    einf = eps_linf(e2, z0.size)
    cap = nodes.shape[0]
    return e2, einf, sample_l2_ball(k_l2, z0, e2, cap), sample_linf_ball(k_linf, z0, einf, cap)

