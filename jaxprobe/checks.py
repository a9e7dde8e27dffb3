"""Shape, dtype and value checks at the API boundary, with messages a user can act on."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxprobe.errors import JaxprobeError


def check_batch(name: str, x, example_shape: Sequence[int], *, what: str = "") -> None:
    """Raise unless `x` is a floating array of shape (batch, *example_shape).

    Works on tracers too (shapes and dtypes are static), so it costs nothing under jit.
    """
    example_shape = tuple(int(d) for d in example_shape)
    shape = getattr(x, "shape", None)
    if shape is None:
        raise JaxprobeError(f"{name}: expected an array of shape (batch, {_fmt(example_shape)}), got {type(x).__name__}")
    ctx = f" for {what}" if what else ""
    if tuple(shape[1:]) != example_shape or len(shape) != len(example_shape) + 1:
        raise JaxprobeError(
            f"{name}: expected shape (batch, {_fmt(example_shape)}){ctx}, got {tuple(shape)}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise JaxprobeError(f"{name}: expected a floating dtype{ctx}, got {x.dtype}")


def check_finite(name: str, x) -> None:
    """Raise if a concrete array holds NaN or inf (skipped for tracers, which have no values)."""
    if isinstance(x, jax.core.Tracer):
        return
    if not bool(np.all(np.isfinite(np.asarray(x)))):
        raise JaxprobeError(f"{name}: expected finite values, got NaN or inf")


def check_positive(name: str, value, *, strict: bool = True) -> None:
    """Raise unless `value` is a finite number > 0 (>= 0 when not `strict`), naming `name`."""
    if not np.isfinite(value) or (value <= 0 if strict else value < 0):
        raise JaxprobeError(f"{name}: expected a {'positive' if strict else 'non-negative'} number, got {value}")


def check_number(name: str, value, *, low=None, high=None, low_open: bool = False, high_open: bool = False,
                 what: str = "a number") -> float:
    """A finite real number (not a bool) within [low, high] (an end open where `*_open`; None: no
    bound), returned as float; raise naming `name`, `what` it should be and the interval otherwise."""
    lo = "-inf" if low is None else low
    hi = "inf" if high is None else high
    interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
    expected = f"expected {what or 'a number'} in {interval}"
    try:
        ok = not isinstance(value, bool) and np.ndim(value) == 0 and bool(np.isfinite(float(value)))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise JaxprobeError(f"{name}: {expected}, got {value!r}")
    v = float(value)
    if low is not None and (v <= low if low_open else v < low):
        raise JaxprobeError(f"{name}: {expected}, got {value!r}")
    if high is not None and (v >= high if high_open else v > high):
        raise JaxprobeError(f"{name}: {expected}, got {value!r}")
    return v


def check_count(name: str, value, minimum: int) -> int:
    """An integer (not a bool) >= minimum, returned as int; raise naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise JaxprobeError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _fmt(shape) -> str:
    return ", ".join(str(d) for d in shape)


def with_settings(cls, options, settings: dict, *, what: str | None = None):
    """`options` (an instance of the NamedTuple `cls`, or None for its defaults) with the fields
    named in `settings` replaced: how every method's entry point takes its options tuple's fields by
    keyword. A name that is not a field of `cls` is one `JaxprobeError` line naming it ("NAME: not
    `what`", `what` defaulting to "a setting of CLS"), as is an `options` of another type."""
    if options is None:
        options = cls()
    elif not isinstance(options, cls):
        raise JaxprobeError(f"options: expected a {cls.__name__} or None, got {type(options).__name__}")
    unknown = sorted(set(settings) - set(cls._fields))
    if unknown:
        raise JaxprobeError(f"{', '.join(unknown)}: not {what or f'a setting of {cls.__name__}'} (expected one of "
                            f"{', '.join(cls._fields)})")
    return options._replace(**settings)
