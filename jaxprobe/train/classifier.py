"""Cross-entropy training of the default MNIST classifier."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxprobe.train.loop import EpochSampler, run


def train_classifier(model, data, *, seed: int, steps: int, batch_size: int, lr: float, work_dir,
                     progress: bool = True):
    """Adam on softmax cross-entropy; returns (trained params, history, wall seconds)."""
    graphdef = model.graphdef
    tx = optax.adam(lr)
    state = {"params": model.params, "opt": tx.init(model.params)}

    def loss_fn(params, x, y):
        logits = nnx.merge(graphdef, params)(x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, jnp.mean(logits.argmax(-1) == y)

    @jax.jit
    def step(state, batch):
        x, y = batch
        (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], x, y)
        updates, opt = tx.update(grads, state["opt"], state["params"])
        return {"params": optax.apply_updates(state["params"], updates), "opt": opt}, {"loss": loss, "acc": acc}

    sampler = EpochSampler(len(data.train.labels), batch_size, seed)

    def batch(i):
        idx = sampler.indices(i)
        return data.train.images[idx], data.train.labels[idx]

    state, history, wall = run(state, step, batch, steps, work_dir, desc="classifier", progress=progress)
    return state["params"], history, wall
