"""What every command shares: loading a model named on the command line."""

from jaxprobe.errors import JaxprobeError


def load_model(name: str, argument: str, role: str):
    """`jaxprobe.load(name)` with errors naming the command-line argument and the expected role."""
    from jaxprobe.models.store import load

    try:
        model = load(name)
    except JaxprobeError as err:
        raise JaxprobeError(f"{argument}: {err}") from None
    if model.role != role:
        raise JaxprobeError(f"{argument}: expected a {role}, got {name!r} whose role is {model.role!r}")
    return model
