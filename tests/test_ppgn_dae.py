"""An h-DAE (PPGN-h's prior) trained for any generator's code space (`train_code_dae`): codes read
from a given encoder layer on given images, the noise scaled to the codes, a denoiser that beats
doing nothing on its own noise, a manifest that names its generator and encoder, and a prior
`ppgn` accepts; bad input names the argument."""

import jax
import numpy as np
import pytest

import jaxprobe
from jaxprobe.errors import JaxprobeError
from jaxprobe.train.dae import code_noise, train_code_dae
from test_ppgn import tiny_generator, tiny_models


def test_code_dae_for_an_encoder_layer_denoises_and_serves_as_prior(tmp_path):
    _, c, _ = tiny_models()
    g = tiny_generator(45)  # codes of 45 = the classifier's `hidden` layer, 3 x 3 x 5
    rng = np.random.default_rng(0)  # four prototypes and small noise: codes a DAE can pull back
    images = np.clip(rng.random((4, 4, 4, 1))[rng.integers(0, 4, 96)] + 0.02 * rng.normal(size=(96, 4, 4, 1)), 0, 1)
    images = images.astype(np.float32)
    model, manifest, record = train_code_dae(g, c, "hidden", images, tmp_path / "work", steps=600, progress=False)
    assert model.role == "denoiser" and tuple(model.input_shape) == (45,)
    assert manifest["generator"] == "tiny-gen" and manifest["encoder"] == {"model": "tiny-cls", "layer": "hidden"}
    assert manifest["architecture"]["kwargs"] == {"code_dim": 45, "hidden": [256, 256], "output": "identity"}
    codes = np.asarray(c.activation(c.params, images, "hidden")).reshape(96, -1)
    assert record["hyperparameters"]["noise"] == pytest.approx(0.5 * codes.std(0).mean(), rel=1e-5)
    assert code_noise(codes) == pytest.approx(record["hyperparameters"]["noise"])
    q = record["quality"]
    assert q["reconstruction_mse"][0] < 0.3 * q["noisy_mse"][0], q
    res = jaxprobe.ppgn(jax.random.PRNGKey(0), g, c, model, label=1, chains=2, steps=3, save_every=1)
    assert res.samples.shape == (2, 4, 45) and np.all(np.isfinite(np.asarray(res.samples)))


@pytest.mark.parametrize("layer, images, message", [
    ("logits", np.zeros((8, 4, 4, 1), np.float32), "encoder: 'tiny-cls' at 'logits' gives (1, 1, 4), not the code "
                                                    "shape (45,)"),
    ("hidden", np.zeros((8, 5, 5, 1), np.float32), "images: expected real images of shape (m, 4, 4, 1)"),
])
def test_bad_input_names_the_argument(tmp_path, layer, images, message):
    _, c, _ = tiny_models()
    with pytest.raises(JaxprobeError) as err:
        train_code_dae(tiny_generator(45), c, layer, images, tmp_path / "work", steps=2, progress=False)
    assert message in str(err.value), str(err.value)
