"""Shared fixtures: tiny random models with the real layer structure, and paths; the order in
which the test files run."""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path

import pytest

# The command line keeps compiled programs in a per-user cache (jaxprobe.cli._compile_cache); the
# tests run commands in-process and in subprocesses and must not write to the home directory. (A
# cache shared by the session's processes was tried: the suite's CPU time stayed the same, 32-33
# minutes, since its programs differ from test to test.)
os.environ.setdefault("JAXPROBE_COMPILE_CACHE", "off")
from flax import nnx

from jaxprobe.models.probe import Model
from jaxprobe.models.pixels import PixelConvention
from jaxprobe.models import zoo

REPO = Path(__file__).resolve().parents[1]
FILE_SECONDS = Path(__file__).with_name("file_seconds.json")
FIXTURES = REPO.parent / "shared" / "fixtures"

PM1 = PixelConvention(-1.0, 1.0, "gray")
UNIT = PixelConvention(0.0, 1.0, "gray")


def tiny_generator(latent_dim=8, widths=(8, 4, 2), slope=0.0, seed=0, name="tiny_gen") -> Model:
    net = zoo.dcgan_generator(latent_dim=latent_dim, widths=widths, slope=slope, rngs=nnx.Rngs(seed))
    manifest = {"architecture": {"builder": "dcgan_generator",
                                 "kwargs": {"latent_dim": latent_dim, "widths": list(widths), "slope": slope}},
                "role": "generator", "input_shape": [latent_dim], "latent": {"dim": latent_dim, "prior": "normal"}}
    return Model.from_module(name, net, (latent_dim,), "generator", PM1, manifest)


def tiny_classifier(widths=(4, 4), hidden=16, seed=0, name="tiny_clf") -> Model:
    net = zoo.mnist_classifier(widths=widths, hidden=hidden, rngs=nnx.Rngs(seed))
    manifest = {"architecture": {"builder": "mnist_classifier", "kwargs": {"widths": list(widths), "hidden": hidden}},
                "role": "classifier", "input_shape": [28, 28, 1]}
    return Model.from_module(name, net, (28, 28, 1), "classifier", UNIT, manifest)


def tiny_critic(widths=(4, 4, 4), hidden=8, seed=0, name="tiny_critic") -> Model:
    net = zoo.dcgan_critic(widths=widths, hidden=hidden, rngs=nnx.Rngs(seed))
    manifest = {"architecture": {"builder": "dcgan_critic", "kwargs": {"widths": list(widths), "hidden": hidden}},
                "role": "critic", "input_shape": [28, 28, 1]}
    return Model.from_module(name, net, (28, 28, 1), "critic", PM1, manifest)


@pytest.fixture
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"third-party weight fixtures not found at {FIXTURES} (they live in ../shared/fixtures)")
    return FIXTURES


# ---- the order of the files ---------------------------------------------------------------------
# The README runs two pytest-xdist workers with `--dist loadfile --no-loadscope-reorder`: whole files,
# handed out in collection order as a worker runs low. Collected longest first (each file's seconds
# in a measured run, tests/file_seconds.json), the workers end within about the shortest files of
# each other instead of one of them running a long file alone at the end (xdist's own order, by
# number of tests, put the one-test 100 s demo last). A file not in the list counts DEFAULT_SECONDS.
# `JAXPROBE_FILE_SECONDS=PATH pytest ...` writes a run's measured seconds per file to PATH.
DEFAULT_SECONDS = 10.0


def _file(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(session, config, items):
    cost = json.loads(FILE_SECONDS.read_text()) if FILE_SECONDS.is_file() else {}
    first_seen = {f: i for i, f in enumerate(dict.fromkeys(_file(it.nodeid) for it in items))}
    # Stable: the tests of one file keep their order.
    items.sort(key=lambda it: (-float(cost.get(_file(it.nodeid), DEFAULT_SECONDS)), first_seen[_file(it.nodeid)]))


_SECONDS: collections.Counter = collections.Counter()


def pytest_runtest_logreport(report):
    if os.environ.get("JAXPROBE_FILE_SECONDS"):
        _SECONDS[_file(report.nodeid)] += report.duration


def pytest_sessionfinish(session, exitstatus):
    out = os.environ.get("JAXPROBE_FILE_SECONDS")
    if out and not hasattr(session.config, "workerinput"):  # the controller, which sees every report
        ranked = dict(sorted(((f, round(s, 1)) for f, s in _SECONDS.items()), key=lambda kv: -kv[1]))
        Path(out).write_text(json.dumps(ranked, indent=1) + "\n")

