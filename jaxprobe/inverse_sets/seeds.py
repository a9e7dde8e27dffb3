"""The K seeds of an inverse set (Hada & Carreira-Perpiñán 2019, section 3.4, eq. 7-8).

Seeds: K codes minimizing -D(C) subject to the range constraints, by the augmented Lagrangian of
`jaxprobe.inverse_sets.auglag` (a kernel: one outer iteration per step), stopping as soon as every
seed is feasible. They start from K initial codes, made one of three ways (`init_mode`):
"images", E(uniform random images) when E maps into the generator's code space (the paper:
"initialize C by passing K initial images X0 (we used random values) through E"); "prior", draws
from the generator's latent prior; or codes the caller gives.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from jaxprobe.errors import JaxprobeError
from jaxprobe.inverse_sets import auglag
from jaxprobe.inverse_sets.problem import Embedding, InverseProblem, InverseSetNets, encoder_layer
from jaxprobe.models.probe import Model
from jaxprobe.sharding import constrain_batch

INIT_MODES = ("images", "prior", "given")


def init_mode(generator: Model, embedding: Embedding, init: str = "auto") -> str:
    """How `inverse_set` makes its K initial codes for `init` = "auto", "images" or "prior".

    "images": E(uniform random images); "prior": draws from the generator's latent prior. "auto"
    is "images" when the generator's manifest names E's layer as its encoder, or when it has no
    prior and E's size equals the code size; otherwise "prior". Raises JaxprobeError when the mode
    cannot be used.
    """
    code_size = math.prod(generator.input_shape)
    e_model, e_layer = embedding.model, embedding.model.layer(embedding.layer)
    e_size = math.prod(e_model.layer_shape(e_layer))
    maps_into_codes = e_size == code_size
    has_prior = bool(generator.manifest.get("latent"))
    if init == "auto":
        enc_layer = encoder_layer(generator, e_model)
        named = enc_layer is not None and maps_into_codes and e_model.layer(enc_layer) == e_layer
        if named or (maps_into_codes and not has_prior):
            return "images"
        if has_prior:
            return "prior"
        raise JaxprobeError(
            f"init: generator {generator.name!r} has no latent prior and E (layer {e_layer} of "
            f"{e_model.name!r}, {e_size} values) does not map into its {code_size}-value code space; "
            "pass init=an array of K codes")
    if init == "prior":
        if not has_prior:
            raise JaxprobeError(f"init: generator {generator.name!r} has no latent prior (manifest 'latent')")
        return "prior"
    if init == "images":
        if not maps_into_codes:
            raise JaxprobeError(
                f"init: E gives {e_size} values per image but generator {generator.name!r} takes "
                f"codes of shape {generator.input_shape}; 'images' needs E to map into the code space")
        return "images"
    raise JaxprobeError(f"init: expected 'auto', 'prior', 'images' or an array of codes, got {init!r}")


def initial_codes(key, nets: InverseSetNets, mode: str, k: int, given=None):
    """(k, *code_shape) float32 initial codes by `mode` ("images", "prior" or "given": `given`)."""
    nets = nets.resolved()
    gen, emb = nets.generator, nets.embedding
    if mode == "prior":
        c0 = gen.sample_prior(key, k)
    elif mode == "images":
        x0 = jax.random.uniform(key, (k,) + tuple(emb.model.input_shape))
        if emb.model.pixels is not None:
            x0 = emb.model.pixels.from_canonical(x0)
        h = emb.model.activation(nets.emb_params, x0, emb.model.layer(emb.layer), nonlinear=emb.nonlinear)
        c0 = h.reshape((k,) + tuple(gen.input_shape))
    else:
        c0 = jnp.asarray(given)
    return c0.astype(jnp.float32)


def seed_objective(problem: InverseProblem, mesh=None):
    """C -> (f, g) for the augmented Lagrangian: f = -D(C) (eq. 7-8), g the range constraints.
    With `mesh`, C's K rows stay split over its "batch" axis."""

    def fun(c):
        c = constrain_batch(c, mesh)
        if problem.diversity == "embedding":
            v, e = problem.forward(c)
            div = problem.spread(e)
        else:
            v = problem.values(c)
            div = problem.spread(c.reshape(c.shape[0], -1)) if problem.diversity == "code" else 0.0
        return -div, problem.constraints(v)

    return fun


def seed_solver(problem: InverseProblem, optimizer, *, inner_steps: int = 100, growth=10.0,
                mesh=None) -> auglag.AugLag:
    """The augmented-Lagrangian kernel of eq. 7-8 for K seeds (init/step over AugLagState)."""
    return auglag.augmented_lagrangian(seed_objective(problem, mesh), None, optimizer=optimizer,
                                       inner_steps=inner_steps, growth=growth)


def default_optimizer(c0, seed_lr):
    """Adam with learning rate seed_lr * RMS(c0): a step relative to the codes' scale (the paper
    used plain gradient descent at a scale it does not report)."""
    rms = jnp.sqrt(jnp.mean(c0 * c0))
    return optax.adam(seed_lr * jnp.where(rms > 0, rms, 1.0))
