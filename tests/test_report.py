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

    # both cases of the check were met
    assert _png_width(tmp_path / "small.png") <= NARROW < _png_width(tmp_path / "wide.png")


# ---------------------------------------------------------------- what the numbers say (issue 23)

import numpy as np  # noqa: E402  (the tests above need none)

def _egbas_tables(similarity: float, sigma: float, lowest=(True, False)):
    methods = ("egbas", "l2", "linf")
    return {"sigma": {m: [sigma, sigma * 1.5] for m in methods},
            "similarity_mean_over_layers": {m: [similarity, similarity - 0.001, similarity, similarity]
                                            for m in methods},
            "claim": {"egbas_lowest_sigma": list(lowest)}}


def test_egbas_conclusion_follows_the_similarities_sigma_and_the_tree():
    from jaxprobe.experiments.egbas_tables import PAPER
    from jaxprobe.report.egbas import egbas_conclusion

    plane = {"accepted": 5, "n_rejected": 997, "stop_reason": "iterations done"}
    near = egbas_conclusion(plane, _egbas_tables(0.999, 0.01), 256)
    assert "barely leave the query" in near and "997" in near and "5 nodes" in near
    lo, hi = min(PAPER["sigma"]["egbas"]), max(PAPER["sigma"]["egbas"])
    assert f"{lo:.3f}-{hi:.3f}" in near and "below the paper" in near  # 0.01-0.015 < 0.032
    pmed = float(np.median(PAPER["sigma"]["egbas"]))
    assert f"about {pmed / 0.0125:.2g} times smaller" in near  # median 0.0125 against the paper's median
    far = egbas_conclusion(plane, _egbas_tables(0.7, 0.05), 256)
    assert "barely leave" not in far and "moving away from the query" in far and "within the paper" in far
    assert "lowest sigma at 1 of 2 layers" in far
    assert "above the paper" in egbas_conclusion(plane, _egbas_tables(0.8, 0.2), 256)
    undefined = _egbas_tables(float("nan"), float("nan"), lowest=(None, None))
    assert egbas_conclusion(plane, undefined, 256) == "No table value was defined."


def _ppgn_results(rates, div):
    return {"classes": [{"label": c, "class_rate": r, "diversity": div.get(c)} for c, r in enumerate(rates)]}


def test_ppgn_conclusion_follows_the_class_rates_and_the_diversity():
    from jaxprobe.report.codespace import ppgn_conclusion

    good = ppgn_conclusion(_ppgn_results([0.95] * 9 + [0.92], {3: {"ppgn": 22.7, "dgn_am": 15.1},
                                                                 8: {"ppgn": 20.0, "dgn_am": 14.0}}))
    assert "stay in their class" in good and "at least 0.92" in good
    assert "more diverse than DGN-AM's, as the paper reports" in good and "class 3: 22.7 against 15.1" in good
    bad = ppgn_conclusion(_ppgn_results([0.95] * 9 + [0.3], {3: {"ppgn": 10.0, "dgn_am": 15.1},
                                                               8: {"ppgn": 9.0, "dgn_am": 14.0}}))
    assert "stay in their class" not in bad and "leave their class" in bad and "class 9" in bad
    assert "less diverse" in bad and "against the paper's claim" in bad
    mixed = ppgn_conclusion(_ppgn_results([0.6] * 10, {3: {"ppgn": 20.0, "dgn_am": 15.1},
                                                        8: {"ppgn": 9.0, "dgn_am": 14.0}}))
    assert "for 1 of 2 classes" in mixed and "lowest class rate 0.60" in mixed
    assert "could not be measured" in ppgn_conclusion(_ppgn_results([0.9], {0: {"ppgn": float("nan"),
                                                                                 "dgn_am": float("nan")}}))


def test_the_ppgn_page_says_why_only_some_classes_have_a_diversity():
    from jaxprobe.report.base import render
    from jaxprobe.report.codespace import DGN_STEPS, DIVERSITY_CLASSES, DIVERSITY_REASON

    rows = [{"label": c, "kept_rate": 1.0, "class_rate": 1.0, "kept_after": 10,
             "diversity": {"ppgn": 2.0, "dgn_am": 1.0} if c in DIVERSITY_CLASSES else None} for c in range(10)]
    page = render("ppgn.html.j2", prior="dae", chains=2, steps=200, burn_in=100, save_every=10, classes=rows,
                  min_class_rate=1.0, diversity_classes=list(DIVERSITY_CLASSES),
                  diversity_reason=DIVERSITY_REASON.format(steps=DGN_STEPS, n=len(DIVERSITY_CLASSES)))
    text = " ".join(page.split())
    assert f"measured for classes {', '.join(map(str, DIVERSITY_CLASSES))} only" in text
    assert "time budget" in text and "show '-'" in text.replace("&#39;", "'")


def _dgn_results(above, named, n=10, in_bounds=True):
    rows = [{"neuron": f"logits:{j}", "ratio": 2.0 if j < above else 0.5} for j in range(n)]
    return {"neurons": rows, "above_real_mean": above, "classified_as_target": named, "codes_in_bounds": in_bounds}


def test_dgn_am_conclusion_follows_the_counts():
    from jaxprobe.report.codespace import dgn_am_conclusion

    assert "on every class" in dgn_am_conclusion(_dgn_results(10, 10)) and "(10/10 above" in dgn_am_conclusion(
        _dgn_results(10, 10))
    assert "most classes but not all" in dgn_am_conclusion(_dgn_results(7, 6))
    weak = dgn_am_conclusion(_dgn_results(2, 1, in_bounds=False))
    assert "mostly fails" in weak and "2/10 above" in weak and "1/10 classified" in weak
    assert "clipping did not hold" in weak
    assert "median 0.5x" in weak  # 8 of 10 ratios at 0.5


def test_inverse_set_conclusion_follows_the_counts_and_the_fresh_check():
    from jaxprobe.report.inverse_set import inverse_set_conclusion

    def run(label, accepted, ok, div):
        return {"label": label, "n_accepted": accepted, "n_requested": 50, "fresh_forward_check": {"all_in_range": ok},
                "diversity_statistics": {"mean_pairwise_distance": div}}

    full = {"samples_checked": 200, "runs": [run("class, typical", 50, True, 3.0), run("hidden", 50, True, 5.0)]}
    text = inverse_set_conclusion(full)
    assert "Every set is full" in text and "all 200 samples" in text and "delivers" in text
    assert "class, typical set is the least diverse" in text and "hidden set the most (5)" in text
    short = {"samples_checked": 80, "runs": [run("class, high", 30, True, 3.0), run("hidden", 50, False, 5.0)]}
    text = inverse_set_conclusion(short)
    assert "Not every set is full: class, high (30/50)" in text and "samples of hidden fall outside" in text
    assert "delivers" not in text


def test_excite_and_models_conclusions_follow_the_numbers():
    from jaxprobe.report.excite import excite_conclusion
    from jaxprobe.report.foundation import models_conclusion

    rows = [{"target": "logits:0", "start_value": 0.1, "target_value": 5.0},
            {"target": "conv2:5", "start_value": 0.1, "target_value": 0.5},
            {"target": "logits:3+logits:8", "start_value": 0.2, "target_value": 0.1}]
    variants = [{"name": "scratch", "n_classes": 4, "classes_first": 4, "classes_classified": 4, "rows": rows,
                 "class_targets": ["logits:0"]},
                {"name": "pretrained", "n_classes": 4, "classes_first": 1, "classes_classified": 0, "rows": rows,
                 "class_targets": ["logits:0"]}]
    text = excite_conclusion(variants)
    assert "scratch works on every class (4/4" in text and "pretrained mostly fails on the classes (1/4" in text
    assert "1 of its 2 other targets rose" in text
    good = {"classifier_test_accuracy": 0.991, "fc_generator_reconstruction_accuracy": 0.95,
            "dcgan_quality": {"mean_max_prob": 0.95, "min_digit_fraction": 0.08},
            "dcgan2d_quality": {"mean_max_prob": 0.6, "min_digit_fraction": 0.0}}
    text = models_conclusion(good)
    assert "classifier is accurate (0.9910" in text and "95.00%" in text
    assert "dcgan makes clear digits" in text and "covering every digit (rarest 0.080" in text
    assert "dcgan2d makes often ambiguous images" in text and "covering not every digit" in text
    assert "accuracies are missing" in models_conclusion({"mnist": "unavailable (no file)"})


def test_tables_print_yes_and_no_and_the_conclusion_ends_each_section(tmp_path):
    from jaxprobe.report.base import render

    rows = [{"neuron": "logits:0", "final_activation": 1.0, "best_activation": 1.0, "real_mean": 0.5, "ratio": 2.0,
             "predicted": 0}]
    for flag, word in ((True, "yes"), (False, "no")):
        page = render("dgn_am.html.j2", steps=200, codes_in_bounds=flag, above_real_mean=1, classified_as_target=1,
                      seconds_per_step=0.01, neurons=rows)
        assert f"<b>{word}</b>" in page and "True" not in page and "False" not in page
        check = {"all_in_range": flag}
        run = {"label": "a", "ranges_text": "x in [0, 1]", "n_accepted": 5, "n_requested": 5,
               "steps": {"outer_iterations": 1, "sampling_steps": 2},
               "diversity_statistics": {"mean_pairwise_distance": 1.0}, "fresh_forward_check": check,
               "stop_reason": "done"}
        page = render("inverse_set.html.j2", n=5, k=2, inner_steps=3, embedding_layer="fc1", samples_checked=5,
                      all_in_range=flag, runs=[run])
        assert page.count(f">{word}<") == 2 and "True" not in page and "False" not in page
    write_report(tmp_path, [Section("a", "A", "<p>body</p>", [("x.png", "what it shows")], {}, "It worked (3/3)."),
                            Section("b", "B", "<p>b</p>")], {"a": 1.0, "b": 1.0},
                 {"command": "c", "seed": 0, "date": "d", "jaxprobe": "1", "jax": "2", "backend": "cpu"})
    page = (tmp_path / "index.html").read_text()
    section_a = page[page.index('<section id="a">'):page.index("</section>")]
    assert section_a.index("what it shows") < section_a.index("It worked (3/3).") < section_a.index("This section took")
    assert page.count('class="conclusion"') == 1  # a section without one shows none
