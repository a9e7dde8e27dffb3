"""What an inverse-set run returns (`InverseSet`): its samples, why it stopped, and statistics."""

from __future__ import annotations

import dataclasses

import numpy as np

STOP_REASONS = ("complete", "stalled", "sampling_budget", "unreachable", "seeds_out_of_range")


@dataclasses.dataclass(frozen=True)
class InverseSet:
    """The samples of an inverse set and how they were obtained (arrays trimmed to n_accepted).

    Attributes:
      neurons: canonical addresses (`layer_name:unit[@y,x]`) of the constrained neurons, in order.
      ranges: (p, 2) [z1, z2] per neuron.
      reading: "post-nonlinearity" or "pre-activation".
      codes: (m, *code_shape) accepted codes.
      images: (m, H, W, C) G(codes) in the generator's pixel convention.
      activations: (m, p) every constrained neuron's value for each sample (each in its range).
      embeddings: (m, d) E(G(codes)).
      n_requested, k: n and K.
      n_accepted: m.
      outer_iterations, inner_steps: the seeds' augmented-Lagrangian counts.
      sampling_steps: gradient steps of the sampler whose results were judged.
      seeds_feasible: whether every seed met the (margin) seed constraints within max_outer.
      stop_reason: "complete" (n accepted), "stalled" (fewer than n distinct codes, and a step that
        moved no code and accepted none: nothing new could be accepted, as with eq. 14 once every
        code rests inside the range), "sampling_budget" (fewer than n when max_sampling_steps
        ran out), "unreachable" (no code reached the range(s) within the seeds' outer budget: no
        samples) or "seeds_out_of_range" (one-sided form only: the seeds met f >= (z1 + z2)/2 but
        all overshot z2: no samples).
      stop_message: one sentence saying the same with numbers.
      lam, mu: lambda* and mu*.
      diversity: "embedding" (eq. 5), "code" (eq. 13) or "none" (eq. 14).
      repel: the set C0 the sampler repelled from: "new" (the rows accepted at the latest step,
        the paper's) or "all" (every accepted row).
      stats: mean_pairwise_distance (Euclidean, in E, over distinct pairs of samples),
        mean_pairwise_code_distance, mean_sq_pairwise_distance (in E).
    """

    neurons: tuple
    ranges: np.ndarray
    reading: str
    codes: np.ndarray
    images: np.ndarray
    activations: np.ndarray
    embeddings: np.ndarray
    n_requested: int
    k: int
    n_accepted: int
    outer_iterations: int
    inner_steps: int
    sampling_steps: int
    seeds_feasible: bool
    stop_reason: str
    stop_message: str
    lam: np.ndarray
    mu: float
    diversity: str
    repel: str
    stats: dict


def stop_reason(count: int, steps: int, seeds_feasible: bool, progressing: bool, options) -> tuple[str, str]:
    """(reason, one sentence with numbers) for a run that accepted `count` of `options.n` samples in
    `steps` sampling steps; `progressing` False when its last step moved and accepted nothing."""
    n = options.n
    if count >= n:
        return "complete", f"accepted {count} of {n} samples after {steps} sampling steps"
    if count == 0 and seeds_feasible:
        # Only the one-sided form gets here: its seeds met f >= (z1 + z2)/2 but overshot z2, and
        # nothing in L_sample pulls them down.
        return "seeds_out_of_range", ("the seeds met the one-sided constraint f >= (z1 + z2)/2 but none lies in "
                                      "the range (they overshoot z2): no samples; the two-sided default "
                                      "constrains both sides")
    if count == 0:
        return "unreachable", (f"no code reached the range(s) within the seeds' budget of {options.max_outer} "
                               f"outer iterations x {options.inner_steps} steps: no samples")
    if not progressing:
        return "stalled", (f"accepted {count} of {n} samples, each a distinct code; after {steps} sampling steps "
                           "no code moves and none is new, so no other sample can be accepted"
                           + (" (eq. 14 has no force inside the range)" if options.diversity == "none" else ""))
    return "sampling_budget", (f"accepted {count} of {n} samples; the budget of {options.max_sampling_steps} "
                               "sampling steps ran out")


def diversity_stats(codes, embeddings) -> dict:
    """mean_pairwise_distance (in E), mean_pairwise_code_distance, mean_sq_pairwise_distance (in E)."""
    return {
        "mean_pairwise_distance": mean_pairwise_distance(embeddings),
        "mean_pairwise_code_distance": mean_pairwise_distance(codes),
        "mean_sq_pairwise_distance": _mean_sq_pairwise(embeddings),
    }


def mean_pairwise_distance(x) -> float:
    """Mean Euclidean distance over distinct pairs of rows of x (m, ...); nan when m < 2."""
    m = len(x)
    if m < 2:
        return float("nan")
    x = np.asarray(x, np.float64).reshape(m, -1)
    sq = np.sum(x * x, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
    iu = np.triu_indices(m, 1)
    return float(np.mean(np.sqrt(d2[iu])))


def _mean_sq_pairwise(x) -> float:
    """Mean squared Euclidean distance over distinct pairs, by the O(m) identity; nan when m < 2."""
    m = len(x)
    if m < 2:
        return float("nan")
    x = np.asarray(x, np.float64).reshape(m, -1)
    total = 2.0 * m * np.sum(x * x) - 2.0 * np.sum(np.sum(x, axis=0) ** 2)  # ordered pairs
    return float(total / (m * (m - 1)))
