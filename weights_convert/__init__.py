"""weights_convert: third-party weights (Caffe, PyTorch, safetensors) into jaxprobe model directories.

It parses files and maps weights; the models themselves live in `jaxprobe` (`jaxprobe.models.caffe_net`,
`jaxprobe.models.archs_small`), so a converted directory loads with `jaxprobe.load(DIR)` without this
package. A network no table describes converts from a Caffe prototxt of it plus a key map
(`user_network`), or from a builder of the caller's own plus `Rule`s (`torch_model` with an `Arch`).
Command line: `python -m weights_convert caffe|torch ...` (also `jaxprobe convert`).
Every failure raises `jaxprobe.JaxprobeError`.
"""

from jaxprobe.models.caffe_spec import read_prototxt
from weights_convert.caffe import caffe_model, convert_caffe, read_caffemodel
from weights_convert.mapping import ARCHITECTURES, Arch, Rule, map_weights
from weights_convert.torch_files import convert_torch, load_state_dict, read_torch_zip, save_torch_zip, torch_model
from weights_convert.user_network import convert_torch_prototxt, read_key_map, torch_prototxt_model

__all__ = [
    "ARCHITECTURES",
    "Arch",
    "Rule",
    "caffe_model",
    "convert_caffe",
    "convert_torch",
    "convert_torch_prototxt",
    "load_state_dict",
    "map_weights",
    "read_caffemodel",
    "read_key_map",
    "read_prototxt",
    "read_torch_zip",
    "save_torch_zip",
    "torch_model",
    "torch_prototxt_model",
]
