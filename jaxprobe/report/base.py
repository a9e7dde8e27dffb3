"""What a report section receives and returns, and the templates its HTML comes from."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax

from jaxprobe.io import fmt_number

TEMPLATES = Path(__file__).parent / "templates"


@functools.lru_cache(maxsize=1)
def _environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters["num"] = fmt_number  # {{ x | num(".4f") }}: "n/a" for None or NaN
    return env


def render(template: str, **context) -> str:
    """HTML from `templates/<template>`, every value escaped unless the template marks it safe."""
    return _environment().get_template(template).render(**context)


@dataclasses.dataclass
class Context:
    """What every section receives: the directory it writes its figures into, the report's seed
    and a cache of loaded models shared by the sections."""

    out_dir: Path
    seed: int = 0
    models: dict = dataclasses.field(default_factory=dict)

    def model(self, name: str):
        """The model `name` (shipped name or directory), loaded once per report."""
        from jaxprobe import load  # through the package: the converted architectures are registered first

        if name not in self.models:
            self.models[name] = load(name)
        return self.models[name]

    def key(self, purpose: str):
        """A PRNG key for one purpose, derived from the seed and the purpose's name."""
        import zlib

        return jax.random.fold_in(jax.random.PRNGKey(self.seed), zlib.crc32(purpose.encode()))


@dataclasses.dataclass
class Section:
    """What a section returns: its anchor `key`, `title`, `html` body (rendered from its template),
    `figures` as (file name, caption) pairs, and `results` for results.json."""

    key: str
    title: str
    html: str = ""
    figures: list = dataclasses.field(default_factory=list)  # (file name, caption)
    results: dict = dataclasses.field(default_factory=dict)
