"""The report page from its template: sections, figures and timings in order, text escaped, strict JSON;
every figure a link to its full size, wide ones shown wide, and how the page was made."""

import json
import math
from html.parser import HTMLParser
from pathlib import Path

from jaxprobe.report import NARROW, Section, write_report

PROVENANCE = ("command", "seed", "date", "jaxprobe", "jax", "backend")


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


class _Figures(HTMLParser):
    """Each <img>'s src, the href of the <a> around it (None when bare) and its <figure>'s class."""

    def __init__(self):
        super().__init__()
        self.links, self.figure, self.images, self.hrefs = [], None, [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a":
            self.links.append(attrs.get("href"))
            self.hrefs.append(attrs.get("href"))
        elif tag == "figure":
            self.figure = attrs.get("class")
        elif tag == "img":
            self.images.append((attrs["src"], self.links[-1] if self.links else None, self.figure))

    def handle_endtag(self, tag):
        if tag == "a":
            self.links.pop()
        elif tag == "figure":
            self.figure = None


def check_report(out: Path) -> dict:
    """What every report directory must hold (also run on the demo's report): each <img> inside an
    <a href> to the same existing file, figures wider than the page's column shown wide, a link to
    results.json, and how the page was made (command, seed, date, jaxprobe and JAX versions) in the
    page and in results.json. Returns results.json."""
    from jaxprobe.report import _png_width

    page = (out / "index.html").read_text()
    parser = _Figures()
    parser.feed(page)
    assert parser.images, "no figure"
    for src, href, figure_class in parser.images:
        assert href == src and (out / src).is_file(), (src, href)
        assert (figure_class == "wide") == (_png_width(out / src) > NARROW), (src, figure_class)
    assert "results.json" in parser.hrefs
    results = json.loads((out / "results.json").read_text())
    made = results["provenance"]
    assert set(PROVENANCE) <= set(made) and all(made[k] not in (None, "") for k in PROVENANCE)
    text = " ".join(page.split())
    for k in ("command", "date", "jaxprobe", "jax", "backend"):
        assert str(made[k]).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in text, k
    assert f"seed {made['seed']}" in text
    return results


def test_every_figure_links_to_its_full_size_and_the_page_says_how_it_was_made(tmp_path):
    import numpy as np

    from jaxprobe.experiments.figures import save_grid
    from jaxprobe.report import provenance

    rng = np.random.default_rng(0)
    save_grid(tmp_path / "small.png", rng.random((4, 8, 8, 1)), 2, "small")
    save_grid(tmp_path / "wide.png", rng.random((40, 28, 28, 1)), 40, "wide")
    write_report(tmp_path, [Section("a", "A", "<p>a</p>", [("small.png", "a small one"), ("wide.png", "a wide one")])],
                 {"a": 0.5}, provenance("jaxprobe demo --out r", seed=3))
    results = check_report(tmp_path)
    assert results["provenance"]["seed"] == 3 and results["provenance"]["command"] == "jaxprobe demo --out r"
    from jaxprobe.report import _png_width

    assert _png_width(tmp_path / "small.png") <= NARROW < _png_width(tmp_path / "wide.png")  # both cases of the check were met
