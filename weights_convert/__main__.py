"""Command line: convert Caffe or PyTorch/safetensors weights into a jaxprobe model directory.

    python -m weights_convert caffe --prototxt P --caffemodel M --out DIR
    python -m weights_convert torch FILE --arch NAME --out DIR

`add_subcommands(subparsers)` adds the same `caffe` and `torch` commands to another parser (the
`jaxprobe convert` command). Bad input prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import sys


def _floats(text: str):
    try:
        return tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def _summary(model, out) -> None:
    shapes = model.layer_shapes()
    print(f"wrote {out}: {model.role}, input {model.input_shape}, output {model.output_shape()}")
    for i, name in enumerate(model.layer_names, 1):
        print(f"{i:>3}  {name:<14} {shapes[name]}")
    for f in model.manifest["source"]["files"]:
        print(f"source {f['name']} ({f['format']}) sha256 {f['sha256']}")


def _cmd_caffe(args) -> None:
    from jaxprobe.errors import JaxprobeError
    from weights_convert.caffe import convert_caffe

    if args.range is not None and len(args.range) != 2:
        raise JaxprobeError(f"range: expected two numbers low,high, got {len(args.range)}")

    model = convert_caffe(args.prototxt, args.caffemodel, args.out, arch=args.arch, role=args.role,
                          channels=args.channels, mean=args.mean, scale=args.scale, value_range=args.range,
                          force=args.force)
    _summary(model, args.out)


def _cmd_torch(args) -> None:
    from weights_convert.torch_files import convert_torch

    model = convert_torch(args.file, args.arch, args.out, key=args.key, force=args.force)
    _summary(model, args.out)


def add_subcommands(subparsers) -> None:
    """Add the `caffe` and `torch` commands (each sets `func`) to an argparse subparsers object."""
    from weights_convert.mapping import ARCHITECTURES, CAFFE_ARCHITECTURES

    p = subparsers.add_parser("caffe", help="convert a Caffe deploy prototxt + caffemodel")
    p.add_argument("--prototxt", default=None, help="deploy .prototxt (new `layer` or legacy `layers`)")
    p.add_argument("--arch", default=None, choices=sorted(CAFFE_ARCHITECTURES),
                   help="a known architecture instead of --prototxt (widths read from the caffemodel)")
    p.add_argument("--caffemodel", required=True, help="trained .caffemodel")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--force", action="store_true", help="replace --out even if jaxprobe did not write it")
    p.add_argument("--role", default=None, choices=("classifier", "generator", "critic"),
                   help="default: the arch's, else classifier")
    p.add_argument("--channels", default=None, choices=("gray", "RGB", "BGR"),
                   help="input channel order (default: gray for 1 channel, BGR for 3)")
    p.add_argument("--mean", type=_floats, default=None, help="per-channel mean subtracted, e.g. 104,117,123")
    p.add_argument("--scale", type=float, default=None, help="scale applied after the mean (default 1)")
    p.add_argument("--range", type=_floats, default=None,
                   help="pixel value range before the mean, e.g. 0,255 (default 0,1 gray; 0,255 colour)")
    p.set_defaults(func=_cmd_caffe)

    p = subparsers.add_parser("torch", help="convert a PyTorch .pth/.pt or .safetensors state dict")
    p.add_argument("file", help="the weights file")
    p.add_argument("--arch", required=True, choices=sorted(ARCHITECTURES),
                   help="architecture of the state dict (a state dict carries none)")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--force", action="store_true", help="replace --out even if jaxprobe did not write it")
    p.add_argument("--key", default=None, help="dotted key of the state dict inside a larger checkpoint")
    p.set_defaults(func=_cmd_torch)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m weights_convert", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv=None) -> int:
    from jaxprobe.errors import run_command

    return run_command("weights_convert", build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
