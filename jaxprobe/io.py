"""Writing results: atomic files and directories (outputs appear whole or not at all), strict JSON,
and numbers as text."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(path, suffix: str = ""):
    """Yield a temporary path beside `path`; on success it is renamed to `path`, on error removed.

    `suffix` keeps the extension for writers that infer the format from it (matplotlib).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it owner-only; a plain open() would not
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path, text: str) -> Path:
    """Write `text` to `path` through a temporary file in the same directory and a rename."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def sha256_file(path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# Every directory `atomic_dir` writes holds this file, so that jaxprobe can tell its own outputs
# (which it may replace) from a user's directory (which it must not).
MARKER = ".jaxprobe-output"


def _protected(target: Path) -> str | None:
    """Why `target` may never be replaced, even with force: None when it may."""
    cwd, home = Path.cwd().resolve(), Path.home().resolve()
    if target == cwd:
        return "it is the working directory"
    if target in cwd.parents:
        return "it contains the working directory"
    if target == home or target in home.parents:
        return "it is the home directory" if target == home else "it contains the home directory"
    return None


def check_replaceable(target, *, force: bool = False, name: str = "out") -> Path:
    """The resolved `target` if jaxprobe may write a directory there; raise otherwise.

    It may when `target` does not exist, is an empty directory, or is a directory jaxprobe wrote (it
    holds `MARKER`). Any other directory is replaced only with `force`, and never the working
    directory, a directory above it, or the home directory (or one above it). The error names the
    argument `name` (a command passes its flag).
    """
    from jaxprobe.errors import JaxprobeError

    target = Path(target).expanduser().resolve()
    if not target.exists():
        return target
    if not target.is_dir():
        raise JaxprobeError(f"{name}: {target} exists and is not a directory")
    why = _protected(target)
    if why:
        raise JaxprobeError(f"{name}: {target} cannot be replaced ({why}); choose a new directory")
    if force or (target / MARKER).is_file() or not any(target.iterdir()):
        return target
    raise JaxprobeError(f"{name}: {target} is a non-empty directory that jaxprobe did not write; choose a new "
                        "directory, or replace it whole with --force (force=True)")


@contextmanager
def atomic_dir(target, *, force: bool = False, name: str = "out"):
    """Yield a temporary sibling directory; on success it replaces `target`, on error it is removed.

    `target` must pass `check_replaceable(target, force=force, name=name)`, checked before and after
    the work: a directory of the user's is never replaced unless `force`. The result holds `MARKER`.
    """
    target = check_replaceable(target, force=force, name=name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it owner-only; a plain mkdir would not
    try:
        yield tmp
        (tmp / MARKER).write_text("written by jaxprobe; jaxprobe may replace this directory whole\n")
        check_replaceable(target, force=force, name=name)  # it may have changed during the work
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.rename(target, old)
    os.rename(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def jsonable(x):
    """`x` with host types JSON can hold: arrays and tuples to lists, numpy scalars to Python
    numbers, non-finite floats to None (strict JSON has no NaN or inf)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if hasattr(x, "__array__") and not isinstance(x, (str, bytes)):
        import numpy as np

        a = np.asarray(x)
        return jsonable(a.item() if a.ndim == 0 else a.tolist())
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return float(x) if math.isfinite(x) else None
    if hasattr(x, "item"):  # numpy scalars
        return jsonable(x.item())
    raise TypeError(f"not JSON serializable: {type(x).__name__}")


def _flat(x) -> bool:
    """A list of scalars or of lists of scalars: written on one line (a latent vector, a matrix row)."""
    return isinstance(x, list) and all(not isinstance(v, (dict, list)) or
                                       (isinstance(v, list) and all(not isinstance(w, (dict, list)) for w in v))
                                       for v in x)


def dumps_json(obj, indent: int = 1) -> str:
    """Strict JSON text of `jsonable(obj)`: objects indented one key per line, lists of numbers
    (and lists of such lists) on one line each, so long sample arrays stay readable."""
    def dump(x, level):
        pad, inner = " " * (indent * level), " " * (indent * (level + 1))
        if isinstance(x, dict) and x:
            items = (f"{inner}{json.dumps(k)}: {dump(v, level + 1)}" for k, v in x.items())
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(x, list) and x and not _flat(x):
            return "[\n" + ",\n".join(inner + dump(v, level + 1) for v in x) + "\n" + pad + "]"
        return json.dumps(x, allow_nan=False, separators=(", ", ": "))

    return dump(jsonable(obj), 0) + "\n"


def write_json(path, obj) -> Path:
    """Write `dumps_json(obj)` to `path` atomically."""
    return write_text(path, dumps_json(obj))


def fmt_number(x, spec: str = ".4g", missing: str = "n/a") -> str:
    """A number as text for tables: `format(x, spec)` for a finite float, str() for an int or a
    bool, `missing` for None, NaN or inf."""
    if x is None:
        return missing
    if isinstance(x, (bool, int)) or (hasattr(x, "dtype") and getattr(x.dtype, "kind", "") in "biu"):
        return str(x)
    x = float(x)
    return format(x, spec) if math.isfinite(x) else missing
