"""jaxprobe: look inside deep networks by sampling through generators, in JAX.

Models (bottom floor) expose the probe protocol: `forward`, `up_to` (pre-activation at layer l)
and `from_` (the rest), pure functions of (params, input). Methods (middle floor) know models only
through it; the CLI and the report sit on top.
"""

from jaxprobe.errors import JaxprobeError
from jaxprobe.layers import Layer, Network
from jaxprobe.pixels import PixelConvention, center_crop, convert_pixels
from jaxprobe.probe import Model
from jaxprobe.store import SHIPPED, load, save_model
from jaxprobe.data import load_mnist
from jaxprobe.quality import classifier_accuracy, generator_quality, reconstruction_accuracy

__version__ = "0.1.0"

__all__ = [
    "JaxprobeError",
    "Layer",
    "Model",
    "Network",
    "PixelConvention",
    "SHIPPED",
    "center_crop",
    "classifier_accuracy",
    "convert_pixels",
    "generator_quality",
    "load",
    "load_mnist",
    "reconstruction_accuracy",
    "save_model",
]
