"""The demo report: one function per section, assembled into index.html and results.json.

A section is a function `section(ctx) -> Section`; `ctx` carries the output directory, a base PRNG
key and a cache of loaded models. Later methods add their sections to `SECTIONS`.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

from jaxprobe.io import atomic_dir
from jaxprobe.report.base import Context, Section
from jaxprobe.report.egbas import egbas_section
from jaxprobe.report.foundation import foundation_section
from jaxprobe.report.inverse_set import inverse_set_section

SECTIONS = [foundation_section, egbas_section, inverse_set_section]

__all__ = ["Context", "Section", "SECTIONS", "run_demo", "write_report"]


def write_report(out_dir: Path, sections: list[Section], timings: dict) -> None:
    body = []
    for s in sections:
        figs = "".join(
            f'<figure><img src="{html.escape(f)}" alt="{html.escape(c)}"><figcaption>{html.escape(c)}</figcaption></figure>'
            for f, c in s.figures
        )
        body.append(f"<section id=\"{s.key}\"><h2>{html.escape(s.title)}</h2>{s.html}{figs}"
                    f"<p class=\"t\">{timings[s.key]:.1f} s</p></section>")
    page = (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>jaxprobe report</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}figure{display:inline-block;"
        "margin:.5em;vertical-align:top}img{max-width:520px;image-rendering:pixelated}table{border-collapse:"
        "collapse}td,th{border:1px solid #ccc;padding:.2em .5em;text-align:right}.t{color:#888}</style></head>"
        f"<body><h1>jaxprobe report</h1>{''.join(body)}</body></html>"
    )
    (out_dir / "index.html").write_text(page)
    results = {s.key: s.results for s in sections}
    results["timings_s"] = timings
    from jaxprobe.models.store import json_default

    (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=json_default) + "\n")


def run_demo(out="jaxprobe-report", sections=None, *, seed: int = 0, progress: bool = True) -> Path:
    """Run every section on the default models and write the report to `out` (atomically)."""
    from tqdm.auto import tqdm

    sections = SECTIONS if sections is None else sections
    out = Path(out).resolve()
    done, timings = [], {}
    with atomic_dir(out) as tmp:
        ctx = Context(out_dir=tmp, seed=seed)
        bar = tqdm(sections, desc="jaxprobe demo", disable=not progress, unit="section")
        for fn in bar:
            bar.set_postfix_str(fn.__name__.removesuffix("_section"))
            t0 = time.perf_counter()
            section = fn(ctx)
            timings[section.key] = round(time.perf_counter() - t0, 2)
            done.append(section)
        write_report(tmp, done, timings)
    if progress:
        print(f"report written to {out / 'index.html'}")
    return out
