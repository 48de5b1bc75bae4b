"""Which release of fgssl the notebooks install on Colab, and from where.

The repository's URL is set in one place, ``repository.url`` of the book's ``_config.yml`` (the book's repository
and Colab buttons read it too); the release is the tag ``v<version>`` of :data:`fgssl_lib.__version__`. Every
notebook's first cell installs exactly that release when it runs on Colab. After changing either (a fork, a new
release), ``python -m fgssl_lib.release`` rewrites the install cells; ``--check`` only says which are out of date.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
import yaml

import fgssl_lib

ROOT = Path(__file__).resolve().parents[1]
INSTALL_MARKER = '"google.colab" in sys.modules'
"""What identifies the install cell: the Colab test it runs under."""


def repository_url(config: Path = ROOT / "_config.yml") -> str:
    """``repository.url`` of the book's configuration, without a trailing ``/`` or ``.git``."""
    if not config.is_file():
        raise FileNotFoundError(f"{config} not found: run this from a clone of the fgssl repository")
    url = (yaml.safe_load(config.read_text()) or {}).get("repository", {}).get("url")
    if not isinstance(url, str) or not url.startswith("https://"):
        raise ValueError(f"{config}: repository.url must be the repository's https:// URL, got {url!r}")
    return url.rstrip("/").removesuffix(".git")


def release_tag(version: str = fgssl_lib.__version__) -> str:
    """The git tag of release ``version``: ``v0.2.0``."""
    return f"v{version}"


def install_cell(config: Path = ROOT / "_config.yml") -> str:
    """The source of every notebook's first cell: on Colab, pip-install this release from the repository."""
    return (
        "import sys\n\n"
        f"if {INSTALL_MARKER}:  # on Colab: install this release of fgssl ({release_tag()})\n"
        f'    %pip install -q "fgssl_lib @ git+{repository_url(config)}@{release_tag()}"'
    )


def stale_install_cells(notebooks: list[Path], config: Path = ROOT / "_config.yml", write: bool = False) -> list[Path]:
    """The notebooks whose install cell differs from :func:`install_cell`; with ``write``, rewrite them. A notebook
    without an install cell is an error: it would not run on Colab."""
    expected = install_cell(config)
    stale = []
    for path in notebooks:
        notebook = nbformat.read(path, as_version=4)
        cells = [cell for cell in notebook.cells if cell.cell_type == "code" and INSTALL_MARKER in cell.source]
        if len(cells) != 1:
            raise ValueError(f"{path}: expected one install cell (a code cell testing {INSTALL_MARKER}), found "
                             f"{len(cells)}")
        if cells[0].source != expected:
            stale.append(path)
            if write:
                cells[0].source = expected
                nbformat.write(notebook, path)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fgssl_lib.release", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only list the notebooks whose install cell is stale")
    args = parser.parse_args(argv)
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    stale = stale_install_cells(notebooks, write=not args.check)
    for path in stale:
        print(f"{'stale' if args.check else 'rewrote'}: {path.relative_to(ROOT)}")
    print(f"install cells: fgssl_lib @ git+{repository_url()}@{release_tag()}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
