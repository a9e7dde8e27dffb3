"""`jaxprobe reproduce dgn-am | ppgn | excite` end to end from the command line, on the shipped MNIST
models and on the reduced-width paper networks (`paper_nets`), each JSON's numbers recomputed
independently from the saved codes or images: a fresh forward pass of the classifier on G(saved
codes) (OpenCV's Caffe importer for the paper networks), the real images' activations by a fresh
forward pass, the ranks from the saved images. Bad input is one line and status 2; an --out that
jaxprobe did not write is left alone."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr

import jax.numpy as jnp
import numpy as np
import pytest

import jaxprobe
from jaxprobe.cli import main
from paper_nets import PAPER, PIXELS, write_random_caffemodels


def _cli(argv):
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


@pytest.fixture(scope="module")
def mnist():
    from jaxprobe.errors import JaxprobeError
    from jaxprobe.train.data import load_mnist

    try:
        test = load_mnist().test
    except JaxprobeError as e:
        pytest.skip(f"MNIST is not installed: {e}")
    return test.images, test.labels


@pytest.fixture(scope="module")
def models():
    return jaxprobe.load("fc_generator"), jaxprobe.load("classifier")


def _logits(g, c, codes):
    """The classifier's logits on G(codes): the generator's pixels mapped into the classifier's."""
    images = jaxprobe.convert_pixels(g.forward(g.params, jnp.asarray(codes)), g.pixels, c.pixels)
    return np.asarray(c.forward(c.params, images))


def _penultimate(g, c, codes):
    images = jaxprobe.convert_pixels(g.forward(g.params, jnp.asarray(codes)), g.pixels, c.pixels)
    return np.maximum(np.asarray(c.up_to(c.params, images, "fc1")), 0)


def _mean_distance(f):
    f = np.asarray(f, np.float64)
    d = [np.linalg.norm(f[i] - f[j]) for i in range(len(f)) for j in range(i + 1, len(f))]
    return float(np.mean(d)), float(np.std(d))


def _real_stats(am, real):
    return {"real_mean": real.mean(), "real_max": real.max(), "real_p99": np.percentile(real, 99),
            "exceeds_real_max": bool(am > real.max()), "percentile_rank": 100 * np.mean(real < am)}


def test_reproduce_dgn_am_on_mnist_against_a_fresh_forward_pass(models, mnist, tmp_path, capsys):
    g, c = models
    out = tmp_path / "am"
    assert main(["reproduce", "dgn-am", "--classes", "0", "3", "--steps", "4", "--out", str(out)]) == 0
    assert "| logits:3 |" in capsys.readouterr().out
    record = json.loads((out / "reproduce_dgn_am.json").read_text())
    saved = np.load(out / "codes.npz")
    assert record["comparison"]["kind"] == "class" and record["bounds"] == "real" and record["skipped"] == []
    assert list(saved["labels"]) == [0, 3] and saved["best_codes"].shape == (2, 128)
    logits = _logits(g, c, saved["best_codes"])
    images, labels = mnist
    for j, (row, label) in enumerate(zip(record["neurons"], (0, 3))):
        assert row["neuron"] == f"logits:{label}" and row["label"] == label
        assert row["am_activation"] == pytest.approx(logits[j, label], rel=1e-4, abs=1e-4)
        real = np.asarray(c.forward(c.params, jnp.asarray(images[labels == label][:500])))[:, label]
        want = _real_stats(row["am_activation"], real)
        assert row["real_count"] == 500
        for key, value in want.items():
            assert row[key] == pytest.approx(value, rel=1e-4, abs=1e-4), key
    share = np.mean([r["exceeds_real_max"] for r in record["neurons"]])
    assert record["summary"]["share_exceeding_real_max"] == pytest.approx(share)
    assert record["predicted"] == list(logits.argmax(-1))
    table = (out / "reproduce_dgn_am.md").read_text()
    assert table.count("| logits:") == 2
    above = sum(r["exceeds_real_max"] for r in record["neurons"])
    assert table.count(" | yes |") == above and f"real maximum for {above} of 2 compared" in table
    assert (out / "reproduce_dgn_am.png").stat().st_size > 1000


def test_reproduce_ppgn_class_rate_and_diversity_from_the_saved_codes(models, tmp_path):
    g, c = models
    out = tmp_path / "pp"
    code, err = _cli(["reproduce", "ppgn", "--classes", "3", "--chains", "3", "--steps", "10", "--burn-in", "5",
                      "--out", str(out)])
    assert code == 0, err
    record = json.loads((out / "reproduce_ppgn.json").read_text())
    saved = np.load(out / "codes.npz")
    assert [r["label"] for r in record["classes"]] == [3] and record["setup"]["bounds"] == "real"
    for k, row in enumerate(record["classes"]):
        label = row["label"]
        mine = saved["kept_class"] == label
        # saves at t = 0, 5, 10; burn-in 5 keeps t = 5 and 10 of each chain (threshold 0 keeps every sample)
        assert sorted(saved["kept_step"][mine]) == [5] * 3 + [10] * 3 and row["kept_after"] == 6
        predicted = _logits(g, c, saved["kept_codes"][mine]).argmax(-1)
        assert list(predicted) == list(saved["kept_label"][mine])
        assert row["class_rate"] == pytest.approx(np.mean(predicted == label))
        d = row["diversity"]
        for name, codes in (("ppgn", saved["final_codes"][k]), ("dgn_am", saved["dgn_am_codes"][k])):
            mean, sd = _mean_distance(_penultimate(g, c, codes))
            assert d[name] == pytest.approx(mean, rel=1e-3) and d[name + "_sd"] == pytest.approx(sd, rel=1e-3, abs=1e-4)
            assert d[name + "_class_rate"] == pytest.approx(np.mean(_logits(g, c, codes).argmax(-1) == label))
    assert record["min_class_rate"] == min(r["class_rate"] for r in record["classes"])
    table = (out / "reproduce_ppgn.md").read_text()
    from benchmarks.reproduce_ppgn import table as script_table  # the script writes the same table

    assert table == script_table({"dae": record})
    assert (out / "reproduce_ppgn.png").stat().st_size > 1000


def _ranks(values, units):
    values = np.asarray(values)
    return 1 + int(np.sum(np.delete(values, units) >= values[units].min()))


def test_reproduce_excite_ranks_from_the_saved_images(models, mnist, tmp_path):
    _, c = models
    out = tmp_path / "ex"
    code, err = _cli(["reproduce", "excite", "--target", "logits:3", "--target", "logits:0+logits:8", "--variants",
                      "pretrained", "--steps", "4", "--out", str(out)])
    assert code == 0, err
    record = json.loads((out / "reproduce_excite.json").read_text())
    images = np.load(out / "images.npz")["images_pretrained"]
    assert list(record["variants"]) == ["pretrained"] and images.shape == (2, 28, 28, 1)
    relu = np.maximum(np.asarray(c.forward(c.params, c.pixels.from_canonical(jnp.asarray(images)))), 0)
    real = np.maximum(np.asarray(c.forward(c.params, jnp.asarray(mnist[0][:500]))), 0)
    rows = record["variants"]["pretrained"]["targets"]
    for i, (row, units) in enumerate(zip(rows, ([3], [0, 8]))):
        assert row["rank"] == _ranks(relu[i], units) and row["units"] == 10
        assert row["target_value"] == pytest.approx(relu[i, units].sum(), rel=1e-3, abs=1e-4)
        want = _real_stats(row["target_value"], real[:, units].sum(-1))
        for key, value in want.items():
            assert row[key] == pytest.approx(value, rel=1e-3, abs=1e-4), key
    assert (out / "reproduce_excite.png").stat().st_size > 1000


def test_against_real_is_numpys_over_random_draws():
    """Every statistic of `against_real` against numpy, for values below, inside and above the
    real ones (the end-to-end runs above are short, so their AM values all lie below the real max)."""
    from jaxprobe.experiments.codespace import against_real

    rng = np.random.default_rng(0)
    for trial in range(60):
        real = rng.normal(rng.normal(), rng.uniform(0.1, 3), size=int(rng.integers(1, 40)))
        value = float(rng.choice([real.min() - 1, real.max() + rng.uniform(0, 1), rng.choice(real),
                                  rng.normal()]))
        got = against_real(value, real)
        want = _real_stats(value, real)
        assert got["real_count"] == len(real)
        for key, v in want.items():
            assert got[key] == pytest.approx(v, rel=1e-12, abs=1e-12), (trial, key)
    assert against_real(2.0, [1.0, 2.0])["exceeds_real_max"] is False  # equal is not above
    assert against_real(2.5, [1.0, 2.0])["exceeds_real_max"] is True


def test_the_rank_rule_counts_ties_against_the_target():
    from jaxprobe.cli import excite as cli_excite
    from jaxprobe.experiments.excite import VARIANTS, target_rank

    assert cli_excite.VARIANTS == VARIANTS

    assert target_rank([0.0, 0.0, 0.0], [1]) == 3  # a dead layer: last, not first
    assert target_rank([1.0, 5.0, 2.0], [1]) == 1 and target_rank([1.0, 5.0, 2.0], [0]) == 3
    assert target_rank([4.0, 1.0, 3.0, 9.0], [0, 2]) == 2  # the weakest unit of the target, 3, against 1 and 9


@pytest.mark.parametrize("argv, message", [
    (["dgn-am", "--classes", "10"], "--classes: expected class numbers in 0..9"),
    (["ppgn", "--classes", "-1"], "--classes: expected class numbers in 0..9"),
    (["excite", "--classes", "3", "12"], "--classes: expected class numbers in 0..9"),
    (["dgn-am", "--steps", "0"], "--steps: expected an integer >= 1"),
    (["ppgn", "--burn-in", "-2"], "--burn-in: expected an integer >= 0"),
    (["dgn-am", "--images", "BAD"], "--images: expected NHWC images with 1 or 3 channels"),
    (["ppgn", "--prior", "encoder", "--images", "BAD"], "--images: expected NHWC images with 1 or 3 channels"),
    (["excite", "--images", "BAD"], "--images: expected NHWC images with 1 or 3 channels"),
])
def test_bad_input_is_one_line(tmp_path, argv, message):
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((2, 8, 8, 2), np.float32))  # two channels: no image
    argv = [str(bad) if a == "BAD" else a for a in argv]
    out = tmp_path / "out"
    code, err = _cli(["reproduce"] + argv + ["--out", str(out)])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and not out.exists()


@pytest.mark.parametrize("method", ["dgn-am", "ppgn", "excite"])
def test_an_out_jaxprobe_did_not_write_is_left_alone(tmp_path, method):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    code, err = _cli(["reproduce", method, "--classes", "1", "--steps", "1", "--out", str(out)])
    assert code == 2 and "--out" in err and "--force" in err and len(err.strip().splitlines()) == 1, err
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"


# ------------------------------------------------------------------ the paper networks at reduced widths


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """The reference's generator and CaffeNet at reduced widths, converted from the command line,
    and an .npz of three random 256 x 256 images."""
    if not PAPER.is_dir():
        pytest.skip(f"paper fixtures not found at {PAPER} (they live in ../shared/fixtures/paper)")
    root = tmp_path_factory.mktemp("paper")
    files = write_random_caffemodels(root)
    for name, out, extra in (("caffenet", "C", []), ("generator", "G", ["--role", "generator"])):
        p, w = files[name]
        assert main(["convert", "caffe", "--prototxt", str(p), "--caffemodel", str(w), "--out", str(root / out)]
                    + extra + PIXELS) == 0
    images = root / "real.npz"
    np.savez(images, images=np.random.default_rng(0).integers(0, 256, (3, 256, 256, 3), dtype=np.uint8))
    return {"G": str(root / "G"), "C": str(root / "C"), "files": files, "images": str(images)}


def test_dgn_am_and_ppgn_on_the_paper_networks_with_real_images(nets, tmp_path):
    from test_paper_scale import opencv_logits

    c = jaxprobe.load(nets["C"])
    from jaxprobe.real_images import load_images

    real = load_images(nets["images"], tuple(c.input_shape)).images
    real_fc8 = np.asarray(c.activation(c.params, c.pixels.from_canonical(jnp.asarray(real)), c.layer("fc8"),
                                       nonlinear=False))
    common = ["--classifier", nets["C"], "--images", nets["images"], "--classes", "1", "945"]

    code, err = _cli(["reproduce", "dgn-am", "--generator", nets["G"], *common, "--steps", "2", "--out",
                      str(tmp_path / "am")])
    assert code == 0, err
    record = json.loads((tmp_path / "am" / "reproduce_dgn_am.json").read_text())
    assert record["comparison"]["kind"] == "distribution" and "no labels" in record["comparison"]["what"]
    assert record["image_bridge"]["center_crop"]["offset"] == [14, 14]
    want = opencv_logits(nets["files"], np.load(tmp_path / "am" / "codes.npz")["best_codes"])
    scale = float(np.abs(want).max())
    for j, row in enumerate(record["neurons"]):
        assert row["am_activation"] == pytest.approx(want[j, row["label"]], rel=1e-3, abs=1e-3 * scale)
        assert row["real_count"] == 3
        for key, value in _real_stats(row["am_activation"], real_fc8[:, row["label"]]).items():
            if key != "exceeds_real_max" and key != "percentile_rank":  # compared at the same float32 values below
                assert row[key] == pytest.approx(value, rel=1e-3, abs=1e-3 * scale), key

    code, err = _cli(["reproduce", "ppgn", "--generator", nets["G"], *common[:4], "--classes", "945", "--prior",
                      "encoder", "--encoder", f"{nets['C']}:fc6", "--chains", "2", "--steps", "2", "--burn-in", "0",
                      "--out", str(tmp_path / "pp")])
    assert code == 0, err
    record = json.loads((tmp_path / "pp" / "reproduce_ppgn.json").read_text())
    saved = np.load(tmp_path / "pp" / "codes.npz")
    assert record["setup"]["bounds"] == "real" and len(saved["kept_codes"]) == record["classes"][0]["kept_after"] == 2
    top = opencv_logits(nets["files"], saved["kept_codes"]).argmax(-1)
    assert record["classes"][0]["class_rate"] == pytest.approx(np.mean(top == 945))
    # reproduce excite at 227 is the MNIST test's code path with test_paper_scale's 227 generator.

