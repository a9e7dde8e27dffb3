"""Saving and loading models: round trips, atomic replacement and every corruption's error."""

import json
import shutil

import jax
import numpy as np
import pytest

from jaxprobe import JaxprobeError, load, save_model
from conftest import tiny_classifier, tiny_generator


def _outputs_equal(a, b):
    x = jax.random.normal(jax.random.PRNGKey(0), (2,) + a.input_shape)
    np.testing.assert_array_equal(a.forward(a.params, x), b.forward(b.params, x))


def test_round_trip(tmp_path):
    g = tiny_generator()
    save_model(g, tmp_path / "g")
    back = load(tmp_path / "g")
    assert back.layer_names == g.layer_names and back.input_shape == g.input_shape and back.role == "generator"
    assert back.pixels == g.pixels
    _outputs_equal(g, back)


def test_save_replaces_existing_directory_whole(tmp_path):
    save_model(tiny_generator(seed=0), tmp_path / "g")
    g1 = tiny_generator(seed=1)
    save_model(g1, tmp_path / "g")
    _outputs_equal(g1, load(tmp_path / "g"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g"]  # no temporary left behind


def test_failed_save_leaves_nothing(tmp_path):
    g = tiny_generator()
    with pytest.raises(TypeError):
        save_model(g, tmp_path / "g", {"architecture": {}, "role": "generator", "input_shape": [8], "bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_unknown_name_or_missing_directory(tmp_path):
    with pytest.raises(JaxprobeError, match=r"model: 'no_such_model' is neither a shipped model \(classifier, "):
        load("no_such_model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(JaxprobeError, match="is not a jaxprobe model directory"):
        load(tmp_path / "empty")


def test_corrupt_manifest(tmp_path):
    save_model(tiny_generator(), tmp_path / "g")
    (tmp_path / "g" / "manifest.json").write_text("{not json")
    with pytest.raises(JaxprobeError, match="manifest: .* is corrupt"):
        load(tmp_path / "g")
    (tmp_path / "g" / "manifest.json").write_text(json.dumps({"role": "generator"}))
    with pytest.raises(JaxprobeError, match="lacks the field 'architecture'"):
        load(tmp_path / "g")


def test_corrupt_checkpoint_files(tmp_path):
    save_model(tiny_generator(), tmp_path / "g")
    files = [p for p in (tmp_path / "g" / "params").rglob("*") if p.is_file() and p.stat().st_size > 0]
    for p in files:  # garble every file of the checkpoint
        p.write_bytes(b"\x00garbage" * 3)
    with pytest.raises(JaxprobeError, match="checkpoint: cannot read"):
        load(tmp_path / "g")
    shutil.rmtree(tmp_path / "g" / "params")
    with pytest.raises(JaxprobeError, match="checkpoint: cannot read"):
        load(tmp_path / "g")


def test_manifest_checkpoint_mismatch(tmp_path):
    save_model(tiny_generator(widths=(8, 4, 2)), tmp_path / "g")
    m = json.loads((tmp_path / "g" / "manifest.json").read_text())
    m["architecture"]["kwargs"]["widths"] = [8, 4, 3]
    (tmp_path / "g" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(JaxprobeError, match="checkpoint: "):
        load(tmp_path / "g")


def test_unknown_builder(tmp_path):
    save_model(tiny_classifier(), tmp_path / "c")
    m = json.loads((tmp_path / "c" / "manifest.json").read_text())
    m["architecture"]["builder"] = "resnet9000"
    (tmp_path / "c" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(JaxprobeError, match="architecture: unknown builder 'resnet9000'"):
        load(tmp_path / "c")
