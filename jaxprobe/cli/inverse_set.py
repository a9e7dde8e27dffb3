"""`jaxprobe inverse-set` and `jaxprobe reproduce inverse-set` (paper 003, SPEC section 2).

`jaxprobe inverse-set` samples n images of a generator whose constrained neurons of a classifier lie
in their ranges (`jaxprobe.inverse_sets.inverse_set.inverse_set`) and writes DIR/inverse_set.json plus two PNGs:
the samples sorted by activation, labelled with their values, and a histogram of the activations
with [z1, z2] marked. `jaxprobe reproduce inverse-set` measures, for one logit neuron with K = 10 and
n = 500, the seeds' outer iterations, the sampling steps for the other n - K samples (paper: about
85, the minimum being ceil((n - K)/K) = 49), and the mean pairwise E-distance of the samples for
eq. 5, eq. 13 and eq. 14 from a shared initialization (paper section 4.2: eq. 5 the most diverse).

Ranges for the reproduction and the report section are not tuned: they are quantiles of the neuron's
value over G(codes) for reference codes (`reference_codes`: E of MNIST test digits when the
generator inverts E, as the fc generator does; otherwise codes from the generator's prior), so
they are ranges the generator is known to reach, fixed before any sampling.
"""

from __future__ import annotations

import functools
import json
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxprobe.cli.common import load_model
from jaxprobe.errors import JaxprobeError
from jaxprobe.inverse_sets.inverse_set import _choose_init, default_embedding, inverse_set, mean_pairwise_distance

OUT_FILE = "inverse_set.json"
SAMPLES_PNG = "samples_by_activation.png"
HISTOGRAM_PNG = "activation_histogram.png"
REPRO_JSON = "reproduce_inverse_set.json"
REPRO_MD = "reproduce_inverse_set.md"
# Quantile pairs of a class neuron's value over its class's reference codes (paper Figure 1 shows
# several ranges of one class neuron; these are two of them, a typical and a high one).
CLASS_RANGES = {"typical": (0.25, 0.5), "high": (0.75, 0.95)}
EQUATIONS = {"eq5": "embedding", "eq13": "code", "eq14": "none"}


# ---------------------------------------------------------------- argument handling


def pair_neurons_ranges(neurons, ranges) -> tuple[list, list]:
    """Pair the repeated `--neuron` and `--range` arguments: one (z1, z2) per neuron, in order.

    Raises JaxprobeError when none is given or the counts differ (an intersection repeats the pair).
    """
    neurons, ranges = list(neurons or []), list(ranges or [])
    if not neurons:
        raise JaxprobeError("--neuron: expected at least one neuron 'layer:unit' (with its --range Z1 Z2)")
    if len(neurons) != len(ranges):
        raise JaxprobeError(
            f"--neuron/--range: expected one --range Z1 Z2 per --neuron (an intersection repeats the pair), "
            f"got {len(neurons)} --neuron and {len(ranges)} --range")
    return neurons, [tuple(float(v) for v in r) for r in ranges]


def check_out_dir(out) -> Path:
    """The output directory: new, empty, or a previous output of this command (it is replaced whole).

    Refusing any other existing directory keeps `--out .` from replacing unrelated files.
    """
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise JaxprobeError(f"--out: {out} exists and is not a directory")
        if any(out.iterdir()) and not (out / OUT_FILE).is_file() and not (out / REPRO_JSON).is_file():
            raise JaxprobeError(f"--out: {out} is a non-empty directory that holds no earlier jaxprobe "
                                "inverse-set output; choose a new directory (its contents would be replaced)")
    return out


# ---------------------------------------------------------------- independent checks


@functools.partial(jax.jit, static_argnames=("generator", "classifier", "layer", "nonlinear"))
def _layer_program(gen_params, cls_params, codes, *, generator, classifier, layer, nonlinear):
    """(B, *code) -> (B, D): classifier layer `layer` of adapt_images(G(codes)), flattened."""
    from jaxprobe.models.pixels import adapt_images

    images = adapt_images(generator.forward(gen_params, codes), generator.pixels, classifier.pixels,
                          classifier.input_shape)
    h = classifier.activation(cls_params, images, layer, nonlinear=nonlinear)
    return h.reshape(h.shape[0], -1)


def layer_values(generator, classifier, codes, layer, *, nonlinear: bool = True, batch: int = 64) -> np.ndarray:
    """Layer `layer` of the classifier on G(codes), flattened per sample: (m, D) float32.

    A forward pass of its own (generator, `adapt_images`, classifier), compiled once per layer:
    codes go through in chunks of `batch`, the last one zero-padded, so every call has one shape.
    """
    codes = np.asarray(codes, np.float32)
    layer = classifier.layer(layer)
    out = []
    for i in range(0, len(codes), batch):
        chunk = codes[i : i + batch]
        pad = batch - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], np.float32)])
        h = _layer_program(generator.params, classifier.params, jnp.asarray(chunk), generator=generator,
                           classifier=classifier, layer=layer, nonlinear=bool(nonlinear))
        out.append(np.asarray(h)[: batch - pad])
    if not out:
        return np.zeros((0, math.prod(classifier.layer_shape(layer))), np.float32)
    return np.concatenate(out)


def fresh_activations(generator, classifier, codes, neurons, *, nonlinear: bool = True) -> np.ndarray:
    """Neuron values recomputed from codes alone: (m, p) float64, column j = neuron j.

    G(c) -> `convert_pixels` -> classifier, read at each neuron's layer and flat index
    (`jaxprobe.models.neurons.flat_index`): a program of its own, sharing nothing with the sampler but the
    models, so it checks the activations the sampler stored.
    """
    from jaxprobe.models.neurons import flat_index, resolve_neurons

    resolved = resolve_neurons(classifier, neurons)
    by_layer = {l: layer_values(generator, classifier, codes, l, nonlinear=nonlinear)
                for l in sorted({r.layer for r in resolved})}
    cols = [by_layer[r.layer][:, flat_index(classifier, r)] for r in resolved]
    return np.stack(cols, axis=1).astype(np.float64)


def range_check(values, ranges) -> dict:
    """Whether every row of values (m, p) lies in ranges (p, 2) (z1 <= v <= z2, no tolerance).

    Returns {"all_in_range": bool, "n_out_of_range": int, "worst_violation": float (>= 0, by how
    much the worst value leaves its range; 0 when all are inside)}.
    """
    r = np.asarray(ranges, np.float64).reshape(-1, 2)
    v = np.asarray(values, np.float64).reshape(len(values), len(r))
    below = np.maximum(r[:, 0] - v, 0.0)
    above = np.maximum(v - r[:, 1], 0.0)
    viol = np.maximum(below, above)
    bad = np.any(viol > 0, axis=1)
    return {"all_in_range": bool(not bad.any()), "n_out_of_range": int(bad.sum()),
            "worst_violation": float(viol.max()) if viol.size else 0.0}


def independent_check(result, generator, classifier) -> dict:
    """`range_check` on activations recomputed from the result's codes by `fresh_activations`,
    plus the largest |stored - recomputed| activation (float32 rounding of two programs)."""
    fresh = fresh_activations(generator, classifier, result.codes, list(result.neurons),
                              nonlinear=result.reading == "post-nonlinearity")
    check = range_check(fresh, result.ranges)
    stored = np.asarray(result.activations, np.float64)
    check["max_abs_deviation_from_stored"] = float(np.max(np.abs(fresh - stored))) if len(stored) else 0.0
    check["n_checked"] = int(len(fresh))
    return check


# ---------------------------------------------------------------- records and figures


def _clean(x):
    """Floats for JSON: nan and inf become None (strict JSON has no NaN)."""
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def result_record(result, *, generator, classifier, embedding, seed, check=None, wall_s=None) -> dict:
    """The JSON record of an `InverseSet`: every accepted sample's codes and activations.

    `activations` holds one list per sample with each constrained neuron's value in the order of
    `neurons`; `codes` one (flattened) code per sample, `code_shape` their shape.
    """
    e_model = embedding.model
    record = {
        "generator": generator.name,
        "classifier": classifier.name,
        "neurons": list(result.neurons),
        "reading": result.reading,
        "ranges": np.asarray(result.ranges).tolist(),
        "n_requested": result.n_requested,
        "k": result.k,
        "n_accepted": result.n_accepted,
        "seed": seed,
        "diversity": result.diversity,
        "diversity_equation": {"embedding": "eq. 5", "code": "eq. 13", "none": "eq. 14"}[result.diversity],
        "embedding": {"model": e_model.name, "layer": e_model.layer_names[e_model.layer(embedding.layer) - 1],
                      "reading": "post-nonlinearity" if embedding.nonlinear else "pre-activation"},
        "stop_reason": result.stop_reason,
        "stop_message": result.stop_message,
        "seeds_feasible": result.seeds_feasible,
        "steps": {"outer_iterations": result.outer_iterations, "inner_steps": result.inner_steps,
                  "sampling_steps": result.sampling_steps},
        "lambda": np.asarray(result.lam).tolist(),
        "mu": result.mu,
        "diversity_statistics": result.stats,
        "stored_activations_in_range": range_check(result.activations, result.ranges)["all_in_range"],
        "activations": np.asarray(result.activations, np.float64).tolist(),
        "code_shape": list(np.shape(result.codes)[1:]),
        "codes": np.asarray(result.codes, np.float64).reshape(len(result.codes), -1).tolist(),
    }
    if check is not None:
        record["fresh_forward_check"] = check
    if wall_s is not None:
        record["wall_s"] = round(float(wall_s), 3)
    return _clean(record)


def canonical_images(generator, images):
    """Generator images on the canonical [0, 1] scale for figures."""
    images = jnp.asarray(images)
    if generator.pixels is not None:
        images = generator.pixels.to_canonical(images)
    return np.clip(np.asarray(images), 0.0, 1.0)


def save_sorted_samples(path, images, values, neurons, title: str, *, max_shown: int = 100, ncol: int = 10):
    """PNG of samples sorted by their first neuron's value (descending), each labelled with its values.

    Args:
      images: (m, H, W, C) canonical images in [0, 1].
      values: (m, p) activations, in the order of `neurons`.
      max_shown: at most this many panels, picked evenly along the sorted order (so the whole range
        of activations is shown, not just its top).
    """
    from jaxprobe.experiments.figures import pyplot as _plt

    plt = _plt()
    values = np.asarray(values).reshape(len(values), -1)
    order = np.argsort(-values[:, 0], kind="stable")
    shown = ""
    if len(order) > max_shown:
        order = order[np.unique(np.linspace(0, len(order) - 1, max_shown).round().astype(int))]
        shown = f", {len(order)} of {len(values)} shown, evenly along that order"
    m = len(order)
    ncol = max(1, min(ncol, m))
    nrow = max(1, -(-m // ncol))
    p = values.shape[1]
    fig, axes = plt.subplots(nrow, ncol, figsize=(1.0 * ncol, (1.0 + 0.14 * p) * nrow + 0.6), dpi=100, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), order):
        img = images[i]
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title("\n".join(f"{v:.3g}" for v in values[i]), fontsize=7)
    label = " / ".join(neurons)
    fig.suptitle(f"{title}\n{label}, sorted by {neurons[0]} (high to low){shown}" if m else f"{title}\nno samples",
                 fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def save_histograms(path, panels, title: str = ""):
    """PNG with one histogram per panel (label, values (m,), (z1, z2)), [z1, z2] marked."""
    from jaxprobe.experiments.figures import pyplot as _plt

    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 2.8), dpi=100, squeeze=False)
    for ax, (label, vals, (z1, z2)) in zip(axes[0], panels):
        ax.axvspan(z1, z2, color="tab:green", alpha=0.15)
        ax.axvline(z1, color="tab:green")
        ax.axvline(z2, color="tab:green")
        if len(vals):
            ax.hist(vals, bins=min(30, max(5, len(vals) // 5)), color="tab:blue")
        ax.set_title(f"{label} (n = {len(vals)})\n[z1, z2] = [{z1:.4g}, {z2:.4g}] shaded", fontsize=8)
        ax.set_xlabel("activation", fontsize=8)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_outputs(out, result, generator, record) -> Path:
    """Write DIR/inverse_set.json and the two PNGs, atomically (all appear or none)."""
    from jaxprobe.io import atomic_dir, write_text

    with atomic_dir(out) as tmp:
        write_text(tmp / OUT_FILE, json.dumps(record, indent=1) + "\n")
        images = canonical_images(generator, result.images)
        title = f"inverse set: {result.n_accepted} samples ({result.stop_reason})"
        save_sorted_samples(tmp / SAMPLES_PNG, images, result.activations, list(result.neurons), title)
        save_histograms(tmp / HISTOGRAM_PNG,
                        [(name, np.asarray(result.activations)[:, j] if result.n_accepted else np.zeros(0),
                          tuple(result.ranges[j])) for j, name in enumerate(result.neurons)],
                        title="activations of the accepted samples")
    return Path(out).resolve()


# ---------------------------------------------------------------- `jaxprobe inverse-set`


_FLAGS = {"ranges": "--range", "neurons": "--neuron", "neuron": "--neuron", "n": "--n", "k": "--k",
          "max_outer": "--max-outer", "max_sampling_steps": "--max-sampling-steps"}


def flag_names(message: str) -> str:
    """An `inverse_set` error message with its leading argument name spelled as the command's flag
    ("ranges: ..." -> "--range: ..."); other messages unchanged."""
    name, sep, rest = message.partition(":")
    return f"{_FLAGS[name]}:{rest}" if sep and name in _FLAGS else message


def _cmd_inverse_set(args) -> None:
    neurons, ranges = pair_neurons_ranges(args.neuron, args.range)
    out = check_out_dir(args.out)
    generator = load_model(args.generator, "--generator", "generator")
    classifier = load_model(args.classifier, "--classifier", "classifier")
    embedding = default_embedding(generator, classifier)
    t0 = time.perf_counter()
    # Every check of neurons, ranges, n and k happens inside inverse_set before any work; its
    # messages name the function's arguments, which the command line spells as flags.
    try:
        result = inverse_set(jax.random.key(args.seed), generator, classifier, neurons, ranges, n=args.n, k=args.k,
                             embedding=embedding, diversity=args.diversity, nonlinear=not args.pre_activation,
                             one_sided=args.one_sided, max_outer=args.max_outer,
                             max_sampling_steps=args.max_sampling_steps)
    except JaxprobeError as e:
        raise JaxprobeError(flag_names(str(e))) from None
    wall = time.perf_counter() - t0
    check = independent_check(result, generator, classifier)
    record = result_record(result, generator=generator, classifier=classifier, embedding=embedding,
                           seed=args.seed, check=check, wall_s=wall)
    path = write_outputs(out, result, generator, record)
    print(f"{result.stop_message}; outer iterations {result.outer_iterations}, sampling steps "
          f"{result.sampling_steps}; fresh forward pass: all in range = {check['all_in_range']}")
    print(f"wrote {path / OUT_FILE}")


# ---------------------------------------------------------------- reference ranges


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


def reference_codes(key, generator, embedding, images=None, count: int = 500):
    """Codes whose images G(c) the generator is known to produce, to choose reachable ranges from.

    When the sampler initializes codes as E(images) (E maps into the code space; the fc generator),
    the codes are E(images) for the given canonical images, or for `count` uniform random images
    (the sampler's own initialization) when `images` is None. Otherwise `count` draws from the
    generator's prior. Returns ((m, *code_shape) float32, a sentence saying which).
    """
    mode, _ = _choose_init("auto", generator, embedding, 1)
    if mode == "prior":
        return np.asarray(generator.sample_prior(key, count)), f"{count} codes from the generator's prior"
    e_model = embedding.model
    source = "MNIST test digits"
    if images is None:
        images = np.asarray(jax.random.uniform(key, (count,) + tuple(e_model.input_shape)))
        source = "uniform random images"
    x = jnp.asarray(images, jnp.float32)
    if e_model.pixels is not None:
        x = e_model.pixels.from_canonical(x)
    h = e_model.activation(e_model.params, x, e_model.layer(embedding.layer), nonlinear=embedding.nonlinear)
    codes = np.asarray(h).reshape((len(images),) + tuple(generator.input_shape))
    return codes, f"E(x) for {len(images)} {source}"


def quantile_range(values, q) -> tuple:
    """(z1, z2) = the (q1, q2) quantiles of values (m,); raises when they coincide."""
    z1, z2 = (float(v) for v in np.quantile(np.asarray(values, np.float64), q))
    if not z2 > z1:
        raise JaxprobeError(f"range: the reference values of this neuron are constant ({z1}); pick another neuron")
    return z1, z2


# ---------------------------------------------------------------- reproduction


def reproduce_inverse_set(key, generator, classifier, *, neuron: str = "logits:3", value_range=None,
                          n: int = 500, k: int = 10, reference=None, equations=tuple(EQUATIONS),
                          **kwargs) -> dict:
    """The paper's numbers for one logit neuron (section 3.4 and 4.2), as measured here.

    Runs `inverse_set` three times with the same key, which draws only the initial codes, so all
    three start from the same K codes: diversity by eq. 5 (in E), eq. 13 (in code space) and eq. 14
    (none). Reports, per equation, the seeds' outer iterations and inner steps, the sampling steps
    that produced the other n - K samples (the minimum is ceil((n - K)/K)), the accepted count and
    stop reason, and the mean Euclidean distance in E over distinct pairs, of the K seeds and of
    all accepted samples, plus the wall time of each run (compilation included).

    Args:
      key: PRNG key (the initial codes, shared by the three runs).
      generator, classifier: models (default E: `inverse_set.default_embedding`).
      neuron: the logit neuron, `layer:unit`.
      value_range: (z1, z2); default: the "high" quantiles of `CLASS_RANGES` of the neuron over
        G(reference codes) of its class (the unit's digit; see `reference_codes`).
      n, k: samples and seeds (paper: 500 and 10).
      reference: canonical images for the reference codes (default: MNIST test digits of the
        neuron's class, or uniform random images when MNIST is missing).
      equations: which of "eq5", "eq13", "eq14" to run (default all three).
      **kwargs: passed on to `inverse_set` (budgets, beta, ...).

    Returns:
      A JSON-ready dict: settings, the range and where it came from, and one entry per equation.
    """
    from jaxprobe.models.neurons import resolve_neuron

    unknown = [e for e in equations if e not in EQUATIONS]
    if unknown or not equations:
        raise JaxprobeError(f"equations: expected some of {', '.join(EQUATIONS)}, got {list(equations)}")
    target = resolve_neuron(classifier, neuron)
    embedding = default_embedding(generator, classifier)
    k_ref, k_run = jax.random.split(key)
    range_source = "given"
    if value_range is None:
        images = reference if reference is not None else reference_images(target.unit)
        codes, source = reference_codes(k_ref, generator, embedding, images)
        values = fresh_activations(generator, classifier, codes, [neuron])[:, 0]
        value_range = quantile_range(values, CLASS_RANGES["high"])
        range_source = (f"quantiles {CLASS_RANGES['high']} of {neuron} over G(c), c = {source}"
                        + (f" of class {target.unit}" if "MNIST" in source else ""))
    runs = {}
    for eq in equations:
        diversity = EQUATIONS[eq]
        t0 = time.perf_counter()
        res = inverse_set(k_run, generator, classifier, neuron, value_range, n=n, k=k, embedding=embedding,
                          diversity=diversity, **kwargs)
        wall = time.perf_counter() - t0
        # With feasible seeds every seed is in range, so the first K accepted rows are the seeds.
        seeds = res.embeddings[:k] if res.seeds_feasible and res.n_accepted >= k else np.zeros((0, 1))
        check = independent_check(res, generator, classifier)
        runs[eq] = {
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
            # Eq. 14 has no force that moves a code inside the range, so its accepted set repeats codes.
            "distinct_codes": int(len(np.unique(np.asarray(res.codes).reshape(res.n_accepted, -1), axis=0))),
            "all_in_range_fresh_forward": check["all_in_range"],
            "wall_s": round(wall, 2),
        }
    return _clean({
        "neuron": neuron, "range": list(value_range), "range_source": range_source, "n": n, "k": k,
        "generator": generator.name, "classifier": classifier.name,
        "embedding": {"model": embedding.model.name,
                      "layer": embedding.model.layer_names[embedding.model.layer(embedding.layer) - 1]},
        "paper": {"sampling_steps": "about 85 for the other 490 (minimum 49)", "outer_iterations": "about 4",
                  "diversity": "eq. 5 the most diverse (section 4.2)"},
        "runs": runs,
    })


def _fmt(v, digits=4):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def reproduction_table(rep: dict) -> str:
    """A markdown table of a `reproduce_inverse_set` result, one row per equation."""
    lines = [
        f"Inverse set of {rep['neuron']} in [{rep['range'][0]:.4g}, {rep['range'][1]:.4g}] "
        f"({rep['range_source']}); generator {rep['generator']}, classifier {rep['classifier']}, "
        f"E = {rep['embedding']['model']} {rep['embedding']['layer']}; n = {rep['n']}, K = {rep['k']}; "
        "the three runs start from the same K codes.",
        "",
        "| diversity | outer iterations | inner steps | sampling steps (min) | accepted | stop | "
        "distinct codes | mean pairwise E-distance, seeds | mean pairwise E-distance, all | all in range (fresh pass) | "
        "wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for eq, r in rep["runs"].items():
        lines.append(
            f"| {eq.replace('eq', 'eq. ')} ({r['diversity']}) | {r['outer_iterations']} | {r['inner_steps']} | "
            f"{r['sampling_steps']} ({r['minimum_sampling_steps']}) | {r['n_accepted']} | {r['stop_reason']} | "
            f"{r['distinct_codes']} | {_fmt(r['mean_pairwise_E_distance_seeds'])} | {_fmt(r['mean_pairwise_E_distance'])} | "
            f"{r['all_in_range_fresh_forward']} | {_fmt(r['wall_s'], 3)} |")
    lines += ["", "Paper (CaffeNet fc8, DeePSim fc6 generator): about 4 outer iterations, about 85 sampling "
              "steps for the other 490 (minimum 49), eq. 5 the most diverse."]
    return "\n".join(lines) + "\n"


def run_reproduction(out, *, seed: int = 0, generator: str = "fc_generator", classifier: str = "classifier",
                     neuron: str = "logits:3", value_range=None, n: int = 500, k: int = 10, **kwargs) -> dict:
    """Load the models, run `reproduce_inverse_set`, write DIR/reproduce_inverse_set.{json,md}
    atomically and print the table. Returns the result dict."""
    from jaxprobe.io import atomic_dir, write_text

    out = check_out_dir(out)
    gen = load_model(generator, "--generator", "generator")
    cls = load_model(classifier, "--classifier", "classifier")
    t0 = time.perf_counter()
    rep = reproduce_inverse_set(jax.random.key(seed), gen, cls, neuron=neuron, value_range=value_range, n=n, k=k,
                                **kwargs)
    rep["seed"] = seed
    rep["wall_s"] = round(time.perf_counter() - t0, 2)
    table = reproduction_table(rep)
    with atomic_dir(out) as tmp:
        write_text(tmp / REPRO_JSON, json.dumps(rep, indent=2) + "\n")
        write_text(tmp / REPRO_MD, "# Inverse set: reproduction (paper 003)\n\n" + table
                   + f"\nTotal wall time {rep['wall_s']} s (compilation included).\n")
    print(table, end="")
    print(f"wrote {Path(out).resolve() / REPRO_JSON}")
    return rep


def _cmd_reproduce(args) -> None:
    value_range = tuple(args.range) if args.range is not None else None
    run_reproduction(args.out, seed=args.seed, generator=args.generator, classifier=args.classifier,
                     neuron=args.neuron, value_range=value_range, n=args.n, k=args.k)


# ---------------------------------------------------------------- parsers


def add_commands(sub, reproduce) -> None:
    """Add `inverse-set` to `sub` (the jaxprobe subparsers) and `inverse-set` to `reproduce`."""
    p = sub.add_parser("inverse-set", help="sample diverse images whose neurons lie in given ranges (paper 003)",
                       description="Sample n generator images whose neuron(s) of a classifier lie in [z1, z2] "
                                   "(an intersection repeats --neuron/--range).")
    p.add_argument("--generator", default="fc_generator", help="generator: a shipped name or a model directory")
    p.add_argument("--classifier", default="classifier", help="target network: a shipped name or a model directory")
    p.add_argument("--neuron", action="append", metavar="LAYER:UNIT[@Y,X]",
                   help="a neuron (units from 0); repeat with --range for an intersection")
    p.add_argument("--range", action="append", nargs=2, type=float, metavar=("Z1", "Z2"),
                   help="its activation range [z1, z2], one per --neuron")
    p.add_argument("--n", type=int, default=500, help="samples wanted (default 500)")
    p.add_argument("--k", type=int, default=10, help="codes optimized together, K (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--diversity", choices=("embedding", "code", "none"), default="embedding",
                   help="embedding: eq. 5 (default); code: eq. 13; none: eq. 14")
    p.add_argument("--one-sided", action="store_true",
                   help="the paper's seed constraint f >= (z1 + z2)/2 instead of both sides")
    p.add_argument("--pre-activation", action="store_true",
                   help="read neurons before their layer's nonlinearity (default: after)")
    p.add_argument("--max-outer", type=int, default=6, help="outer-iteration budget of the seeds")
    p.add_argument("--max-sampling-steps", type=int, default=None,
                   help="sampling-step budget (default 10 x ceil((n - k)/k))")
    p.add_argument("--out", required=True, help="output directory (created, or replaced if it holds an earlier output)")
    p.set_defaults(func=_cmd_inverse_set)

    r = reproduce.add_parser("inverse-set", help="paper 003: seeds' iterations, sampling steps, eq. 5/13/14 diversity")
    r.add_argument("--out", required=True, help="output directory for the JSON and markdown")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--generator", default="fc_generator")
    r.add_argument("--classifier", default="classifier")
    r.add_argument("--neuron", default="logits:3", help="the logit neuron (default logits:3)")
    r.add_argument("--range", nargs=2, type=float, default=None, metavar=("Z1", "Z2"),
                   help="default: high quantiles of the neuron over reconstructions of its class")
    r.add_argument("--n", type=int, default=500)
    r.add_argument("--k", type=int, default=10)
    r.set_defaults(func=_cmd_reproduce)
