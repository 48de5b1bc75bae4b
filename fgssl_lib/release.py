"""Which release of fgssl the notebooks install on Colab, and from where.

The repository's URL is set in one place, ``repository.url`` of the book's ``_config.yml`` (the book's repository
and Colab buttons read it too); the release is the tag ``v<version>`` of :data:`fgssl_lib.__version__`, and the
release workflow (``.github/workflows/release.yml``) attaches its wheel, :func:`wheel_name`, to the GitHub release
of that tag. Every notebook's first cell installs exactly that wheel when it runs on Colab, and stops with the
command to run by hand when pip fails. After changing either (a fork, a new release), ``python -m fgssl_lib.release``
rewrites the install cells; ``--check`` only says which are out of date; ``--tag TAG`` checks that a tag names this
version (the workflow's first step).
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


def check_tag(tag: str, version: str = fgssl_lib.__version__) -> None:
    """Raise ``ValueError`` unless ``tag`` is :func:`release_tag` of ``version``: a release ships what it says."""
    if tag != release_tag(version):
        raise ValueError(f"tag {tag!r} does not name this version: fgssl_lib.__version__ is {version!r}, so the "
                         f"tag must be {release_tag(version)!r}; set __version__ in fgssl_lib/__init__.py and "
                         "run `python -m fgssl_lib.release` before tagging")


def wheel_name(version: str = fgssl_lib.__version__) -> str:
    """The file name of the release's wheel (pure Python, any platform)."""
    return f"fgssl_lib-{version}-py3-none-any.whl"


def wheel_url(config: Path = ROOT / "_config.yml") -> str:
    """Where the release workflow attaches this release's wheel: a GitHub release asset of its tag."""
    return f"{repository_url(config)}/releases/download/{release_tag()}/{wheel_name()}"


_INSTALL_CELL = """\
import subprocess
import sys

if MARKER:  # on Colab: install this release of fgssl (TAG)
    requirement = "REQUIREMENT"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", requirement], capture_output=True, text=True)
    if pip.returncode != 0:  # %pip would go on, and the next cell would fail on a missing module
        raise RuntimeError(f"{pip.stdout}{pip.stderr}\\nInstalling fgssl failed (pip exited {pip.returncode}, output "
                           f'above). Run it by hand in a cell: !pip install "{requirement}" . The repository URL is '
                           "`repository.url` in the repository's _config.yml (`python -m fgssl_lib.release` "
                           "rewrites this cell from it).")"""


def install_cell(config: Path = ROOT / "_config.yml") -> str:
    """The source of every notebook's first cell: on Colab, pip-install this release's wheel (:func:`wheel_url`) and
    raise with the command to run by hand if pip fails.

    The cell runs before ``fgssl_lib`` is installed, so it carries its own few lines: ``%pip`` does not raise, and
    pip runs as a subprocess whose output is kept for the error (a subprocess's output does not reach the notebook).
    """
    cell = _INSTALL_CELL.replace("MARKER", INSTALL_MARKER).replace("TAG", release_tag())
    return cell.replace("REQUIREMENT", f"fgssl_lib @ {wheel_url(config)}")


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
    parser.add_argument("--tag", help="only check that this git tag names fgssl_lib.__version__ (v<version>)")
    args = parser.parse_args(argv)
    if args.tag is not None:
        try:
            check_tag(args.tag)
        except ValueError as error:
            print(f"release: {error}", file=sys.stderr)
            return 1
        print(f"release: tag {args.tag} is fgssl_lib {fgssl_lib.__version__}")
        return 0
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    stale = stale_install_cells(notebooks, write=not args.check)
    for path in stale:
        print(f"{'stale' if args.check else 'rewrote'}: {path.relative_to(ROOT)}")
    print(f"install cells: fgssl_lib @ {wheel_url()}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
