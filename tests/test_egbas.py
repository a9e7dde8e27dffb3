"""E-GBAS end to end (Algorithm 3) and the Table 1 / Table 2 metrics against numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprobe.gbas.egbas import egbas
from jaxprobe.gbas.exploration import exploration
from jaxprobe.gbas.metrics import feature_similarity, masked_sigma, masked_similarity, sample_sigma
from jaxprobe.errors import JaxprobeError
from conftest import tiny_critic, tiny_generator
from test_boundaries import perturbed


# The composition test's settings: the runs below share its compilations.
# BerOpt at the plain default lambda (one multiple): small regions, so the trees reject candidates.
RUN = dict(interval=2.0, capacity=24, max_candidates=256, batch=8, beropt_options=dict(steps=60, multiples=(1.0,)))


@pytest.fixture(scope="module")
def gen():
    return perturbed(tiny_generator(latent_dim=8))


def test_egbas_composes_beropt_gbrrt_and_baselines(gen):
    z0 = jax.random.normal(jax.random.PRNGKey(3), (8,))
    r = egbas(jax.random.PRNGKey(0), gen, gen.params, z0, 2, delta=0.3, **RUN)
    n = len(r.samples)
    assert r.layer == 2 and n == int(r.tree.count) and n > 3
    np.testing.assert_array_equal(r.samples[0], z0)
    # V* is BerOpt's thresholded theta times sign(h0) and every sample lies in its region
    # (independent forward pass, numpy sign check).
    h0 = np.asarray(gen.up_to(gen.params, z0[None], 2)).reshape(-1)
    np.testing.assert_array_equal(r.v_star, (r.theta > 0.5) * np.sign(h0))
    h = np.asarray(gen.up_to(gen.params, jnp.asarray(r.samples), 2)).reshape(n, -1)
    sel = r.v_star != 0
    assert sel.any() and np.all(r.v_star[sel] * h[:, sel] >= -1e-5 * (1 + np.abs(h).max()))
    # The baselines: eps from the accepted and rejected sets by hand, equal-volume cube, draws
    # around the query, as many as E-GBAS accepted.
    assert len(r.rejected) > 0
    dist = np.linalg.norm(r.rejected.astype(np.float64) - r.samples.astype(np.float64).mean(0), axis=1)
    np.testing.assert_allclose(r.eps_l2, 0.5 * (dist.max() + dist.min()), rtol=1e-5)
    np.testing.assert_allclose(8 * np.log(2 * r.eps_linf),
                               4 * np.log(np.pi) - np.log(24.0) + 8 * np.log(r.eps_l2), rtol=1e-5)  # Gamma(5) = 24
    assert r.l2_samples.shape == r.linf_samples.shape == r.samples.shape
    assert np.linalg.norm(r.l2_samples - np.asarray(z0), axis=1).max() <= r.eps_l2 * (1 + 1e-5)
    assert np.abs(r.linf_samples - np.asarray(z0)).max() <= r.eps_linf * (1 + 1e-5)


def test_eps_reason_when_nothing_is_rejected(gen):
    """A huge lambda selects no unit: the region is the whole latent space, every ray of the
    extent runs to the box's half-diagonal sqrt(d) I, the default delta is half that, and no
    candidate is rejected: eps and the baselines are NaN and eps_reason says why, for a tree
    that used its candidates and for one whose capacity (the query alone) was full at once."""
    z0 = jax.random.normal(jax.random.PRNGKey(3), (8,))
    opts = dict(RUN, beropt_options=dict(steps=60, lam=1e9))
    r = egbas(jax.random.PRNGKey(0), gen, gen.params, z0, 2, **dict(opts, max_candidates=16))
    assert not np.any(r.v_star)
    np.testing.assert_allclose(r.extent, np.sqrt(8) * 2.0, rtol=1e-6)
    assert r.delta == pytest.approx(np.sqrt(8) * 2.0 / 2, rel=1e-6)
    assert int(r.tree.n_rejected) == 0 and len(r.samples) > 1 and not r.rejected_truncated
    assert np.isnan(r.eps_l2) and np.isnan(r.l2_samples).all() and np.isnan(r.linf_samples).all()
    assert r.eps_reason.startswith("no candidate was rejected") and "drew all 16 candidates" in r.eps_reason
    # The exploration measures of the same tree, by the module's function on the result's parts.
    np.testing.assert_equal(r.exploration, exploration(r.samples, z0, r.extent))
    r = egbas(jax.random.PRNGKey(0), gen, gen.params, z0, 2, **dict(opts, capacity=1))
    assert len(r.samples) == 1 and int(r.tree.n_candidates) == 0 and np.isnan(r.eps_l2)
    assert "filled its capacity (1 nodes) after 0 candidates" in r.eps_reason
    # With rejections there is no reason (the composition test's run).
    r = egbas(jax.random.PRNGKey(0), gen, gen.params, z0, 2, delta=0.3, **RUN)
    assert r.eps_reason is None and np.isfinite(r.eps_l2)


def test_eps_from_a_truncated_rejected_set_says_so(gen):
    """With room for 3 rejected candidates eps comes from those 3 (brute force) and the result
    says the set was truncated."""
    z0 = jax.random.normal(jax.random.PRNGKey(3), (8,))
    r = egbas(jax.random.PRNGKey(0), gen, gen.params, z0, 2, delta=0.3, rejected_capacity=3, **RUN)
    assert int(r.tree.n_rejected) > 3 and r.rejected.shape == (3, 8) and r.rejected_truncated
    dist = np.linalg.norm(r.rejected.astype(np.float64) - r.samples.astype(np.float64).mean(0), axis=1)
    np.testing.assert_allclose(r.eps_l2, 0.5 * (dist.max() + dist.min()), rtol=1e-5)
    assert r.eps_reason is None


def test_delta_below_float32_resolution_is_refused_before_beropt(gen):
    """A step float32 cannot resolve at z0 ~ 100 fails before BerOpt (10^9 steps would not end)."""
    z0 = jnp.full((8,), 100.0)
    with pytest.raises(JaxprobeError, match=r"delta: expected a step size float32 resolves at the query's scale"):
        egbas(jax.random.PRNGKey(0), gen, gen.params, z0, 2, delta=1e-6, beropt_options=dict(steps=10 ** 9))
    with pytest.raises(JaxprobeError, match=r"interval: expected a scalar or one half-width per latent dimension"):
        egbas(jax.random.PRNGKey(0), gen, gen.params, z0, 2, delta=0.3, interval=np.ones(3))


def test_sample_sigma_is_mean_pixel_std():
    x = np.random.default_rng(0).normal(size=(7, 6, 5, 1)).astype(np.float32)
    np.testing.assert_allclose(float(sample_sigma(x)), x.astype(np.float64).std(axis=0).mean(), rtol=1e-5)
    assert float(sample_sigma(np.repeat(x[:1], 4, axis=0))) == 0.0
    with pytest.raises(JaxprobeError, match=r"images: expected a batch"):
        sample_sigma(np.zeros(5))


def test_padded_sets_ignore_their_padding():
    # The masked forms (one compilation for every set size) against numpy on the valid rows only:
    # padding rows hold large values that would change every number if they were counted.
    critic = tiny_critic()
    rng = np.random.default_rng(2)
    images = rng.uniform(-1, 1, size=(3, 6, 28, 28, 1)).astype(np.float32)
    counts = np.array([6, 2, 0])
    images[1, 2:] = 50.0
    images[2] = 50.0
    ref = images[0, :1]
    sigma, std = masked_sigma(jnp.asarray(images), jnp.asarray(counts))
    sim = np.asarray(masked_similarity(critic, critic.params, ref, jnp.asarray(images), jnp.asarray(counts)))
    for s, n in enumerate(counts[:2]):
        want = images[s, :n].astype(np.float64).std(axis=0)
        np.testing.assert_allclose(std[s], want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(float(sigma[s]), want.mean(), rtol=1e-5)
        np.testing.assert_allclose(sim[s], feature_similarity(critic, critic.params, images[s, :n], ref), rtol=1e-5)
    assert np.isnan(float(sigma[2])) and np.isnan(sim[2]).all() and sim.shape == (3, 4)


def test_feature_similarity_matches_layer_by_layer_numpy():
    critic = tiny_critic()
    from flax import nnx

    net = nnx.merge(critic.graphdef, critic.params)
    rng = np.random.default_rng(1)
    images = rng.uniform(-1, 1, size=(5, 28, 28, 1)).astype(np.float32)
    ref = rng.uniform(-1, 1, size=(28, 28, 1)).astype(np.float32)
    got = np.asarray(feature_similarity(critic, critic.params, images, ref))
    assert got.shape == (4,)  # conv1, conv2, conv3, fc: every layer but the scalar head
    # Independent path: run the network layer by layer (each layer in full: pre, act, reshapes).
    x = jnp.asarray(np.concatenate([ref[None], images]))
    want = []
    for layer in list(net.layers)[:4]:
        x = layer(x)
        f = np.asarray(x, np.float64).reshape(6, -1)
        cos = f[1:] @ f[0] / (np.linalg.norm(f[1:], axis=1) * np.linalg.norm(f[0]))
        want.append(cos.mean())
    np.testing.assert_allclose(got, want, rtol=1e-4)
    # The reference against itself: similarity 1 at every layer.
    np.testing.assert_allclose(feature_similarity(critic, critic.params, ref[None], ref[None]), 1.0, rtol=1e-5)
    with pytest.raises(JaxprobeError, match=r"images: expected shape \(batch, 28, 28, 1\)"):
        feature_similarity(critic, critic.params, images[:, :, :10], ref)
    with pytest.raises(JaxprobeError, match=r"ref_image: expected one image"):
        feature_similarity(critic, critic.params, images, images[:2])


def test_docs_composing_the_kernel_block_runs(capsys):
    """docs/methods/egbas.md, "Composing the kernel": the code block runs as printed on the shipped
    dcgan, and what it computes is right: each tree's nodes lie in the region of its query's V*
    (independent forward pass), the infos account for the nodes, and V* is sign(h0) where kept."""
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "methods" / "egbas.md").read_text()
    code = re.search(r"```python\n(.*?)```", page.split("## Composing the kernel", 1)[1], re.S).group(1)
    ns = {}
    exec(compile(code, "docs/methods/egbas.md", "exec"), ns)
    g, trees, steps, v_stars, z0s = ns["g"], ns["trees"], ns["steps"], np.asarray(ns["v_stars"]), ns["z0s"]
    count = np.asarray(trees.count)
    np.testing.assert_array_equal(np.asarray(steps.accepted).sum(1) + 1, count)
    assert capsys.readouterr().out.strip() == f"{count} {count}"
    h0 = np.asarray(g.up_to(g.params, z0s, 1)).reshape(len(z0s), -1)
    for i in range(len(z0s)):
        sel = v_stars[i] != 0
        assert 0 < sel.sum() < sel.size and np.all(v_stars[i][sel] == np.sign(h0[i][sel]))
        assert count[i] > 3
        nodes = np.asarray(trees.nodes[i])[: count[i]]
        h = np.asarray(g.up_to(g.params, jnp.asarray(nodes), 1)).reshape(count[i], -1)
        assert np.all(v_stars[i][sel] * h[:, sel] >= -1e-5 * (1 + np.abs(h).max()))
