"""The demo report: one function per section, assembled into index.html and results.json.

A section is a function `section(ctx) -> Section`; `ctx` carries the output directory, a base PRNG
key and a cache of loaded models. Later methods add their sections to `SECTIONS`.
"""

from __future__ import annotations

import time
from pathlib import Path

from jaxprobe.io import atomic_dir, check_replaceable, write_json, write_text
from jaxprobe.report.base import Context, Section, render
from jaxprobe.report.codespace import dgn_am_section, ppgn_section
from jaxprobe.report.egbas import egbas_section
from jaxprobe.report.excite import excite_section
from jaxprobe.report.foundation import foundation_section
from jaxprobe.report.inverse_set import inverse_set_section

SECTIONS = [foundation_section, egbas_section, inverse_set_section, dgn_am_section, ppgn_section, excite_section]

__all__ = ["Context", "Section", "SECTIONS", "run_demo", "write_report"]


def provenance(command: str | None = None, seed: int = 0) -> dict:
    """How a report was made: the command line, seed, date, and the jaxprobe / JAX versions and backend."""
    import datetime
    import importlib.metadata
    import sys

    import jax

    return {"command": command or "jaxprobe " + " ".join(sys.argv[1:]), "seed": seed,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "jaxprobe": importlib.metadata.version("jaxprobe"), "jax": jax.__version__,
            "backend": jax.default_backend()}


# Figures up to this many pixels wide sit side by side at their size; wider ones take the page's
# width (1100 px) rather than being shrunk to this, so that their labels stay legible.
NARROW = 520


def _png_width(path: Path) -> int:
    """A PNG's width in pixels from its header (0 when the file is missing or not a PNG)."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except OSError:
        return 0
    return int.from_bytes(head[16:20], "big") if head[:8] == b"\x89PNG\r\n\x1a\n" else 0


def write_report(out_dir: Path, sections: list[Section], timings: dict, made: dict | None = None) -> None:
    """Write index.html (templates/index.html.j2; each section's body is HTML rendered from its own
    template, everything else is escaped here) and results.json into `out_dir`. `made` is the
    `provenance` the page states (default: this process's)."""
    made = provenance() if made is None else made
    widths = {file: _png_width(Path(out_dir) / file) for s in sections for file, _ in s.figures}
    write_text(out_dir / "index.html", render("index.html.j2", sections=sections, timings=timings, made=made,
                                              widths=widths, narrow=NARROW))
    results = {s.key: s.results for s in sections}
    results["timings_s"] = timings
    results["provenance"] = made
    write_json(out_dir / "results.json", results)


def run_demo(out="jaxprobe-report", sections=None, *, seed: int = 0, progress: bool = True,
             force: bool = False, command: str | None = None) -> Path:
    """Run every section on the default models and write the report to `out` (atomically).

    `out` is refused before any work if it is a directory jaxprobe did not write, unless `force`
    (`jaxprobe.io.check_replaceable`). `command`: how the page says it was made (default: this
    call, `jaxprobe.report.run_demo(...)`; the `jaxprobe demo` command passes its command line)."""
    if command is None:
        command = f"python: jaxprobe.report.run_demo({str(out)!r}, seed={seed})"
    from tqdm.auto import tqdm

    sections = SECTIONS if sections is None else sections
    out = check_replaceable(out, force=force)
    done, timings = [], {}
    with atomic_dir(out, force=force) as tmp:
        ctx = Context(out_dir=tmp, seed=seed)
        bar = tqdm(sections, desc="jaxprobe demo", disable=not progress, unit="section")
        for fn in bar:
            bar.set_postfix_str(fn.__name__.removesuffix("_section"))
            t0 = time.perf_counter()
            section = fn(ctx)
            timings[section.key] = round(time.perf_counter() - t0, 2)
            done.append(section)
        write_report(tmp, done, timings, provenance(command, seed=seed))
    if progress:
        print(f"report written to {out / 'index.html'}")
    return out
