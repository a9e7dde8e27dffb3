"""Training the MNIST denoising autoencoder whose decoder is the pretrained excitation generator
(Despraz et al. 2017, sec. 4.2; Vincent et al. 2010).

The autoencoder (`jaxprobe.models.excite_gen.mnist_dae`) maps a noisy image to a clean one,
D(E(x + noise * n)) with n ~ N(0, I) (the noise is added without clipping) and images in [0, 1].
The paper trains on the mean squared error; jaxprobe's decoder ends in a sigmoid, and the squared
error through it stalled at a constant image (0.10 after 250 steps: the sigmoid's gradient
vanishes as the mostly black pixels are approached). The loss is therefore the binary cross-entropy
on the pre-sigmoid output z (the `out` layer's pre-activation),

    loss = mean [ softplus(z) - x z ],

whose minimiser is the same, sigmoid(z) = x; it reached a squared error of 0.013 in 100 steps.
The squared error is what `mnist_dae_quality` reports. The decoder's first layer is
the per-element scale alpha of eq. 1; it is held at 1 here (its gradient is masked), so the
decoder's input is exactly the encoder's code and the excitation's alpha (with input f0 = 1) is
a code; the excitation starts it at the mean code of the training digits (`code_mean`, recorded
in the manifest). The noise of step i is drawn from fold_in(PRNGKey(seed), i): a resumed run sees the
same draws as an uninterrupted one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxprobe.models import excite_gen  # noqa: F401  (registers the "mnist_dae" builder the recipe names)
from jaxprobe.train.loop import EpochSampler, run


def _labels(params):
    """"train" for every parameter of the DAE but the decoder's alpha (layer `scale`): "frozen"."""
    pure = nnx.to_pure_dict(params)
    labels = jax.tree.map(lambda _: "train", pure)
    labels["layers"][excite_gen.ENCODER_LAYERS]["linear"]["alpha"] = "frozen"
    return labels


def train_mnist_dae(model, data, *, seed: int, steps: int, batch_size: int, lr: float, noise: float, work_dir,
                    progress: bool = True):
    """Adam on the denoising loss above (decoder alpha held at 1); returns (trained params, history,
    wall seconds)."""
    graphdef = model.graphdef
    params = nnx.to_pure_dict(model.params)
    tx = optax.multi_transform({"train": optax.adam(lr), "frozen": optax.set_to_zero()}, _labels(model.params))
    state = {"params": params, "opt": tx.init(params)}
    base = jax.random.PRNGKey(seed)

    def loss_fn(pure, x, key):
        p = jax.tree.map(lambda a: a, model.params)
        nnx.replace_by_pure_dict(p, pure)
        noisy = x + noise * jax.random.normal(key, x.shape, x.dtype)
        net = nnx.merge(graphdef, p)
        z = net.up_to(noisy, len(net.layers))
        return jnp.mean(optax.sigmoid_binary_cross_entropy(z, x))

    @jax.jit
    def step(state, batch):
        x, i = batch
        loss, grads = jax.value_and_grad(loss_fn)(state["params"], x, jax.random.fold_in(base, i))
        updates, opt = tx.update(grads, state["opt"], state["params"])
        return {"params": optax.apply_updates(state["params"], updates), "opt": opt}, {"loss": loss}

    sampler = EpochSampler(len(data.train.labels), batch_size, seed)
    state, history, wall = run(state, step, lambda i: (data.train.images[sampler.indices(i)], np.int32(i)), steps,
                               work_dir, desc="dae", progress=progress)
    params = jax.tree.map(lambda a: a, model.params)
    nnx.replace_by_pure_dict(params, state["params"])
    return params, history, wall


def mnist_dae_quality(model, images, key, noise_levels=(0.0, 0.3, 0.5), batch: int = 1000) -> dict:
    """Reconstruction error of the DAE on `images` (test digits) against the input noise level.

    For each sigma: `reconstruction_mse` = mean (D(E(x + sigma n)) - x)^2 over pixels and
    `noisy_mse` = the same for the noisy input itself (about sigma^2: what doing nothing costs);
    `mean_image_mse` = the error of predicting every pixel's mean over `images` (what a constant
    image costs), so a reconstruction error well below it means the decoder draws the digit.
    """
    @jax.jit
    def errors(x, k):
        out = []
        for j, sigma in enumerate(noise_levels):
            noisy = x + sigma * jax.random.normal(jax.random.fold_in(k, j), x.shape, x.dtype)
            out.append(jnp.stack([jnp.sum((model.forward(model.params, noisy) - x) ** 2), jnp.sum((noisy - x) ** 2)]))
        return jnp.stack(out)

    images = np.asarray(images, np.float32)
    total = np.zeros((len(noise_levels), 2))
    for i in range(0, len(images), batch):
        total += np.asarray(errors(images[i : i + batch], jax.random.fold_in(key, i)), np.float64)
    n = images.size
    mean_image = images.mean(axis=0, keepdims=True)
    return {"noise": [float(s) for s in noise_levels],
            "reconstruction_mse": [round(float(v), 5) for v in total[:, 0] / n],
            "noisy_mse": [round(float(v), 5) for v in total[:, 1] / n],
            "mean_image_mse": round(float(np.mean((images - mean_image) ** 2)), 5)}


def code_mean(model, images, batch: int = 1000) -> list:
    """The mean over `images` of the DAE's code (its `enc2` layer, flattened): where the pretrained
    excitation starts alpha (jaxprobe.codespace.excite: the zero code decodes to a black image on
    which the sigmoid's gradient vanishes). Recorded in the manifest as "code_mean"."""
    fn = jax.jit(lambda x: jnp.sum(model.activation(model.params, x, "enc2").reshape(x.shape[0], -1), axis=0))
    images = np.asarray(images, np.float32)
    total = sum(np.asarray(fn(images[i : i + batch]), np.float64) for i in range(0, len(images), batch))
    return [round(float(v), 6) for v in total / len(images)]
