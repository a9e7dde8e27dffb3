"""The floors hold: `lint-imports` (import-linter, configured in pyproject.toml) passes on the repo and
fails on a copy with one import that runs up a floor."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess:
    if not LINT.exists():
        pytest.fail(f"{LINT} is missing: install the test extra (pip install -e '.[test]')")
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_import_contracts_hold():
    res = lint(ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "BROKEN" not in res.stdout and "KEPT" in res.stdout


@pytest.mark.parametrize("module, line, contract", [
    # models may not know a method
    ("jaxprobe/models/probe.py", "import jaxprobe.gbas.gbrrt", "floors"),
    # experiments may not import the CLI
    ("jaxprobe/experiments/figures.py", "from jaxprobe.cli import main", "floors"),
    # method families do not know each other
    ("jaxprobe/codespace/dgn_am.py", "import jaxprobe.inverse_sets.auglag", "floors"),
    # the converter knows no method
    ("weights_convert/mapping.py", "import jaxprobe.inverse_sets.inverse_set", "weights_convert"),
    # only the CLI imports the converter
    ("jaxprobe/report/base.py", "import weights_convert", "only the CLI"),
])
def test_an_upward_import_breaks_a_contract(tmp_path, module, line, contract):
    for package in ("jaxprobe", "weights_convert"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("weights", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # deliberately upward\n")
    res = lint(tmp_path)
    assert res.returncode != 0, res.stdout[-2000:]
    broken = " ".join(res.stdout.split("Broken contracts")[-1].split())  # the report wraps long lines
    assert contract in broken and module[:-3].replace("/", ".") in broken, broken[-2000:]


# jaxprobe.__all__ of release 0.1.0, before the floors became folders: every name must still resolve
# (but the sequential GB-RRT reference, a test oracle that lives in tests/gbrrt_reference.py).
API_0_1_0 = """
adapt_images AugLag auglag_run AugLagState augmented_lagrangian batch_mesh beropt BerOptResult
center_crop check_indicator classifier_accuracy convert_pixels default_embedding default_lambda
dgn_am dgn_am_kernel dgn_am_run DGNAMResult egbas EGBASResult Embedding eps_l2 eps_linf feasible
feature_similarity GBRRT gbrrt gbrrt_kernel gbrrt_run
GBRRTResult GBRRTState generator_quality halfspace inverse_set InverseSet JaxprobeError Layer
layer_size load load_mnist log_ball_volume mean_pairwise_distance Model Network Neuron
neuron_values parse_neuron PixelConvention preactivation reconstruction_accuracy region_margin
region_membership replicate resolve_neuron resolve_neurons sample_l2_ball sample_linf_ball
sample_sigma save_model shard_batch SHIPPED stop_reason_name
""".split()


def test_public_api_keeps_every_name_and_no_folder_shadows_one():
    import pkgutil

    import jaxprobe

    assert not [n for n in API_0_1_0 if n not in jaxprobe.__all__ or not hasattr(jaxprobe, n)]
    folders = [m.name for m in pkgutil.iter_modules(jaxprobe.__path__) if m.ispkg]
    assert {"models", "experiments", "cli", "report"} <= set(folders)
    # `jaxprobe.egbas` is a function: a folder of that name would be shadowed by it.
    assert not set(folders) & set(jaxprobe.__all__), folders
