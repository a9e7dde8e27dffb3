"""E-GBAS's consistency metrics over sample sets (Jeon et al. 2020, section 4.2).

* sigma (eq. 3, Table 1): the mean over pixels of the per-pixel population standard deviation of
  G(z) over a sample set; lower means the samples vary less.
* feature similarity (eq. 2, Table 2): for each feature layer k of a critic (every layer but its
  scalar head), the mean over the set of cos(d_k(G(z)), d_k(G(z0))); higher means the samples
  stay closer to the query.

The core functions, `masked_sigma` and `masked_similarity`, take S sets padded to N rows with the
number of valid rows of each, so that one compilation serves every set size; `sample_sigma` and
`feature_similarity` are the one-set forms, `set_metrics` and `egbas_metrics` apply both to the
latent sample sets of an E-GBAS run. Generators and critics are used through the probe protocol
only (`forward`, `activation`).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxprobe.checks import check_batch
from jaxprobe.errors import JaxprobeError
from jaxprobe.models.pixels import convert_pixels

# The three sample sets of an E-GBAS run, in the order of `sample_sets` and of every metric array.
METHODS = ("egbas", "l2", "linf")


def _row_weights(counts, n: int, dtype):
    """(S, N) weights, 1 on the first counts[s] rows of set s and 0 on its padding; totals (S,)."""
    w = (jnp.arange(n)[None, :] < jnp.asarray(counts)[:, None]).astype(dtype)
    return w, jnp.sum(w, axis=1)


def masked_sigma(images, counts):
    """sigma (Jeon et al. 2020, eq. 3) of S padded image sets.

    Args:
      images: (S, N, *image_shape), rows [0, counts[s]) of set s valid, on the generator's output
        scale (e.g. [-1, 1] for a tanh generator; say which when reporting).
      counts: (S,) int, valid rows per set.

    Returns:
      (sigma, std): sigma (S,), the mean over pixels of `std`, NaN for a set with no valid row;
      std (S, *image_shape), the per-pixel population standard deviation (ddof = 0) over the
      valid rows (the paper's Figure 6).
    """
    s, n = images.shape[:2]
    w, total = _row_weights(counts, n, images.dtype)
    wb = w.reshape((s, n) + (1,) * (images.ndim - 2))
    denom = jnp.maximum(total, 1.0).reshape((s, 1) + (1,) * (images.ndim - 2))
    mean = jnp.sum(wb * images, axis=1, keepdims=True) / denom
    var = jnp.sum(wb * (images - mean) ** 2, axis=1, keepdims=True) / denom
    std = jnp.sqrt(var)[:, 0]
    sigma = jnp.mean(std.reshape(s, -1), axis=1)
    return jnp.where(total > 0, sigma, jnp.nan), std


# Images per forward pass in `set_metrics` and `masked_similarity`: the sets hold up to
# 3 x capacity + 1 images, and at paper scale (a 256 x 256 PGGAN and its discriminator) one pass
# over all of them asks for tens of GB of activations; in chunks only one chunk's are alive.
CHUNK = 64


def _chunked(f, xs):
    """f over the rows of xs (f maps one row to one result), CHUNK rows vectorized at a time."""
    return jax.lax.map(f, xs, batch_size=min(CHUNK, xs.shape[0]))


def masked_similarity(critic, params, ref, images, counts):
    """Critic feature similarity (Jeon et al. 2020, eq. 2) of S padded image sets to one reference.

    The features of layer k are the critic's activation after its nonlinearity
    (`critic.activation`), flattened; the images pass through the critic `CHUNK` at a time, each
    chunk's features reduced to cosines before the next (XLA shares the layers' prefixes).

    Args:
      critic, params: a probe-able critic (static under jit) and its parameters.
      ref: (1, *critic.input_shape), e.g. G(z0), on the critic's pixel scale.
      images: (S, N, *critic.input_shape), rows [0, counts[s]) of set s valid, same scale.
      counts: (S,) int, valid rows per set.

    Returns:
      (S, K) for the critic's K = L - 1 feature layers: the mean over the valid rows of
      cos(d_k(x), d_k(ref)); NaN for a set with no valid row.
    """
    s, n = images.shape[:2]
    w, total = _row_weights(counts, n, images.dtype)
    layers = range(1, critic.n_layers)
    refs = [critic.activation(params, ref, k).reshape(-1) for k in layers]

    def cosines(x):  # one image -> (K,)
        out = []
        for k, r in zip(layers, refs):
            f = critic.activation(params, x[None], k).reshape(-1)
            out.append(f @ r / jnp.maximum(jnp.linalg.norm(f) * jnp.linalg.norm(r), 1e-12))
        return jnp.stack(out)

    cos = _chunked(cosines, images.reshape((s * n,) + images.shape[2:])).reshape(s, n, -1)
    sims = jnp.sum(w[..., None] * cos, axis=1) / jnp.maximum(total, 1.0)[:, None]
    return jnp.where(total[:, None] > 0, sims, jnp.nan)


def sample_sigma(images):
    """Table 1's sigma of one sample set (Jeon et al. 2020, eq. 3).

    Args:
      images: (n, *image_shape), n >= 1, on the generator's output scale.

    Returns:
      () float32: mean_pixels std_n(images) (population std, ddof = 0).
    """
    images = jnp.asarray(images, jnp.float32)
    if images.ndim < 2 or images.shape[0] < 1:
        raise JaxprobeError(f"images: expected a batch (n >= 1, ...), got shape {tuple(images.shape)}")
    return masked_sigma(images[None], jnp.asarray([images.shape[0]]))[0][0]


def feature_similarity(critic, params, images, ref_image):
    """Table 2's similarity of one sample set (Jeon et al. 2020, eq. 2): for each feature layer
    k = 1..L-1 of the critic (every layer but its scalar head), mean_i cos(d_k(x_i), d_k(x_ref)).

    Args:
      critic: a probe-able critic (`Model`), params its parameters.
      images: (n, *critic.input_shape), e.g. G(z) for the samples (same scale the critic was
        trained on).
      ref_image: one image (*critic.input_shape) or (1, *input_shape), e.g. G(z0).

    Returns:
      float32 (L-1,): the mean similarity at each feature layer.
    """
    check_batch("images", images, critic.input_shape, what=f"critic {critic.name!r}")
    ref = jnp.asarray(ref_image, jnp.float32)
    if tuple(ref.shape) == tuple(critic.input_shape):
        ref = ref[None]
    check_batch("ref_image", ref, critic.input_shape, what=f"critic {critic.name!r}")
    if ref.shape[0] != 1:
        raise JaxprobeError(f"ref_image: expected one image, got a batch of {ref.shape[0]}")
    if critic.n_layers < 2:
        raise JaxprobeError(f"critic: {critic.name!r} has no feature layer below its head")
    images = jnp.asarray(images, jnp.float32)
    return _similarity_jit(critic, params, ref, images[None], jnp.asarray([images.shape[0]]))[0]


# Jitted because op-by-op dispatch of a conv critic cost seconds per call; inside a caller's jit
# it is simply inlined.
_similarity_jit = jax.jit(masked_similarity, static_argnums=0)


@functools.partial(jax.jit, static_argnums=(0, 2))
def set_metrics(generator, gparams, critic, cparams, z0, sets, counts):
    """sigma and critic similarity of S padded latent sample sets, in one call.

    Args:
      generator, gparams: the generator G (static) and its parameters.
      critic, cparams: the critic (static; None to skip the similarity) and its parameters.
      z0: the query, (*latent_shape).
      sets: (S, N, *latent_shape) latent sample sets, rows [0, counts[s]) of set s valid.
      counts: (S,) int, valid rows per set.

    Returns:
      (sigma (S,), similarity (S, K), std (S, *image)): `masked_sigma` of G(z) on the generator's
      output scale, and `masked_similarity` of G(z) to G(z0), both converted to the critic's pixel
      convention ((S, 0) without a critic).
    """
    s, n = sets.shape[:2]
    zs = jnp.concatenate([z0[None], sets.reshape((s * n,) + z0.shape)])
    x = _chunked(lambda z: generator.forward(gparams, z[None])[0], zs)
    sigma, std = masked_sigma(x[1:].reshape((s, n) + x.shape[1:]), counts)
    if critic is None:
        return sigma, jnp.zeros((s, 0), x.dtype), std
    if generator.pixels is not None and critic.pixels is not None:
        x = convert_pixels(x, generator.pixels, critic.pixels)
    sim = masked_similarity(critic, cparams, x[:1], x[1:].reshape((s, n) + x.shape[1:]), counts)
    return sigma, sim, std


def sample_sets(result, *, include_query: bool = False):
    """The three latent sample sets of an `EGBASResult`, padded: (sets (3, N, *latent), counts (3,)).

    N is the tree's capacity; the sets are in the order of `METHODS`. E-GBAS: the accepted nodes
    (without the query unless `include_query`); L2 and Linf: as many of their draws (none where
    eps is undefined, i.e. when nothing was rejected).
    """
    cap = result.tree.nodes.shape[0]
    nodes = result.samples if include_query else result.samples[1:]
    n = nodes.shape[0]
    sets = np.zeros((3, cap) + result.query.shape, np.float32)
    counts = np.zeros((3,), np.int32)
    sets[0, :n], counts[0] = nodes, n
    if math.isfinite(result.eps_l2):
        sets[1, :n], sets[2, :n] = result.l2_samples[:n], result.linf_samples[:n]
        counts[1:] = n
    return sets, counts


def egbas_metrics(result, generator, critic=None, *, include_query: bool = False) -> dict:
    """sigma and critic similarity of the E-GBAS, L2 and Linf sample sets of one `EGBASResult`.

    By default each set leaves out the query: the tree's root is z0 itself, whose similarity to
    G(z0) is exactly 1 and which the baselines (drawn around z0) do not contain, so keeping it
    would favour E-GBAS by construction.

    Returns {"sigma": {method: float}, "similarity": {method: [K floats]} (with a critic only),
    "n_samples": int, "std_maps": (3, *image) per-pixel standard deviations on the generator's
    output scale}; NaN where a set is empty.
    """
    sets, counts = sample_sets(result, include_query=include_query)
    sigma, sim, std = set_metrics(generator, generator.params, critic, None if critic is None else critic.params,
                                  jnp.asarray(result.query), jnp.asarray(sets), jnp.asarray(counts))
    sigma, sim = np.asarray(sigma, np.float64), np.asarray(sim, np.float64)
    out = {"sigma": dict(zip(METHODS, sigma.tolist())), "n_samples": int(counts[0]), "std_maps": np.asarray(std)}
    if critic is not None:
        out["similarity"] = {m: sim[i].tolist() for i, m in enumerate(METHODS)}
    return out
