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
    # {{ x | num(".4f") }}: "n/a" for None or NaN; a truth value as yes / no
    env.filters["num"] = lambda x, spec=".4g": yes_no(x) if isinstance(x, bool) else fmt_number(x, spec)
    env.filters["yesno"] = yes_no  # {{ flag | yesno }}: yes / no / n/a, never Python's True
    return env


def yes_no(flag) -> str:
    """A truth value as a table shows it: "yes", "no", or "n/a" for None."""
    return "n/a" if flag is None else ("yes" if flag else "no")


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
    `figures` as (file name, caption) pairs, `results` for results.json, and `conclusion`: what
    the numbers say, one or two sentences computed from them, which the page puts last."""

    key: str
    title: str
    html: str = ""
    figures: list = dataclasses.field(default_factory=list)  # (file name, caption)
    results: dict = dataclasses.field(default_factory=dict)
    conclusion: str = ""


def finite(values) -> list:
    """The finite numbers of `values` (None, NaN and inf left out), as floats."""
    import math

    return [float(v) for v in values if v is not None and not isinstance(v, bool) and math.isfinite(float(v))]


def span(values, spec: str = ".3g") -> str:
    """The range of the finite `values` as text: "a-b", "a" when they are all equal, "n/a" when none."""
    vals = finite(values)
    if not vals:
        return "n/a"
    lo, hi = format(min(vals), spec), format(max(vals), spec)
    return lo if lo == hi else f"{lo}-{hi}"
