"""Training a DeePSim-style generator that inverts a classifier's features (Dosovitskiy & Brox 2016).

G maps a code h = E(x) (E: the frozen classifier up to its fc layer, after ReLU) to an image.
Loss = image_weight * ||G(h) - x||^2 + feature_weight * ||E(G(h)) - h||^2 / mean(h^2)
+ adversarial_weight * softplus(-D(G(h))), with D a discriminator trained by logistic loss on
real images against reconstructions. The feature loss is normalized by the code's mean square so
its weight does not depend on the classifier's feature scale.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxprobe.models.pixels import convert_pixels
from jaxprobe.train.loop import EpochSampler, run
from jaxprobe.checks import with_settings


class InverterSettings(NamedTuple):
    """`train_inverter`'s hyperparameters; the defaults are the "fc_generator" recipe's
    (`jaxprobe.train.recipes.RECIPES`)."""

    seed: int = 0  # seeds the data order
    steps: int = 2000  # generator (and discriminator) updates
    batch_size: int = 64
    lr: float = 2e-4  # Adam's learning rate, for both networks
    b1: float = 0.5  # Adam's first-moment decay
    b2: float = 0.999  # Adam's second-moment decay
    image_weight: float = 1.0  # weight of ||G(h) - x||^2 (x in [-1, 1])
    feature_weight: float = 1.0  # weight of ||E(G(h)) - h||^2 / mean(h^2)
    adversarial_weight: float = 0.01  # weight of softplus(-D(G(h)))


def train_inverter(generator, discriminator, encoder, layer, data, options: InverterSettings | None = None, *,
                   work_dir, progress: bool = True, **settings):
    """Train `generator` to invert `encoder`'s features at `layer` (the module docstring's loss)
    against `discriminator`, on `data.train.images` ([0, 1], (N, 28, 28, 1)).

    `options` (default `InverterSettings()`) with any of its fields replaced by `settings` (an
    unknown name is a JaxprobeError); `work_dir` holds resumable checkpoints.
    Returns ((generator params, discriminator params), history, wall seconds)."""
    s = with_settings(InverterSettings, options, settings)
    image_weight, feature_weight, adversarial_weight = s.image_weight, s.feature_weight, s.adversarial_weight
    gdef, ddef = generator.graphdef, discriminator.graphdef
    tx_g, tx_d = optax.adam(s.lr, s.b1, s.b2), optax.adam(s.lr, s.b1, s.b2)
    state = {"g": generator.params, "d": discriminator.params, "og": tx_g.init(generator.params),
             "od": tx_d.init(discriminator.params)}
    enc_params = encoder.params

    def E(x01):
        return encoder.activation(enc_params, x01, layer)

    def G(p, h):
        return nnx.merge(gdef, p)(h)

    def D(p, x):
        return nnx.merge(ddef, p)(x)[:, 0]

    def g_loss(g, d, x01, h):
        img = G(g, h)
        image = jnp.mean((img - (2.0 * x01 - 1.0)) ** 2)
        back = E(convert_pixels(img, generator.pixels, encoder.pixels))
        feature = jnp.mean((back - h) ** 2) / (jnp.mean(h**2) + 1e-6)
        adversarial = jnp.mean(jax.nn.softplus(-D(d, img)))
        total = image_weight * image + feature_weight * feature + adversarial_weight * adversarial
        return total, (image, feature, img)

    @jax.jit
    def step(state, x01):
        h = jax.lax.stop_gradient(E(x01))
        (_, (image, feature, fake)), grads = jax.value_and_grad(g_loss, has_aux=True)(state["g"], state["d"], x01, h)
        updates, og = tx_g.update(grads, state["og"], state["g"])
        g = optax.apply_updates(state["g"], updates)
        fake = jax.lax.stop_gradient(fake)

        def d_loss(d):
            return jnp.mean(jax.nn.softplus(-D(d, 2.0 * x01 - 1.0))) + jnp.mean(jax.nn.softplus(D(d, fake)))

        dl, dgrads = jax.value_and_grad(d_loss)(state["d"])
        updates, od = tx_d.update(dgrads, state["od"], state["d"])
        return ({"g": g, "d": optax.apply_updates(state["d"], updates), "og": og, "od": od},
                {"image": image, "feature": feature, "d_loss": dl})

    sampler = EpochSampler(len(data.train.labels), s.batch_size, s.seed)
    state, history, wall = run(state, step, lambda i: data.train.images[sampler.indices(i)], s.steps, work_dir,
                               desc="fc_generator", progress=progress)
    return (state["g"], state["d"]), history, wall
