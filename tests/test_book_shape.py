"""The shape of the book's sources: notebook conventions, toc <-> notebooks/, README <-> CI, book configuration."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest
import yaml

from fgssl_lib.reproduce import toc_notebooks

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _tagged(nb: nbformat.NotebookNode, tag: str) -> list[nbformat.NotebookNode]:
    return [cell for cell in nb.cells if tag in cell.metadata.get("tags", [])]


@pytest.fixture(params=COMMITTED, ids=[p.stem for p in COMMITTED])
def notebook(request: pytest.FixtureRequest) -> nbformat.NotebookNode:
    nb = nbformat.read(request.param, as_version=4)
    nbformat.validate(nb)
    return nb


def test_no_outputs_committed(notebook: nbformat.NotebookNode) -> None:
    dirty = [i for i, c in enumerate(notebook.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"cells {dirty} carry outputs: strip them (nbstripout) before committing"


def test_kernelspec_is_python3(notebook: nbformat.NotebookNode) -> None:
    assert notebook.metadata.get("kernelspec", {}).get("name") == "python3"


def test_opens_with_a_markdown_title(notebook: nbformat.NotebookNode) -> None:
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")


def test_one_parameters_cell_of_literals(notebook: nbformat.NotebookNode) -> None:
    cells = _tagged(notebook, "parameters")
    assert len(cells) == 1, f"expected exactly one cell tagged 'parameters', found {len(cells)}"
    for statement in ast.parse(cells[0].source).body:
        assert isinstance(statement, ast.Assign) and all(isinstance(t, ast.Name) for t in statement.targets), (
            f"the parameters cell may only assign names: {ast.unparse(statement)!r}"
        )
        ast.literal_eval(statement.value)  # raises ValueError on anything but a literal


MAX_LOGIC_LINES = 12


def _logic_lines(source: str) -> int:
    """Non-blank lines that are not comments (imports and continuation lines count)."""
    return sum(1 for line in source.splitlines() if line.strip() and not line.strip().startswith("#"))


def test_code_cells_are_short(notebook: nbformat.NotebookNode) -> None:
    long = {i: n for i, cell in enumerate(notebook.cells)
            if cell.cell_type == "code" and "parameters" not in cell.metadata.get("tags", [])
            and (n := _logic_lines(cell.source)) > MAX_LOGIC_LINES}
    assert not long, (f"cells {long} (index: lines) hold more than {MAX_LOGIC_LINES} lines of logic: move the logic "
                      "into fgssl_lib and call it")


def test_no_cell_branches_on_the_dataset_name(notebook: nbformat.NotebookNode) -> None:
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    branches = re.findall(r"\b\w*dataset\b\s*(?:==|!=|\bnot in\b|\bin\b)[^\n]*", code)
    assert not branches, f"{branches}: the choice between the synthetic benchmark and a real dataset is fgssl_lib.reports'"


def test_colab_install_cell_is_hidden(notebook: nbformat.NotebookNode) -> None:
    hidden = [cell for cell in _tagged(notebook, "remove-cell") if "google.colab" in cell.source]
    assert len(hidden) == 1, "one cell tagged 'remove-cell' must install the package when 'google.colab' is loaded"
    assert "pip install" in hidden[0].source


def test_toc_and_notebooks_folder_agree() -> None:
    listed = {nb.resolve() for nb in toc_notebooks(ROOT / "_toc.yml")}
    committed = {nb.resolve() for nb in COMMITTED}
    assert committed - listed == set(), "notebooks missing from _toc.yml"
    assert listed - committed == set(), "_toc.yml lists notebooks that are not in notebooks/"


def test_toc_pages_exist() -> None:
    text = (ROOT / "_toc.yml").read_text()
    for entry in re.findall(r"(?:file|root):\s*(\S+)", text):
        assert any((ROOT / f"{entry}{suffix}").is_file() for suffix in (".md", ".ipynb", "")), f"{entry} not found"


def _readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```(?:bash|sh)\n(.*?)```", readme, re.S)
    assert block, "README.md has no ```bash block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_readme_quick_start_is_two_commands_and_ci_runs_the_second() -> None:
    commands = _readme_commands()
    assert len(commands) == 2, f"the quick start shows {commands}; it must show exactly two commands"
    ci = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert ci[-1] == commands[1], f".ci/run ends with {ci[-1]!r}, the README's test command is {commands[1]!r}"


def test_book_config() -> None:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "off"
    assert config["bibtex_bibfiles"] == ["book/references.bib"]
    assert config["launch_buttons"]["colab_url"].startswith("https://colab.research.google.com")
    assert config["repository"] == {"url": "https://github.com/fgssl/fgssl", "path_to_book": "", "branch": "main"}
    assert config["sphinx"]["config"]["mathjax_path"].startswith("mathjax/"), "MathJax must be served from the book"


def test_citations_are_in_the_bibliography() -> None:
    keys = set(re.findall(r"@\w+\{([^,]+),", (ROOT / "book/references.bib").read_text()))
    for page in (ROOT / "book").glob("*.md"):
        for cited in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", page.read_text()):
            missing = {key.strip() for key in cited.split(",")} - keys
            assert not missing, f"{page.name} cites {missing}, not in book/references.bib"


COLAB_RUN_PARAMETERS = {"runs_dir", "batch_size", "num_images", "precision", "checkpoint_minutes", "device", "epochs"}


def test_every_training_notebook_can_keep_its_runs_on_drive_and_be_sized_down(notebook: nbformat.NotebookNode) -> None:
    code = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    if not re.search(r"\b(train_methods|train_or_load)\(", code):
        return  # trains nothing
    (cell,) = _tagged(notebook, "parameters")
    names = {t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign) for t in node.targets}
    assert COLAB_RUN_PARAMETERS <= names, f"parameters cell lacks {sorted(COLAB_RUN_PARAMETERS - names)}"
    assert "/content/drive/MyDrive" in cell.source, "say where runs_dir points on Colab (Google Drive)"
    assert "checkpoint_dir" not in code, "runs_dir names where runs are kept (checkpoint_dir is one run's folder)"


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_papermill_reads_every_line_of_the_parameters_cell(path: Path) -> None:
    """papermill drops a parameter whose comment it cannot parse (an ``=`` in it, e.g. ``<=``), and the notebook
    then refuses that parameter when it is passed."""
    from papermill.translators import PythonTranslator

    cell = next(c for c in nbformat.read(path, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    names = [line.split("=")[0].strip() for line in cell.source.splitlines() if line and not line.startswith("#")]
    assert [p.name for p in PythonTranslator.inspect(cell)] == names
