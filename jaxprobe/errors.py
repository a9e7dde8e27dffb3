"""The one exception type jaxprobe raises for bad input.

`JaxprobeError` subclasses `ValueError` so that callers who already catch
`ValueError` keep working; the CLI prints its message as one line and exits 2.
"""


class JaxprobeError(ValueError):
    """Bad input to a jaxprobe function: the message names the argument and what was expected."""


def run_command(prog: str, args) -> int:
    """Run a parsed command line's `args.func(args)` and return the exit status.

    Bad input (a `JaxprobeError`) prints one line `prog: error: ...` on stderr and gives 2, or
    raises with its traceback when `args.debug` is set; Ctrl-C prints one line and gives 130.
    """
    import sys

    try:
        args.func(args)
    except JaxprobeError as e:
        if getattr(args, "debug", False):
            raise
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0
