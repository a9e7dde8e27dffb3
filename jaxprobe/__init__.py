"""jaxprobe: look inside deep networks by sampling through generators, in JAX.

Models (bottom floor) expose the probe protocol: `forward`, `up_to` (pre-activation at layer l)
and `from_` (the rest), pure functions of (params, input). Methods (middle floor) know models only
through it; the CLI and the report sit on top.
"""

from jaxprobe.errors import JaxprobeError
from jaxprobe.models.layers import Layer, Network
from jaxprobe.models.pixels import PixelConvention, center_crop, convert_pixels
from jaxprobe.models.probe import Model
from jaxprobe.models.store import SHIPPED, load, save_model
from jaxprobe.train.data import load_mnist
from jaxprobe.sharding import batch_mesh, replicate, shard_batch
from jaxprobe.train.quality import classifier_accuracy, generator_quality, reconstruction_accuracy
# Imported for their side effect: they register the converted architectures in `jaxprobe.models.zoo`,
# so `load(DIR)` rebuilds a converted model without importing `weights_convert`.
import jaxprobe.models.caffe_net  # noqa: F401,E402
import jaxprobe.models.archs_small  # noqa: F401,E402
import jaxprobe.models.archs_paper  # noqa: F401,E402
import jaxprobe.models.dae  # noqa: F401,E402

# Methods (middle floor).
from jaxprobe.gbas.boundaries import (check_indicator, halfspace, layer_size, preactivation, region_margin,
                                 region_membership)
from jaxprobe.gbas.beropt import BerOptResult, beropt, default_lambda
from jaxprobe.gbas.gbrrt import (GBRRT, GBRRTResult, GBRRTState, gbrrt, gbrrt_kernel, gbrrt_run, gbrrt_sequential,
                            gbrrt_sequential_run, stop_reason_name)
from jaxprobe.gbas.epsball import eps_l2, eps_linf, log_ball_volume, sample_l2_ball, sample_linf_ball
from jaxprobe.gbas.egbas import EGBASResult, egbas
from jaxprobe.gbas.metrics import feature_similarity, sample_sigma
from jaxprobe.models.neurons import Neuron, neuron_values, parse_neuron, resolve_neuron, resolve_neurons
from jaxprobe.inverse_sets.auglag import AugLag, AugLagState, augmented_lagrangian, feasible
from jaxprobe.inverse_sets.auglag import run as auglag_run
from jaxprobe.inverse_sets.inverse_set import Embedding, InverseSet, default_embedding, inverse_set, mean_pairwise_distance
from jaxprobe.codespace.dgn_am import DGNAMResult, dgn_am, dgn_am_kernel, dgn_am_run
from jaxprobe.codespace.ppgn import Denoiser, PPGNResult, encoder_prior, ppgn, ppgn_kernel, ppgn_run
from jaxprobe.models.pixels import adapt_images

__version__ = "0.1.0"

__all__ = [
    "adapt_images",
    "AugLag",
    "auglag_run",
    "AugLagState",
    "augmented_lagrangian",
    "batch_mesh",
    "beropt",
    "BerOptResult",
    "center_crop",
    "check_indicator",
    "classifier_accuracy",
    "convert_pixels",
    "default_embedding",
    "default_lambda",
    "Denoiser",
    "dgn_am",
    "dgn_am_kernel",
    "dgn_am_run",
    "DGNAMResult",
    "egbas",
    "EGBASResult",
    "Embedding",
    "encoder_prior",
    "eps_l2",
    "eps_linf",
    "feasible",
    "feature_similarity",
    "gbrrt",
    "GBRRT",
    "gbrrt_kernel",
    "gbrrt_run",
    "gbrrt_sequential",
    "gbrrt_sequential_run",
    "GBRRTResult",
    "GBRRTState",
    "generator_quality",
    "halfspace",
    "inverse_set",
    "InverseSet",
    "JaxprobeError",
    "Layer",
    "layer_size",
    "load",
    "load_mnist",
    "log_ball_volume",
    "mean_pairwise_distance",
    "Model",
    "Network",
    "Neuron",
    "neuron_values",
    "parse_neuron",
    "PixelConvention",
    "ppgn",
    "ppgn_kernel",
    "ppgn_run",
    "PPGNResult",
    "preactivation",
    "reconstruction_accuracy",
    "region_margin",
    "region_membership",
    "replicate",
    "resolve_neuron",
    "resolve_neurons",
    "sample_l2_ball",
    "sample_linf_ball",
    "sample_sigma",
    "save_model",
    "shard_batch",
    "SHIPPED",
    "stop_reason_name",
]
