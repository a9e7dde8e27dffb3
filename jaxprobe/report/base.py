"""What a report section receives and returns."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax


@dataclasses.dataclass
class Context:
    out_dir: Path
    seed: int = 0
    models: dict = dataclasses.field(default_factory=dict)

    def model(self, name: str):
        from jaxprobe.models.store import load

        if name not in self.models:
            self.models[name] = load(name)
        return self.models[name]

    def key(self, purpose: str):
        """A PRNG key for one purpose, derived from the seed and the purpose's name."""
        import zlib

        return jax.random.fold_in(jax.random.PRNGKey(self.seed), zlib.crc32(purpose.encode()))


@dataclasses.dataclass
class Section:
    key: str
    title: str
    html: str = ""
    figures: list = dataclasses.field(default_factory=list)  # (file name, caption)
    results: dict = dataclasses.field(default_factory=dict)
