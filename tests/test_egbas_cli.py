"""`jaxprobe egbas`, `jaxprobe reproduce egbas` and the report's E-GBAS section, on tiny models.

Outputs are checked against independent computations: layer-by-layer forward passes of the saved
network (not `Model.up_to`), numpy standard deviations and cosine similarities.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxprobe.cli
from jaxprobe.cli import main
from jaxprobe.experiments.egbas_tables import egbas_tables, tables_markdown
from jaxprobe.models.store import load, save_model
from conftest import tiny_critic, tiny_generator
from json_checks import natural_json
from test_boundaries import perturbed

# Small settings under which the tiny generator's trees reject candidates (eps is defined).
TREE = ["--delta", "0.3", "--interval", "2.0", "--batch", "8"]


@pytest.fixture(autouse=True)
def only_egbas_commands(monkeypatch):
    # The CLI imports every command module; these tests exercise only this one.
    monkeypatch.setattr(jaxprobe.cli, "MODULES", ("egbas",))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("egbas_models")
    gen = perturbed(tiny_generator(latent_dim=8))
    save_model(gen, root / "gen")
    save_model(perturbed(tiny_critic(), seed=1), root / "critic")
    return root


def pre_activation(model, z, l):
    """Layer l's pre-activation by running the saved network's layers one by one: (n, D_l)."""
    net = nnx.merge(model.graphdef, model.params)
    x = jnp.asarray(z, jnp.float32)
    for layer in list(net.layers)[: l - 1]:
        x = layer(x)
    return np.asarray(net.layers[l - 1].pre(x), np.float64).reshape(len(z), -1)


def critic_features(critic, x):
    """The critic's feature layers (all but the head), layer by layer: list of (n, F_k)."""
    net = nnx.merge(critic.graphdef, critic.params)
    feats, x = [], jnp.asarray(x, jnp.float32)
    for layer in list(net.layers)[:-1]:
        x = layer(x)
        feats.append(np.asarray(x, np.float64).reshape(x.shape[0], -1))
    return feats


def test_egbas_command_writes_valid_tree_and_figure(saved, tmp_path, capsys):
    out = tmp_path / "run"
    # The query is the prior draw of the seed's first key; BerOpt at its plain default lambda (the
    # rule's smallest multiple) keeps a region small enough to reject candidates.
    from jaxprobe.gbas.beropt import default_lambda

    z0 = np.asarray(jax.random.normal(jax.random.split(jax.random.PRNGKey(3), 3)[0], (1, 8)))[0]
    lam = float(default_lambda(load(saved / "gen"), load(saved / "gen").params, jnp.asarray(z0), 2))
    argv = ["egbas", "--model", str(saved / "gen"), "--layer", "2", "--seed", "3", "--n", "24",
            "--iterations", "256", "--beropt-steps", "60", "--lambda", repr(lam), "--critic", str(saved / "critic"),
            "--out", str(out)] + TREE
    assert main(argv) == 0
    printed = capsys.readouterr()
    res = json.loads((out / "egbas.json").read_text())
    # Every file written is listed last; the bar ends at its real total: the candidates drawn
    # when the tree filled first, the budget otherwise.
    files = f"wrote {out.resolve() / 'egbas.json'} and {out.resolve() / 'egbas.png'}"
    assert printed.out.strip().splitlines()[-1] == files
    drawn = res["n_candidates"]
    total = drawn if res["stop_reason"] == "capacity_full" else 256
    assert "100%" in printed.err and f"{drawn}/{total}" in printed.err, printed.err[-300:]
    seen = natural_json(res)  # the stop reason a name, every count an int
    assert "stop_reason" in seen["reasons"] and {"n_accepted", "n_rejected", "n_candidates"} <= set(seen["counts"])
    gen = load(saved / "gen")
    assert res["layer"] == 2 and res["layer_name"] == "deconv1"
    np.testing.assert_allclose(res["query"], z0, rtol=1e-6)
    assert res["beropt_lambda"] == pytest.approx(lam, rel=1e-6)
    v = np.asarray(res["v_star"])
    acc = np.asarray(res["accepted"], np.float64)
    assert v.shape == (pre_activation(gen, z0[None], 2).shape[1],) and set(np.unique(v)) <= {-1, 0, 1}
    assert acc.shape == (res["n_accepted"], 8) and res["n_accepted"] > 3
    np.testing.assert_allclose(acc[0], z0, rtol=1e-6)
    # Every accepted vector agrees with V* on every selected unit (independent forward pass);
    # V* is sign(h(z0)) on the selected units.
    h = pre_activation(gen, acc, 2)
    sel = v != 0
    assert sel.any()
    np.testing.assert_array_equal(np.sign(h[0, sel]), v[sel])
    assert np.all(v[sel] * h[:, sel] >= -1e-5 * (1 + np.abs(h).max()))
    # The tree: the query is the root, each node delta from its parent, nodes pairwise >= delta.
    parents = np.asarray(res["parents"])
    assert parents[0] == -1 and np.all((parents[1:] >= 0) & (parents[1:] < np.arange(1, len(acc))))
    np.testing.assert_allclose(np.linalg.norm(acc[1:] - acc[parents[1:]], axis=1), 0.3, rtol=1e-4)
    d = np.linalg.norm(acc[:, None] - acc[None], axis=-1)
    assert d[np.triu_indices(len(acc), 1)].min() >= 0.3 * (1 - 2e-4)
    assert res["stop_reason"] in ("capacity_full", "candidate_budget") and res["delta"] == 0.3
    assert res["n_rejected"] > 0 and res["eps_l2"] > 0 and 0 < res["eps_linf"] < res["eps_l2"]
    # sigma of the E-GBAS set (without the query), by numpy on the generator's output.
    x = np.asarray(gen.forward(gen.params, jnp.asarray(acc[1:], jnp.float32)), np.float64)
    np.testing.assert_allclose(res["sigma"]["egbas"], x.std(axis=0).mean(), rtol=1e-4)
    assert len(res["similarity"]["l2"]) == 4 and all(0 < s <= 1 + 1e-6 for s in res["similarity"]["egbas"])
    # The PNG: four rows (query, E-GBAS, L2, Linf).
    import matplotlib.image

    img = matplotlib.image.imread(out / "egbas.png")
    assert img.ndim == 3 and img.shape[0] > 100
    # Written through the shared output rule: the directory's marker, no temporary left behind
    # (neither inside nor beside it).
    from jaxprobe.io import MARKER

    assert [p.name for p in out.glob(".*")] == [MARKER]
    assert not [p.name for p in out.parent.glob(".*") if "tmp" in p.name]


@pytest.mark.parametrize("args, message", [
    (["--model", "no_such_model", "--layer", "1"], "--model: model: 'no_such_model' is neither"),
    (["--layer", "9"], "layer: expected 1..4"),
    (["--layer", "fc7"], "layer: "),
    (["--layer", "1", "--n", "-3"], "--n: expected an integer >= 1"),
    (["--layer", "1", "--n", "0"], "--n: expected an integer >= 1"),
    (["--layer", "1", "--iterations", "-1"], "--iterations: expected an integer >= 0"),
    (["--layer", "1", "--delta", "0"], "--delta: expected a positive step size"),
    (["--layer", "1", "--delta", "1e-9"], "--delta: expected a step size float32 resolves at the query's scale"),
    (["--layer", "1", "--p", "1.5"], "--p: expected a threshold in (0, 1)"),
    (["--layer", "1", "--critic", "GEN"], "--critic: expected a critic"),
    (["--layer", "1", "--lambda", "-1"], "--lambda: expected a non-negative number"),
    (["--layer", "1", "--lambda", "1e39"], "--lambda: "),
])
def test_egbas_command_bad_input_is_one_line_exit_2(saved, tmp_path, capsys, args, message):
    args = [a.replace("GEN", str(saved / "gen")) for a in args]
    if "--model" not in args:
        args = ["--model", str(saved / "gen")] + args
    assert main(["egbas", *args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxprobe: error: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_egbas_command_writes_through_the_shared_output_rule(saved, tmp_path, capsys):
    """--out that jaxprobe did not write is refused before any work (exit 2, one line, untouched);
    with --force it is replaced. A tree that fills before its budget ends its bar at the candidates
    drawn (N/N, 100%), not short of the budget."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    argv = ["egbas", "--model", str(saved / "gen"), "--layer", "2", "--seed", "3", "--beropt-steps", "60",
            "--n", "3", "--iterations", "256", "--out", str(out), *TREE]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxprobe: error: --out: ") and err.count("\n") == 1, err
    assert (out / "notes.txt").read_text() == "mine"
    assert main(argv + ["--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".jaxprobe-output", "egbas.json", "egbas.png"]
    res = json.loads((out / "egbas.json").read_text())
    drawn = res["n_candidates"]
    assert res["stop_reason"] == "capacity_full" and 0 < drawn < 256
    err = capsys.readouterr().err
    assert "100%" in err and f"{drawn}/{drawn}" in err and f"{drawn}/256" not in err, err[-300:]


@pytest.mark.parametrize("args, reason", [
    (["--n", "1"], "filled its capacity (1 nodes) after 0 candidates"),
    (["--iterations", "0"], "drew all 0 candidates and never stepped out of its region"),
])
def test_egbas_command_warns_when_eps_is_undefined(saved, tmp_path, capsys, args, reason):
    """A tree that rejected nothing (full at once, or no candidate to draw): exit 0, the JSON's
    eps_reason, NaN eps written as null, and one warning line on stderr."""
    out = tmp_path / "run"
    argv = ["egbas", "--model", str(saved / "gen"), "--layer", "2", "--beropt-steps", "20", "--out", str(out),
            *TREE, *args]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.startswith("jaxprobe: warning: no candidate was rejected") and reason in err and err.count("\n") == 1
    res = json.loads((out / "egbas.json").read_text())
    assert reason in res["eps_reason"] and res["eps_l2"] is None and res["n_rejected"] == 0
    assert res["n_accepted"] == 1 and res["rejected_truncated"] is False


def test_reproduce_tables_against_numpy(saved):
    gen, critic = load(saved / "gen"), load(saved / "critic")
    runs, ticks = {}, []
    t = egbas_tables(jax.random.PRNGKey(0), gen, critic, layers=(3, 4), queries=2, delta=None, interval=2.0,
                     capacity=33, max_candidates=32, batch=8, beropt_options=dict(steps=40),
                     on_run=lambda q, l, r, m: runs.setdefault((q, l), r), progress=lambda *a: ticks.append(a))
    # Progress over the four trees' candidates: never back, one total, ending at it, and ticks
    # within the trees (GB-RRT's hook), not only one per tree.
    done = [d for d, _ in ticks]
    assert {total for _, total in ticks} == {4 * 32} and done[-1] == 4 * 32 and done == sorted(done)
    assert len([d for d in done if d % 32]) >= 4
    # The JSON shape: one value per generator layer, one list per critic layer.
    for m in ("egbas", "l2", "linf"):
        assert len(t["sigma"][m]) == 2 and np.array(t["similarity"][m]).shape == (2, 4)
    assert np.array(t["per_query"]["sigma"]["egbas"]).shape == (2, 2)
    assert t["paper"]["sigma"]["egbas"] == [0.0781, 0.0694, 0.0675, 0.0323]
    json.dumps(t)  # JSON-ready
    # One case by hand: query 1, layer 4. sigma by numpy over G of each set without the query,
    # the baselines with as many draws; similarity layer by layer.
    r = runs[(1, 4)]
    n = len(r.samples) - 1
    assert n > 1 and np.isfinite(r.eps_l2)
    sets = {"egbas": r.samples[1:], "l2": r.l2_samples[:n], "linf": r.linf_samples[:n]}
    ref = critic_features(critic, gen.forward(gen.params, jnp.asarray(r.query[None])))
    for mi, (m, z) in enumerate(sets.items()):
        x = np.asarray(gen.forward(gen.params, jnp.asarray(z)), np.float64)
        np.testing.assert_allclose(t["per_query"]["sigma"][m][1][1], x.std(axis=0).mean(), rtol=1e-4)
        feats = critic_features(critic, x)
        cos = [np.mean(f @ f0[0] / (np.linalg.norm(f, axis=1) * np.linalg.norm(f0[0]))) for f, f0 in zip(feats, ref)]
        np.testing.assert_allclose(np.array(t["per_query"]["similarity"][m])[1, :, 1], cos, rtol=1e-4)
    # Means over the queries at which all three sets exist.
    per = np.array([t["per_query"]["sigma"][m] for m in ("egbas", "l2", "linf")], np.float64)  # (3, L, Q)
    ok = np.isfinite(per).all(0)
    assert ok[1].all() and t["queries_with_baselines"] == ok.sum(1).tolist()
    for i in range(2):
        np.testing.assert_allclose(np.array(t["sigma"]["egbas"][i], np.float64),
                                   per[0, i, ok[i]].mean() if ok[i].any() else np.nan, rtol=1e-6)
    md = tables_markdown(t)
    assert "Table 1" in md and "E-GBAS" in md and "(0.0781)" not in md  # layer 1 was not run
    assert "(0.0323)" in md


def test_reproduce_command_writes_json_and_markdown(saved, tmp_path, capsys):
    out = tmp_path / "tables"
    argv = ["reproduce", "egbas", "--model", str(saved / "gen"), "--critic", str(saved / "critic"),
            "--queries", "1", "--layers", "4", "--iterations", "16", "--beropt-steps", "20", "--out", str(out)] + TREE
    assert main(argv) == 0
    t = json.loads((out / "egbas_tables.json").read_text())
    seen = natural_json(t)
    assert "per_query.stop_reason" in seen["reasons"] and "per_query.n_samples" in seen["counts"]
    # The bar over all trees' candidates (1 query x 1 layer x 16) reached its total.
    assert "16/16" in capsys.readouterr().err
    assert set(t["sigma"]) == {"egbas", "l2", "linf"} and len(t["sigma"]["egbas"]) == 1
    assert np.array(t["similarity"]["egbas"]).shape == (1, 4) and t["queries"] == 1
    assert (out / "egbas_tables.md").read_text().startswith("# E-GBAS")
    assert main(["reproduce", "egbas", "--model", str(saved / "gen"), "--out", str(out)]) == 2
    assert "--critic: " in capsys.readouterr().err
    # A step float32 cannot resolve at some query's scale fails before any run, naming --delta.
    assert main(argv[:-len(TREE)] + ["--delta", "1e-9"]) == 2
    assert "jaxprobe: error: --delta: expected a step size float32 resolves" in capsys.readouterr().err


def two_layer_generator(latent_dim=8, seed=3):
    """z -> relu(fc to 28x28x2) -> 3x3 conv to one channel (pre-tanh): a 2-layer generator, so that
    the report section (which runs every layer of "dcgan") compiles half as much as on 4 layers."""
    from jaxprobe.models.layers import Act, Layer, Network, Reshape
    from jaxprobe.models.probe import Model
    from conftest import PM1

    rngs = nnx.Rngs(seed)
    net = Network([Layer(nnx.Linear(latent_dim, 28 * 28 * 2, rngs=rngs), Act("relu"), (Reshape((28, 28, 2)),)),
                   Layer(nnx.Conv(2, 1, (3, 3), padding="SAME", rngs=rngs), Act("tanh"))], ("fc", "out"))
    manifest = {"latent": {"dim": latent_dim, "prior": "normal"}}
    return perturbed(Model.from_module("two_layer", net, (latent_dim,), "generator", PM1, manifest))


def test_report_section_on_tiny_models(tmp_path, monkeypatch):
    from jaxprobe.report.base import Context
    from jaxprobe.report.egbas import egbas_section
    from test_figures import watch_figures

    gaps = watch_figures(monkeypatch)
    ctx = Context(out_dir=tmp_path, models={"dcgan": two_layer_generator(),
                                            "dcgan2d": perturbed(tiny_generator(latent_dim=2, seed=2)),
                                            "dcgan_critic": tiny_critic()})
    s = egbas_section(ctx)
    assert s.key == "egbas" and len(s.figures) == 4
    for f, _ in s.figures:
        assert (tmp_path / f).stat().st_size > 1000
    assert len(s.results["tables"]["sigma"]["egbas"]) == 2  # one per generator layer
    assert np.array(s.results["tables"]["similarity"]["l2"]).shape == (2, 4)  # x the critic's 4 feature layers
    assert s.results["plane"]["accepted"] >= 1 and "<table>" in s.html
    # Every figure states its axes and has a legend or colour bar (the pixel-std heatmap a colour bar).
    assert set(gaps) == {f for f, _ in s.figures} and not any(gaps.values()), gaps


def test_report_section_with_an_empty_boundary_set(tmp_path, monkeypatch):
    """A huge lambda selects no unit at any layer: the plane has no wall, no tree rejects anything
    (eps undefined everywhere), and the section still renders its figures and tables."""
    import jaxprobe.report.egbas as section
    from jaxprobe.report.base import Context

    empty = dict(lam=1e9, steps=5, init=0.3)  # theta starts below p = 0.5 and only falls
    monkeypatch.setattr(section, "PLANE", dict(section.PLANE, capacity=32, max_candidates=64, beropt_options=empty))
    monkeypatch.setattr(section, "TABLES", dict(section.TABLES, queries=1, capacity=17, max_candidates=16,
                                                beropt_options=empty))
    from jaxprobe.models.layers import Act, Layer, Network, Reshape
    from jaxprobe.models.probe import Model
    from conftest import PM1

    # "dcgan" with one layer (fc to 28x28x1, tanh): the section's tables run one layer, not two.
    net = Network([Layer(nnx.Linear(8, 28 * 28, rngs=nnx.Rngs(0)), Act("tanh"), (Reshape((28, 28, 1)),))], ("out",))
    one = Model.from_module("one_layer", net, (8,), "generator", PM1, {"latent": {"dim": 8, "prior": "normal"}})
    ctx = Context(out_dir=tmp_path, models={"dcgan": one, "dcgan2d": perturbed(tiny_generator(latent_dim=2, seed=2)),
                                            "dcgan_critic": tiny_critic()})
    s = section.egbas_section(ctx)
    assert s.results["plane"]["selected"] == 0 and s.results["plane"]["n_rejected"] == 0
    assert s.results["plane"]["eps_l2"] != s.results["plane"]["eps_l2"]  # NaN: nothing rejected
    assert s.results["plane"]["walls_in_zoom"] == 0 and s.results["tables"]["queries_with_baselines"] == [0]
    assert len(s.figures) == 4 and all((tmp_path / f).stat().st_size > 1000 for f, _ in s.figures)
    assert "<table>" in s.html


def test_reproduce_lambda_sweep_command(saved, tmp_path, capsys):
    """`reproduce egbas --lambdas`: per multiple of the default lambda the units kept (a larger
    lambda keeps no more units), the extent, sigma and similarities of the three sets; the JSON,
    markdown and figure written and listed; a bad multiple is one line naming --lambdas."""
    out = tmp_path / "sweep"
    argv = ["reproduce", "egbas", "--model", str(saved / "gen"), "--critic", str(saved / "critic"), "--queries", "1",
            "--layers", "2", "--iterations", "32", "--beropt-steps", "40", "--lambdas", "1", "1000",
            "--out", str(out)] + TREE
    assert main(argv) == 0
    printed = capsys.readouterr().out
    s = json.loads((out / "egbas_lambdas.json").read_text())
    assert s["lambdas"] == [1.0, 1000.0] and s["layer"] == 2 and len(s["default_lambda"]) == 1
    assert s["units_kept"][1] <= s["units_kept"][0] and s["units_kept"][0] > 0
    for m in ("egbas", "l2", "linf"):
        assert len(s["sigma"][m]) == 2 and np.array(s["similarity"][m]).shape == (2, 4)
    # The units kept by hand: BerOpt at lambda = 1000 x the default on the same query and key.
    import jaxprobe
    from jaxprobe.gbas.beropt import default_lambda

    gen = load(saved / "gen")
    k_q, k_run = jax.random.split(jax.random.PRNGKey(0))
    z0 = gen.sample_prior(k_q, 1)[0]
    lam = 1000 * float(default_lambda(gen, gen.params, z0, 2))
    k_ber = jax.random.split(jax.random.fold_in(k_run, 0), 5)[0]
    r = jaxprobe.beropt(k_ber, gen, gen.params, z0, 2, lam=lam, steps=40)
    assert s["per_query"]["units_kept"][1] == [int(np.count_nonzero(r.v_star))]
    assert (out / "egbas_lambdas.png").stat().st_size > 1000
    assert (out / "egbas_lambdas.md").read_text().startswith("# E-GBAS lambda sweep")
    assert printed.strip().splitlines()[-1].startswith(f"wrote {out.resolve() / 'egbas_lambdas.json'}")
    assert main(argv[:-len(TREE) - 2] + ["--lambdas", "0", "--out", str(tmp_path / "bad")]) == 2
    assert "jaxprobe: error: --lambdas: expected positive multiples" in capsys.readouterr().err
