"""One module per method's command-line commands (top floor).

Each module listed in `MODULES` defines `add_commands(sub, reproduce)`: it adds its command to
`sub` (the `jaxprobe` subparsers) and its paper reproduction to `reproduce` (the subparsers of
`jaxprobe reproduce`), each parser setting `func(args)`.
"""

MODULES = ("egbas", "inverse_set")
