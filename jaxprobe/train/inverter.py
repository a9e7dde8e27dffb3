"""Training a DeePSim-style generator that inverts a classifier's features (Dosovitskiy & Brox 2016).

G maps a code h = E(x) (E: the frozen classifier up to its fc layer, after ReLU) to an image.
Loss = image_weight * ||G(h) - x||^2 + feature_weight * ||E(G(h)) - h||^2 / mean(h^2)
+ adversarial_weight * softplus(-D(G(h))), with D a discriminator trained by logistic loss on
real images against reconstructions. The feature loss is normalized by the code's mean square so
its weight does not depend on the classifier's feature scale.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxprobe.models.pixels import convert_pixels
from jaxprobe.train.loop import EpochSampler, run


def train_inverter(generator, discriminator, encoder, layer, data, *, seed: int, steps: int, batch_size: int,
                   lr: float, b1: float, b2: float, image_weight: float, feature_weight: float,
                   adversarial_weight: float, work_dir, progress: bool = True):
    """Returns ((generator params, discriminator params), history, wall seconds)."""
    gdef, ddef = generator.graphdef, discriminator.graphdef
    tx_g, tx_d = optax.adam(lr, b1, b2), optax.adam(lr, b1, b2)
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

    sampler = EpochSampler(len(data.train.labels), batch_size, seed)
    state, history, wall = run(state, step, lambda i: data.train.images[sampler.indices(i)], steps, work_dir,
                               desc="fc_generator", progress=progress)
    return (state["g"], state["d"]), history, wall
