"""The README: its first command lines are the set-up and test commands CI runs, it stays short,
and every Python example in it runs as written."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_set_up_lines_come_first_and_the_readme_is_short():
    lines = README.read_text().splitlines()
    assert lines[2].strip().endswith("jaxprobe demo") and "pytest" in lines[3], lines[:4]
    assert len(lines) <= 150
    assert not re.search(r"\bused to\b|\bpredate|\bbefore 0\.|issue's target", README.read_text())


@pytest.mark.parametrize("index", range(len(blocks())))
def test_every_python_example_runs(index, tmp_path):
    r = subprocess.run([sys.executable, "-c", blocks()[index]], cwd=tmp_path, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
