"""weights_convert: third-party weights (Caffe, PyTorch, safetensors) into jaxprobe model directories.

It parses files and maps weights; the models themselves live in `jaxprobe` (`jaxprobe.models.caffe_net`,
`jaxprobe.models.archs_small`), so a converted directory loads with `jaxprobe.load(DIR)` without this
package. A network no table describes converts from a Caffe prototxt of it plus a key map
(`user_network`), or from a builder of the caller's own plus `Rule`s (`torch_model` with an `Arch`).
Command line: `python -m weights_convert caffe|torch ...` (also `jaxprobe convert`).
Every failure raises `jaxprobe.JaxprobeError`.

Every public name is imported from its module on first access (PEP 562), so that building the
`jaxprobe convert` parser (`jaxprobe --help`) does not import JAX.
"""

import importlib

_EXPORTS = {
    "jaxprobe.models.caffe_spec": ("read_prototxt",),
    "weights_convert.caffe": ("caffe_model", "convert_caffe", "read_caffemodel"),
    "weights_convert.mapping": ("ARCHITECTURES", "Arch", "Rule", "map_weights"),
    "weights_convert.torch_files": ("convert_torch", "load_state_dict", "read_torch_zip", "torch_model"),
    "weights_convert.user_network": ("convert_torch_prototxt", "read_key_map", "torch_prototxt_model"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE, key=lambda name: (not name.isupper(), name.lower()))


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
