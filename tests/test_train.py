"""Training: losses go down on a tiny batch, seeds are deterministic, runs resume exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxprobe.models import dae
from jaxprobe.models.probe import Model
from jaxprobe.train.data import Mnist, Split
from jaxprobe.train.classifier import train_classifier
from jaxprobe.train.dae import dae_quality, train_dae
from jaxprobe.train.inverter import InverterSettings, train_inverter
from jaxprobe.train.wgan import WGANSettings, train_wgan
from jaxprobe.train.loop import EpochSampler
from conftest import tiny_classifier, tiny_critic, tiny_generator


def _toy_data(n=128, seed=0):
    """Digit-like toy images: class k is a bright 6x6 square at one of 10 positions, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.int32)
    images = rng.random((n, 28, 28, 1)).astype(np.float32) * 0.2
    for i, k in enumerate(labels):
        r, c = divmod(int(k), 5)
        images[i, 4 + 12 * r : 10 + 12 * r, 2 + 5 * c : 8 + 5 * c] = 0.95
    split = Split(images, labels)
    return Mnist(split, split, split, "toy")


def _xent(model, params, data):
    logits = model.forward(params, data.train.images)
    return float(optax.softmax_cross_entropy_with_integer_labels(logits, data.train.labels).mean())


def _leaves_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_epoch_sampler_covers_each_epoch_once():
    s = EpochSampler(100, 10, seed=3)
    epoch = np.concatenate([s.indices(i) for i in range(10)])
    assert sorted(epoch) == list(range(100))
    assert not np.array_equal(s.indices(10), s.indices(0))
    assert np.array_equal(EpochSampler(100, 10, seed=3).indices(7), s.indices(7))


def test_classifier_loss_decreases_and_seed_is_deterministic(tmp_path):
    data, model = _toy_data(), tiny_classifier()
    before = _xent(model, model.params, data)
    kw = dict(steps=30, batch_size=32, lr=3e-3, progress=False)
    p1, _, _ = train_classifier(model, data, seed=0, work_dir=tmp_path / "a", **kw)
    p2, _, _ = train_classifier(model, data, seed=0, work_dir=tmp_path / "b", **kw)
    p3, _, _ = train_classifier(model, data, seed=1, work_dir=tmp_path / "c", **kw)
    assert _xent(model, p1, data) < 0.5 * before
    assert _leaves_equal(p1, p2)
    assert not _leaves_equal(p1, p3)


def test_resume_gives_the_same_parameters(tmp_path):
    data, model = _toy_data(), tiny_classifier()
    kw = dict(seed=0, batch_size=32, lr=3e-3, progress=False)
    whole, _, _ = train_classifier(model, data, steps=8, work_dir=tmp_path / "whole", **kw)
    train_classifier(model, data, steps=5, work_dir=tmp_path / "split", **kw)
    resumed, _, _ = train_classifier(model, data, steps=8, work_dir=tmp_path / "split", **kw)
    assert _leaves_equal(whole, resumed)


def test_wgan_critic_learns_to_rank_real_above_fake_and_is_deterministic(tmp_path):
    data = _toy_data()
    g, c = tiny_generator(latent_dim=4), tiny_critic()
    kw = dict(seed=0, steps=15, batch_size=16, n_critic=3, gradient_penalty=10.0, lr=2e-3, b1=0.5, b2=0.9,
              progress=False)
    (gp, cp), _, _ = train_wgan(g, c, data, work_dir=tmp_path / "a", **kw)
    (gp2, cp2), _, _ = train_wgan(g, c, data, work_dir=tmp_path / "b", **kw)
    assert _leaves_equal((gp, cp), (gp2, cp2))
    real = data.train.images[:64] * 2 - 1
    fake = g.forward(gp, jax.random.normal(jax.random.PRNGKey(5), (64, 4)))

    def distance(params):
        return float(c.forward(params, real).mean() - c.forward(params, fake).mean())

    assert distance(cp) > distance(c.params) and distance(cp) > 0
    assert not _leaves_equal(gp, g.params)


def test_inverter_lowers_reconstruction_loss(tmp_path):
    data = _toy_data()
    clf = tiny_classifier()
    gen = tiny_generator(latent_dim=16, widths=(8, 4, 4), slope=0.3)
    disc = tiny_critic()
    x = jnp.asarray(data.train.images[:64])

    def image_loss(params):
        codes = clf.activation(clf.params, x, "fc1")
        return float(jnp.mean((gen.forward(params, codes) - (2 * x - 1)) ** 2))

    (gp, _), _, _ = train_inverter(gen, disc, clf, "fc1", data, seed=0, steps=40, batch_size=32, lr=3e-3, b1=0.5,
                                   b2=0.999, image_weight=1.0, feature_weight=1.0, adversarial_weight=0.01,
                                   work_dir=tmp_path / "inv", progress=False)
    assert image_loss(gp) < 0.7 * image_loss(gen.params)


def test_trainer_settings_defaults_are_the_recipes_and_unknown_names_are_refused(tmp_path):
    """InverterSettings / WGANSettings default to the fc_generator / dcgan recipes' hyperparameters
    (the seed aside); a keyword that is no setting, or options of the wrong type, is one JaxprobeError
    line naming it, before any training."""
    from jaxprobe import JaxprobeError
    from jaxprobe.train.recipes import RECIPES

    for cls, recipe in ((InverterSettings, "fc_generator"), (WGANSettings, "dcgan"), (WGANSettings, "dcgan2d")):
        assert {k: v for k, v in cls()._asdict().items() if k != "seed"} == RECIPES[recipe]["hyper"], cls
    gen, critic, clf = tiny_generator(latent_dim=4), tiny_critic(), tiny_classifier()
    data = _toy_data(n=32)
    with pytest.raises(JaxprobeError, match=r"^learning_rate, noise: not a setting of WGANSettings \(expected one of"):
        train_wgan(gen, critic, data, work_dir=tmp_path / "w", learning_rate=1e-3, noise=0.1)
    with pytest.raises(JaxprobeError, match=r"^n_critic: not a setting of InverterSettings"):
        train_inverter(gen, critic, clf, "fc1", data, work_dir=tmp_path / "i", n_critic=5)
    with pytest.raises(JaxprobeError, match="^options: expected a WGANSettings or None, got InverterSettings"):
        train_wgan(gen, critic, data, InverterSettings(), work_dir=tmp_path / "w")
    assert not (tmp_path / "w").exists() and not (tmp_path / "i").exists()


def test_wgan_options_and_keywords_train_the_same(tmp_path):
    """Settings given as a WGANSettings, as keywords, or as a WGANSettings with keywords replacing
    some of its fields, are the same run."""
    data, g, c = _toy_data(n=64), tiny_generator(latent_dim=4), tiny_critic()
    kw = dict(seed=3, steps=2, batch_size=8, n_critic=2, gradient_penalty=5.0, lr=1e-3, b1=0.5, b2=0.9)
    by_keywords, _, _ = train_wgan(g, c, data, work_dir=tmp_path / "a", progress=False, **kw)
    by_options, _, _ = train_wgan(g, c, data, WGANSettings(**kw), work_dir=tmp_path / "b", progress=False)
    mixed, _, _ = train_wgan(g, c, data, WGANSettings(**dict(kw, lr=0.5, seed=9)), work_dir=tmp_path / "c",
                             progress=False, lr=1e-3, seed=3)
    other_seed, _, _ = train_wgan(g, c, data, WGANSettings(**kw), work_dir=tmp_path / "d", progress=False, seed=4)
    assert _leaves_equal(by_keywords, by_options) and _leaves_equal(by_keywords, mixed)
    assert not _leaves_equal(by_keywords, other_seed)


def test_train_rejects_bad_arguments(tmp_path):
    from jaxprobe import JaxprobeError
    from jaxprobe.train import train

    with pytest.raises(JaxprobeError, match="name: no recipe 'resnet'"):
        train("resnet", tmp_path)
    with pytest.raises(JaxprobeError, match="steps: expected an integer >= 1, got 0"):
        train("classifier", tmp_path, steps=0)


def test_dae_denoises_codes_better_than_doing_nothing_and_is_deterministic(tmp_path):
    """The h-DAE on codes E(x) (tiny classifier up to fc1): after training, R(h + sigma n) is closer
    to h than the noisy code is, on the training codes with fresh noise; the same seed gives the same
    parameters; `dae_quality` reports both errors per noise level."""
    data, clf = _toy_data(), tiny_classifier()
    model = Model.from_module("dae", dae.h_dae(code_dim=16, hidden=(32,), rngs=nnx.Rngs(0)), (16,), dae.ROLE)
    kw = dict(seed=0, steps=60, batch_size=32, lr=1e-2, noise=0.5, progress=False)
    p1, history, _ = train_dae(model, clf, "fc1", data, work_dir=tmp_path / "a", **kw)
    p2, _, _ = train_dae(model, clf, "fc1", data, work_dir=tmp_path / "b", **kw)
    assert _leaves_equal(p1, p2) and history["loss"][-1][1] < history["loss"][0][1]
    q = dae_quality(model.replace(params=p1), clf, "fc1", data.train.images, jax.random.PRNGKey(9), noise_levels=(0.5,))
    assert q["noise"] == [0.5] and abs(q["noisy_mse"][0] - 0.25) < 0.02, q
    assert q["reconstruction_mse"][0] < 0.8 * q["noisy_mse"][0], q
