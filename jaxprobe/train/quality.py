"""Quality figures of the default models, measured the same way at training time and in tests."""

from __future__ import annotations

import jax
import numpy as np

from jaxprobe.models.pixels import convert_pixels
from jaxprobe.models.probe import Model


def _batched(fn, x, batch: int = 500):
    return np.concatenate([np.asarray(fn(x[i : i + batch])) for i in range(0, len(x), batch)])


def classifier_accuracy(classifier: Model, images, labels) -> float:
    """Top-1 accuracy of `classifier` on images already in its pixel convention."""
    fwd = jax.jit(classifier.forward)
    logits = _batched(lambda x: fwd(classifier.params, x), np.asarray(images))
    return float(np.mean(logits.argmax(-1) == np.asarray(labels)))


def generator_quality(generator: Model, classifier: Model, key, n: int = 1000) -> dict:
    """Classifier confidence and digit coverage of n prior samples of `generator`.

    Returns mean_max_prob (mean over samples of the top softmax probability), digit_fractions (the
    share of samples the classifier assigns to each class) and min_digit_fraction.
    """
    codes = generator.sample_prior(key, n)

    @jax.jit
    def probs(z):
        images = convert_pixels(generator.forward(generator.params, z), generator.pixels, classifier.pixels)
        return jax.nn.softmax(classifier.forward(classifier.params, images))

    p = _batched(probs, codes)
    fractions = np.bincount(p.argmax(-1), minlength=p.shape[-1]) / n
    return {
        "n": n,
        "mean_max_prob": float(p.max(-1).mean()),
        "digit_fractions": [float(f) for f in fractions],
        "min_digit_fraction": float(fractions.min()),
    }


def encode(classifier: Model, layer, params, images):
    """E(x): the classifier's value at `layer` after its nonlinearity (the fc generator's code)."""
    return classifier.activation(params, images, layer)


def reconstruction_accuracy(generator: Model, classifier: Model, layer, images, labels) -> float:
    """Accuracy of `classifier` on generator(E(x)), E = classifier up to `layer` (post-nonlinearity)."""

    @jax.jit
    def predict(x):
        recon = generator.forward(generator.params, encode(classifier, layer, classifier.params, x))
        recon = convert_pixels(recon, generator.pixels, classifier.pixels)
        return classifier.forward(classifier.params, recon).argmax(-1)

    pred = _batched(predict, np.asarray(images))
    return float(np.mean(pred == np.asarray(labels)))
