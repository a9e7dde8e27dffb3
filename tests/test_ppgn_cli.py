"""`jaxprobe ppgn` on the shipped models: its files (listed at the end of its output), its JSON against
a fresh recomputation from the saved codes, the reference's update and save counts, the step time
apart from compilation, and bad input naming the flag (float32 overflow included)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprobe
from jaxprobe.cli import main
from jaxprobe.experiments.codespace import mean_pairwise_distance
from json_checks import natural_json


def test_ppgn_writes_chains_codes_and_probabilities(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["ppgn", "--class", "3", "--chains", "2", "--steps", "20", "--save-every", "4",
                 "--threshold", "0.5", "--out", str(out)]) == 0
    written = [line.split("wrote ", 1)[1] for line in capsys.readouterr().out.splitlines() if line.startswith("wrote ")]
    assert sorted(written) == sorted(str(p.resolve()) for p in out.iterdir() if not p.name.startswith("."))
    record = json.loads((out / "ppgn.json").read_text())
    counts = natural_json(record)["counts"]  # ints, not floats
    assert {"chains", "steps", "save_every", "diversity_samples", "samples.[0].step",
            "samples.[9].label"} <= set(counts)
    saved = np.load(out / "codes.npz")
    samples = saved["samples"]
    # the reference's loop: 21 updates (t = 0..20), saves at every t % 4 == 0
    assert record["updates"] == 21 and record["nonlinear"] is False
    assert samples.shape == (2, 6, 128) and list(saved["saved_steps"]) == [0, 4, 8, 12, 16, 20]
    # steps alone: compilation (first chunk) and loading are reported apart and far longer
    assert 0 < record["seconds_per_step"] < record["first_chunk_s"] < record["wall_s"]
    assert record["load_s"] > 0
    assert (out / "ppgn_chains.png").stat().st_size > 1000
    g, c = jaxprobe.load("fc_generator"), jaxprobe.load("classifier")
    images = jaxprobe.convert_pixels(g.forward(g.params, jnp.asarray(samples.reshape(12, 128))), g.pixels, c.pixels)
    logits = np.asarray(c.forward(c.params, images))
    probs = np.asarray(jax.nn.softmax(logits, -1))[:, 3]
    rows = record["samples"]
    assert [(r["chain"], r["step"]) for r in rows] == [(i, s) for i in range(2) for s in (0, 4, 8, 12, 16, 20)]
    np.testing.assert_allclose([r["prob"] for r in rows], probs, rtol=1e-3, atol=1e-5)
    assert [r["label"] for r in rows] == list(logits.argmax(-1))
    assert record["kept_rate"] == pytest.approx(np.mean(probs > 0.5))
    kept0 = samples[0][probs[:6] > 0.5]
    assert record["diversity_samples"] == len(kept0) >= 2
    feats = np.maximum(np.asarray(c.up_to(c.params, c.pixels.from_canonical(
        g.pixels.to_canonical(g.forward(g.params, jnp.asarray(kept0)))), "fc1")), 0)
    assert record["diversity"] == pytest.approx(mean_pairwise_distance(feats), rel=1e-4)


@pytest.mark.parametrize("argv, message", [
    (["--class", "12", "--steps", "5"], "--class: expected a class 0..9"),
    (["--neuron", "nope:1", "--steps", "5"], "--neuron: neuron 'nope:1'"),
    (["--class", "1", "--steps", "0"], "--steps: expected an integer >= 1"),
    (["--class", "1", "--steps", "5", "--eps2", "-1"], "--eps2: expected a non-negative weight"),
    (["--class", "1", "--steps", "5", "--save-every", "0"], "--save-every: expected an integer >= 1"),
    (["--steps", "5"], "--class, --neuron: expected exactly one"),
    (["--class", "1", "--steps", "5", "--eps3", "1e39"], "--eps3: expected a non-negative weight whose products "
                                                         "stay finite in float32"),
    (["--class", "1", "--steps", "5", "--eps1", "inf"], "--eps1: expected a non-negative weight"),
    (["--class", "1", "--steps", "5", "--threshold", "nan"], "--threshold: expected a probability"),
    (["--class", "1", "--steps", "5", "--prior", "dae", "--encoder", "classifier:fc1"],
     "--encoder: given with prior 'dae'"),
    (["--class", "1", "--steps", "5", "--prior", "encoder", "--encoder", "classifier"],
     "--encoder: expected MODEL:LAYER"),
    (["--class", "1", "--steps", "5", "--prior", "encoder", "--encoder", "classifier:logits"],
     "--prior: encoder 'classifier' gives codes of shape (10,)"),
])
def test_bad_input_names_the_flag(tmp_path, capsys, argv, message):
    argv = [*argv, "--chains", "1"]
    assert main(["ppgn", *argv, "--out", str(tmp_path / "x")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_chunked_driver_gives_the_one_program_chains():
    """`ppgn(..., chunk=k)` (what the command's progress bar drives) equals the single scan, with a
    chunk that does not divide the steps, and reports every chunk's progress."""
    from test_ppgn import run_tiny

    ticks = []
    one = run_tiny(jax.random.PRNGKey(2))
    many = run_tiny(jax.random.PRNGKey(2), chunk=5, progress=lambda done, total: ticks.append((done, total)))
    for a, b in ((one.samples, many.samples), (one.probs, many.probs), (one.codes, many.codes)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(many.labels, one.labels)
    assert ticks == [(5, 13), (10, 13), (13, 13)]  # steps 12: 13 updates


@pytest.mark.parametrize("prior", ["dae", "encoder"])
def test_every_class_is_sampled_under_each_prior(prior):
    """The reference settings (200 steps, step 1, eps 1e-5, 1, 1e-17, threshold 0), real-data bounds,
    2 chains per class in one compiled program: after 100 steps of burn-in at least 80% of the kept
    samples of every class are classified as that class, by a fresh forward pass on their codes."""
    from jaxprobe.experiments.codespace import code_bounds, predicted
    from jaxprobe.experiments.ppgn import kept_after, make_prior, ppgn_class

    g, c = jaxprobe.load("fc_generator"), jaxprobe.load("classifier")
    lower, upper = code_bounds(g, "real")
    r = make_prior(g, prior)
    for label in range(10):
        run = ppgn_class(jax.random.PRNGKey(label), g, c, r, label, chains=2, steps=200, burn_in=100,
                         save_every=10, lower=lower, upper=upper)
        kept = np.concatenate([kept_after(run["result"], 100, chain) for chain in range(2)])
        assert len(kept) == run["kept_after"] == 22  # t = 100, 110, ..., 200 in each chain
        assert np.mean(predicted(g, c, kept) == label) >= 0.8, (prior, label)
        assert run["class_rate"] >= 0.8


def test_step_timing_leaves_compilation_out():
    """seconds_per_step is the median rate of the chunks after the first: the first chunk (its
    compilation) and a recompiling chunk do not count; the first chunk's time is reported apart."""
    from jaxprobe.experiments.ppgn import step_timing

    ticks = [(9.0, 10), (9.1, 20), (9.2, 30), (16.0, 40), (16.1, 50), (20.0, 51)]  # two compiling chunks
    t = step_timing(ticks, load_s=2.0, wall_s=21.0)
    assert t["seconds_per_step"] == pytest.approx(0.01) and t["first_chunk_s"] == 9.0
    assert t["load_s"] == 2.0 and t["wall_s"] == 21.0
