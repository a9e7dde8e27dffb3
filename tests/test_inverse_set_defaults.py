"""The inverse set's defaults in the paper's own setting (Hada & Carreira-Perpiñán 2019, section 3.4):
a DeePSim fc6 generator and CaffeNet, both converted from caffemodels, give E = CaffeNet up to fc6
(after its ReLU) and initial codes C = E(random images).

The two directories are converted by `jaxprobe convert caffe --arch` from random caffemodels of
narrow widths (fc6 of 32 units = the generator's code size), so each model is named by its path:
the defaults must come from the encoder record of the generator's architecture table
(`weights_convert.mapping`), matched against the classifier's architecture, not from model names.
"""

import importlib

import numpy as np
import pytest

from jaxprobe.models import archs_paper, caffe_spec
from jaxprobe.models.store import load
from test_convert_roundtrip import write_caffemodel
from weights_convert import mapping
from weights_convert.__main__ import main as convert

inv = importlib.import_module("jaxprobe.inverse_sets.inverse_set")

PROTOTXTS = {
    "caffenet": lambda: archs_paper.caffenet_prototxt((8, 16, 12, 12, 16, 32, 32), num_classes=10),
    "deepsim_fc6": lambda: archs_paper.deepsim_prototxt(latent_dim=32, fc=(24, 24), base=8,
                                                        convs=(8, 12, 8, 8, 6, 6, 4, 4)),
}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(generator, classifier) loaded from directories that `jaxprobe convert caffe --arch` wrote."""
    root = tmp_path_factory.mktemp("paper")
    rng = np.random.default_rng(0)
    for arch, prototxt in PROTOTXTS.items():
        weights = root / f"{arch}.caffemodel"
        write_caffemodel(weights, caffe_spec.parse_prototxt(prototxt()), rng)
        assert convert(["caffe", "--arch", arch, "--caffemodel", str(weights), "--out", str(root / arch)]) == 0
    return load(root / "deepsim_fc6"), load(root / "caffenet")


def test_the_deepsim_table_names_caffenet_fc6_as_its_encoder():
    enc = mapping.CAFFE_ARCHITECTURES["deepsim_fc6"].encoder
    assert enc == {"architecture": "caffenet", "layer": "fc6"}
    assert enc["architecture"] == mapping.CAFFE_ARCHITECTURES["caffenet"].builder
    assert "fc6" in archs_paper.caffenet_prototxt()


def test_converted_fc6_generator_and_caffenet_default_to_fc6_and_images(converted):
    gen, clf = converted
    assert gen.name.endswith("deepsim_fc6") and clf.name.endswith("caffenet")  # paths, not names
    assert gen.manifest["encoder"] == {"architecture": "caffenet", "layer": "fc6"}
    assert gen.manifest["latent"]["prior"] == "normal"  # a prior exists, yet the encoder wins
    emb = inv.default_embedding(gen, clf)
    assert emb.model is clf and emb.layer == clf.layer("fc6") == 6 and emb.nonlinear
    assert clf.layer_shape(emb.layer) == gen.input_shape == (32,)
    assert inv.init_mode(gen, emb) == "images"  # C = E(random images), not N(0, I)


def test_another_architecture_keeps_the_generic_defaults(converted):
    # The record names CaffeNet's builder: the same network recorded as another architecture (its
    # layer names and fc6 width unchanged) gets E = its layer L-1 and codes from the prior.
    gen, clf = converted
    other = clf.replace(manifest=dict(clf.manifest, architecture={"builder": "caffe_prototxt", "kwargs": {}}))
    emb = inv.default_embedding(gen, other)
    assert emb.layer == other.n_layers - 1 == 7
    assert inv.init_mode(gen, emb) == "prior"
