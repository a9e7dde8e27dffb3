"""Command line: convert Caffe or PyTorch/safetensors weights into a jaxprobe model directory.

    python -m weights_convert caffe --prototxt P --caffemodel M --out DIR
    python -m weights_convert torch FILE --arch NAME --out DIR
    python -m weights_convert torch FILE --prototxt NET.prototxt [--map MAP.json] --out DIR

`add_subcommands(subparsers)` adds the same `caffe` and `torch` commands to another parser (the
`jaxprobe convert` command) without importing JAX: the architecture tables are read when a value
of --arch is checked or listed. Bad input prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import sys


def _floats(text: str):
    """Finite numbers separated by commas or spaces (at most 4: a range or a per-channel mean)."""
    import math

    try:
        values = tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text[:80]!r}") from None
    if not values or len(values) > 4:
        raise argparse.ArgumentTypeError(f"expected 1 to 4 numbers separated by commas, got {text[:80]!r}")
    if not all(math.isfinite(v) and abs(v) < 1e30 for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers (|x| < 1e30), got {text[:80]!r}")
    return values


def _scale(text: str) -> float:
    """A finite positive number."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text[:80]!r}") from None
    if not (math.isfinite(value) and 1e-30 < value < 1e30):
        raise argparse.ArgumentTypeError(f"expected a finite positive number, got {text[:80]!r}")
    return value


def _summary(model, out) -> None:
    shapes = model.layer_shapes()
    print(f"wrote {out}: {model.role}, input {model.input_shape}, output {model.output_shape()}")
    for i, name in enumerate(model.layer_names, 1):
        print(f"{i:>3}  {name:<14} {shapes[name]}")
    for f in model.manifest["source"]["files"]:
        print(f"source {f['name']} ({f['format']}) sha256 {f['sha256']}")


def _cmd_caffe(args) -> None:
    from weights_convert.caffe import convert_caffe

    _check_range(args.range)
    from weights_convert.latent import parse_latent

    model = convert_caffe(args.prototxt, args.caffemodel, args.out, arch=args.arch, role=args.role,
                          channels=args.channels, mean=args.mean, scale=args.scale, value_range=args.range,
                          latent=parse_latent(args.latent), force=args.force)
    _summary(model, args.out)


def _cmd_torch(args) -> None:
    from jaxprobe.errors import JaxprobeError

    if (args.arch is None) == (args.prototxt is None):
        raise JaxprobeError("arch: give either --arch NAME (a known architecture) or --prototxt NET.prototxt "
                            "(your own network), not both or neither")
    own = dict(role=args.role, channels=args.channels, mean=args.mean, scale=args.scale, range=args.range,
               latent=args.latent)
    if args.prototxt is None:
        given = [f"--{k}" for k, v in own.items() if v is not None] + (["--map"] if args.map else [])
        if given:
            raise JaxprobeError(f"arch: {', '.join(given)} describe a --prototxt network; --arch {args.arch} "
                                "has its own")
        from weights_convert.torch_files import convert_torch

        model = convert_torch(args.file, args.arch, args.out, key=args.key, force=args.force)
    else:
        from weights_convert.user_network import convert_torch_prototxt

        _check_range(args.range)
        from weights_convert.latent import parse_latent

        model = convert_torch_prototxt(args.file, args.prototxt, args.out, key_map=args.map, key=args.key,
                                       role=args.role or "classifier", channels=args.channels, mean=args.mean,
                                       scale=args.scale, value_range=args.range, latent=parse_latent(args.latent),
                                       force=args.force)
    _summary(model, args.out)


def _check_range(value) -> None:
    from jaxprobe.errors import JaxprobeError

    if value is not None and len(value) != 2:
        raise JaxprobeError(f"range: expected two numbers low,high, got {len(value)}")
    if value is not None and not value[0] < value[1]:
        raise JaxprobeError(f"range: expected low < high, got {value[0]:g},{value[1]:g}")


def _pixel_options(p, role_default: str, color: str, range_default: str) -> None:
    p.add_argument("--role", default=None, choices=("classifier", "generator", "critic"),
                   help=f"default: {role_default}")
    p.add_argument("--channels", default=None, choices=("gray", "RGB", "BGR"),
                   help=f"input (a generator's: output) channel order (default: gray for 1 channel, {color} for 3)")
    p.add_argument("--mean", type=_floats, default=None, help="per-channel mean subtracted, e.g. 104,117,123")
    p.add_argument("--scale", type=_scale, default=None, help="scale applied after the mean (default 1)")
    p.add_argument("--range", type=_floats, default=None,
                   help=f"pixel value range before the mean, e.g. 0,255 (default {range_default})")
    p.add_argument("--latent", default=None, metavar="PRIOR:DIM",
                   help="a generator's latent prior, normal:DIM or uniform:DIM (e.g. normal:512), or none; "
                        "E-GBAS samples queries from it")


class _Architectures:
    """The names of `weights_convert.mapping.<table>`, read on first use: argparse only tests
    membership (parsing --arch) and iterates (help, errors), so building the parser imports nothing."""

    def __init__(self, table: str):
        self.table = table

    def _names(self) -> list:
        import importlib

        return sorted(getattr(importlib.import_module("weights_convert.mapping"), self.table))

    def __contains__(self, name) -> bool:
        return name in self._names()

    def __iter__(self):
        return iter(self._names())


def add_subcommands(subparsers) -> None:
    """Add the `caffe` and `torch` commands (each sets `func`) to an argparse subparsers object."""
    p = subparsers.add_parser("caffe", help="convert a Caffe deploy prototxt + caffemodel")
    p.add_argument("--prototxt", default=None, help="deploy .prototxt (new `layer` or legacy `layers`)")
    p.add_argument("--arch", default=None, choices=_Architectures("CAFFE_ARCHITECTURES"), metavar="NAME",
                   help="a known architecture instead of --prototxt (widths read from the caffemodel): "
                        "%(choices)s")
    p.add_argument("--caffemodel", required=True, help="trained .caffemodel")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--force", action="store_true", help="replace --out even if jaxprobe did not write it")
    _pixel_options(p, "the arch's, else classifier", "BGR", "0,1 gray; 0,255 colour")
    p.set_defaults(func=_cmd_caffe)

    p = subparsers.add_parser("torch", help="convert a PyTorch .pth/.pt or .safetensors state dict")
    p.add_argument("file", help="the weights file")
    p.add_argument("--arch", default=None, choices=_Architectures("ARCHITECTURES"), metavar="NAME",
                   help="a known architecture of the state dict (a state dict carries none): %(choices)s")
    p.add_argument("--prototxt", default=None,
                   help="instead of --arch: your network in Caffe's text format, copied into --out")
    p.add_argument("--map", default=None,
                   help="with --prototxt: JSON {state dict key: tensor name such as conv1.weight, or null}; "
                        "default: the state dict's order")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--force", action="store_true", help="replace --out even if jaxprobe did not write it")
    p.add_argument("--key", default=None, help="dotted key of the state dict inside a larger checkpoint")
    _pixel_options(p, "classifier (with --prototxt)", "RGB", "0,1; a generator's output -1,1")
    p.set_defaults(func=_cmd_torch)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m weights_convert", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv=None) -> int:
    from jaxprobe.errors import JaxprobeError, run_command
    from jaxprobe.io import short_error

    args = build_parser().parse_args(argv)
    func = args.func

    def run(a):
        try:
            func(a)
        except JaxprobeError as e:
            raise short_error(e) from None

    args.func = run
    return run_command("weights_convert", args)


if __name__ == "__main__":
    sys.exit(main())
