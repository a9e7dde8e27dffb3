"""A converted model directory is self-contained and checked: `jaxprobe.load(DIR)` builds only from
files inside DIR whose sha256 the manifest records, and the manifest names its sources by file
name and hash, never by the converting machine's paths. Directories written before `files` was
recorded keep loading, checked against their source records."""

from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

import jaxprobe
from jaxprobe import JaxprobeError
from jaxprobe.models import caffe_net, caffe_spec
from test_convert_roundtrip import write_caffemodel
from test_convert_security import GENERATED_LENET
from weights_convert import caffe


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    (src / "lenet.prototxt").write_text(GENERATED_LENET)
    write_caffemodel(src / "lenet.caffemodel", caffe_spec.parse_prototxt(GENERATED_LENET), np.random.default_rng(0))
    out = tmp_path_factory.mktemp("models") / "lenet"
    model = caffe.convert_caffe(src / "lenet.prototxt", src / "lenet.caffemodel", out)
    return src, out, model


def _copy(directory, tmp_path, edit=None):
    import shutil

    target = tmp_path / "m"
    shutil.copytree(directory, target)
    if edit is not None:
        m = json.loads((target / "manifest.json").read_text())
        edit(m)
        (target / "manifest.json").write_text(json.dumps(m))
    return target


def _same_outputs(a, b):
    x = jax.random.uniform(jax.random.key(0), (2,) + a.input_shape)
    np.testing.assert_array_equal(a.forward(a.params, x), b.forward(b.params, x))


def test_manifest_names_sources_by_name_and_hash(converted):
    import hashlib

    src, out, _ = converted
    text = (out / "manifest.json").read_text()
    manifest = json.loads(text)
    assert str(src) not in text and str(out) not in text  # no path of the converting machine
    for record in manifest["source"]["files"]:
        assert set(record) == {"name", "sha256", "format", "bytes"}
        assert record["sha256"] == hashlib.sha256((src / record["name"]).read_bytes()).hexdigest()
    assert manifest["files"] == {"net.prototxt": hashlib.sha256((src / "lenet.prototxt").read_bytes()).hexdigest()}


def test_prototxt_only_inside_the_directory(converted, tmp_path):
    src, out, model = converted
    _same_outputs(model, jaxprobe.load(out))
    outside = tmp_path / "outside.prototxt"
    outside.write_text(GENERATED_LENET)
    for name in (str(outside), "../outside.prototxt", "sub/net.prototxt", ""):
        m = _copy(out, tmp_path / name.replace("/", "_").replace(".", "d"),
                  lambda m: m["architecture"]["kwargs"].update(prototxt=name))
        with pytest.raises(JaxprobeError, match=r"architecture\.kwargs\.prototxt: expected the name of a file in "
                                                r"the model directory"):
            jaxprobe.load(m)
    # a link inside the directory to a file outside it is not a file inside it
    m = _copy(out, tmp_path / "link")
    os.remove(m / "net.prototxt")
    os.symlink(outside, m / "net.prototxt")
    with pytest.raises(JaxprobeError, match=r"has no file 'net\.prototxt' \(architecture\.kwargs\.prototxt\) inside"):
        jaxprobe.load(m)
    # and the builder itself refuses paths out of its directory
    with pytest.raises(JaxprobeError, match=r"prototxt: '\.\./outside\.prototxt' is not a file inside the model"):
        caffe_net.caffe_prototxt(prototxt="../outside.prototxt", directory=m, rngs=None)


def test_edited_prototxt_is_refused(converted, tmp_path):
    _, out, _ = converted
    m = _copy(out, tmp_path)
    text = (m / "net.prototxt").read_text()
    (m / "net.prototxt").write_text(text.replace("num_output: 500", "num_output: 400"))
    with pytest.raises(JaxprobeError, match=r"net\.prototxt does not match the sha256 its manifest records"):
        jaxprobe.load(m)


def test_directories_written_before_keep_loading(converted, tmp_path):
    """Before `files`: no hash of the stored copy, absolute source paths in the source records."""
    src, out, model = converted

    def old_style(m):
        del m["files"], m["weights"], m["record_sha256"]
        for record in m["source"]["files"]:
            record["path"] = str(src / record["name"])

    m = _copy(out, tmp_path, old_style)
    with pytest.raises(JaxprobeError, match=r"records no sha256 of its weights"):
        jaxprobe.load(m)  # unverifiable weights load only when asked for
    _same_outputs(model, jaxprobe.load(m, verify=False))
    (m / "net.prototxt").write_text((m / "net.prototxt").read_text().replace("num_output: 500", "num_output: 400"))
    with pytest.raises(JaxprobeError, match=r"does not match the sha256 its manifest records"):
        jaxprobe.load(m, verify=False)  # the stored prototxt is checked even then


def test_nul_byte_in_the_prototxt_name_is_one_line(converted, tmp_path):
    _, out, _ = converted
    m = _copy(out, tmp_path, lambda m: m["architecture"]["kwargs"].update(prototxt="net\x00.prototxt"))
    with pytest.raises(JaxprobeError, match=r"architecture\.kwargs\.prototxt: expected the name of a file"):
        jaxprobe.load(m)
