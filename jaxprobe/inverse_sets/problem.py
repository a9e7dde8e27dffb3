"""One inverse-set problem as pure functions of K codes (Hada & Carreira-Perpiñán 2019, eq. 5-14).

The networks travel as `InverseSetNets` (generator G, classifier f, diversity embedding E and
their parameters), the constrained neurons and their ranges as `Targets`; `make_problem` closes
over both and returns an `InverseProblem`: the neuron values and E-features of G(C), the seed
constraints (eq. 7-8, two-sided with a margin by default, or the paper's one-sided form), the
acceptance test z1 <= f_j <= z2, and the diversity terms D(C) (eq. 5 in E, eq. 13 in code space,
eq. 14 none) and the distance to an accepted set (eq. 10), each sum over pairs in O(K) by

    sum_ij ||e_i - e_j||^2 = 2K sum_i ||e_i||^2 - 2 ||sum_i e_i||^2.

Scale (our choice; `normalize=False` restores the paper's raw form): constraints in units of
their range's width, diversity as means in units of S, the mean squared norm of the initial
codes' features (`feature_scale`), so mu0 = 10 means the same for every network and range.

Neurons are read through `jaxprobe.models.neurons` (after the nonlinearity by default); the
generator's images reach the classifier and E through `jaxprobe.models.pixels.adapt_images`
(pixel convention, then a centre crop: DeePSim's 256 x 256 into CaffeNet's 227 x 227).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax.numpy as jnp
from flax import nnx

from jaxprobe.models.neurons import values_at
from jaxprobe.models.pixels import adapt_images
from jaxprobe.models.probe import Model

DIVERSITY = ("embedding", "code", "none")


class Embedding(NamedTuple):
    """The diversity embedding E: `model`'s value at `layer`, flattened per image.

    Attributes:
      model: a probe-able model taking images (its `pixels` convention says how).
      layer: layer name or number of `model`.
      nonlinear: read after the layer's nonlinearity (default; what the fc6 encoder emits).
    """

    model: Model
    layer: Any
    nonlinear: bool = True


class InverseSetNets(NamedTuple):
    """The networks of an inverse set, by name.

    Attributes:
      generator: G, codes (input_shape) -> images in `generator.pixels`.
      classifier: f, whose neurons are constrained (images in `classifier.pixels`).
      embedding: E for the diversity (`Embedding`).
      gen_params, cls_params, emb_params: their parameters; None: the model's own `params`.
    """

    generator: Model
    classifier: Model
    embedding: Embedding
    gen_params: Any = None
    cls_params: Any = None
    emb_params: Any = None

    def resolved(self) -> "InverseSetNets":
        """The same nets with every None parameter replaced by the model's own, and E's parameters
        the classifier's when E is the classifier (so the problem shares the trunk's pass)."""
        gp = self.generator.params if self.gen_params is None else self.gen_params
        cp = self.classifier.params if self.cls_params is None else self.cls_params
        ep = self.embedding.model.params if self.emb_params is None else self.emb_params
        if self.embedding.model is self.classifier and self.emb_params is None:
            ep = cp
        return self._replace(gen_params=gp, cls_params=cp, emb_params=ep)


class Targets(NamedTuple):
    """The p constrained neurons and their ranges.

    Attributes:
      layers: static tuple of p layer numbers of the classifier.
      flat: (p,) int32 index of each neuron in its layer's flattened activation
        (`jaxprobe.models.neurons.flat_index`).
      ranges: (p, 2) float32 [z1, z2] per neuron.
      margin: (p,) float32 seed margins of the two-sided form (ignored one-sided); None:
        (z2 - z1) / 4.
    """

    layers: tuple
    flat: Any
    ranges: Any
    margin: Any = None


def encoder_layer(generator: Model, model: Model):
    """The layer of `model` that `generator` was trained to invert, or None.

    The generator's manifest records its encoder as {"architecture": builder, "layer": name} (a
    converted architecture, from its table in `weights_convert.mapping`: the DeePSim fc6 generator
    inverts CaffeNet's fc6), matched against `model`'s manifest `architecture.builder`, because a
    converted model is named by its directory; or as {"model": name, "layer": name} (the shipped
    `fc_generator` inverts the shipped classifier's fc1), matched by name.
    """
    enc = generator.manifest.get("encoder") or {}
    if enc.get("layer") is None:
        return None
    if "architecture" in enc:
        built = (model.manifest.get("architecture") or {}).get("builder")
        return enc["layer"] if enc["architecture"] == built else None
    return enc["layer"] if enc.get("model", model.name) == model.name else None


def default_embedding(generator: Model, classifier: Model) -> Embedding:
    """The default diversity embedding E for a generator and a target classifier.

    The encoder the generator was trained to invert when `classifier` is it (`encoder_layer`:
    CaffeNet up to fc6 for the DeePSim fc6 generator, the default classifier up to fc1 for
    `fc_generator`), read after its nonlinearity; otherwise the classifier up to its last hidden
    layer (layer L-1), the counterpart of the paper's "first layers of a classifier".
    """
    layer = encoder_layer(generator, classifier)
    if layer is not None:
        return Embedding(classifier, classifier.layer(layer), True)
    return Embedding(classifier, max(1, classifier.n_layers - 1), True)


def pairwise_sq_sum(e):
    """sum_{i,j} ||e_i - e_j||^2 over ordered pairs of the rows of e (K, d), in O(K d)."""
    k = e.shape[0]
    return 2.0 * k * jnp.sum(e * e) - 2.0 * jnp.sum(jnp.square(jnp.sum(e, axis=0)))


def cross_sq_sum(e, sum_a, sumsq_a, m):
    """sum_i sum_y ||e_i - a_y||^2 for rows e (K, d) and a set A given by its count m, its sum
    sum_a = sum_y a_y (d,) and sumsq_a = sum_y ||a_y||^2 (so A itself is never touched)."""
    return m * jnp.sum(e * e) - 2.0 * jnp.dot(jnp.sum(e, axis=0), sum_a) + e.shape[0] * sumsq_a


class InverseProblem(NamedTuple):
    """Pure functions of a batch of codes C (K, *code_shape) for one inverse-set problem.

    Attributes:
      forward: C -> (values (K, p) of the constrained neurons, E(G(C)) (K, d)).
      values: C -> values only (skips E when the diversity does not need it).
      constraints: values (K, p) -> g (K * q,), g >= 0 iff the seed constraints hold
        (q = 2p two-sided, p one-sided); divided by the range widths when normalized.
      in_range: values (K, p) -> (K,) bool, z1 <= f <= z2 for every neuron (no margin).
      spread: features (K, d) -> D, the diversity among the K rows (eq. 5 / 13), normalized or not.
      repulsion: (features (K, d), sum_a (d,), sumsq_a (), m ()) -> the distance of the K rows to
        an accepted set of m rows given by its sums (the second sum of eq. 6), normalized or not.
      diversity: "embedding", "code" or "none".
      images: C -> G(C), the generator's images in its pixel convention.
    """

    forward: Callable
    values: Callable
    constraints: Callable
    in_range: Callable
    spread: Callable
    repulsion: Callable
    diversity: str
    images: Callable


def make_problem(nets: InverseSetNets, targets: Targets, *, nonlinear: bool = True, one_sided: bool = False,
                 diversity: str = "embedding", normalize: bool = True, feature_scale=1.0) -> InverseProblem:
    """The `InverseProblem` of `targets` (neurons and ranges) on `nets`.

    Args:
      nets: the networks (`InverseSetNets`; None parameters: the models' own).
      targets: the neurons and their ranges (`Targets`).
      nonlinear: read the neurons after their layer's nonlinearity.
      one_sided: the paper's seed constraint f >= z2 - (z2 - z1)/2 (eq. 7-8) instead of
        z1 + m <= f <= z2 - m.
      diversity: "embedding" (eq. 5), "code" (eq. 13) or "none" (eq. 14).
      normalize: measure constraints in units of each range's width and diversity as means in
        units of `feature_scale`; False gives the paper's raw sums and raw activation units.
      feature_scale: S > 0, the mean squared norm of the diversity features of the initial codes.

    Everything array-valued may be traced.
    """
    forward, values, images = _passes(nets.resolved(), targets, nonlinear)
    ranges = jnp.asarray(targets.ranges, jnp.float32)
    z1, z2 = ranges[:, 0], ranges[:, 1]
    margin = (z2 - z1) / 4.0 if targets.margin is None else jnp.asarray(targets.margin, jnp.float32)
    unit = (z2 - z1) if normalize else jnp.ones_like(z1)

    def constraints(v):
        if one_sided:
            # Paper eq. 7-8: z2 - f <= eps0 with eps0 = (z2 - z1)/2, i.e. f >= the midpoint.
            return ((v - (z2 - (z2 - z1) / 2.0)) / unit).ravel()
        return (jnp.concatenate([(v - (z1 + margin)) / unit, ((z2 - margin) - v) / unit], axis=-1)).ravel()

    def in_range(v):
        return jnp.all((v >= z1) & (v <= z2), axis=-1)

    def spread(feats):
        d = pairwise_sq_sum(feats)
        return d / (feats.shape[0] ** 2 * feature_scale) if normalize else d

    def repulsion(feats, sum_a, sumsq_a, m):
        r = cross_sq_sum(feats, sum_a, sumsq_a, m)
        return r / (feats.shape[0] * jnp.maximum(m, 1.0) * feature_scale) if normalize else r

    return InverseProblem(forward, values, constraints, in_range, spread, repulsion, diversity, images)


def _passes(nets: InverseSetNets, targets: Targets, nonlinear: bool):
    """(forward: C -> (values, E(G(C))), values: C -> values, images: C -> G(C)) for resolved nets."""
    generator, classifier, embedding = nets.generator, nets.classifier, nets.embedding
    gen_params, cls_params, emb_params = nets.gen_params, nets.cls_params, nets.emb_params
    layers, flat = targets.layers, targets.flat
    e_layer = embedding.model.layer(embedding.layer)

    def _images(c):
        return generator.forward(gen_params, c)

    def _to(images, model):  # convention, then the centre crop (DeePSim 256 -> CaffeNet 227)
        return adapt_images(images, generator.pixels, model.pixels, model.input_shape)

    def _values(images):
        return values_at(classifier, cls_params, _to(images, classifier), layers, flat, nonlinear=nonlinear)

    def _embed(images):
        h = embedding.model.activation(emb_params, _to(images, embedding.model), e_layer,
                                       nonlinear=embedding.nonlinear)
        return h.reshape(h.shape[0], -1)

    # E read from the classifier itself (the default embedding): one pass of its trunk gives both
    # the neurons and E, so the gradient flows back through the shared layers once, not twice.
    shared = embedding.model is classifier and emb_params is cls_params

    def _values_and_embed(images):
        x = _to(images, classifier)
        ls = tuple(int(l) for l in layers)
        net, pre = _pre_activations(classifier, cls_params, x, set(ls) | {e_layer})

        def value(l, nl):
            h = net.act(pre[l], l) if nl else pre[l]
            return h.reshape(h.shape[0], -1)

        acts = {l: value(l, nonlinear) for l in set(ls)}
        idx = jnp.asarray(flat)
        v = jnp.stack([jnp.take(acts[l], idx[j], axis=1) for j, l in enumerate(ls)], axis=1)
        return v, value(e_layer, embedding.nonlinear)

    def forward(c):
        images = _images(c)
        if shared:
            return _values_and_embed(images)
        return _values(images), _embed(images)

    def values(c):
        return _values(_images(c))

    return forward, values, _images


def _pre_activations(model: Model, params, x, wanted):
    """({l: layer l's pre-activation} for the layer numbers in `wanted`, the merged network), from
    one pass of `model` on x: the same operations as `Model.up_to` for each l, shared."""
    net = nnx.merge(model.graphdef, params)
    top, out = max(wanted), {}
    for l, layer in enumerate(net.layers[:top], start=1):
        h = layer.pre(x)
        if l in wanted:
            out[l] = h
        if l < top:
            x = layer.post(h)
    return net, out


def features(problem: InverseProblem, c, e):
    """The rows whose spread is the diversity: E(G(c)) (eq. 5) or the codes (eq. 13)."""
    if problem.diversity == "embedding":
        return e
    return c.reshape(c.shape[0], -1)


def feature_scale(problem: InverseProblem, c0):
    """S: the mean squared norm of the diversity features of the initial codes c0 (K, *code), 1
    when they are all zero (the unit of the normalized diversity terms)."""
    feats = problem.forward(c0)[1] if problem.diversity == "embedding" else c0.reshape(c0.shape[0], -1)
    s0 = jnp.mean(jnp.sum(feats * feats, axis=1))
    return jnp.where(s0 > 0, s0, 1.0)
