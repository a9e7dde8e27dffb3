"""Griffe extension for the API pages: one row per parameter, each with its real default.

jaxprobe's docstrings document related parameters together (`lower, upper: per-unit bounds ...`,
`gen_params, cls_params: parameters (default the models' own)`). Griffe reads such an entry as
one parameter named "lower, upper", finds no such name in the signature, and mkdocstrings then
shows it as "required" although both default to None. This extension splits each such entry
into one entry per name, sharing the description, with the annotation and default of that name
in the signature. Names absent from the signature are left as written.
"""

from __future__ import annotations

import griffe


def split_parameters(obj) -> None:
    """Split the "a, b: ..." entries of `obj`'s Args section (a function, or a class whose
    `__init__` takes the parameters) into one entry per name, with its signature's default."""
    if not obj.docstring:
        return
    try:
        signature = obj.parameters
    except (AttributeError, ValueError, KeyError):
        return
    for section in obj.docstring.parsed:
        if not isinstance(section, griffe.DocstringSectionParameters):
            continue
        entries = []
        for entry in section.value:
            names = [n.strip() for n in entry.name.split(",")]
            if len(names) < 2 or not all(n in signature for n in names):
                entries.append(entry)
                continue
            entries += [griffe.DocstringParameter(name=n, annotation=signature[n].annotation,
                                                  value=signature[n].default, description=entry.description)
                        for n in names]
        section.value[:] = entries


class SplitParameters(griffe.Extension):
    """Apply `split_parameters` to every function and class griffe loads for the API pages."""

    def on_function(self, *, func, **kwargs) -> None:
        split_parameters(func)

    def on_class(self, *, cls, **kwargs) -> None:
        split_parameters(cls)
