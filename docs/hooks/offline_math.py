"""MkDocs hook: serve MathJax from the built site, so the docs render formulas offline.

The MathJax files come from the `django-static-mathjax` wheel (MathJax 3.2.2, Apache-2.0, no
dependencies), which the `docs` extra installs from PyPI: no CDN and no node at build time. Only
the one combined component the pages load is copied (`tex-svg-full.js`: TeX input, SVG output with
its fonts inside the script, every TeX extension built in, so MathJax never fetches another file,
not even a font, which also keeps it working from `file://`), with MathJax's licence beside it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

# Where the pages load it from (mkdocs.yml's extra_javascript names the same path).
SITE_DIR = "javascripts/mathjax"
COMPONENT = "tex-svg-full.js"


def mathjax_root() -> Path:
    """The MathJax distribution inside the installed `mathjax` package (django-static-mathjax)."""
    spec = importlib.util.find_spec("mathjax")
    if spec is None or not spec.submodule_search_locations:
        raise PluginError("MathJax is not installed: pip install -e '.[docs]' (django-static-mathjax)")
    root = Path(list(spec.submodule_search_locations)[0]) / "static" / "mathjax"
    if not (root / "es5" / COMPONENT).is_file():
        raise PluginError(f"MathJax's {COMPONENT} is missing under {root}: reinstall django-static-mathjax")
    return root


def on_files(files, config):
    """Add the MathJax component and its licence to the site's files, as if they were in docs/."""
    root = mathjax_root()
    for src, dest in ((root / "es5" / COMPONENT, COMPONENT), (root / "LICENSE", "LICENSE")):
        files.append(File.generated(config, f"{SITE_DIR}/{dest}", abs_src_path=str(src)))
    return files
