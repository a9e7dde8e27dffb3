"""The documentation builds with `mkdocs build --strict`, and every public function has a docstring.

Strict mode turns every warning into a failure: a broken link between pages, an unresolved
cross-reference to the API (`[name][jaxprobe.module.name]`), a module the API pages name that does
not import, a malformed docstring section. mkdocstrings renders an undocumented function without
a warning, so the docstring check walks the packages itself (statically, with griffe, which
mkdocstrings uses to read them).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("jaxprobe", "weights_convert")
needs_mkdocs = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None,
    reason="the docs extra is not installed (pip install -e '.[docs]')")


def build(tmp_path, config=REPO / "mkdocs.yml"):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(tmp_path / "site")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


@needs_mkdocs
def test_mkdocs_build_strict(tmp_path):
    r = build(tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    site = tmp_path / "site"
    # Every page of the nav was rendered, and the API pages hold the documented objects.
    for page in ("index.html", "probe-protocol/index.html", "methods/egbas/index.html",
                 "methods/inverse-set/index.html", "methods/dgn-am/index.html", "methods/ppgn/index.html",
                 "methods/excite/index.html", "converting/index.html",
                 "cli/index.html", "sharding/index.html", "benchmarks/index.html", "examples/index.html",
                 "bibliography/index.html"):
        assert (site / page).is_file(), page
    api = (site / "api" / "gbas" / "index.html").read_text()
    assert 'id="jaxprobe.gbas.gbrrt.gbrrt"' in api and "Batched GB-RRT" in api


@needs_mkdocs
def test_a_broken_cross_reference_fails_the_build(tmp_path):
    """The strict build is what catches broken links: a copy of the docs with one broken API
    cross-reference and one broken page link must fail, naming both."""
    docs = tmp_path / "docs"
    docs.mkdir()
    for path in (REPO / "docs").rglob("*"):
        if path.is_file():
            target = docs / path.relative_to(REPO / "docs")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    page = docs / "bibliography.md"
    page.write_text(page.read_text() + "\nSee [gone][jaxprobe.gbas.no_such_function] and [gone](no-such-page.md).\n")
    config = tmp_path / "mkdocs.yml"
    config.write_text((REPO / "mkdocs.yml").read_text().replace("docs_dir: docs", f"docs_dir: {docs}")
                      .replace("paths: [.]", f"paths: [{REPO}]"))
    r = build(tmp_path, config)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "jaxprobe.gbas.no_such_function" in out and "no-such-page.md" in out, out[-3000:]


def undocumented(root) -> list:
    """Public functions, classes and methods under a griffe module without a docstring.

    Public: no name on the path starts with an underscore; names a module imports from elsewhere
    (aliases) are checked where they are defined."""
    missing = []
    for name, member in root.members.items():
        if name.startswith("_") or member.is_alias:
            continue
        if member.is_module:
            missing += undocumented(member)
        elif member.is_function or member.is_class:
            if not (member.docstring and member.docstring.value.strip()):
                missing.append(f"{member.relative_filepath}:{member.lineno} {member.path}")
            if member.is_class:
                missing += undocumented(member)
    return missing


def test_every_public_function_has_a_docstring():
    griffe = pytest.importorskip("griffe")
    missing = []
    for package in PACKAGES:
        missing += undocumented(griffe.load(package, search_paths=[str(REPO)]))
    assert not missing, f"{len(missing)} public functions or classes without a docstring:\n" + "\n".join(missing)


def test_the_docstring_check_finds_a_missing_docstring(tmp_path):
    griffe = pytest.importorskip("griffe")
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('"""A package."""\n')
    (pkg / "mod.py").write_text('"""A module."""\n\ndef documented():\n    """Yes."""\n\n'
                                'def bare():\n    return 1\n\ndef _private():\n    return 2\n\n'
                                'class Thing:\n    """A class."""\n\n    def method(self):\n        return 3\n')
    found = undocumented(griffe.load("pkg", search_paths=[str(tmp_path)]))
    assert sorted(re.sub(r"^.*? ", "", m) for m in found) == ["pkg.mod.Thing.method", "pkg.mod.bare"]


def page_rows(page: str, first_cells) -> list:
    """The table rows of a docs page whose first cell is one of `first_cells`, bold marks removed,
    as lists of cells."""
    rows = []
    for line in (REPO / "docs" / page).read_text().splitlines():
        cells = [c.strip() for c in line.replace("**", "").strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] in first_cells:
            rows.append(cells)
    return rows


def test_egbas_page_quotes_the_reproduction_file():
    """The measured tables on the E-GBAS page are rows of benchmarks/results/egbas/egbas_tables.md
    (Table 1 and Table 2's mean over generator layers), so regenerating the file without updating
    the page fails here."""
    results = (REPO / "benchmarks" / "results" / "egbas" / "egbas_tables.md").read_text().splitlines()
    rows = page_rows("methods/egbas.md", {"E-GBAS", "L2-based", "Linf-based"})
    assert len(rows) == 6
    for cells in rows:
        assert "| " + " | ".join(cells) + " |" in results, cells


def test_inverse_set_page_quotes_the_reproduction_file():
    import json

    runs = json.loads((REPO / "benchmarks" / "results" / "inverse_set" / "reproduce_inverse_set.json")
                      .read_text())["runs"]
    rows = page_rows("methods/inverse-set.md", {"eq. 5 (embedding)", "eq. 13 (code)", "eq. 14 (none)"})
    assert [r[0] for r in rows] == ["eq. 5 (embedding)", "eq. 13 (code)", "eq. 14 (none)"]
    for cells, run in zip(rows, (runs["eq5"], runs["eq13"], runs["eq14"])):
        want = [str(run["outer_iterations"]), str(run["sampling_steps"]), str(run["distinct_codes"]),
                f"{run['mean_pairwise_E_distance']:.1f}"]
        assert cells[1:5] == want, (cells, want)


def test_benchmark_page_quotes_the_gbrrt_results():
    import json

    layers = json.loads((REPO / "benchmarks" / "results" / "gbrrt.json").read_text())["layers"]
    rows = page_rows("benchmarks.md", {"1 (fc)", "2 (deconv1)", "3 (deconv2)", "4 (out)"})
    assert len(rows) == len(layers) == 4
    for cells in rows:
        r = layers[cells[0][0]]
        want = [str(r["units"]), str(r["selected"]), f"{r['speedup_vs_sequential']:.1f}x",
                f"{round(100 * r['fraction_of_floor'])}%"]
        assert [cells[1], cells[2], cells[6], cells[7]] == want, (cells, want)
        for cell, rate in zip(cells[3:6], (r["batched"]["candidates_per_s"], r["sequential"]["candidates_per_s"],
                                           r["floor"]["candidates_per_s"])):
            assert abs(float(cell.replace(",", "")) - rate) <= 0.01 * rate, (cells[0], cell, rate)
