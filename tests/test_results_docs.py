"""Every measured number the docs quote comes from a results file: the E-GBAS tables and lambda
sweep, DGN-AM's and the excitation generators' reproductions, the inverse-set reproduction, the
GB-RRT throughput benchmark, the shipped DAE's manifest. Each check reads the file (under
`benchmarks/results/`, or the manifest) and asserts that the docs state its numbers at the
precision they print, so a re-run that changes a number fails here until the docs follow.
(PPGN's table is checked against its results file in tests/test_ppgn.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
METHOD_ROWS = {"egbas": "E-GBAS", "l2": "L2-based", "linf": "Linf-based"}


def results(path: str) -> dict:
    return json.loads((RESULTS / path).read_text())


def doc(path: str) -> str:
    """The page's text with line breaks and repeated spaces collapsed (prose wraps anywhere)."""
    return re.sub(r"\s+", " ", (ROOT / "docs" / path).read_text())


def numbers(cells: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+\.\d+|-?\d+", cells)]


def table_row(text: str, label: str, after: str) -> list[float]:
    """The numbers of the first markdown row labelled `label` after the heading text `after`."""
    rest = text[text.index(after):]
    m = re.search(r"\| " + re.escape(label) + r" \|(.*?)\| (?=\||$)", rest)
    assert m, (label, after)
    row = rest[m.start():].split(" | |")[0]
    return numbers(row[len(label) + 3:].split("| |")[0])


def say(text: str, phrase: str) -> None:
    assert phrase in text, f"the docs do not say {phrase!r}"


def test_egbas_tables_in_the_method_page_are_the_results_files():
    t = results("egbas/egbas_tables.json")
    text = (ROOT / "docs/methods/egbas.md").read_text()
    lines = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    sigma_block = text[text.index("Table 1, "):text.index("Table 2, ")]
    sim_block = text[text.index("Table 2, "):text.index("The paper's claim holds")]
    for m, label in METHOD_ROWS.items():
        for block, values, paper, digits in (
                (sigma_block, t["sigma"][m], t["paper"]["sigma"][m], 4),
                (sim_block, t["similarity_mean_over_layers"][m], t["paper"]["similarity"][m], 3)):
            row = next(line for line in block.splitlines() if line.startswith(f"| {label} |"))
            got = numbers(row.split("|", 2)[2])
            want = [v for pair in zip(np.round(values, digits), paper) for v in pair]
            np.testing.assert_allclose(got, want, atol=0.6 * 10.0 ** -digits, err_msg=f"{label}: {row}")
    assert lines  # the page has tables at all


def test_egbas_prose_and_sweep_are_the_results_files():
    t = results("egbas/egbas_tables.json")
    page, summary = doc("methods/egbas.md"), doc("results.md")
    sigma = t["sigma"]["egbas"]
    say(summary, ", ".join(f"{v:.4f}" for v in sigma))
    layer1 = [row[0] for row in t["similarity"]["egbas"][:1]]  # generator layer 1, critic layer 1
    for text in (page, summary):
        say(text, f"{layer1[0]:.3f}")
    kept = t["per_query"]["n_selected"]
    say(page, f"{min(kept[0])}-{max(kept[0])} of 4704 units at layer 1")
    say(page, f"{min(kept[3])}-{max(kept[3])} of 784 at layer 4")
    sweep = results("egbas/lambdas/layer1/egbas_lambdas.json")
    sweep_block = page[page.index("Mask size against region size"):page.index("## References")]
    for i, m in enumerate(sweep["lambdas"]):
        row = f"| {m:g} | {sweep['units_kept'][i]:.0f} | {sweep['support_error'][i]:.3f} | {sweep['extent'][i]:.2f} | "
        row += f"{sweep['sigma']['egbas'][i]:.4f} | {sweep['sigma']['l2'][i]:.4f} | "
        row += " | ".join(f"{sweep['similarity'][k][i][0]:.3f}" for k in METHOD_ROWS) + " |"
        say(sweep_block, row)
    first, last = 0, len(sweep["lambdas"]) - 1
    say(summary, f"{sweep['units_kept'][first]:.0f} units kept give sigma {sweep['sigma']['egbas'][first]:.4f} and "
                 f"similarity {sweep['similarity']['egbas'][first][0]:.3f}, {sweep['units_kept'][last]:.0f} units "
                 f"{sweep['sigma']['egbas'][last]:.4f} and {sweep['similarity']['egbas'][last][0]:.3f}")
    supported = [results(f"egbas/lambdas/layer{k}/egbas_lambdas.json")["supported_multiple"] for k in (1, 2, 3, 4)]
    say(page, f"{supported[0]:g} at layer 1, {supported[1]:g} at layer 2 and {supported[2]:g} at layers 3 and 4")
    assert supported[2] == supported[3]


def test_dgn_am_numbers_are_the_reproductions():
    r = results("dgn_am/reproduce_dgn_am.json")
    text = doc("results.md")
    rows = r["neurons"]
    am = [row["am_activation"] for row in rows]
    real_max = [row["real_max"] for row in rows]
    ratio = [row["am_activation"] / row["real_mean"] for row in rows]
    above = sum(row["exceeds_real_max"] for row in rows)
    hit = sum(int(p) == row["label"] for p, row in zip(r["predicted"], rows))
    say(text, f"({min(am):.1f}-{max(am):.1f})")
    say(text, f"({min(real_max):.1f}-{max(real_max):.1f}; {above} of {len(rows)})")
    say(text, f"{min(ratio):.2f}-{max(ratio):.2f} times the real mean")
    say(doc("methods/dgn-am.md"), f"{min(ratio):.2f}-{max(ratio):.2f} times the real mean")
    assert above == hit == len(rows), "the method page says every class exceeds its real maximum and is hit"
    say(text, f"classified as its target ({hit} of {len(rows)})")
    say(text, f"{r['seconds_per_step'] * 1000:.0f} ms per step for {len(rows)} chains")


def test_inverse_set_numbers_are_the_reproductions():
    r = results("inverse_set/reproduce_inverse_set.json")
    text = doc("results.md")
    eq5, eq13, eq14 = (r["runs"][k] for k in ("eq5", "eq13", "eq14"))
    say(text, f"seeds in {eq5['outer_iterations']} outer iterations")
    say(text, f"in {eq5['sampling_steps']} sampling steps with eq. 5")
    say(text, f"and {eq13['sampling_steps']} with eq. 13")
    say(text, f"mean pairwise E-distance {eq5['mean_pairwise_E_distance']:.1f} (eq. 5) against "
              f"{eq13['mean_pairwise_E_distance']:.1f} (eq. 13)")
    say(text, f"(E-distance {eq14['mean_pairwise_E_distance']:.1f})")


@pytest.mark.parametrize("variant", ["scratch", "pretrained"])
def test_excitation_numbers_are_the_reproductions(variant):
    r = results("excite/reproduce_excite.json")
    rows = r["variants"][variant]["targets"]
    first = sum(row["rank"] == 1 for row in rows)
    hit = sum(row["predicted"] == int(row["target"].split(":")[1]) for row in rows)
    values = [row["target_value"] for row in rows]
    others = [row["max_other"] for row in rows]
    summary, page = doc("results.md"), doc("methods/excite.md")
    span = f"{min(values):.1f}-{max(values):.1f} against"
    say(summary, {"scratch": f"ranks first for {first} of {len(rows)} classes, at {span} the largest other",
                  "pretrained": f"first for {first} of {len(rows)}, at {span}"}[variant]
        + f" {min(others):.2f}-{max(others):.2f}")
    label = {"scratch": "from scratch", "pretrained": "pretrained"}[variant]
    per_step = r["variants"][variant]["seconds_per_step"] * 1000
    say(page, f"| {label} | {r['variants'][variant]['steps']} | {first} of {len(rows)} | {min(values):.1f}-"
              f"{max(values):.1f} | {min(others):.2f}-{max(others):.2f} | "
              f"{'every one classified as its target' if hit == len(rows) else f'{hit} of {len(rows)} classified'} | "
              f"{per_step:.0f} ms |")


def test_the_filter_and_compound_targets_are_the_reproductions():
    r = results("excite/default_targets/reproduce_excite.json")
    rows = {(v, t["target"]): t for v, x in r["variants"].items() for t in x["targets"]}
    f = rows[("scratch", "conv2:5")]
    summary, page = doc("results.md"), doc("methods/excite.md")
    say(summary, f"rises from {f['start_value']:.3f} to {f['target_value']:.3f} from scratch, {f['rank']}th of "
                 f"{f['units']} filters")
    say(page, f"raise it from {f['start_value']:.3f} to {f['target_value']:.3f}")
    say(page, f"(the largest other {f['max_other']:.2f})")
    p = rows[("pretrained", "conv2:5")]
    say(page, f"it stays at {p['target_value']:.3f} ({p['rank']}nd)")
    three = rows[("scratch", "logits:3")]
    say(page, f"`logits:3` reaches {three['target_value']:.1f}, the largest other class {three['max_other']:.1f}")
    both = rows[("scratch", "logits:3+logits:8")]["target_activations"]
    say(page, f"logit 3 reaches {both[3]:.1f} and logit 8 stays at {both[8]:.0f} (logit 5 takes {both[5]:.1f})")
    both = rows[("pretrained", "logits:3+logits:8")]["target_activations"]
    say(page, f"pretrained, {both[3]:.1f} against {both[8]:.1f}")


def test_gbrrt_throughput_numbers_are_the_benchmarks():
    r = results("gbrrt.json")
    text = doc("results.md")
    one = r["layers"]["1"]
    rest = [r["layers"][k]["fraction_of_floor"] * 100 for k in ("2", "3", "4")]
    say(text, f"batched is {one['speedup_vs_sequential']:.1f}x the sequential reference at layer 1")
    say(text, f"it reaches {one['fraction_of_floor'] * 100:.0f}% at layer 1 and {min(rest):.0f}-{max(rest):.0f}% at "
              "layers 2-4")
    say(text, f"measures {one['bound_fraction_of_floor'] * 100:.0f}% of the floor, and the kernel reaches "
              f"{one['fraction_of_bound'] * 100:.0f}% of that")
    spread = one["distance_concentration"]
    say(text, f"within {spread['nearest']:.2f}-{spread['farthest']:.2f}")
    assert r["targets"]["fraction_of_floor_min"] == 0.8 and "(the issue's target is 80%)" in text


def test_the_dae_numbers_are_its_manifests():
    q = json.loads((ROOT / "jaxprobe" / "weights" / "dae" / "manifest.json").read_text())["quality"]
    mse = dict(zip(q["noise"], q["reconstruction_mse"]))
    page = doc("methods/excite.md")
    say(page, f"test reconstruction error {mse[0.3]:.3f} squared error per pixel at noise 0.3")
    say(page, f"constant image scores {q['mean_image_mse']:.3f}")
    say(page, f"At noise 0 the error is {mse[0.0]:.3f}, at noise 0.5 it is {mse[0.5]:.3f}")
