"""weights_convert: third-party weights (Caffe, PyTorch, safetensors) into jaxprobe model directories.

It parses files and maps weights; the models themselves live in `jaxprobe` (`jaxprobe.models.caffe_net`,
`jaxprobe.models.archs_small`), so a converted directory loads with `jaxprobe.load(DIR)` without this
package. Command line: `python -m weights_convert caffe|torch ...` (also `jaxprobe convert`).
Every failure raises `jaxprobe.JaxprobeError`.
"""

from jaxprobe.models.caffe_spec import read_prototxt
from weights_convert.caffe import caffe_model, convert_caffe, read_caffemodel
from weights_convert.mapping import ARCHITECTURES, Arch, Rule, map_weights
from weights_convert.torch_files import convert_torch, load_state_dict, read_torch_zip, save_torch_zip, torch_model

__all__ = [
    "ARCHITECTURES",
    "Arch",
    "Rule",
    "caffe_model",
    "convert_caffe",
    "convert_torch",
    "load_state_dict",
    "map_weights",
    "read_caffemodel",
    "read_prototxt",
    "read_torch_zip",
    "save_torch_zip",
    "torch_model",
]
