"""`jaxprobe demo` end to end on the shipped models: the report's files and figures."""

import json

from jaxprobe.cli import main


def test_demo_writes_report(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["demo", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    models = results["models"]
    assert models["classifier_test_accuracy"] >= 0.985
    assert models["fc_generator_reconstruction_accuracy"] >= 0.9
    assert models["dcgan2d_layer1_regions_in_view"] > 1
    page = (out / "index.html").read_text()
    for png in ("dcgan_samples.png", "dcgan2d_manifold.png", "dcgan2d_layer1_regions.png",
                "fc_generator_reconstructions.png"):
        assert (out / png).stat().st_size > 1000 and f'src="{png}"' in page
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # written atomically
