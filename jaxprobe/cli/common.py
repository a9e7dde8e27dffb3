"""What every command shares: loading a model named on the command line, a progress bar."""

from __future__ import annotations

import sys
from contextlib import contextmanager

from jaxprobe.errors import JaxprobeError


def load_model(name: str, argument: str, role: str):
    """`jaxprobe.load(name)` with errors naming the command-line argument and the expected role."""
    from jaxprobe import load  # through the package: the converted architectures are registered first

    try:
        model = load(name)
    except JaxprobeError as err:
        raise JaxprobeError(f"{argument}: {err}") from None
    if model.role != role:
        raise JaxprobeError(f"{argument}: expected a {role}, got {name!r} whose role is {model.role!r}")
    return model


class _Hook:
    """The function the commands hand to the methods' `progress=` hooks: update(done, total=None)
    moves the current bar to `done` (never back) and adopts a `total` the library reports. The bar
    opens at the first tick, so that an error found before any work prints its one line alone.

    One object for every bar: the methods compile their hook in as a static argument, so a new
    function per command would compile new programs when commands run in one process (the tests,
    the report)."""

    options = None  # tqdm's arguments while a `progress_bar` block is open
    bar = None

    def __call__(self, done, total=None) -> None:
        if self.options is None:
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(**self.options)
        bar = self.bar
        if total is not None and bar.total != total:
            bar.total = int(total)
        bar.update(max(int(done) - bar.n, 0))


_HOOK = _Hook()


def bar_open() -> bool:
    """Whether a progress bar is on the terminal now (its line not yet ended): the commands' bar,
    or any other tqdm bar still open (the report's sections)."""
    if _HOOK.bar is not None:
        return True
    std = sys.modules.get("tqdm.std")
    return bool(std is not None and getattr(std.tqdm, "_instances", None))


@contextmanager
def progress_bar(desc: str, unit: str, total: int | None = None):
    """A tqdm bar on stderr for the duration of the block, yielding the progress hook that moves it."""
    _HOOK.options = dict(total=total, desc=desc, unit=unit, dynamic_ncols=True)
    try:
        yield _HOOK
    finally:
        if _HOOK.bar is not None:
            _HOOK.bar.close()
        _HOOK.options = _HOOK.bar = None
