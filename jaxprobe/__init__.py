"""jaxprobe: look inside deep networks by sampling through generators, in JAX.

Models (bottom floor) expose the probe protocol: `forward`, `up_to` (pre-activation at layer l)
and `from_` (the rest), pure functions of (params, input). Methods (middle floor) know models only
through it; the CLI and the report sit on top.

Every public name (`__all__`) is imported from its module on first access (PEP 562), so that
`import jaxprobe` and `jaxprobe --help` do not wait for JAX to import.
"""

import importlib as _importlib

from jaxprobe.errors import JaxprobeError  # noqa: F401  (public; no JAX behind it: eager)

__version__ = "0.1.0"

# Where each public name lives: {module: "name name public=private ..."} (the table is the one list;
# `__all__` and `_WHERE` are derived from it).
_EXPORTS = {
    "jaxprobe.errors": "JaxprobeError",
    "jaxprobe.models.layers": "Layer Network",
    "jaxprobe.models.pixels": "adapt_images center_crop convert_pixels PixelConvention",
    "jaxprobe.models.probe": "Model",
    "jaxprobe.models.store": "load save_model SHIPPED",
    "jaxprobe.models.neurons": "Neuron neuron_values parse_neuron resolve_neuron resolve_neurons",
    "jaxprobe.sharding": "batch_mesh gather on_mesh replicate shard_batch",
    "jaxprobe.driver": "Kernel run RunResult",
    "jaxprobe.train.data": "load_mnist",
    "jaxprobe.train.quality": "classifier_accuracy generator_quality reconstruction_accuracy",
    # Methods (middle floor).
    "jaxprobe.gbas.boundaries": "check_indicator halfspace layer_size preactivation region_margin region_membership",
    "jaxprobe.gbas.beropt": "beropt BerOptOptions BerOptResult BerOptState default_lambda",
    "jaxprobe.gbas.gbrrt": "GBRRT gbrrt gbrrt_kernel gbrrt_queries gbrrt_run GBRRTOptions GBRRTResult GBRRTState "
                           "stop_reason_name",
    "jaxprobe.gbas.epsball": "eps_l2 eps_linf log_ball_volume sample_l2_ball sample_linf_ball",
    "jaxprobe.gbas.egbas": "egbas EGBASOptions EGBASResult",
    "jaxprobe.gbas.metrics": "feature_similarity sample_sigma",
    "jaxprobe.inverse_sets.auglag": "AugLag auglag_run=run AugLagState augmented_lagrangian feasible",
    "jaxprobe.inverse_sets.inverse_set": "default_embedding Embedding inverse_set InverseSet InverseSetNets "
                                         "InverseSetOptions mean_pairwise_distance",
    "jaxprobe.codespace.dgn_am": "dgn_am dgn_am_kernel dgn_am_run DGNAMNets DGNAMOptions DGNAMResult DGNAMState",
    "jaxprobe.codespace.ppgn": "Denoiser encoder_prior ppgn ppgn_kernel ppgn_run PPGNNets PPGNOptions PPGNResult "
                               "PPGNState",
    "jaxprobe.codespace.excite": "excite excite_run excite_step ExciteNets ExciteOptions ExciteResult ExciteState",
}
# public name -> (module, attribute)
_WHERE = {public: (module, private or public)
          for module, names in _EXPORTS.items()
          for public, _, private in (entry.partition("=") for entry in names.split())}
__all__ = sorted(_WHERE, key=str.lower)

# Imported (for their side effect) before any public name is handed out: they register the
# converted architectures in `jaxprobe.models.zoo`, so `load(DIR)` rebuilds a converted model
# without importing `weights_convert`.
_REGISTERING = ("jaxprobe.models.caffe_net", "jaxprobe.models.archs_small", "jaxprobe.models.archs_paper",
                "jaxprobe.models.dae", "jaxprobe.models.excite_gen")
# Subpackages reachable as attributes of a bare `import jaxprobe`, as when this module imported them.
_SUBPACKAGES = ("cli", "codespace", "checks", "driver", "errors", "experiments", "gbas", "inverse_sets", "io", "models",
                "report", "sharding", "train")


def __getattr__(name: str):
    if name in _WHERE:
        for module in _REGISTERING:
            _importlib.import_module(module)
        module, attribute = _WHERE[name]
        value = getattr(_importlib.import_module(module), attribute)
        globals()[name] = value  # later look-ups skip this function
        return value
    if name in _SUBPACKAGES:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
