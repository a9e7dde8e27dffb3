"""Architectures of jaxprobe's default MNIST-scale models, as probe-able `Network`s.

Each builder takes keyword hyperparameters (recorded in a model's manifest, so `jaxprobe.load`
rebuilds the same structure) and an `nnx.Rngs`.
"""

from __future__ import annotations

from flax import nnx

from jaxprobe.models.layers import Act, DownConv, Flatten, Layer, MaxPool, Network, Reshape, SubPixelUp


def dcgan_generator(*, latent_dim: int = 100, widths=(128, 64, 32), slope: float = 0.0,
                    rngs: nnx.Rngs) -> Network:
    """DCGAN-structured generator z (latent_dim,) -> image (28, 28, 1) in [-1, 1].

    Layers (docs/probe-protocol.md; Jeon et al. 2020, section 4, count the same four): fc (dense to
    7x7xw0), deconv1 (2x up to 14x14xw1), deconv2 (2x up to 28x28xw2), out (3x3 conv to one
    channel, pre-tanh). Hidden nonlinearity ReLU (or leaky ReLU with `slope`, as DeePSim uses 0.3).
    The 2x upsamplings are sub-pixel convolutions.
    """
    w0, w1, w2 = widths
    act = Act("leaky_relu", slope) if slope else Act("relu")
    layers = [
        Layer(nnx.Linear(latent_dim, 7 * 7 * w0, rngs=rngs), act, (Reshape((7, 7, w0)),)),
        Layer(SubPixelUp(w0, w1, rngs=rngs), act),
        Layer(SubPixelUp(w1, w2, rngs=rngs), act),
        Layer(nnx.Conv(w2, 1, (3, 3), padding="SAME", rngs=rngs), Act("tanh")),
    ]
    return Network(layers, ("fc", "deconv1", "deconv2", "out"))


def dcgan_critic(*, widths=(32, 64, 128), hidden: int = 128, rngs: nnx.Rngs) -> Network:
    """WGAN critic (28, 28, 1) -> (1,): conv1, conv2, conv3, fc (the 4 feature layers), head.

    No batch norm: the gradient penalty is per example. Leaky ReLU 0.2 as in DCGAN. The
    downsamplings are space-to-depth convolutions (`DownConv`).
    """
    c1, c2, c3 = widths
    lrelu = Act("leaky_relu", 0.2)
    layers = [
        Layer(DownConv(1, c1, rngs=rngs), lrelu),  # 14x14
        Layer(DownConv(c1, c2, rngs=rngs), lrelu),  # 7x7
        Layer(DownConv(c2, c3, rngs=rngs), lrelu, (Flatten(),)),  # 4x4
        Layer(nnx.Linear(4 * 4 * c3, hidden, rngs=rngs), lrelu),
        Layer(nnx.Linear(hidden, 1, rngs=rngs)),
    ]
    return Network(layers, ("conv1", "conv2", "conv3", "fc", "head"))


def mnist_classifier(*, widths=(32, 64), hidden: int = 128, rngs: nnx.Rngs) -> Network:
    """Small CNN (28, 28, 1) in [0, 1] -> 10 logits: conv1, conv2, fc1, logits."""
    c1, c2 = widths
    layers = [
        Layer(nnx.Conv(1, c1, (3, 3), padding="SAME", rngs=rngs), Act("relu"), (MaxPool(2, 2),)),
        Layer(nnx.Conv(c1, c2, (3, 3), padding="SAME", rngs=rngs), Act("relu"), (MaxPool(2, 2), Flatten())),
        Layer(nnx.Linear(7 * 7 * c2, hidden, rngs=rngs), Act("relu")),
        Layer(nnx.Linear(hidden, 10, rngs=rngs)),
    ]
    return Network(layers, ("conv1", "conv2", "fc1", "logits"))


ARCHITECTURES = {
    "dcgan_generator": dcgan_generator,
    "dcgan_critic": dcgan_critic,
    "mnist_classifier": mnist_classifier,
}
# Builders that read files stored beside the checkpoint (a Caffe prototxt), with the keyword
# arguments that name those files: they receive `directory=` (the model directory) in addition to
# their manifest kwargs, and `jaxprobe.load` checks each named file against its recorded sha256.
NEEDS_DIRECTORY: dict = {}


def register(name: str, builder, *, files: tuple = ()) -> None:
    """Make `builder(**kwargs, rngs=...)` loadable by name from a manifest's architecture record.

    `files` names the keyword arguments that name files in the model directory.
    """
    ARCHITECTURES[name] = builder
    if files:
        NEEDS_DIRECTORY[name] = tuple(files)
