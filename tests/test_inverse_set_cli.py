"""`jaxprobe inverse-set`, `jaxprobe reproduce inverse-set` and the report section, end to end.

Tiny random models saved to model directories stand in for fc_generator (codes = the classifier's
fc1 features, E = classifier up to fc1) and the classifier. Ranges are quantiles of a neuron's value
over G(reference codes), so they are reachable. Every check of the written activations recomputes
them here, from the written codes, with a forward pass that shares nothing with the sampler.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_classifier, tiny_generator
from json_checks import natural_json
from jaxprobe.cli import main
from jaxprobe.cli import inverse_set as cmd
from jaxprobe.experiments import inverse_set_repro as repro
from jaxprobe.inverse_sets.inverse_set import default_embedding
from jaxprobe.models.neurons import neuron_values
from jaxprobe.models.pixels import convert_pixels
from jaxprobe.models.store import load, save_model

N, K = 20, 5  # small, so each run compiles and samples in seconds


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    """(generator dir, classifier dir): an fc-generator-like pair (latent 16 = the classifier's fc1)."""
    root = tmp_path_factory.mktemp("models")
    clf = tiny_classifier(name="classifier")
    gen = tiny_generator(latent_dim=16, slope=0.3, name="fc_generator")
    manifest = {k: v for k, v in gen.manifest.items() if k != "latent"}  # no prior: codes are E(x)
    manifest["encoder"] = {"model": "classifier", "layer": "fc1"}
    gen = gen.replace(manifest=manifest)
    return save_model(gen, root / "gen"), save_model(clf, root / "clf")


@pytest.fixture(scope="module")
def models(model_dirs):
    return load(model_dirs[0]), load(model_dirs[1])


def _recompute(gen, clf, codes, neurons, nonlinear=True):
    """Neuron values of G(codes), computed here: generator, pixel conversion, classifier."""
    codes = jnp.asarray(np.asarray(codes, np.float32).reshape((-1,) + tuple(gen.input_shape)))
    images = convert_pixels(gen.forward(gen.params, codes), gen.pixels, clf.pixels)
    return np.asarray(neuron_values(clf, clf.params, images, neurons, nonlinear=nonlinear), np.float64)


def _reachable_range(gen, clf, neuron, q=(0.4, 0.8), nonlinear=True):
    emb = default_embedding(gen, clf)
    codes, _ = repro.reference_codes(jax.random.key(7), gen, emb, None, 128)
    v = _recompute(gen, clf, codes, [neuron], nonlinear)[:, 0]
    return tuple(float(x) for x in np.quantile(v, q))


def _assert_in_ranges(values, ranges):
    v = np.asarray(values, np.float64)
    r = np.asarray(ranges, np.float64)
    assert v.ndim == 2 and v.shape[1] == len(r)
    assert np.all(v >= r[:, 0]) and np.all(v <= r[:, 1]), (v.min(0), v.max(0), r)


def _run(argv, capsys):
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr()


def test_cli_writes_json_and_figures_checked_by_a_fresh_forward_pass(model_dirs, models, tmp_path, capsys):
    gen, clf = models
    z1, z2 = _reachable_range(gen, clf, "logits:3")
    out = tmp_path / "out"
    rc, cap = _run(["inverse-set", "--generator", model_dirs[0], "--classifier", model_dirs[1], "--neuron", "logits:3",
                    "--range", z1, z2, "--n", N, "--k", K, "--seed", 3, "--out", out], capsys)
    assert rc == 0, cap.err
    rec = json.loads((out / cmd.OUT_FILE).read_text())
    for key in ("neurons", "ranges", "activations", "codes", "steps", "stop_reason", "diversity_statistics"):
        assert key in rec
    assert rec["neurons"] == ["logits:3"] and rec["reading"] == "post-nonlinearity"
    assert set(rec["steps"]) == {"outer_iterations", "inner_steps", "sampling_steps"}
    assert rec["stop_reason"] == "complete" and rec["n_accepted"] == N == len(rec["activations"]) == len(rec["codes"])
    seen = natural_json(rec)  # the stop reason a name, every count an int
    assert seen["reasons"] == ["stop_reason"] and {"n_accepted", "steps.sampling_steps"} <= set(seen["counts"])
    assert rec["diversity"] == "embedding" and rec["embedding"]["layer"] == "fc1"
    _assert_in_ranges(rec["activations"], rec["ranges"])
    fresh = _recompute(gen, clf, rec["codes"], rec["neurons"])
    _assert_in_ranges(fresh, rec["ranges"])
    np.testing.assert_allclose(fresh, rec["activations"], atol=1e-5, rtol=1e-5)
    assert rec["fresh_forward_check"]["all_in_range"] is True
    # The summary line names the stop message; feasible seeds add no warning.
    assert rec["seeds_feasible"] is True and rec["stop_message"] in cap.out and "infeasible" not in cap.out
    for png in (cmd.SAMPLES_PNG, cmd.HISTOGRAM_PNG):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_cli_intersection_pre_activation_code_diversity(model_dirs, models, tmp_path, capsys):
    gen, clf = models
    neurons = ["logits:3", "conv2:1@3,3"]
    ranges = [_reachable_range(gen, clf, n, (0.2, 0.9), nonlinear=False) for n in neurons]
    out = tmp_path / "inter"
    argv = ["inverse-set", "--generator", model_dirs[0], "--classifier", model_dirs[1], "--n", N, "--k", K,
            "--diversity", "code", "--pre-activation", "--out", out]
    for n, (a, b) in zip(neurons, ranges):
        argv += ["--neuron", n, "--range", a, b]
    rc, cap = _run(argv, capsys)
    assert rc == 0, cap.err
    rec = json.loads((out / cmd.OUT_FILE).read_text())
    assert rec["neurons"] == neurons and rec["reading"] == "pre-activation" and rec["diversity"] == "code"
    assert rec["n_accepted"] > 0 and all(len(a) == 2 for a in rec["activations"])
    _assert_in_ranges(_recompute(gen, clf, rec["codes"], neurons, nonlinear=False), rec["ranges"])


@pytest.mark.parametrize("bad, message", [
    (["--neuron", "logits:3", "--range", "2", "1"], "--range: expected z1 < z2"),
    (["--neuron", "nope:3", "--range", "0", "1"], "nope:3"),
    (["--neuron", "logits:3", "--range", "0", "1", "--n", "3", "--k", "5"], "--n: expected n >= k"),
    (["--neuron", "logits:3", "--range", "0", "1", "--neuron", "logits:4"], "--range"),
    (["--neuron", "logits:3", "--range", "nan", "1"], "--range: expected finite"),
    (["--neuron", "logits:3", "--range", "1.00000001", "1.00000002"], "--range: expected a range that holds two"),
    (["--neuron", "logits:3", "--range", "-1e39", "1e39"], "--range: expected z1, z2 and z2 - z1 within float32"),
    (["--neuron", "logits:3", "--range", "0", "1", "--k", "0"], "--k:"),
    (["--neuron", "logits:3", "--range", "0", "1", "--max-sampling-steps", "-1"], "--max-sampling-steps:"),
])
def test_cli_bad_input_exits_2_with_one_line_and_writes_nothing(model_dirs, tmp_path, capsys, bad, message):
    out = tmp_path / "sub" / "out"
    rc, cap = _run(["inverse-set", "--generator", model_dirs[0], "--classifier", model_dirs[1], "--out", out] + bad,
                   capsys)
    assert rc == 2
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxprobe: error:") and message in lines[0], cap.err
    assert not (tmp_path / "sub").exists()


def test_cli_refuses_to_replace_an_unrelated_directory(model_dirs, tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    for command in (["inverse-set", "--neuron", "logits:3", "--range", 0, 1], ["reproduce", "inverse-set"]):
        rc, cap = _run(command + ["--generator", model_dirs[0], "--classifier", model_dirs[1], "--out", tmp_path],
                       capsys)
        assert rc == 2 and "--out:" in cap.err and "--force" in cap.err, cap.err
        assert (tmp_path / "keep.txt").read_text() == "mine"


def test_negative_numbers_in_scientific_notation_are_values():
    from jaxprobe.cli import build_parser

    args = build_parser().parse_args(["inverse-set", "--neuron", "logits:3", "--range", "-1e3", "1", "--neuron",
                                      "logits:4", "--range", "-2.5E-1", "-.5", "--out", "x"])
    assert args.range == [[-1000.0, 1.0], [-0.25, -0.5]] and not args.force
    args = build_parser().parse_args(["reproduce", "inverse-set", "--range", "-1e3", "-1e2", "--out", "x", "--force"])
    assert args.range == [-1000.0, -100.0] and args.force


@pytest.mark.parametrize("extra, reason", [(["--range", 200, 210], "unreachable"),
                                           (["--one-sided", "--range", -100, -99], "seeds_out_of_range")])
def test_cli_with_no_sample_writes_the_json_with_the_reason_and_exits_2(models, tmp_path, capsys, monkeypatch,
                                                                        extra, reason):
    """The documented no-sample outcomes (the tiny classifier's logits stay within about +-5): the
    JSON with the reason, no figures, one line, exit status 2. The target directory holds a file of
    the user's, replaced only with --force."""
    gen, clf = models
    monkeypatch.setattr(cmd, "load_model", lambda name, argument, role: gen if role == "generator" else clf)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    rc, cap = _run(["inverse-set", "--neuron", "logits:3", "--n", N, "--k", K, "--out", out, "--force"] + extra, capsys)
    assert rc == 2 and cap.out == ""
    # stderr: the progress bar (seeds' inner steps, then sampling steps; it reaches its total, the
    # budget an early stop leaves counted whole), then the one line saying why there is no sample.
    lines = cap.err.strip().splitlines()
    bar = [l for l in lines if l.startswith("inverse-set:")]
    assert bar and "100%" in bar[-1] and lines[-1] not in bar
    lines = [l for l in lines if l not in bar]
    assert len(lines) == 1 and lines[0].startswith(f"jaxprobe: error: --range: {reason}: ") and "wrote" in lines[0]
    rec = json.loads((out / cmd.OUT_FILE).read_text())
    assert natural_json(rec)["reasons"] == ["stop_reason"]
    assert rec["stop_reason"] == reason and rec["n_accepted"] == 0 and rec["stop_message"] in lines[0]
    assert rec["codes"] == [] and rec["activations"] == [] and rec["code_shape"] == [16]
    assert rec["fresh_forward_check"]["n_checked"] == 0
    assert sorted(p.name for p in out.iterdir()) == [".jaxprobe-output", cmd.OUT_FILE]


def test_infeasible_seeds_are_named_in_the_summary_line(models):
    """Issue 26 point 6: seeds that end infeasible (one outer iteration of one step here) are said
    so in the line `jaxprobe inverse-set` prints, while the samples still lie in their range."""
    from jaxprobe.inverse_sets.inverse_set import InverseSetOptions

    gen, clf = models
    z1, z2 = _reachable_range(gen, clf, "logits:3")
    run = repro.inverse_set_run(jax.random.key(3), gen, clf, "logits:3", (z1, z2),
                                InverseSetOptions(n=N, k=K, inner_steps=1, max_outer=1), seed=3)
    assert run.record["seeds_feasible"] is False and run.result.outer_iterations == 1
    assert run.summary.startswith(run.result.stop_message)
    assert "the seeds ended infeasible after 1 outer iterations (mu 100)" in run.summary, run.summary
    if run.result.n_accepted:
        _assert_in_ranges(_recompute(gen, clf, run.result.codes, ["logits:3"]), [(z1, z2)])


def test_reproduce_command_small(model_dirs, models, tmp_path, capsys):
    gen, clf = models
    z1, z2 = _reachable_range(gen, clf, "logits:3")
    out = tmp_path / "rep"
    rc, cap = _run(["reproduce", "inverse-set", "--generator", model_dirs[0], "--classifier", model_dirs[1],
                    "--neuron", "logits:3", "--range", z1, z2, "--n", N, "--k", K, "--seed", 1, "--out", out], capsys)
    assert rc == 0, cap.err
    rep = json.loads((out / cmd.REPRO_JSON).read_text())
    seen = natural_json(rep)
    assert seen["reasons"] and all(r.endswith(".stop_reason") for r in seen["reasons"])
    assert any(c.endswith(".sampling_steps") for c in seen["counts"])
    assert "mean pairwise E-distance" in (out / cmd.REPRO_MD).read_text() and "eq. 13" in cap.out
    assert set(rep["runs"]) == {"eq5", "eq13", "eq14"} and rep["range"] == [z1, z2]
    for eq, r in rep["runs"].items():
        assert r["minimum_sampling_steps"] == -(-(N - K) // K)
        assert r["outer_iterations"] >= 1 and r["n_accepted"] > 0, (eq, r)
        if r["n_accepted"] == N:
            assert r["sampling_steps"] >= r["minimum_sampling_steps"]
        assert r["all_in_range_fresh_forward"] is True
        assert r["mean_pairwise_E_distance"] is None or r["mean_pairwise_E_distance"] >= 0


def test_reproduce_default_range_from_reference_codes(models):
    """With no range given it is chosen from reference codes before sampling (here random images)."""
    gen, clf = models
    images = np.asarray(jax.random.uniform(jax.random.key(2), (64, 28, 28, 1)))
    ticks = []
    rep = repro.reproduce_inverse_set(jax.random.key(0), gen, clf, neuron="logits:3", n=N, k=K, reference=images,
                                      equations=("eq5",), progress=lambda *a: ticks.append(a))
    done = [d for d, _ in ticks]  # progress over the run's steps: never back, ending at the one total
    assert len(ticks) >= 3 and done == sorted(done) and ticks[-1][0] == ticks[-1][1] == ticks[0][1]
    z1, z2 = rep["range"]
    assert z1 < z2 and "quantiles" in rep["range_source"] and list(rep["runs"]) == ["eq5"]
    assert rep["runs"]["eq5"]["all_in_range_fresh_forward"] is True


def test_report_section(models, tmp_path, monkeypatch):
    from jaxprobe.report import inverse_set as section_mod
    from jaxprobe.report.base import Context

    gen, clf = models
    # Random images instead of MNIST digits for the reference codes (only the ranges depend on them).
    monkeypatch.setattr(section_mod, "reference_images",
                        lambda label=None, count=500: np.asarray(
                            jax.random.uniform(jax.random.key(0 if label is None else label + 1), (count, 28, 28, 1))))
    ctx = Context(out_dir=tmp_path, seed=0, models={"fc_generator": gen, "classifier": clf})
    section = section_mod.inverse_set_section(ctx)
    res = json.loads(json.dumps(section.results))  # JSON-ready
    assert [r["label"] for r in res["runs"]] == ["class, typical", "class, high", "hidden", "intersection"]
    assert len(res["runs"][3]["neurons"]) == 2
    for r in res["runs"]:
        assert r["n_accepted"] == len(r["activations"]) > 0, r["stop_message"]
        _assert_in_ranges(r["activations"], r["ranges"])
    assert res["all_samples_in_range"] is True and res["every_set_has_samples"] is True
    for f, _ in section.figures:
        assert (tmp_path / f).is_file()


def test_converted_caffe_lenet_is_a_target(fixtures_dir, tmp_path, capsys, monkeypatch):
    """Issue 5: a converted classifier serves as the target of `jaxprobe inverse-set`; the
    generator's [-1, 1] pixels reach LeNet's [0, 1] input through `adapt_images`."""
    import sys

    inv_mod = sys.modules["jaxprobe.inverse_sets.problem"]  # where the sampler's forward pass converts pixels

    lenet = tmp_path / "lenet"
    rc, cap = _run(["convert", "caffe", "--prototxt", fixtures_dir / "caffe/lenet/lenet.prototxt",
                    "--caffemodel", fixtures_dir / "caffe/lenet/lenet_iter_10000.caffemodel", "--out", lenet], capsys)
    assert rc == 0, cap.err
    gen_dir = save_model(tiny_generator(latent_dim=8), tmp_path / "gen")  # normal prior: codes from it
    gen, clf = load(gen_dir), load(lenet)
    assert clf.layer_names[-1] == "ip2" and gen.pixels != clf.pixels
    codes = np.asarray(gen.sample_prior(jax.random.key(5), 128))
    v = _recompute(gen, clf, codes, ["ip2:3"])[:, 0]
    z1, z2 = (float(x) for x in np.quantile(v, (0.4, 0.8)))

    seen = []
    real = inv_mod.adapt_images
    monkeypatch.setattr(inv_mod, "adapt_images",
                        lambda x, src, dst, shape: seen.append((src, dst)) or real(x, src, dst, shape))
    out = tmp_path / "out"
    rc, cap = _run(["inverse-set", "--generator", gen_dir, "--classifier", lenet, "--neuron", "ip2:3",
                    "--range", z1, z2, "--n", N, "--k", K, "--out", out], capsys)
    assert rc == 0, cap.err
    assert (gen.pixels, clf.pixels) in seen  # the sampler converts pixels with adapt_images
    rec = json.loads((out / cmd.OUT_FILE).read_text())
    assert rec["classifier"] == str(lenet) and rec["n_accepted"] > 0, rec["stop_message"]
    fresh = _recompute(gen, clf, rec["codes"], ["ip2:3"])
    _assert_in_ranges(fresh, rec["ranges"])
    np.testing.assert_allclose(fresh, rec["activations"], atol=1e-4, rtol=1e-5)
    # Without the conversion the values differ: the stored ones are those of converted pixels.
    raw = np.asarray(neuron_values(clf, clf.params, gen.forward(gen.params, jnp.asarray(rec["codes"])), ["ip2:3"]))
    assert np.max(np.abs(raw - np.asarray(rec["activations"]))) > 1e-3
