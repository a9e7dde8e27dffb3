"""A denoising autoencoder on a generator's codes h: the learned prior of PPGN-h.

Nguyen et al. 2017 ("PPGN-h") model p(h) with a multi-layer perceptron R_h trained to
remove Gaussian noise from codes h = E(x) of real images; by Alain & Bengio 2014,
(R_h(h) - h) / sigma^2 approximates grad log p(h), the epsilon1 term of their eq. 11. The
network is probe-able like every model (docs/probe-protocol.md): layers fc1..fcK (hidden, ReLU) and `out`
(the reconstruction), registered in `jaxprobe.models.zoo` as the builder "h_dae". Its input and
output both have the code's shape.
"""

from __future__ import annotations

from flax import nnx

from jaxprobe.errors import JaxprobeError
from jaxprobe.models import zoo
from jaxprobe.models.layers import Act, Layer, Network

ROLE = "denoiser"


def h_dae(*, code_dim: int = 128, hidden=(256, 256), output: str = "relu", rngs: nnx.Rngs) -> Network:
    """MLP code (code_dim,) -> reconstructed code (code_dim,).

    Args:
      code_dim: the code's length (the generator's input, e.g. fc_generator's 128 fc1 features).
      hidden: widths of the hidden layers fc1, fc2, ... (ReLU).
      output: the `out` layer's nonlinearity: "relu" for codes read after a ReLU (they are never
        negative, as fc_generator's and DeePSim's fc6 codes), "identity" otherwise.
    """
    widths = [int(code_dim)] + [int(w) for w in hidden]
    if min(widths) < 1:
        raise JaxprobeError(f"h_dae: expected positive code_dim and hidden widths, got {code_dim}, {list(hidden)}")
    if output not in ("relu", "identity"):
        raise JaxprobeError(f"h_dae: output: expected 'relu' or 'identity', got {output!r}")
    layers = [Layer(nnx.Linear(a, b, rngs=rngs), Act("relu")) for a, b in zip(widths[:-1], widths[1:])]
    layers.append(Layer(nnx.Linear(widths[-1], int(code_dim), rngs=rngs), Act(output)))
    return Network(layers, tuple(f"fc{i + 1}" for i in range(len(hidden))) + ("out",))


zoo.register("h_dae", h_dae)

__all__ = ["ROLE", "h_dae"]
