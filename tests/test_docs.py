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
import shutil
import socket
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
    # Every page of the nav was rendered, as name.html (use_directory_urls: false, so the site also
    # opens from disk), and the API pages hold the documented objects.
    for page in ("index.html", "probe-protocol.html", "methods/egbas.html", "methods/inverse-set.html",
                 "methods/dgn-am.html", "methods/ppgn.html", "methods/excite.html", "converting.html",
                 "cli.html", "sharding.html", "benchmarks.html", "examples.html", "bibliography.html"):
        assert (site / page).is_file(), page
    api = (site / "api" / "gbas.html").read_text()
    assert 'id="jaxprobe.gbas.gbrrt.gbrrt"' in api and "Batched GB-RRT" in api
    # Offline: MathJax is served from the site, and no page loads a script, a style sheet or a font
    # from the internet (the footer's plain link to the theme's home page is not a load).
    assert (site / "javascripts" / "mathjax" / "tex-svg-full.js").stat().st_size > 1_000_000
    for page in site.rglob("*.html"):
        html = page.read_text()
        loads = re.findall(r'<(?:script|link|img|iframe|source)\b[^>]*?(?:src|href)="(https?:[^"]*)"', html)
        assert not loads, f"{page.relative_to(site)} loads {loads}"
    for sheet in site.rglob("*.css"):
        assert not re.search(r"(?:url\(|@import)\s*['\"]?https?:", sheet.read_text()), sheet


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


# ------------------------------------------------------------------ the docs' examples run

DOC_PAGES = sorted(p for p in (REPO / "docs").rglob("*.md") if "api" not in p.parts)
FENCE = re.compile(r"^```(\w+)\n(.*?)^```\n", re.S | re.M)


def doc_programs(page: Path) -> list:
    """The programs of a docs page: its ```python blocks in order, each with the ```text block that
    follows it (its documented output) or None. A block that starts with an import starts a new
    program; any other block continues the previous one, as a reader runs them in order, and its
    output is what the program prints after the previous block's."""
    programs = []
    blocks = list(FENCE.finditer(page.read_text()))
    for i, m in enumerate(blocks):
        if m.group(1) != "python":
            continue
        nxt = blocks[i + 1] if i + 1 < len(blocks) else None
        output = nxt.group(2) if nxt is not None and nxt.group(1) == "text" and nxt.start() == m.end() + 1 else None
        code = m.group(2)
        if programs and not re.match(r"(import|from) ", code):
            prev_code, prev_out = programs[-1]
            if prev_out is not None or output is not None:
                output = (prev_out or "") + (output or "")
            programs[-1] = (prev_code + code, output)
        else:
            programs.append((code, output))
    return programs


def same_output(got: str, want: str, rel: float = 0.02) -> bool:
    """Printed output against the documented one: the same words, integers equal, other numbers
    within `rel` (float32 sums may differ in their last digits between CPUs)."""
    number = r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|nan|inf"
    g, w = re.split(f"({number})", got.strip()), re.split(f"({number})", want.strip())
    if len(g) != len(w):
        return False
    for i, (a, b) in enumerate(zip(g, w)):
        if i % 2 == 0:
            if a.split() != b.split():
                return False
        elif a != b:
            exact = not ("." in b or "e" in b.lower()) or b in ("nan", "inf")  # integers, nan, inf
            if exact or not abs(float(a) - float(b)) <= rel * abs(float(b)):
                return False
    return True


def test_same_output_compares_words_and_numbers():
    assert same_output("(64, 100) capacity full 68\neps 0.2667", "(64, 100) capacity full 68\neps 0.2660")
    assert not same_output("(64, 100) capacity full 69", "(64, 100) capacity full 68")
    assert not same_output("eps 0.30", "eps 0.2667")
    assert not same_output("eps nan", "eps 0.2667")
    assert not same_output("(64, 100) rejected none", "(64, 100) capacity full")


def test_the_docs_examples_are_found():
    """The pages known to hold examples yield programs, and no ```python block is lost."""
    pages = {p.relative_to(REPO / "docs").as_posix(): doc_programs(p) for p in DOC_PAGES}
    for page in ("index.md", "probe-protocol.md", "sharding.md", "converting.md"):
        assert pages[page], page
    for p in DOC_PAGES:
        code = "".join(c for c, _ in pages[p.relative_to(REPO / "docs").as_posix()])
        assert code.count("\n") >= p.read_text().count("```python"), p


FIXTURES = REPO.parent / "shared" / "fixtures"


def setup_converting(cwd: Path) -> None:
    """The files docs/converting.md's example names: the Caffe LeNet and the PyTorch LeNet-5 of
    the shared fixtures, under the names the page uses."""
    sources = {"deploy.prototxt": "caffe/lenet/lenet.prototxt", "net.caffemodel": "caffe/lenet/lenet_iter_10000.caffemodel",
               "lenet.pth": "torch/lenet5/lenet.pth"}
    for name, source in sources.items():
        if not (FIXTURES / source).is_file():
            pytest.skip(f"the fixture {source} is not under {FIXTURES}")
        shutil.copy(FIXTURES / source, cwd / name)


def free_slurm_port() -> int:
    """A free port in the range JAX's Slurm detection derives from the job id (61440 + id % 4096)."""
    for port in range(61440 + os.getpid() % 2000, 65536):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


def run_program(code: str, cwd: Path, processes: int = 1) -> list:
    """Run a docs program as a reader would (python FILE in `cwd`), `processes` copies at once;
    with several, each sees the environment of a Slurm job step on this machine, which
    `jax.distributed.initialize()` detects. Returns the completed processes."""
    (cwd / "example.py").write_text(code)
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu", NO_MKDOCS_2_WARNING="1")
    env.pop("XLA_FLAGS", None)
    envs = [env]
    if processes > 1:
        port = free_slurm_port()
        envs = [dict(env, SLURM_JOB_ID=str(port - 61440), SLURM_STEP_NODELIST="127.0.0.1", SLURM_NTASKS=str(processes),
                     SLURM_PROCID=str(i), SLURM_LOCALID=str(i), SLURM_STEP_NUM_NODES="1",
                     XLA_FLAGS="--xla_force_host_platform_device_count=2") for i in range(processes)]
    procs = [subprocess.Popen([sys.executable, "example.py"], cwd=cwd, env=e, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for e in envs]
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


# Pages whose examples need files beside them, and examples meant for several processes.
SETUP = {"converting.md": setup_converting}
PROCESSES = {("sharding.md", 1): 2}
# Pages whose ```python blocks are skeletons with `...` placeholders, not programs: they must
# parse (test_sketches_parse), and run nowhere. Keep this list short.
SKETCHES = {"contributing.md": "the skeleton of a new method's kernel and driver"}
# Pages whose one example the method's own test file runs in-process, on its shared models (running
# it again here would compile the same programs twice): the page's blocks all sit under
# "## Composing the kernel", which that file reads.
RUN_ELSEWHERE = {"methods/egbas.md": "test_egbas.py", "methods/inverse-set.md": "test_inverse_set.py",
                 "methods/dgn-am.md": "test_dgn_am.py", "methods/ppgn.md": "test_ppgn.py",
                 "methods/excite.md": "test_excite.py"}
EXAMPLES = [(page, i) for p in DOC_PAGES if (page := p.relative_to(REPO / "docs").as_posix()) not in SKETCHES
            and page not in RUN_ELSEWHERE for i in range(len(doc_programs(p)))]


@pytest.mark.parametrize("page", sorted(RUN_ELSEWHERE))
def test_method_page_examples_run_in_their_method_tests(page):
    """A method page's examples are the one its test file runs, and say what they print."""
    text = (REPO / "docs" / page).read_text()
    blocks = [m.start() for m in FENCE.finditer(text) if m.group(1) == "python"]
    if not blocks:
        return
    section = text.find("## Composing the kernel")
    assert section >= 0 and all(b > section for b in blocks) and len(blocks) == 1, \
        f"{page}: its python example must be the one block under '## Composing the kernel', which " \
        f"tests/{RUN_ELSEWHERE[page]} runs; run any other block in test_docs_example_runs_and_prints_what_the_page_says"
    tests = (REPO / "tests" / RUN_ELSEWHERE[page]).read_text()
    assert Path(page).name in tests and "## Composing the kernel" in tests, \
        f"tests/{RUN_ELSEWHERE[page]} no longer runs {page}'s example"
    for code, output in doc_programs(REPO / "docs" / page):
        if "print(" in code:
            assert output is not None, f"{page}: the example prints, and the page shows no ```text output saying what"


@pytest.mark.parametrize("page", sorted(SKETCHES))
def test_sketches_parse(page):
    import ast

    path = REPO / "docs" / page
    if not path.is_file():
        pytest.skip(f"docs/{page} is not written yet")
    for code, _ in doc_programs(path):
        ast.parse(code)


@pytest.mark.parametrize("page,index", EXAMPLES)
def test_docs_example_runs_and_prints_what_the_page_says(page, index, tmp_path):
    """Every ```python example of the docs runs as written, and what it prints is the ```text
    block the page shows under it (the page then says what those numbers mean)."""
    code, output = doc_programs(REPO / "docs" / page)[index]
    if page in SETUP:
        SETUP[page](tmp_path)
    results = run_program(code, tmp_path, PROCESSES.get((page, index), 1))
    for r in results:
        assert r.returncode == 0, f"{page} example {index}:\n{code}\n{r.stdout[-2000:]}{r.stderr[-4000:]}"
    if "print(" in code:
        assert output is not None, f"{page} example {index} prints but the page shows no ```text output"
    if output is not None:
        for r in results:
            # Gloo (the CPU collectives of jax.distributed) logs its connections on stdout ("[Gloo] Rank 0
            # is connected to 3 peer ranks. Expected number of connected peer ranks is : 3"), from C++,
            # so that a line of it can be cut in two by another write: every piece of it is dropped.
            printed = re.sub(r"\[Gloo\][^\n]*|[^\n]*peer ranks is : \d+", "", r.stdout)
            printed = "".join(line for line in printed.splitlines(True) if line.strip())
            assert same_output(printed, output), f"{page} example {index} printed\n{printed}\nthe page shows\n{output}"


# ------------------------------------------------------------------ quoted defaults equal the code


def subcommands() -> dict:
    """{"egbas": parser, "reproduce egbas": parser, ...}: every `jaxprobe` subcommand's parser."""
    import argparse

    from jaxprobe.cli import build_parser

    found = {}

    def walk(parser, prefix):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found[" ".join(prefix + [name])] = sub
                    walk(sub, prefix + [name])

    walk(build_parser(), [])
    return found


def flag_tables(page: str, command: str | None = None) -> list:
    """(command, flag, default cell) for every row of a `| flag | default | meaning |` table of a
    docs page; the command is that of the nearest heading naming `jaxprobe CMD`, else `command`."""
    rows, current, in_table = [], command, False
    for line in (REPO / "docs" / page).read_text().splitlines():
        heading = re.match(r"#+ `?jaxprobe ([a-z -]+?)`?\s*$", line)
        if heading:
            current = heading.group(1).strip()
        if line.startswith("| flag | default |"):
            in_table = True
        elif in_table and line.startswith("| `--"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows.append((current, cells[0].strip("`"), cells[1]))
        elif not line.startswith("|"):
            in_table = False
    return rows


def default_matches(cell: str, action) -> bool:
    """Whether a docs default cell says what argparse does: "(required)", "none..." for None,
    "off" for a switch, a number, or a `literal`."""
    if cell.startswith("(required"):
        return bool(action.required)
    if action.required:
        return False
    default = action.default
    if cell.startswith("none"):
        return default is None
    if cell == "off":
        return default is False
    if cell.startswith("`") and cell.endswith("`"):
        return isinstance(default, str) and default == cell.strip("`")
    try:
        value = float(cell)
    except ValueError:
        return False
    return isinstance(default, (int, float)) and not isinstance(default, bool) and float(default) == value


FLAG_PAGES = {"cli.md": None, "methods/excite.md": "excite"}


def test_docs_flag_defaults_equal_the_parser():
    """Every default the docs' flag tables give is argparse's, and every flag of a command with a
    table is in it (a table that misses a new flag, or quotes an old default, fails here)."""
    parsers = subcommands()
    wrong, seen = [], {}
    for page, command in FLAG_PAGES.items():
        rows = flag_tables(page, command)
        assert rows, page
        for cmd, flag, cell in rows:
            assert cmd in parsers, f"{page}: no command `jaxprobe {cmd}`"
            actions = {s: a for a in parsers[cmd]._actions for s in a.option_strings}
            if flag not in actions:
                wrong.append(f"{page}: `jaxprobe {cmd}` has no {flag}")
            elif not default_matches(cell, actions[flag]):
                wrong.append(f"{page}: `jaxprobe {cmd} {flag}` default {cell!r}, the parser's is "
                             f"{'required' if actions[flag].required else repr(actions[flag].default)}")
            seen.setdefault(cmd, set()).add(flag)
    for cmd, flags in seen.items():
        own = {a.option_strings[-1] for a in parsers[cmd]._actions
               if a.option_strings and a.dest not in ("help", "debug")}
        missing = {f for f in own if not any(alias in flags for alias in
                                             next(a.option_strings for a in parsers[cmd]._actions if f in a.option_strings))}
        if missing:
            wrong.append(f"`jaxprobe {cmd}`: flags missing from its docs table: {sorted(missing)}")
    assert not wrong, "\n".join(wrong)


def test_the_flag_check_catches_a_wrong_default():
    """The check can fail: the old `--delta` row (0.5) against the parser's None, and the rules."""
    import argparse

    parsers = subcommands()
    delta = next(a for a in parsers["egbas"]._actions if "--delta" in a.option_strings)
    assert not default_matches("0.5", delta) and default_matches("none: the library's rule", delta)
    action = argparse.ArgumentParser().add_argument("--x", type=int, default=4096)
    assert default_matches("4096", action) and not default_matches("4095", action)
    assert not default_matches("(required)", action) and not default_matches("none", action)


def test_prose_defaults_equal_the_parser():
    """Defaults written in prose as "`--flag` (default X)" under a `jaxprobe CMD` heading."""
    parsers = subcommands()
    wrong = []
    for page in FLAG_PAGES:
        current = FLAG_PAGES[page]
        for line in (REPO / "docs" / page).read_text().splitlines():
            heading = re.match(r"#+ `?jaxprobe ([a-z -]+?)`?\s*$", line)
            if heading:
                current = heading.group(1).strip()
            for flag, value in re.findall(r"`(--[a-z0-9-]+)[^`]*` \((?:default )?(-?[\d.e+-]+)\)", line):
                actions = {s: a for a in parsers[current]._actions for s in a.option_strings} if current in parsers else {}
                if flag not in actions:
                    wrong.append(f"{page}: {flag} ({value}) under no command that has it (heading: {current})")
                elif not default_matches(value, actions[flag]):
                    wrong.append(f"{page}: `jaxprobe {current} {flag}` ({value}), the parser's {actions[flag].default!r}")
    assert not wrong, "\n".join(wrong)


def test_docs_command_lines_parse():
    """Every `jaxprobe ...` command line shown in the docs parses (flags that exist, values that
    convert), so an example never names a flag the tool dropped."""
    import shlex

    from jaxprobe.cli import build_parser

    bad = []
    for page in DOC_PAGES:
        text = re.sub(r"\\\n\s*", "", page.read_text())
        for line in re.findall(r"^ {4}(jaxprobe [^\n#]*)", text, re.M):
            try:
                build_parser().parse_args(shlex.split(line)[1:])
            except SystemExit:
                bad.append(f"{page.relative_to(REPO)}: {line}")
    assert not bad, "\n".join(bad)


def option_default(cls_path: str, field: str):
    """The default of `field` in a settings NamedTuple, or of a keyword in a function's signature."""
    import importlib
    import inspect

    module, _, name = cls_path.rpartition(".")
    obj = getattr(importlib.import_module(module), name)
    if hasattr(obj, "_field_defaults"):
        return obj._field_defaults[field]
    return inspect.signature(obj).parameters[field].default


def constant(path: str):
    import importlib

    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


# Library defaults the method pages quote: (page, a pattern whose groups are the quoted numbers,
# the values in the code). A page that changes its number, or code that changes its default
# without the page, fails test_quoted_library_defaults_equal_the_code.
QUOTED = [
    ("methods/egbas.md", r"\\\(\\rho = 1/(\d+)\\\)", lambda: (1 / constant("jaxprobe.gbas.beropt.RHO"),)),
    ("methods/egbas.md", r"half the region's median extent along (\d+) random directions",
     lambda: (option_default("jaxprobe.gbas.exploration.region_extent", "directions"),)),
    ("methods/egbas.md", r"half the region's median extent", lambda: (2,) if constant(
        "jaxprobe.gbas.exploration.STEPS_PER_EXTENT") == 2 else (None,)),
    ("methods/excite.md", r"\| steps \(default\) \| (\d+) \| (\d+) \|",
     lambda: (constant("jaxprobe.codespace.excite.DEFAULT_STEPS")["scratch"],
              constant("jaxprobe.codespace.excite.DEFAULT_STEPS")["pretrained"])),
    ("methods/excite.md", r"\\\(\\lambda\\\) \| ([\d.]+) by default", lambda: (constant("jaxprobe.codespace.excite.DEFAULT_LAMBDA"),)),
    ("cli.md", r"`--steps` \| none: (\d+) from scratch, (\d+) with `--pretrained`",
     lambda: tuple(constant("jaxprobe.codespace.excite.DEFAULT_STEPS")[k] for k in ("scratch", "pretrained"))),
    ("methods/inverse-set.md", r"\\\(\\mu_0 = ([\d.]+)\\\), \\\(a = ([\d.]+)\\\), (\d+) inner steps, \\\(K = (\d+)\\\)",
     lambda: tuple(option_default("jaxprobe.inverse_sets.options.InverseSetOptions", f)
                   for f in ("mu0", "growth", "inner_steps", "k"))),
    ("methods/dgn-am.md", r"multiplicative decay of the code after each step, default ([\d.]+)",
     lambda: (option_default("jaxprobe.codespace.dgn_am.DGNAMOptions", "decay"),)),
    ("methods/dgn-am.md", r"ramped linearly from ([\d.e-]+) to ([\d.e-]+) by default",
     lambda: option_default("jaxprobe.codespace.dgn_am.DGNAMOptions", "step_size")),
    ("cli.md", r"\(step ([\d.e-]+) -> ([\d.e-]+) normalised by mean \|gradient\|, decay\s+([\d.]+)\)",
     lambda: (*option_default("jaxprobe.codespace.dgn_am.DGNAMOptions", "step_size"),
              option_default("jaxprobe.codespace.dgn_am.DGNAMOptions", "decay"))),
]


@pytest.mark.parametrize("page,pattern,code", QUOTED, ids=[f"{p}:{i}" for i, (p, _, _) in enumerate(QUOTED)])
def test_quoted_library_defaults_equal_the_code(page, pattern, code):
    text = re.sub(r"\s+", " ", (REPO / "docs" / page).read_text())
    m = re.search(pattern, text)
    assert m, f"{page} no longer says {pattern!r}: update the page and this test together"
    want = code()
    quoted = m.groups() or (2,)
    assert len(quoted) == len(want), (quoted, want)
    for q, w in zip(quoted, want):
        assert w is not None and float(q) == pytest.approx(float(w)), f"{page} quotes {q}, the code has {w}"


def test_benchmark_page_quotes_the_suite_speedups():
    """The suite's layer-1 GB-RRT speedups quoted beside the older table are its results file's."""
    import json

    rows = {r["name"]: r for r in json.loads((REPO / "benchmarks" / "results" / "suite" / "results.json")
                                             .read_text())["rows"]}
    text = re.sub(r"\s+", " ", (REPO / "docs" / "benchmarks.md").read_text())
    m = re.search(r"([\d.]+)x the sequential reference at 1024 candidates \(batch 256\), ([\d.]+)x with the tree held "
                  r"at 2048 nodes, ([\d.]+)x at 256 nodes", text)
    assert m, "docs/benchmarks.md no longer quotes the suite's GB-RRT speedups"
    for quoted, name in zip(m.groups(), ("gbrrt layer 1, B=256, 1024 candidates", "gbrrt layer 1, B=256, tree 2048",
                                         "gbrrt layer 1, B=256, tree 256")):
        assert quoted == f"{rows[name]['ratio']:.3g}", (name, quoted, rows[name]["ratio"])


# ------------------------------------------------------------------ the API pages


def api_directives() -> list:
    """(page, object path, options text) of every `::: object` directive of docs/api/."""
    found = []
    for page in sorted((REPO / "docs" / "api").glob("*.md")):
        for m in re.finditer(r"^::: ([\w.]+)\n((?: {4}.*\n)*)", page.read_text(), re.M):
            found.append((page.name, m.group(1), m.group(2)))
    return found


def test_every_module_is_on_an_api_page():
    """A module added to the packages appears in the API reference (a missing one renders nothing
    and warns nothing)."""
    shown = {path for _, path, _ in api_directives()}
    modules = set()
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            if any(p.startswith("_") for p in parts):  # private modules, and packages' __init__
                continue
            modules.add(".".join(parts))
    missing = sorted(modules - shown)
    assert not missing, f"modules on no docs/api page: {missing}"


# The method modules' pages show their public function first, before the module's own members
# (its state and result classes, kernels and helpers).
PUBLIC_FIRST = {"jaxprobe.gbas.egbas": "egbas", "jaxprobe.gbas.beropt": "beropt", "jaxprobe.gbas.gbrrt": "gbrrt",
                "jaxprobe.inverse_sets.inverse_set": "inverse_set", "jaxprobe.codespace.dgn_am": "dgn_am",
                "jaxprobe.codespace.ppgn": "ppgn", "jaxprobe.codespace.excite": "excite",
                "jaxprobe.models.store": "load"}


def test_api_pages_put_the_public_function_first():
    directives = api_directives()
    paths = [path for _, path, _ in directives]
    for module, function in PUBLIC_FIRST.items():
        assert f"{module}.{function}" in paths, f"{module}.{function} has no directive of its own"
        i = paths.index(f"{module}.{function}")
        assert paths[i + 1] == module, f"{module}.{function} should come just before {module}"
        options = directives[i + 1][2]
        assert f'"!^{function}$"' in options, f"{module}'s directive should filter out {function} (shown above it)"


@needs_mkdocs
def test_api_page_renders_the_public_function_before_the_state_classes(tmp_path):
    r = build(tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    html = (tmp_path / "site" / "api" / "codespace.html").read_text()
    first = html.index('id="jaxprobe.codespace.dgn_am.dgn_am"')
    state = html.index('id="jaxprobe.codespace.dgn_am.DGNAMState"')
    assert first < state
    assert html.count('id="jaxprobe.codespace.dgn_am.dgn_am"') == 1


def documented_parameters(extension: bool) -> list:
    """Every documented parameter of the packages' public functions and classes as the API pages
    read it: (object path, name, default shown), with or without docs/hooks/griffe_params.py."""
    griffe = pytest.importorskip("griffe")
    sys.path.insert(0, str(REPO / "docs" / "hooks"))
    try:
        from griffe_params import SplitParameters
    finally:
        sys.path.pop(0)
    found = []

    def walk(obj):
        for name, member in obj.members.items():
            if name.startswith("_") or member.is_alias:
                continue
            if member.is_module:
                walk(member)
            elif member.is_function or member.is_class:
                try:
                    signature = member.parameters
                except (AttributeError, ValueError, KeyError):
                    signature = None
                if member.docstring and signature is not None:
                    for section in member.docstring.parsed:
                        if isinstance(section, griffe.DocstringSectionParameters):
                            found.extend((member, signature, p) for p in section.value)
                if member.is_class:
                    walk(member)

    extensions = griffe.load_extensions(SplitParameters) if extension else None
    for package in PACKAGES:
        walk(griffe.load(package, search_paths=[str(REPO)], extensions=extensions, docstring_parser="google",
                         docstring_options={"warn_unknown_params": False, "warn_missing_types": False}))
    return found


def wrongly_required(found) -> list:
    """Parameters the API pages would show as "required" (no default) although the signature
    gives one, or under a name the signature does not have."""
    bad = []
    for obj, signature, p in found:
        if p.name not in signature:
            bad.append(f"{obj.path}: {p.name!r} is not a parameter")
        elif signature[p.name].default is not None and p.default is None:
            bad.append(f"{obj.path}: {p.name} shown required, default {signature[p.name].default}")
    return bad


@needs_mkdocs
def test_api_pages_show_every_parameter_with_its_default():
    """`lower, upper: ...` in a docstring documents two parameters: the API pages show each with
    its signature's default (None), not one "required" row (mkdocs.yml loads the extension)."""
    assert "docs/hooks/griffe_params.py:SplitParameters" in (REPO / "mkdocs.yml").read_text()
    bad = wrongly_required(documented_parameters(extension=True))
    assert not bad, f"{len(bad)} parameters shown wrongly:\n" + "\n".join(bad)


@needs_mkdocs
def test_the_parameter_check_fails_without_the_extension():
    bad = wrongly_required(documented_parameters(extension=False))
    assert any("gen_params, cls_params" in b or "lower, upper" in b or "model, params" in b for b in bad), bad[:5]


METHOD_PAGES = ("egbas", "inverse-set", "dgn-am", "ppgn", "excite")


@pytest.mark.parametrize("method", METHOD_PAGES)
def test_every_method_page_shows_an_output_image(method):
    """Each method page shows one output image (under docs/img/), sized for reading in the page,
    with a caption naming the command that made it."""
    from PIL import Image

    text = (REPO / "docs" / "methods" / f"{method}.md").read_text()
    images = re.findall(r"!\[([^\]]+)\]\(\.\./img/([\w.-]+\.png)\)\n\n\*([^*]+)\*", text)
    assert images, f"docs/methods/{method}.md shows no output image (with an italic caption under it)"
    for alt, name, caption in images:
        path = REPO / "docs" / "img" / name
        assert path.is_file(), path
        width, height = Image.open(path).size
        assert width <= 1600 and height <= 1000 and path.stat().st_size <= 300_000, (name, width, height)
        assert "Made by `" in " ".join(caption.split()), f"{name}: the caption should name the command that made it"
