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

from jaxprobe.errors import JaxprobeError
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
        h = jax.lax.stop_gradient(encode(encoder, layer, enc_params, x)).reshape(x.shape[0], -1)  # flat codes
        loss, grads = jax.value_and_grad(loss_fn)(state["params"], h, jax.random.fold_in(base, i))
        updates, opt = tx.update(grads, state["opt"], state["params"])
        return {"params": optax.apply_updates(state["params"], updates), "opt": opt}, {"loss": loss}

    sampler = EpochSampler(len(data.train.labels), batch_size, seed)
    state, history, wall = run(state, step, lambda i: (data.train.images[sampler.indices(i)], np.int32(i)), steps,
                               work_dir, desc="h_dae", progress=progress)
    return state["params"], history, wall


def code_noise(codes) -> float:
    """Half the codes' mean per-unit standard deviation: the training noise of an h-DAE for codes
    of any scale (the shipped one's 1.0 is that rule on fc_generator's codes, whose per-unit
    standard deviation on MNIST is about 2), small enough that R(h) - h points back to the data."""
    h = np.asarray(codes, np.float64).reshape(len(codes), -1)
    return float(0.5 * h.std(axis=0).mean())


def train_code_dae(generator, encoder, layer, images, work_dir, *, seed: int = 0, steps: int | None = None,
                   encoder_name: str | None = None, progress: bool = True):
    """An h-DAE for any generator's code space (Nguyen et al. 2017, sec. 3.3): codes h = E(x), E =
    `encoder` up to `layer` (after its nonlinearity) on real `images` (m, H, W, C) in E's
    canonical [0, 1] scale; R trained on the loss above with noise `code_noise` of those codes.
    Its output layer is linear whatever the codes' sign: a ReLU output's units that start negative
    on every code get no gradient and never learn (at small code scales, most of them).

    Returns (model, manifest, record): the trained `h_dae` model (role "denoiser", a prior for
    `jaxprobe.ppgn`), its manifest (generator, encoder {"model": encoder_name or its name,
    "layer"}) and {"hyperparameters", "steps", "wall_time_s", "final_losses", "quality"}."""
    from types import SimpleNamespace

    from jaxprobe.models import store
    from jaxprobe.train.recipes import h_dae_recipe

    code_shape = tuple(generator.input_shape)
    number = encoder.layer(layer)
    if int(np.prod(encoder.layer_shape(number))) != int(np.prod(code_shape)) or len(code_shape) != 1:
        raise JaxprobeError(f"encoder: {encoder.name!r} at {layer!r} gives {encoder.layer_shape(number)}, not the "
                            f"code shape {code_shape} of {generator.name!r} (an h-DAE takes flat codes)")
    x = np.asarray(images, np.float32)
    if x.ndim != 4 or x.shape[1:] != tuple(encoder.input_shape) or len(x) < 2:
        raise JaxprobeError(f"images: expected real images of shape (m, {', '.join(map(str, encoder.input_shape))}), "
                            f"m >= 2, got {x.shape}")
    if encoder.pixels is not None:
        x = np.asarray(encoder.pixels.from_canonical(jnp.asarray(x)))
    read = jax.jit(lambda p, v: encode(encoder, number, p, v).reshape(v.shape[0], -1))
    codes = np.concatenate([np.asarray(read(encoder.params, x[i:i + 256])) for i in range(0, len(x), 256)])
    recipe = h_dae_recipe(generator.name, code_shape[0], {"model": encoder_name or encoder.name, "layer": layer},
                          output="identity", noise=code_noise(codes))
    hyper = dict(recipe["hyper"], steps=recipe["hyper"]["steps"] if steps is None else int(steps))
    manifest = dict(recipe["manifest"], name="h_dae")
    model = store.new_model("h_dae", manifest, seed=seed)
    data = SimpleNamespace(train=SimpleNamespace(images=x, labels=np.zeros(len(x), np.int32)))
    params, history, wall = train_dae(model, encoder, number, data, seed=seed, steps=hyper["steps"],
                                      batch_size=min(hyper["batch_size"], len(x)), lr=hyper["lr"],
                                      noise=hyper["noise"], work_dir=work_dir, progress=progress)
    model = model.replace(params=params)
    quality = dae_quality(model, encoder, number, x, jax.random.PRNGKey(10_000 + seed),
                          noise_levels=(hyper["noise"],))
    record = {"hyperparameters": hyper, "steps": hyper["steps"], "wall_time_s": round(wall, 1),
              "final_losses": {k: v[-1][1] for k, v in history.items()}, "quality": quality}
    return model, manifest, record


def dae_quality(model, encoder, layer, images, key, noise_levels=(0.5, 1.0, 2.0), batch: int = 1000) -> dict:
    """Reconstruction error of the DAE on codes E(x) of `images`, against the noise level.

    For each sigma: `reconstruction_mse` = mean ||R(h + sigma n) - h||^2 / D and `noisy_mse` the
    same for the noisy code itself (about sigma^2, what doing nothing costs), over every image with
    one draw n each; `code_mean_square` = mean h^2 gives the scale.
    """
    @jax.jit
    def errors(x, k):
        h = encode(encoder, layer, encoder.params, x).reshape(x.shape[0], -1)
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
