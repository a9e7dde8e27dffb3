"""`jaxprobe demo` end to end on the shipped models: the report's files and figures."""

import json
import shutil

from jaxprobe.cli import main
from test_report import check_report


def test_demo_writes_report(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["demo", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    models = results["models"]
    assert models["classifier_test_accuracy"] >= 0.985
    assert models["fc_generator_reconstruction_accuracy"] >= 0.9
    assert models["dcgan2d_layer1_regions_in_view"] > 1
    dgn = results["dgn_am"]
    assert dgn["codes_in_bounds"] and dgn["above_real_mean"] >= 9 and dgn["classified_as_target"] >= 9
    assert [r["neuron"] for r in dgn["neurons"]] == [f"logits:{j}" for j in range(10)]
    ppgn = results["ppgn"]
    assert [r["label"] for r in ppgn["classes"]] == list(range(10)) and ppgn["min_class_rate"] >= 0.8
    assert all(r["diversity"]["n"] >= 2 for r in ppgn["classes"] if r["diversity"] is not None)
    page = (out / "index.html").read_text()
    check_report(out)  # every figure linked at full size, provenance on the page and in results.json
    for png in ("dcgan_samples.png", "dcgan2d_manifold.png", "dcgan2d_layer1_regions.png",
                "fc_generator_reconstructions.png", "dgn_am_classes.png", "ppgn_chains.png"):
        assert (out / png).stat().st_size > 1000 and f'src="{png}"' in page
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # written atomically
    # The page a reader opens: headless Chromium on the report served from 127.0.0.1 only (no console
    # error, nothing requested from outside the machine, every image loaded), where chromium exists
    # (CI installs it; tests/test_browser.py errors under CI without it).
    if shutil.which("chromium") or shutil.which("chromium-browser"):
        import test_browser

        browser = test_browser.Browser(tmp_path.parent / f"{tmp_path.name}-profile")
        try:
            test_browser.check_report_in_browser(browser, out)
        finally:
            browser.close()

