"""Shared fixtures: tiny random models with the real layer structure, and paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The command line keeps compiled programs in a per-user cache (jaxprobe.cli._compile_cache); the
# tests run commands in-process and in subprocesses and must not write to the home directory.
os.environ.setdefault("JAXPROBE_COMPILE_CACHE", "off")
from flax import nnx

from jaxprobe.models.probe import Model
from jaxprobe.models.pixels import PixelConvention
from jaxprobe.models import zoo

REPO = Path(__file__).resolve().parents[1]
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
