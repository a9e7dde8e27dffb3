"""Trainer settings NamedTuples: replacing named fields, refusing unknown names."""

from __future__ import annotations

from jaxprobe.errors import JaxprobeError


def with_settings(cls, options, settings: dict):
    """`options` (an instance of the NamedTuple `cls`, or None for its defaults) with the fields
    named in `settings` replaced; a name that is not a field of `cls` is one `JaxprobeError` line naming it."""
    if options is None:
        options = cls()
    elif not isinstance(options, cls):
        raise JaxprobeError(f"options: expected a {cls.__name__} or None, got {type(options).__name__}")
    unknown = sorted(set(settings) - set(cls._fields))
    if unknown:
        raise JaxprobeError(f"{', '.join(unknown)}: not a setting of {cls.__name__} (expected one of "
                            f"{', '.join(cls._fields)})")
    return options._replace(**settings)
