"""Training the h-DAE, PPGN-h's learned prior on a generator's codes (Nguyen et al. 2017, sec. 3.3).

The codes are h = E(x): the frozen encoder the generator inverts (for fc_generator, the classifier
up to fc1, after its ReLU) applied to real training images. The DAE R learns to undo isotropic
Gaussian noise of standard deviation `noise`:

    loss = mean || R(h + noise * n) - h ||^2,   n ~ N(0, I),

so that (R(h) - h) / noise^2 approximates grad log p(h) (Alain & Bengio 2014), the prior term of
PPGN's eq. 11. The noise of step i is drawn from fold_in(PRNGKey(seed), i): a resumed run sees the
same draws as an uninterrupted one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxprobe.models import dae  # noqa: F401  (registers the "h_dae" builder the recipe names)
from jaxprobe.train.loop import EpochSampler, run
from jaxprobe.train.quality import encode


def train_dae(model, encoder, layer, data, *, seed: int, steps: int, batch_size: int, lr: float, noise: float,
              work_dir, progress: bool = True):
    """Adam on the denoising loss above; returns (trained params, history, wall seconds)."""
    graphdef, enc_params = model.graphdef, encoder.params
    tx = optax.adam(lr)
    state = {"params": model.params, "opt": tx.init(model.params)}
    base = jax.random.PRNGKey(seed)

    def loss_fn(params, h, key):
        noisy = h + noise * jax.random.normal(key, h.shape, h.dtype)
        return jnp.mean((nnx.merge(graphdef, params)(noisy) - h) ** 2)

    @jax.jit
    def step(state, batch):
        x, i = batch
        h = jax.lax.stop_gradient(encode(encoder, layer, enc_params, x))
        loss, grads = jax.value_and_grad(loss_fn)(state["params"], h, jax.random.fold_in(base, i))
        updates, opt = tx.update(grads, state["opt"], state["params"])
        return {"params": optax.apply_updates(state["params"], updates), "opt": opt}, {"loss": loss}

    sampler = EpochSampler(len(data.train.labels), batch_size, seed)
    state, history, wall = run(state, step, lambda i: (data.train.images[sampler.indices(i)], np.int32(i)), steps,
                               work_dir, desc="h_dae", progress=progress)
    return state["params"], history, wall


def dae_quality(model, encoder, layer, images, key, noise_levels=(0.5, 1.0, 2.0), batch: int = 1000) -> dict:
    """Reconstruction error of the DAE on codes E(x) of `images`, against the noise level.

    For each sigma: `reconstruction_mse` = mean ||R(h + sigma n) - h||^2 / D and `noisy_mse` the
    same for the noisy code itself (about sigma^2, what doing nothing costs), over every image with
    one draw n each; `code_mean_square` = mean h^2 gives the scale.
    """
    @jax.jit
    def errors(x, k):
        h = encode(encoder, layer, encoder.params, x)
        out = []
        for j, sigma in enumerate(noise_levels):
            noisy = h + sigma * jax.random.normal(jax.random.fold_in(k, j), h.shape, h.dtype)
            out.append(jnp.stack([jnp.sum((model.forward(model.params, noisy) - h) ** 2),
                                  jnp.sum((noisy - h) ** 2)]))
        return jnp.stack(out), jnp.sum(h**2)

    images = np.asarray(images)
    total, square = np.zeros((len(noise_levels), 2)), 0.0
    for i in range(0, len(images), batch):
        e, s = errors(images[i : i + batch], jax.random.fold_in(key, i))
        total, square = total + np.asarray(e, np.float64), square + float(s)
    n = len(images) * int(np.prod(model.input_shape))
    return {"noise": [float(s) for s in noise_levels],
            "reconstruction_mse": [round(float(v), 5) for v in total[:, 0] / n],
            "noisy_mse": [round(float(v), 5) for v in total[:, 1] / n],
            "code_mean_square": round(square / n, 5)}
