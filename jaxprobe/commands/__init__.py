"""One module per method's command-line commands (top floor).

Each module listed in `MODULES` defines `add_commands(sub, reproduce)`: it adds its command to
`sub` (the `jaxprobe` subparsers) and its paper reproduction to `reproduce` (the subparsers of
`jaxprobe reproduce`), each parser setting `func(args)`.
"""

MODULES = ("egbas", "inverse_set")

from jaxprobe.errors import JaxprobeError

def load_model(name: str, argument: str, role: str):
    """`jaxprobe.load(name)` with errors naming the command-line argument and the expected role."""
    from jaxprobe.store import load

    try:
        model = load(name)
    except JaxprobeError as err:
        raise JaxprobeError(f"{argument}: {err}") from None
    if model.role != role:
        raise JaxprobeError(f"{argument}: expected a {role}, got {name!r} whose role is {model.role!r}")
    return model
