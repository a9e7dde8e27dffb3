"""The DGN-AM reference's own deploy definitions (the DeePSim fc6 generator and CaffeNet, in
`../shared/fixtures/paper/`) at reduced widths, with random weights written as caffemodels.

Every layer keeps its type, kernel, stride, padding, group, leaky-ReLU slope (0.3), LRN, pooling
and the Reshape that names batch 1 literally; each `num_output` is divided by `FACTOR` (the
generator's last layer keeps its 3 channels, CaffeNet's fc8 its 1000 classes) and the input sizes
are unchanged (the generator draws 256 x 256, CaffeNet reads 227 x 227 after the 256 -> 227 crop).
The generator's code is then CaffeNet's fc6 (4096 / FACTOR units), as in the papers.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

FACTOR = 16
PAPER = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "paper"
PIXELS = ["--channels", "BGR", "--mean", "104,117,123", "--range", "0,255"]


def _reduce(text: str, keep_last: dict) -> str:
    """Divide every num_output (and the literal Reshape width, and the generator's input) by FACTOR."""
    out, layer = [], None
    for line in text.splitlines():
        m = re.match(r'\s*name:\s*"([^"]+)"', line)
        if m:
            layer = m.group(1)
        m = re.match(r"(\s*num_output:\s*)(\d+)", line)
        if m and layer not in keep_last:
            line = f"{m.group(1)}{max(1, int(m.group(2)) // FACTOR)}"
        out.append(line)
    text = "\n".join(out)
    # the generator: input (1, 4096) and the Reshape (1, 256, 4, 4)
    text = re.sub(r"(input_shape\s*\{\s*dim:\s*1\s*dim:\s*)4096", lambda m: f"{m.group(1)}{4096 // FACTOR}", text)
    text = re.sub(r"(shape\s*\{\s*dim:\s*1\s*dim:\s*)256(\s*dim:\s*4\s*dim:\s*4)",
                  lambda m: f"{m.group(1)}{256 // FACTOR}{m.group(2)}", text)
    return text


def reduced_prototxts(root: Path) -> dict:
    """{"generator": path, "caffenet": path}: the two reference prototxts at reduced widths."""
    gen = _reduce((PAPER / "deepsim_fc6_generator.prototxt").read_text(), {"deconv0"})
    clf = _reduce((PAPER / "caffenet.prototxt").read_text(), {"fc8"})
    paths = {"generator": root / "generator.prototxt", "caffenet": root / "caffenet.prototxt"}
    paths["generator"].write_text(gen)
    paths["caffenet"].write_text(clf)
    return paths


def write_random_caffemodels(root: Path, seed: int = 0) -> dict:
    """{"generator": (prototxt, caffemodel), "caffenet": (...)} written under `root`."""
    from jaxprobe.models import caffe_spec
    from test_convert_roundtrip import write_caffemodel

    rng = np.random.default_rng(seed)
    out = {}
    for name, proto in reduced_prototxts(root).items():
        weights = root / f"{name}.caffemodel"
        write_caffemodel(weights, caffe_spec.parse_prototxt(proto.read_text()), rng)
        out[name] = (proto, weights)
    return out
