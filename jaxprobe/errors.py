"""The one exception type jaxprobe raises for bad input.

`JaxprobeError` subclasses `ValueError` so that callers who already catch
`ValueError` keep working; the CLI prints its message as one line and exits 2.
"""


class JaxprobeError(ValueError):
    """Bad input to a jaxprobe function: the message names the argument and what was expected."""
