"""Sphinx extension: ship MathJax 3 inside the built book, so pages render math without a network.

``_config.yml`` sets ``mathjax_path: mathjax/tex-mml-chtml.js`` (relative to ``_static``); this extension copies that
bundle, its CommonHTML fonts and the TeX extensions it may load on demand from the ``django-static-mathjax`` wheel
(MathJax 3 as plain files, no Django needed) into ``<html>/_static/mathjax``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

_PARTS = ("tex-mml-chtml.js", "output/chtml/fonts/woff-v2", "input/tex/extensions", "ui", "a11y", "adaptors")


def mathjax_source() -> Path:
    """The ``es5`` folder of the installed MathJax 3 distribution."""
    try:
        import mathjax
    except ImportError as error:
        raise ExtensionError(
            "MathJax is needed to build the book offline: pip install -e '.[book]' (it brings django-static-mathjax)"
        ) from error
    return Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"


def copy_mathjax(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    source, target = mathjax_source(), Path(app.outdir) / "_static" / "mathjax"
    for part in _PARTS:
        if (source / part).is_dir():
            shutil.copytree(source / part, target / part, dirs_exist_ok=True)
        else:
            (target / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / part, target / part)


def setup(app: Sphinx) -> dict[str, bool]:
    app.connect("build-finished", copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
