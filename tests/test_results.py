"""The committed results are package data (:mod:`fgssl_lib.results`), one copy: the study reads them there, and
every figure the pages and notebooks show points there, in the checkout and in the book's staged sources."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

from fgssl_lib import study
from fgssl_lib.reproduce import stage_book
from fgssl_lib.results import RESULTS

ROOT = Path(__file__).resolve().parents[1]
FIGURE = re.compile(r"```\{figure\} (\S+)|!\[[^\]]*\]\(([^)\s]+)\)")


def _figures(root: Path) -> list[tuple[Path, str]]:
    """``(page, reference)`` of every figure and image of the book's pages and notebooks under ``root``."""
    found = []
    for page in sorted((root / "book").glob("*.md")) + sorted((root / "notebooks").glob("*.ipynb")):
        texts = ([cell.source for cell in nbformat.read(page, as_version=4).cells if cell.cell_type == "markdown"]
                 if page.suffix == ".ipynb" else [page.read_text()])
        found += [(page, a or b) for text in texts for a, b in FIGURE.findall(text)]
    return found


def test_the_results_live_in_the_package_and_the_study_reads_them_there() -> None:
    assert RESULTS == ROOT / "fgssl_lib" / "results"
    assert study.CSV_PATH.parent == RESULTS and study.CALIBRATION_PATH.is_file() and study.CSV_PATH.is_file()
    assert not (ROOT / "book" / "results").exists(), "one copy of each result"


def test_every_figure_of_the_pages_resolves_in_the_checkout_and_in_the_staged_book(tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    stage_book(ROOT, tmp_path / "executed", stage)
    for root in (ROOT, stage):
        figures = [(page, ref) for page, ref in _figures(root) if not ref.startswith(("http:", "https:"))]
        assert any(ref.endswith("problem_and_fix.png") for _, ref in figures)
        for page, reference in figures:
            target = (page.parent / reference).resolve()
            assert target.is_file(), f"{page.relative_to(root)} shows {reference}, which is not there"
            assert target.is_relative_to((root / "fgssl_lib" / "results").resolve()) or "results" not in reference
