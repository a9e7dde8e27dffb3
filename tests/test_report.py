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
    write_report(tmp_path, sections, {"a": 1.234, "b": 20.0})
    page = (tmp_path / "index.html").read_text()
    parser = _Collect()
    parser.feed(page)
    ids = [a["id"] for t, a in parser.tags if t == "section"]
    assert ids == ["a", "b"]
    imgs = [a for t, a in parser.tags if t == "img"]
    assert imgs == [{"src": "x.png", "alt": 'caption "1" <i>'}]  # the attribute survives escaping
    text = "".join(parser.text)
    assert "Models <& co>" in text and 'caption "1" <i>' in text  # shown as text, not markup
    assert ("b", {}) in parser.tags  # a section's own HTML is kept as HTML
    assert "1.2 s" in text and "20.0 s" in text
    results = json.loads((tmp_path / "results.json").read_text())  # strict: NaN became null
    assert results == {"a": {"v": None}, "b": {"w": [1, 2]}, "timings_s": {"a": 1.234, "b": 20.0}}
