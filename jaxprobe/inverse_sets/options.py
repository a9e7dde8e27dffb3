"""The settings of an inverse set (`InverseSetOptions`) and every check of `inverse_set`'s inputs.

`check_inputs` runs before any work and returns the checked values as one `Checked` record; bad
input raises one JaxprobeError line naming the argument and what was expected.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from jaxprobe.checks import check_count, check_finite, check_number
from jaxprobe.errors import JaxprobeError
from jaxprobe.inverse_sets.problem import DIVERSITY, Embedding, default_embedding
from jaxprobe.inverse_sets.sampling import REPEL
from jaxprobe.inverse_sets.seeds import init_mode
from jaxprobe.models.neurons import resolve_neurons
from jaxprobe.models.probe import Model
from jaxprobe.sharding import check_mesh


class InverseSetOptions(NamedTuple):
    """Every setting of an inverse set (Hada & Carreira-Perpiñán 2019), with its default.

    Attributes:
      n: samples wanted (buffer capacity; static), at least k. Default 500.
      k: K, codes optimized together (paper: 10; static). Default 10.
      diversity: "embedding" (eq. 5, default), "code" (eq. 13) or "none" (eq. 14).
      nonlinear: read neurons after their layer's nonlinearity (default True) or before it.
      one_sided: the paper's seed constraint f >= z2 - (z2 - z1)/2 instead of the two-sided
        default z1 + m <= f <= z2 - m. Default False.
      margin: seed margin m (a number or one per neuron), 0 <= m < (z2 - z1)/2; None (default):
        (z2 - z1)/4, so seeds start in the middle half of the range.
      init: "auto" (default: E(random images) when E maps into the generator's code space, i.e.
        the generator's manifest names E's layer as its encoder, or it has no prior and the sizes
        agree; else the prior), "images", "prior", or an array (k, *code_shape).
      mu0: initial penalty (paper: 10). Default 10.0.
      growth: the penalty's factor a per outer iteration (paper: 10). Default 10.0.
      inner_steps: gradient steps per outer iteration (paper: 100). Default 100.
      max_outer: outer-iteration budget for the seeds (paper: about 4 needed). Default 6.
      optimizer: inner optax optimizer for the seeds; None (default): Adam with learning rate
        seed_lr * RMS(initial codes).
      seed_lr: that relative learning rate. Default 0.02.
      beta: sampling step as a fraction of the mean seed-code norm. Default 0.05.
      max_sampling_steps: sampling-step budget; None (default): 10 * ceil((n - k) / k).
      normalize: scale-free objective (default True) or the paper's raw sums (False).
      repel: the accepted set C0 of eq. 10 the codes move away from: "new" (default, the rows
        accepted at the latest step: the paper's step 4) or "all" (every row accepted so far).
    """

    n: int = 500
    k: int = 10
    diversity: str = "embedding"
    nonlinear: bool = True
    one_sided: bool = False
    margin: Any = None
    init: Any = "auto"
    mu0: float = 10.0
    growth: float = 10.0
    inner_steps: int = 100
    max_outer: int = 6
    optimizer: Any = None
    seed_lr: float = 0.02
    beta: float = 0.05
    max_sampling_steps: int | None = None
    normalize: bool = True
    repel: str = "new"


class Checked(NamedTuple):
    """`inverse_set`'s inputs, checked.

    Attributes:
      options: the options with n, k, inner_steps, max_outer, max_sampling_steps as ints (the
        sampling budget resolved) and the embedding's default applied.
      neurons: the resolved `Neuron`s of the classifier.
      ranges: (p, 2) float64 ranges as given.
      ranges32: (p, 2) float32 ranges rounded inwards.
      margin: (p,) float64 seed margins.
      embedding: E.
      mode: "images", "prior" or "given".
      given: (k, *code_shape) float32 codes when mode is "given", else None.
    """

    options: InverseSetOptions
    neurons: list
    ranges: np.ndarray
    ranges32: np.ndarray
    margin: np.ndarray
    embedding: Embedding
    mode: str
    given: Any


def check_inputs(generator, classifier, neurons, ranges, embedding, options: InverseSetOptions, mesh) -> Checked:
    """Every check of `inverse_set`'s inputs, before any work; see `Checked`."""
    o = _check_counts(options)
    _check_choices(o)
    _check_models(generator, classifier)
    if not isinstance(neurons, (str, list, tuple)):
        raise JaxprobeError(f"neurons: expected an address 'layer:unit[@y,x]' or a list of them, got {neurons!r}")
    resolved = resolve_neurons(classifier, neurons)
    texts = [r.text for r in resolved]
    r = _as_ranges(ranges, len(resolved), texts)
    r32 = _float32_ranges(r, texts)
    m = _margin(o.margin, r[:, 1] - r[:, 0])
    for name in ("mu0", "beta", "seed_lr"):
        check_number(name, getattr(o, name), low=0.0, low_open=True, what="a positive number")
    check_number("growth", o.growth, low=1.0, low_open=True, what="a factor a")
    embedding = default_embedding(generator, classifier) if embedding is None else Embedding(*embedding)
    try:
        embedding.model.layer(embedding.layer)
    except JaxprobeError as err:
        raise JaxprobeError(f"embedding: {err}") from None
    if isinstance(o.init, str):
        mode, given = init_mode(generator, embedding, o.init), None
    else:
        mode, given = "given", _given_codes(o.init, generator, o.k)
    check_mesh(mesh, o.k, "k", "the K codes")
    return Checked(o, resolved, r, r32, m, embedding, mode, given)


def _check_counts(o: InverseSetOptions) -> InverseSetOptions:
    n = check_count("n", o.n, 1)
    k = check_count("k", o.k, 1)
    if n < k:
        raise JaxprobeError(f"n: expected n >= k (the K seeds are the first samples), got n={n} < k={k}")
    inner_steps = check_count("inner_steps", o.inner_steps, 1)
    max_outer = check_count("max_outer", o.max_outer, 1)
    budget = 10 * max(1, -(-(n - k) // k)) if o.max_sampling_steps is None else o.max_sampling_steps
    budget = check_count("max_sampling_steps", budget, 0)
    return o._replace(n=n, k=k, inner_steps=inner_steps, max_outer=max_outer, max_sampling_steps=budget)


def _check_choices(o: InverseSetOptions) -> None:
    if o.diversity not in DIVERSITY:
        raise JaxprobeError(f"diversity: expected one of {', '.join(DIVERSITY)}, got {o.diversity!r}")
    if o.repel not in REPEL:
        raise JaxprobeError(f"repel: expected one of {', '.join(REPEL)}, got {o.repel!r}")


def _check_models(generator, classifier) -> None:
    for name, model, roles in (("generator", generator, ("generator",)),
                               ("classifier", classifier, ("classifier", "critic"))):
        if not isinstance(model, Model) or model.role not in roles:
            got = f"{model.name!r} ({model.role})" if isinstance(model, Model) else type(model).__name__
            raise JaxprobeError(f"{name}: expected a model with role {' or '.join(map(repr, roles))}, got {got}")


def _margin(margin, width) -> np.ndarray:
    """The (p,) seed margins: (z2 - z1)/4 by default, else `margin` checked against the widths."""
    if margin is None:
        m = width / 4.0
    else:
        m = np.asarray(margin, np.float64)
        if m.ndim > 1 or m.size not in (1, len(width)):
            raise JaxprobeError(f"margin: expected a number or one per neuron ({len(width)}), got {margin!r}")
        m = np.broadcast_to(m.reshape(-1), width.shape).copy()
        if not np.all(np.isfinite(m)) or np.any(m < 0) or np.any(m >= width / 2):
            raise JaxprobeError(f"margin: expected 0 <= margin < (z2 - z1)/2 = {list(width / 2)}, got {list(m)}")
    return m


def _given_codes(init, generator: Model, k: int) -> np.ndarray:
    """`init` passed as K codes: (k, *code_shape) float32, finite."""
    arr = np.asarray(init, dtype=np.float32)
    if arr.shape != (k,) + tuple(generator.input_shape):
        raise JaxprobeError(f"init: expected codes of shape {(k,) + tuple(generator.input_shape)}, got {arr.shape}")
    check_finite("init", arr)
    return arr


def _inward_float32(r) -> np.ndarray:
    """Ranges (p, 2) as float32 rounded inwards (z1 up, z2 down), so that a float32 activation the
    sampler accepts satisfies z1 <= f <= z2 in the caller's exact (float64) numbers too."""
    r32 = r.astype(np.float32)
    lo, hi = r32[:, 0], r32[:, 1]
    lo = np.where(lo.astype(np.float64) < r[:, 0], np.nextafter(lo, np.float32(np.inf)), lo)
    hi = np.where(hi.astype(np.float64) > r[:, 1], np.nextafter(hi, np.float32(-np.inf)), hi)
    return np.stack([lo, hi], axis=1).astype(np.float32)


def _float32_ranges(r, texts) -> np.ndarray:
    """`_inward_float32(r)`, refusing a range the float32 sampler cannot hold: an end or the width
    beyond float32's largest value (it would become inf), or fewer than two float32 values between
    z1 and z2 (the range collapses, and its width, the constraints' unit, would be 0)."""
    fmax = float(np.finfo(np.float32).max)
    with np.errstate(all="ignore"):  # the overflowing casts are what this checks
        r32 = _inward_float32(r)
        width = r32[:, 1] - r32[:, 0]
    for (z1, z2), (lo, hi), w, t in zip(r, r32, width, texts):
        if not (abs(z1) <= fmax and abs(z2) <= fmax and np.isfinite(w)):
            raise JaxprobeError(f"ranges: expected z1, z2 and z2 - z1 within float32's range (magnitude at most "
                                f"{fmax:.4g}) for neuron {t!r}, got [{z1}, {z2}]")
        if not lo < hi:
            raise JaxprobeError(f"ranges: expected a range that holds two or more float32 values for neuron {t!r} "
                                f"(activations are float32), got [{z1}, {z2}], which float32 cannot resolve")
    return r32


def _as_ranges(ranges, p: int, texts) -> np.ndarray:
    try:
        r = np.asarray(ranges, dtype=np.float64)
    except (TypeError, ValueError):
        raise JaxprobeError(f"ranges: expected one (z1, z2) pair per neuron, got {ranges!r}") from None
    if r.shape == (2,):
        r = r[None]
    if r.shape != (p, 2):
        raise JaxprobeError(f"ranges: expected {p} (z1, z2) pair(s), one per neuron, got shape {r.shape}")
    for (z1, z2), t in zip(r, texts):
        if not (np.isfinite(z1) and np.isfinite(z2)):
            raise JaxprobeError(f"ranges: expected finite z1, z2 for neuron {t!r}, got [{z1}, {z2}]")
        if not z1 < z2:
            raise JaxprobeError(f"ranges: expected z1 < z2 for neuron {t!r}, got z1={z1} > z2={z2}"
                                if z1 > z2 else f"ranges: expected z1 < z2 for neuron {t!r}, got z1 = z2 = {z1}")
    return r
