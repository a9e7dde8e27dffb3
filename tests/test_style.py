"""Code style the project keeps: `ruff check` with the configuration in pyproject.toml, and no
public function over 12 parameters or 80 lines (settings live in one options NamedTuple per method).

Parameters are the named ones and a `*args`; a `**settings` is not counted: the samplers' entry
points take their options tuple's fields by keyword through it, checked against the tuple's fields
(an unknown name is an error), so it names no parameter of its own."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_PARAMS, MAX_LINES = 12, 80


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (pip install -e '.[test]' installs it)")
    r = subprocess.run([ruff, "check", "--no-cache", "jaxprobe", "weights_convert", "benchmarks", "tests", "examples"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


def public_functions(root: Path):
    """(module path, name, parameter count, line count) of every public function and method in `root`."""
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        stack = [(node, False) for node in tree.body]
        while stack:
            node, in_private = stack.pop()
            if isinstance(node, ast.ClassDef):
                stack.extend((n, in_private or node.name.startswith("_")) for n in node.body)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if in_private or node.name.startswith("_") or path.name.startswith("_") and path.name != "__init__.py":
                    continue
                a = node.args
                params = [p for p in a.posonlyargs + a.args + a.kwonlyargs if p.arg not in ("self", "cls")]
                yield (str(path.relative_to(REPO)), node.name, len(params) + bool(a.vararg),
                       node.end_lineno - node.lineno + 1)


def test_no_public_function_over_12_parameters_or_80_lines():
    too_many = [f"{m}:{n} has {p} parameters" for root in ("jaxprobe", "weights_convert")
                for m, n, p, _ in public_functions(REPO / root) if p > MAX_PARAMS]
    too_long = [f"{m}:{n} has {k} lines" for root in ("jaxprobe", "weights_convert")
                for m, n, _, k in public_functions(REPO / root) if k > MAX_LINES]
    assert not too_many + too_long, "\n".join(too_many + too_long)


def test_the_size_check_finds_a_long_function(tmp_path, monkeypatch):
    body = "\n".join(f"    x{i} = {i}" for i in range(90))
    (tmp_path / "m.py").write_text(f"def f(a, b, c, d, e, f, g, h, i, j, k, l, m):\n{body}\n\ndef _g(*a):\n    pass\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    found = list(public_functions(tmp_path))
    assert found == [("m.py", "f", 13, 91)]
    (tmp_path / "m.py").write_text("def f(a, b, c, d, e, f, g, h, i, j, k, l, *m, **n):\n    pass\n")
    assert list(public_functions(tmp_path)) == [("m.py", "f", 13, 2)]
