"""Writing results: atomic files and directories (outputs appear whole or not at all), strict JSON,
numbers as text, and bounded reads of untrusted files."""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import shutil
import stat
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Temporary files and directories this process has open, and the lock files it holds: what an
# interrupt that cannot unwind normally (`cleanup_temporaries`, from the CLI's SIGINT watchdog)
# removes before the process exits.
_TEMPORARIES: dict = {}
_TEMP_LOCK = threading.Lock()


def _register(path, kind: str) -> None:
    with _TEMP_LOCK:
        _TEMPORARIES[str(path)] = kind


def _unregister(path) -> None:
    with _TEMP_LOCK:
        _TEMPORARIES.pop(str(path), None)


def cleanup_temporaries() -> None:
    """Remove every temporary file or directory this process is writing and every lock it holds.

    For an exit that skips unwinding (the CLI's `os._exit` after an interrupt): temporaries are
    the not-yet-committed outputs (or, after an exchange, the replaced old ones), never a result.
    """
    with _TEMP_LOCK:
        items = list(_TEMPORARIES.items())
        _TEMPORARIES.clear()
    for path, kind in items:
        try:
            if kind == "dir":
                for _ in range(5):  # a writer thread (orbax's) may still add files: sweep again
                    shutil.rmtree(path, ignore_errors=True)
                    if not os.path.lexists(path):
                        break
                    time.sleep(0.02)
            else:
                os.unlink(path)
        except OSError:
            pass


@contextmanager
def atomic_file(path, suffix: str = ""):
    """Yield a temporary path beside `path`; on success it is renamed to `path`, on error removed.

    `suffix` keeps the extension for writers that infer the format from it (matplotlib).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", suffix=suffix, dir=path.parent)
    os.close(fd)
    _register(tmp, "file")
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it owner-only; a plain open() would not
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        _unregister(tmp)


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


# ================================================================ bounded reads of untrusted files

MAX_JSON_BYTES = 64 << 20  # manifests and key maps: a few kB in practice
MAX_JSON_DEPTH = 64  # the deepest jaxprobe writes is 6


def check_path_text(path, what: str) -> str:
    """`path` as a string, refused (one line naming `what`) when it holds a NUL byte or is empty."""
    s = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    if not isinstance(s, str) or not s:
        from jaxprobe.errors import JaxprobeError

        raise JaxprobeError(f"{what}: expected a file path, got {path!r:.120}")
    if "\x00" in s:
        from jaxprobe.errors import JaxprobeError

        raise JaxprobeError(f"{what}: the path {s[:120]!r} holds a NUL byte")
    return s


def check_regular_file(path, *, max_bytes: int, what: str) -> int:
    """The size of the regular file at `path`; a `JaxprobeError` naming `what` when it is missing,
    not a regular file (a device such as /dev/zero, a FIFO, a directory) or over `max_bytes`."""
    from jaxprobe.errors import JaxprobeError

    s = check_path_text(path, what)
    try:
        st = os.stat(s)
    except (OSError, ValueError) as e:
        raise JaxprobeError(f"{what}: cannot read {s[:200]}: {getattr(e, 'strerror', None) or e}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a device, FIFO or other special file"
        raise JaxprobeError(f"{what}: {s[:200]} is {kind}, not a regular file")
    if st.st_size > max_bytes:
        raise JaxprobeError(f"{what}: {s[:200]} is {st.st_size:,} bytes, over the limit of {max_bytes:,}")
    return st.st_size


def read_bounded(path, *, max_bytes: int, what: str) -> bytes:
    """The bytes of the regular file at `path`, refused before reading when it is not a regular
    file (a device such as /dev/zero, a FIFO, a socket, a directory) or is larger than `max_bytes`.

    Every failure is one `JaxprobeError` line naming `what` (the argument the path came from).
    """
    from jaxprobe.errors import JaxprobeError

    check_regular_file(path, max_bytes=max_bytes, what=what)
    s = os.fspath(path)
    try:
        # O_NONBLOCK: a path swapped for a FIFO after the stat must not block the open
        fd = os.open(s, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise JaxprobeError(f"{what}: {s[:200]} is not a regular file")
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise JaxprobeError(f"{what}: cannot read {s[:200]}: {e.strerror or e}") from None
    if len(data) > max_bytes:
        raise JaxprobeError(f"{what}: {s[:200]} grew over the limit of {max_bytes:,} bytes while read")
    return data


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON `text`, found without recursion (strings
    skipped, escapes honoured), so that a 100 000-deep document is measured, not parsed."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def loads_json(data, *, what: str, max_depth: int = MAX_JSON_DEPTH):
    """`json.loads(data)` (bytes as UTF-8) with one-line errors naming `what`: nesting deeper than
    `max_depth`, invalid UTF-8 or JSON, and NaN/Infinity constants are refused."""
    from jaxprobe.errors import JaxprobeError

    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as e:
            raise JaxprobeError(f"{what}: not UTF-8 text ({e})") from None
    if "[" * (max_depth + 1) in data or "{" * (max_depth + 1) in data or json_depth(data) > max_depth:
        raise JaxprobeError(f"{what}: JSON nested deeper than {max_depth} levels")

    def no_constant(name):
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(data, parse_constant=no_constant)
    except (ValueError, RecursionError) as e:
        raise JaxprobeError(f"{what}: not valid JSON ({str(e)[:200]})") from None


def read_json(path, *, what: str, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH):
    """The JSON value in the file at `path`: `read_bounded` then `loads_json`."""
    return loads_json(read_bounded(path, max_bytes=max_bytes, what=what), what=f"{what}: {str(path)[:200]}",
                      max_depth=max_depth)


MAX_ERROR_CHARS = 1500


def short_error(e):
    """`e` itself, or for a message over `MAX_ERROR_CHARS` (the key list of a 300 000-entry file)
    a `JaxprobeError` of its start and its end (where the advice is) and how much was left out
    between them, on one line."""
    from jaxprobe.errors import JaxprobeError

    text = " ".join(str(e).split("\n"))
    if len(text) <= MAX_ERROR_CHARS:
        return e if "\n" not in str(e) else JaxprobeError(text)
    head, tail = text[:900], text[-500:]
    return JaxprobeError(f"{head} ... ({len(text) - 1400:,} characters left out) ... {tail}")


# ================================================================ output directories

# Every directory `atomic_dir` writes holds this file: a JSON record of every file (with its
# sha256), directory and link jaxprobe wrote there. jaxprobe replaces a directory without --force
# only when it holds exactly that, unchanged; a user's added note, an edited or deleted result, or
# a marker that does not parse makes it the user's.
MARKER = ".jaxprobe-output"
_MARKER_FORMAT = "jaxprobe-output/2"
_MARKER_MAX_BYTES = 16 << 20


def _inventory(root: Path) -> dict:
    """{"files": {relative path: sha256}, "dirs": [...], "links": {path: target}} of a directory
    tree (the marker excluded), walked without following links."""
    files, dirs, links = {}, [], {}
    for top, dirnames, filenames in os.walk(root, followlinks=False):
        rel_top = os.path.relpath(top, root)
        for d in list(dirnames):
            rel = os.path.normpath(os.path.join(rel_top, d))
            if os.path.islink(os.path.join(top, d)):
                links[rel] = os.readlink(os.path.join(top, d))
                dirnames.remove(d)
            else:
                dirs.append(rel)
        for f in filenames:
            rel = os.path.normpath(os.path.join(rel_top, f))
            full = os.path.join(top, f)
            if rel == MARKER:
                continue
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                links[rel] = os.readlink(full)
            elif stat.S_ISREG(st.st_mode):
                files[rel] = sha256_file(full)
            else:
                links[rel] = f"special file {stat.S_IFMT(st.st_mode):o}"  # never matches a record
    return {"files": dict(sorted(files.items())), "dirs": sorted(dirs), "links": dict(sorted(links.items()))}


def _write_marker(root: Path) -> None:
    record = {"format": _MARKER_FORMAT, "note": "written by jaxprobe; jaxprobe may replace this directory "
              "whole while it holds exactly these files", **_inventory(root)}
    (root / MARKER).write_text(json.dumps(record, indent=1) + "\n")


def _why_not_ours(target: Path) -> str | None:
    """None when `target` holds exactly what its marker records; else why it is the user's."""
    marker = target / MARKER
    try:
        st = os.lstat(marker)
    except OSError:
        return "it has no jaxprobe marker"
    if not stat.S_ISREG(st.st_mode) or st.st_size > _MARKER_MAX_BYTES:
        return "its marker is not a file jaxprobe writes"
    try:
        record = json.loads(marker.read_bytes()) if st.st_size else None
    except (ValueError, RecursionError, OSError):
        record = None
    if not (isinstance(record, dict) and record.get("format") == _MARKER_FORMAT
            and isinstance(record.get("files"), dict) and isinstance(record.get("dirs"), list)
            and isinstance(record.get("links", {}), dict)):
        return "its marker is empty or not one jaxprobe writes"
    try:
        now = _inventory(target)
    except OSError as e:
        return f"it cannot be read whole ({e.strerror or e})"
    want = {"files": record["files"], "dirs": sorted(record["dirs"]), "links": record.get("links", {})}
    if now == want:
        return None
    added = sorted(set(now["files"]) - set(want["files"]) | set(now["dirs"]) - set(want["dirs"])
                   | set(now["links"]) - set(want["links"]))
    removed = sorted(set(want["files"]) - set(now["files"]) | set(want["dirs"]) - set(now["dirs"]))
    changed = sorted(k for k in set(now["files"]) & set(want["files"]) if now["files"][k] != want["files"][k])
    for what, names in (("files were added since jaxprobe wrote it", added),
                        ("files jaxprobe wrote were removed", removed),
                        ("files jaxprobe wrote were changed", changed)):
        if names:
            return f"{what}: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
    return "its contents differ from what jaxprobe wrote"


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


# Paths the running command reads (set by the CLI from its arguments): an output directory that
# contains one of them is refused, since replacing it would delete the command's own input.
_DECLARED_INPUTS: list = []


def declare_inputs(paths) -> None:
    """Record the paths the running command reads; `check_replaceable` refuses an output directory
    that holds one of them (besides the `inputs=` a caller passes). The CLI calls this with every
    argument that names an existing file or directory."""
    _DECLARED_INPUTS[:] = [p for p in paths if p is not None]


def _os_error(name: str, target, e: BaseException):
    from jaxprobe.errors import JaxprobeError

    why = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return JaxprobeError(f"{name}: cannot write a directory at {str(target)[:200]}: {why}")


def _lexical(target, name: str) -> Path:
    """`target` made absolute with its parent's links resolved but not its own last component."""
    s = check_path_text(os.path.expanduser(os.fspath(target)) if isinstance(target, (str, os.PathLike))
                        else target, name)
    p = Path(os.path.abspath(s))
    if p.name in ("", ".", ".."):
        return p.resolve()
    return p.parent.resolve() / p.name


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_replaceable(target, *, force: bool = False, name: str = "out", inputs=()) -> Path:
    """The absolute `target` if jaxprobe may write a directory there; raise otherwise.

    It may when `target` does not exist, is an empty directory, or is a directory jaxprobe wrote
    that still holds exactly what its marker (`MARKER`) records. Any other directory is replaced
    only with `force`, and never: a symbolic link (nor what it points to), the working directory,
    a directory above it, the home directory (or one above it), or a directory that holds one of
    `inputs` (files the command reads) or of the paths given to `declare_inputs`. Every refusal
    and every path error (a file in the way, a name too long, a link loop) is one `JaxprobeError`
    naming the argument `name` (a command passes its flag).
    """
    from jaxprobe.errors import JaxprobeError

    try:
        target = _lexical(target, name)
        if os.path.islink(target):
            raise JaxprobeError(f"{name}: {target} is a symbolic link; jaxprobe never replaces a link or what it "
                                "points to, even with --force; give the real directory or a new path")
        for inp in list(inputs) + list(_DECLARED_INPUTS):
            s = os.fspath(inp)
            if "\x00" in s:
                continue
            for p in {Path(os.path.abspath(s)), Path(s).resolve()}:
                if _inside(p, target):
                    raise JaxprobeError(f"{name}: {target} holds {p}, which this command reads; replacing the "
                                        "directory would delete it; choose another output directory")
        if not os.path.lexists(target):
            ancestor = target.parent
            while not os.path.lexists(ancestor):
                ancestor = ancestor.parent
            if not ancestor.is_dir():
                raise JaxprobeError(f"{name}: cannot make {target}: {ancestor} is not a directory")
            if len(target.name.encode()) > 255:
                raise JaxprobeError(f"{name}: the name {target.name[:40]}... is {len(target.name.encode())} bytes; "
                                    "file systems allow 255")
            return target
        if not target.is_dir():
            raise JaxprobeError(f"{name}: {target} exists and is not a directory")
        why = _protected(target)
        if why:
            raise JaxprobeError(f"{name}: {target} cannot be replaced ({why}); choose a new directory")
        if force or not any(target.iterdir()):
            return target
        why = _why_not_ours(target)
    except JaxprobeError:
        raise
    except (OSError, RuntimeError, ValueError) as e:  # a file in the path, a link loop, a name too long
        raise _os_error(name, target, e) from None
    if why is None:
        return target
    raise JaxprobeError(f"{name}: {target} is a non-empty directory that jaxprobe did not write, or changed since "
                        f"({why}); choose a new directory, or replace it whole with --force")


# ---------------------------------------------------------------- the lock and the swap


def _stem(name: str) -> str:
    """A short stand-in for a long directory name in its sibling temporaries' names."""
    if len(name.encode()) <= 180:
        return name
    return name.encode()[:120].decode("utf-8", "ignore") + "-" + hashlib.sha256(name.encode()).hexdigest()[:16]


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Lock:
    """An exclusive `fcntl.flock` on `.NAME.lock` beside the target: one writer per directory.

    The file is removed on release while still locked; a writer that locked an inode since
    unlinked sees it is no longer the one at the path and tries again, so two can never both hold
    it."""

    def __init__(self, path: Path, name: str, target: Path):
        import fcntl

        for _ in range(20):
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    from jaxprobe.errors import JaxprobeError

                    raise JaxprobeError(f"{name}: another jaxprobe process is writing {target} now; wait for it "
                                        "to finish or choose another directory") from None
                raise
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd, self.path = fd, path
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                _register(path, "file")
                return
            os.close(fd)
        raise OSError(errno.EAGAIN, "the lock file keeps changing")

    def release(self) -> None:
        _unregister(self.path)
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)


_RENAME_EXCHANGE, _RENAME_NOREPLACE = 2, 1
_renameat2 = None


def _rename2(src: Path, dst: Path, flags: int) -> bool:
    """Linux renameat2(src, dst, flags) through libc; False where it does not exist (another OS,
    an old kernel or libc, a file system without it), OSError for a real failure."""
    global _renameat2
    if _renameat2 is None:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            fn = libc.renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            fn.restype = ctypes.c_int
            _renameat2 = fn
        except (OSError, AttributeError):
            _renameat2 = False
    if _renameat2 is False:
        return False
    import ctypes

    at_fdcwd = -100
    if _renameat2(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP if hasattr(errno, "ENOTSUP") else errno.EINVAL):
        return False
    raise OSError(err, os.strerror(err), str(dst))


def _journal(parent: Path, stem: str) -> Path:
    return parent / f".{stem}.journal"


def _recover(target: Path, stem: str) -> None:
    """Finish or undo what a dead writer of `target` left (the caller holds the lock).

    A journal names the new and old directories of a replacement interrupted between its two
    renames: the new one (complete: the journal is written only after it) is moved into place, or
    the old one back if the new one is gone; temporaries of dead processes are removed, except an
    old copy without a journal while `target` is missing (an older jaxprobe's interrupted swap),
    which is moved back."""
    parent = target.parent
    journal = _journal(parent, stem)
    if journal.exists():
        try:
            record = json.loads(journal.read_text())
            new, old = parent / record["new"], parent / record["old"]
        except (ValueError, KeyError, TypeError, OSError):
            new = old = None
        if new is not None and not os.path.lexists(target):
            if new.is_dir():
                os.rename(new, target)
            elif old.is_dir():
                os.rename(old, target)
        journal.unlink(missing_ok=True)
    prefix_tmp, prefix_old = f".{stem}.tmp-", f".{stem}.old-"
    for entry in sorted(os.listdir(parent)):
        if not entry.startswith((prefix_tmp, prefix_old)):
            continue
        rest = entry[len(prefix_tmp):] if entry.startswith(prefix_tmp) else entry[len(prefix_old):]
        pid_text = rest.split("-", 1)[0]
        pid = int(pid_text) if pid_text.isdigit() else -1
        if pid != os.getpid() and _pid_alive(pid):
            continue  # a live process's: not a leftover (ours are: we hold the lock, so none is in use)
        path = parent / entry
        if entry.startswith(prefix_old) and not os.path.lexists(target) and path.is_dir():
            os.rename(path, target)
        elif path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _swap_in(tmp: Path, target: Path, stem: str) -> None:
    """Put the complete directory `tmp` at `target` in one atomic step where the OS has one."""
    if not os.path.lexists(target):
        if not _rename2(tmp, target, _RENAME_NOREPLACE):
            os.rename(tmp, target)
        return
    if _rename2(tmp, target, _RENAME_EXCHANGE):
        shutil.rmtree(tmp, ignore_errors=True)  # now the old contents; a leftover is cleaned next run
        return
    # No exchange on this system: two renames, with a journal the next run completes or rolls back.
    old = target.with_name(f".{stem}.old-{os.getpid()}-{os.urandom(4).hex()}")
    journal = _journal(target.parent, stem)
    write_text(journal, json.dumps({"new": tmp.name, "old": old.name}))
    _unregister(tmp)  # from here the journal, not an interrupt's cleanup, decides what tmp is
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:  # put the old directory back at once; the caller removes tmp
        os.rename(old, target)
        journal.unlink(missing_ok=True)
        raise
    journal.unlink(missing_ok=True)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_dir(target, *, force: bool = False, name: str = "out", inputs=()):
    """Yield a temporary sibling directory; on success it replaces `target`, on error it is removed.

    Every command writes its output directory through this (`with atomic_dir(args.out,
    force=args.force, name="--out", inputs=[files it reads]) as tmp: ...write into tmp...`).
    `target` must pass `check_replaceable(target, force=force, name=name, inputs=inputs)`, checked
    before and after the work. While the block runs, `.NAME.lock` beside `target` is locked: a
    second writer to the same directory is refused in one line. On success the result gets its
    `MARKER` (every file with its sha256) and is swapped in atomically (Linux renameat2
    RENAME_EXCHANGE; elsewhere two renames under a journal that the next run completes or rolls
    back). Leftovers of killed writers (their temporaries, an interrupted swap) are cleaned or
    recovered on entry.
    """
    target = check_replaceable(target, force=force, name=name, inputs=inputs)
    stem = _stem(target.name)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        lock = _Lock(target.parent / f".{stem}.lock", name, target)
    except OSError as e:
        raise _os_error(name, target, e) from None
    tmp = None
    try:
        try:
            _recover(target, stem)
            tmp = target.with_name(f".{stem}.tmp-{os.getpid()}-{os.urandom(4).hex()}")
            _register(tmp, "dir")
            os.mkdir(tmp, 0o777 & ~_umask())
            os.chmod(tmp, 0o777 & ~_umask())
        except OSError as e:
            raise _os_error(name, target, e) from None
        # the marker check above ran before the lock: another writer may have changed it since
        check_replaceable(target, force=force, name=name, inputs=inputs)
        yield tmp
        _write_marker(tmp)
        check_replaceable(target, force=force, name=name, inputs=inputs)  # it may have changed during the work
        try:
            _swap_in(tmp, target, stem)
        except OSError as e:
            raise _os_error(name, target, e) from None
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if tmp is not None:
            _unregister(tmp)
        lock.release()


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
