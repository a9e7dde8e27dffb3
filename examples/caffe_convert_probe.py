"""Convert a Caffe network and probe one of its neurons.

By default the example writes its own small LeNet-style Caffe net (a deploy prototxt and a
caffemodel with random weights, serialized through jaxprobe's Caffe protobuf schema), so it runs
anywhere; `--prototxt P --caffemodel M` converts your own 28 x 28 gray-input classifier instead
(a trained LeNet gives recognisable digits). Then:

1. `weights_convert.convert_caffe` writes a model directory, and `jaxprobe.load` opens it (without
   `weights_convert`: the prototxt is stored beside the weights);
2. a check: one conv1 unit computed by hand in NumPy from the caffemodel's blob (Caffe's
   [out, in, kh, kw] layout, NCHW) equals the converted model's pre-activation;
3. DGN-AM with the shipped fc_generator maximizes each of four neurons of the converted net.

Writes OUT/model (the converted model directory) and OUT/caffe_dgn_am.png.

    python examples/caffe_convert_probe.py --out examples-out/caffe [--prototxt P --caffemodel M]
        [--neurons ip2:0 ip2:1 ip2:2 ip2:3] [--smoke]

`--smoke` (or JAXPROBE_EXAMPLES_SMOKE=1) runs a few steps only, to check that the example works.
"""

from __future__ import annotations

import argparse
import sys
import os
from pathlib import Path

import jax
import numpy as np

import jaxprobe
from jaxprobe.io import atomic_dir
from jaxprobe.experiments.figures import save_grid
from jaxprobe.models.caffe_schema import NetParameter
from weights_convert import convert_caffe, read_caffemodel

PROTOTXT = """name: "small_lenet"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 28 dim: 28 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 8 kernel_size: 5 } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
        convolution_param { num_output: 16 kernel_size: 5 } }
layer { name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1" inner_product_param { num_output: 64 } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2" inner_product_param { num_output: 10 } }
layer { name: "prob" type: "Softmax" bottom: "ip2" top: "prob" }
"""
# Blob shapes as Caffe stores them: Convolution [out, in, kh, kw], InnerProduct [out, in]; the
# inner product after pool2 reads the (16, 4, 4) blob flattened in C, H, W order.
BLOBS = {"conv1": (8, 1, 5, 5), "conv2": (16, 8, 5, 5), "ip1": (64, 256), "ip2": (10, 64)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="examples-out/caffe", help="directory for the model and the figure")
    p.add_argument("--force", action="store_true", help="replace --out even if jaxprobe did not write it")
    p.add_argument("--prototxt", default=None, help="your deploy prototxt (default: the example's own net)")
    p.add_argument("--caffemodel", default=None, help="your caffemodel (with --prototxt)")
    p.add_argument("--neurons", nargs="+", default=["ip2:0", "ip2:1", "ip2:2", "ip2:3"],
                   help="neurons of the converted net to maximize (layer:unit[@y,x])")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", default=os.environ.get("JAXPROBE_EXAMPLES_SMOKE") == "1",
                   help="a few steps only (also JAXPROBE_EXAMPLES_SMOKE=1)")
    return p.parse_args(argv)


def write_small_caffe_net(directory: Path, seed: int) -> tuple:
    """A deploy prototxt and a caffemodel with random weights (std 1/sqrt(fan-in)) in `directory`."""
    rng = np.random.default_rng(seed)
    net = NetParameter(name="small_lenet")
    for name, shape in BLOBS.items():
        layer = net.layer.add(name=name, type="Convolution" if name.startswith("conv") else "InnerProduct")
        weight = rng.normal(scale=1 / np.sqrt(np.prod(shape[1:])), size=shape)
        for array in (weight, rng.normal(scale=0.1, size=shape[0])):
            blob = layer.blobs.add()
            blob.shape.dim.extend(array.shape)
            blob.data.extend(array.astype(np.float32).ravel())
    prototxt, caffemodel = directory / "small_lenet.prototxt", directory / "small_lenet.caffemodel"
    prototxt.write_text(PROTOTXT)
    caffemodel.write_bytes(net.SerializeToString())
    return prototxt, caffemodel


def check_conv1_unit(model, caffemodel, rng) -> float:
    """|jaxprobe - NumPy| for conv1's unit 3 at (y, x) = (10, 12): the caffemodel's blob applied by
    hand to an NCHW image, against `neuron_values` (pre-activation) on the same image in NHWC."""
    blobs = read_caffemodel(caffemodel)
    w, b = blobs["conv1[0]"], blobs["conv1[1]"]  # [out, in, kh, kw], [out]
    x = rng.uniform(size=(1,) + model.input_shape).astype(np.float32)  # NHWC, in [0, 1]
    patch = np.transpose(x, (0, 3, 1, 2))[0, :, 10:10 + w.shape[2], 12:12 + w.shape[3]]
    by_hand = float(np.sum(w[3] * patch) + b[3])
    ours = float(jaxprobe.neuron_values(model, model.params, x, "conv1:3@10,12", nonlinear=False)[0, 0])
    return abs(ours - by_hand)


def main(argv=None) -> None:
    args = parse_args(argv)
    with atomic_dir(args.out, force=args.force, name="--out") as out:
        if (args.prototxt is None) != (args.caffemodel is None):
            raise SystemExit("give both --prototxt and --caffemodel, or neither")
        if args.prototxt is None:
            prototxt, caffemodel = write_small_caffe_net(out, args.seed)
        else:
            prototxt, caffemodel = Path(args.prototxt), Path(args.caffemodel)

        convert_caffe(prototxt, caffemodel, out / "model", force=False)
        net = jaxprobe.load(out / "model")
        print(f"converted {caffemodel.name}: input {net.input_shape}, pixels {net.pixels.channels} "
              f"[{net.pixels.low:g}, {net.pixels.high:g}]")
        for i, name in enumerate(net.layer_names, 1):
            print(f"  layer {i} {name}: pre-activation {net.layer_shape(i)}")
        if args.prototxt is None:
            print(f"conv1:3@10,12 by hand vs jaxprobe: |difference| = "
                  f"{check_conv1_unit(net, caffemodel, np.random.default_rng(args.seed)):.2e}")

        g = jaxprobe.load("fc_generator")
        r = jaxprobe.dgn_am(jax.random.PRNGKey(args.seed), g, net, args.neurons, steps=5 if args.smoke else 200,
                            step_size=(1.0, 1e-10), lower=0.0)
        save_grid(out / "caffe_dgn_am.png", np.asarray(g.pixels.to_canonical(r.images)), len(args.neurons),
                  "DGN-AM on the converted net: " + ", ".join(f"{n} {v:.2f}" for n, v in zip(r.neurons, r.values)))
        print("DGN-AM, last values: " + ", ".join(f"{n} {v:.3f}" for n, v in zip(r.neurons, np.asarray(r.values))))
        print(f"wrote {Path(args.out) / 'model'} and {Path(args.out) / 'caffe_dgn_am.png'}")


if __name__ == "__main__":
    try:
        main()
    except jaxprobe.JaxprobeError as e:  # bad input: one line and status 2, as the command line gives
        print(f"{Path(__file__).name}: error: {e}", file=sys.stderr)
        sys.exit(2)
