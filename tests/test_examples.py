"""Every script in examples/ runs in its smoke mode and writes the figures it promises.

Each runs in its own process, as a user runs it (`python examples/NAME.py --smoke --out DIR`). The
scripts are independent, so they run two at a time: most of a smoke run is XLA compiling one
program after another on one core.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = {
    "egbas_dcgan.py": ["egbas_region.png", "egbas_samples.png"],
    "inverse_set_histogram.py": ["inverse_set_histogram.png", "inverse_set_samples.png"],
    "dgn_am_digits.py": ["dgn_am_images.png", "dgn_am_history.png"],
    "caffe_convert_probe.py": ["caffe_dgn_am.png", "model/manifest.json"],
}


def run_example(script: str, out: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("JAXPROBE_EXAMPLES_SMOKE", None)  # the flag alone must select the smoke mode
    return subprocess.run([sys.executable, str(REPO / "examples" / script), "--smoke", "--out", str(out)],
                          cwd=out.parent, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("examples")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {s: pool.submit(run_example, s, base / Path(s).stem) for s in EXAMPLES}
        return {s: (f.result(), base / Path(s).stem) for s, f in futures.items()}


def test_every_example_is_listed():
    """A new script in examples/ must be added here (and to docs/examples.md)."""
    assert sorted(p.name for p in (REPO / "examples").glob("*.py")) == sorted(EXAMPLES)
    page = (REPO / "docs" / "examples.md").read_text()
    assert all(f"examples/{s}" in page for s in EXAMPLES)


@pytest.mark.parametrize("script", sorted(EXAMPLES))
def test_example_runs_in_smoke_mode(runs, script):
    result, out = runs[script]
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "wrote" in result.stdout
    for name in EXAMPLES[script]:
        path = out / name
        assert path.is_file(), f"{script} did not write {name}"
        if path.suffix == ".png":
            image = np.asarray(Image.open(path).convert("L"), np.float32)
            assert image.shape[0] > 100 and image.shape[1] > 100 and image.std() > 1.0, (name, image.shape)


def test_caffe_example_reproduces_a_unit_by_hand(runs):
    """The converted net's conv1 unit equals the NumPy computation from the caffemodel's blob."""
    result, _ = runs["caffe_convert_probe.py"]
    line = next(x for x in result.stdout.splitlines() if x.startswith("conv1:3@10,12 by hand vs jaxprobe"))
    assert float(line.rsplit("=", 1)[1]) < 1e-4, line


def test_an_example_never_writes_into_a_users_folder(tmp_path):
    """The examples write their --out through the same rule as the commands: a folder jaxprobe did
    not write is refused in one line (status 2) and left as it was."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "NOTES.txt").write_text("mine")
    r = run_example("dgn_am_digits.py", victim)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "--force" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert sorted(p.name for p in victim.iterdir()) == ["NOTES.txt"] and (victim / "NOTES.txt").read_text() == "mine"
