"""Every notebook of the book runs top to bottom under papermill at the ``smoke`` preset and records results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fgssl_lib.reproduce import run_notebook, toc_notebooks

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = toc_notebooks(ROOT / "_toc.yml")


@pytest.mark.notebooks
@pytest.mark.xdist_group("notebooks")  # make test: one process for these (see the Makefile)
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_runs_at_smoke(notebook: Path, executed_dir: Path) -> None:
    run = run_notebook(notebook, executed_dir, {"preset": "smoke"})
    assert run.ok, f"{notebook.name} failed in {run.error} (executed copy: {run.executed})"
    recorded = json.loads(run.results.read_text())
    assert recorded, f"{notebook.name} recorded no result: call fgssl_lib.notebook.record(key, value)"


def test_the_book_has_notebooks() -> None:
    assert NOTEBOOKS, "_toc.yml lists no notebook"
