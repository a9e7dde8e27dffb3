"""The report page from its template: sections, figures and timings in order, text escaped, strict JSON."""

import json
import math
from html.parser import HTMLParser

from jaxprobe.report import Section, write_report


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_write_report_renders_sections_escaped_and_writes_strict_json(tmp_path):
    sections = [
        Section("a", "Models <& co>", "<p>body <b>one</b></p>", [("x.png", 'caption "1" <i>')], {"v": math.nan}),
        Section("b", "Second", "<table><tr><td>2</td></tr></table>", [], {"w": [1, 2]}),
    ]
    made = {"command": "jaxprobe demo --out <x>", "seed": 7, "date": "2026-12-01 10:00 UTC", "jaxprobe": "9.9",
            "jax": "0.10.2", "backend": "cpu"}
    write_report(tmp_path, sections, {"a": 1.234, "b": 20.0}, made)
    page = (tmp_path / "index.html").read_text()
    parser = _Collect()
    parser.feed(page)
    ids = [a["id"] for t, a in parser.tags if t == "section"]
    assert ids == ["a", "b"]
    imgs = [a for t, a in parser.tags if t == "img"]
    assert imgs == [{"src": "x.png", "alt": 'caption "1" <i>'}]  # the attribute survives escaping
    links = [a["href"] for t, a in parser.tags if t == "a"]
    assert links == ["results.json", "x.png"]  # the data, and each figure at full size
    text = " ".join("".join(parser.text).split())  # whitespace as a browser shows it
    assert "Models <& co>" in text and 'caption "1" <i>' in text  # shown as text, not markup
    assert ("b", {}) in parser.tags  # a section's own HTML is kept as HTML
    assert "took 1.2 s of wall time" in text and "took 20.0 s of wall time" in text
    assert "jaxprobe demo --out <x>" in text and "seed 7" in text and "jaxprobe 9.9" in text and "JAX 0.10.2" in text
    results = json.loads((tmp_path / "results.json").read_text())  # strict: NaN became null
    assert results == {"a": {"v": None}, "b": {"w": [1, 2]}, "timings_s": {"a": 1.234, "b": 20.0},
                       "provenance": made}
