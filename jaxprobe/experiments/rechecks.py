"""Independent rechecks of sampled codes: neuron values recomputed by a fresh forward pass.

A sampler stores the activations its acceptance test saw. These functions recompute them from the
returned codes alone, G(c) -> `adapt_images` -> classifier, in a program of their own that shares
nothing with the sampler but the models, and test them against the ranges with no tolerance (the
inverse set of Hada & Carreira-Perpiñán 2019 promises z1 <= f(G(c)) <= z2 for every sample).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxprobe.models.neurons import flat_index, resolve_neurons
from jaxprobe.models.pixels import adapt_images


@functools.partial(jax.jit, static_argnames=("generator", "classifier", "layer", "nonlinear"))
def _layer_program(gen_params, cls_params, codes, *, generator, classifier, layer, nonlinear):
    """(B, *code) -> (B, D): classifier layer `layer` of adapt_images(G(codes)), flattened."""
    images = adapt_images(generator.forward(gen_params, codes), generator.pixels, classifier.pixels,
                          classifier.input_shape)
    h = classifier.activation(cls_params, images, layer, nonlinear=nonlinear)
    return h.reshape(h.shape[0], -1)


def layer_values(generator, classifier, codes, layer, *, nonlinear: bool = True, batch: int = 64) -> np.ndarray:
    """Layer `layer` of the classifier on G(codes), flattened per sample: (m, D) float32.

    A forward pass of its own (generator, `adapt_images`, classifier), compiled once per layer:
    codes go through in chunks of `batch`, the last one zero-padded, so every call has one shape.
    """
    codes = np.asarray(codes, np.float32)
    layer = classifier.layer(layer)
    out = []
    for i in range(0, len(codes), batch):
        chunk = codes[i : i + batch]
        pad = batch - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], np.float32)])
        h = _layer_program(generator.params, classifier.params, jnp.asarray(chunk), generator=generator,
                           classifier=classifier, layer=layer, nonlinear=bool(nonlinear))
        out.append(np.asarray(h)[: batch - pad])
    if not out:
        return np.zeros((0, math.prod(classifier.layer_shape(layer))), np.float32)
    return np.concatenate(out)


def fresh_activations(generator, classifier, codes, neurons, *, nonlinear: bool = True) -> np.ndarray:
    """Neuron values recomputed from codes alone: (m, p) float64, column j = neuron j.

    G(c) -> `adapt_images` -> classifier, read at each neuron's layer and flat index
    (`jaxprobe.models.neurons.flat_index`) by `layer_values`, one program per layer.
    """
    resolved = resolve_neurons(classifier, neurons)
    by_layer = {l: layer_values(generator, classifier, codes, l, nonlinear=nonlinear)
                for l in sorted({r.layer for r in resolved})}
    cols = [by_layer[r.layer][:, flat_index(classifier, r)] for r in resolved]
    return np.stack(cols, axis=1).astype(np.float64)


def range_check(values, ranges) -> dict:
    """Whether every row of values (m, p) lies in ranges (p, 2) (z1 <= v <= z2, no tolerance).

    Returns {"all_in_range": bool, "n_out_of_range": int, "worst_violation": float (>= 0, by how
    much the worst value leaves its range; 0 when all are inside)}.
    """
    r = np.asarray(ranges, np.float64).reshape(-1, 2)
    v = np.asarray(values, np.float64).reshape(len(values), len(r))
    viol = np.maximum(np.maximum(r[:, 0] - v, 0.0), np.maximum(v - r[:, 1], 0.0))
    bad = np.any(viol > 0, axis=1)
    return {"all_in_range": bool(not bad.any()), "n_out_of_range": int(bad.sum()),
            "worst_violation": float(viol.max()) if viol.size else 0.0}


def independent_check(result, generator, classifier) -> dict:
    """`range_check` of an `InverseSet`'s codes by `fresh_activations`, plus
    "max_abs_deviation_from_stored" (the largest |stored - recomputed| activation: float32
    rounding of two programs) and "n_checked" (the number of samples)."""
    fresh = fresh_activations(generator, classifier, result.codes, list(result.neurons),
                              nonlinear=result.reading == "post-nonlinearity")
    check = range_check(fresh, result.ranges)
    stored = np.asarray(result.activations, np.float64)
    check["max_abs_deviation_from_stored"] = float(np.max(np.abs(fresh - stored))) if len(stored) else 0.0
    check["n_checked"] = int(len(fresh))
    return check
