"""The papermill batch runner on a tiny book of three notebooks, and the ``record`` helper it collects from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest
import torch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from fgssl_lib import notebook as nb_helpers
from fgssl_lib.reproduce import check_parameters, main, notebook_parameters, parse_parameters, stage_book, toc_notebooks

TOC = """format: jb-book
root: book/intro
chapters:
  - file: notebooks/a_record
  - file: notebooks/b_raise
    sections:
      - file: notebooks/c_after
"""

PARAMETERS = 'preset = "cpu"\nfactor = 2\nepochs = None  # None: the preset\'s\nlr = 0.05\nroot = None'


def _write_notebook(path: Path, *sources: str) -> None:
    cells = [new_markdown_cell(f"# {path.stem}"), new_code_cell(PARAMETERS, metadata={"tags": ["parameters"]})]
    cells += [new_code_cell(source) for source in sources]
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nbformat.write(nb, path)


@pytest.fixture()
def book(tmp_path: Path) -> Path:
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "intro.md").write_text("# Intro\n")
    (tmp_path / "_toc.yml").write_text(TOC)
    (tmp_path / "_config.yml").write_text("title: tiny\n")
    _write_notebook(tmp_path / "notebooks" / "a_record.ipynb",
                    "from fgssl_lib.notebook import record\nrecord('value', factor * 21)\nrecord('preset', preset)")
    _write_notebook(tmp_path / "notebooks" / "b_raise.ipynb", "x = 1", "y = x + 1\nraise ValueError('boom from b')")
    _write_notebook(tmp_path / "notebooks" / "c_after.ipynb", "print('never runs')")
    return tmp_path


def test_toc_lists_notebooks_in_book_order(book: Path) -> None:
    assert [nb.stem for nb in toc_notebooks(book / "_toc.yml")] == ["a_record", "b_raise", "c_after"]


def test_failure_names_notebook_and_cell_and_keeps_what_ran(book: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = book / "out"
    code = main(["--preset", "smoke", "--toc", str(book / "_toc.yml"), "--out", str(out), "-p", "factor=3"])
    captured = capsys.readouterr()
    assert code == 1
    assert "[1/3] a_record" in captured.out and "ok" in captured.out
    assert "[2/3] b_raise" in captured.out and "FAILED" in captured.out
    assert "b_raise.ipynb" in captured.err
    assert "cell 3 ('y = x + 1')" in captured.err  # index in the committed notebook, first line of its source
    assert "ValueError: boom from b" in captured.err
    # the notebook that ran is kept with its results; the failing one is kept too; the one after it never ran
    assert json.loads((out / "a_record" / "results.json").read_text()) == {"value": 63, "preset": "smoke"}
    executed = nbformat.read(out / "a_record" / "a_record.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "remove-cell" in injected[0].metadata.tags
    assert (out / "b_raise" / "b_raise.ipynb").is_file()
    assert not (out / "c_after").exists()

    stage = book / "stage"
    replaced = stage_book(book, out, stage)
    assert [nb.stem for nb in replaced] == ["a_record", "b_raise"]
    staged = nbformat.read(stage / "notebooks" / "a_record.ipynb", as_version=4)
    assert any(cell.get("outputs") is not None and cell.execution_count for cell in staged.cells if cell.cell_type == "code")
    assert (stage / "book" / "intro.md").is_file() and (stage / "_config.yml").is_file()
    assert nbformat.read(stage / "notebooks" / "c_after.ipynb", as_version=4).cells[2].execution_count is None


def test_the_run_ends_with_its_slowest_cells(book: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _write_notebook(book / "notebooks" / "b_raise.ipynb", "import time\ntime.sleep(0.6)", "x = 1")
    _write_notebook(book / "notebooks" / "c_after.ipynb", "import time\n\ntime.sleep(0.3)")
    assert main(["--preset", "smoke", "--toc", str(book / "_toc.yml"), "--out", str(book / "out")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "3 notebook(s) ran at preset 'smoke' in " in lines[-6] and lines[-6].endswith("the slowest cells:")
    assert "b_raise cell 2 ('time.sleep(0.6)')" in lines[-5] and "c_after cell 2 ('time.sleep(0.3)')" in lines[-4]
    seconds = [float(line.split(" s ")[0]) for line in lines[-5:]]
    assert seconds == sorted(seconds, reverse=True) and seconds[0] >= 0.6


def test_unknown_notebook_name_lists_the_valid_ones(book: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--preset", "smoke", "--toc", str(book / "_toc.yml"), "--only", "nope", "--out", str(book / "o")])
    assert code == 1
    assert "unknown notebook 'nope'" in capsys.readouterr().err
    assert not (book / "o").exists()


def test_unknown_preset_is_refused(book: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--preset", "huge", "--toc", str(book / "_toc.yml")]) == 1
    assert "valid presets: colab, cpu, paper, smoke" in capsys.readouterr().err


@pytest.mark.parametrize(("pair", "message"), [
    ("factr=3", ["unknown parameter -p factr=...: the notebooks to run have the parameters preset (str), factor (int), "
                 "epochs (int | None), lr (float), root (any)"]),
    ("factor=1.5", ["-p factor=1.5: factor is int in ", "a_record.ipynb, not float"]),
    ("epochs=1.5", ["-p epochs=1.5: epochs is int | None in ", "a_record.ipynb, not float"]),
    ("lr=fast", ["-p lr='fast': lr is float in ", "a_record.ipynb, not str"]),
    ("preset=3", ["preset is str in ", ", not int (quote text: -p preset=\"'3'\")"]),
])
def test_unknown_or_mistyped_parameters_stop_before_any_cell_runs(book: Path, capsys: pytest.CaptureFixture[str],
                                                                  pair: str, message: list[str]) -> None:
    out = book / "out"
    assert main(["--preset", "smoke", "--toc", str(book / "_toc.yml"), "--out", str(out), "-p", pair]) == 1
    err = capsys.readouterr().err
    assert all(part in err for part in message), err
    assert not out.exists()


def test_parameter_types_come_from_the_literals_of_the_parameters_cell(book: Path) -> None:
    notebook = book / "notebooks" / "a_record.ipynb"
    assert notebook_parameters(notebook) == {"preset": str, "factor": int, "epochs": int | None, "lr": float,
                                             "root": Any}
    check_parameters({"epochs": 3, "lr": 1, "root": "/data", "factor": 4}, [notebook])  # None and int fit too
    check_parameters({"epochs": None, "root": 3}, [notebook])


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        (["epochs=3", "lr=0.5", "rerun=True", "root=None"], {"epochs": 3, "lr": 0.5, "rerun": True, "root": None}),
        (["method=byol", "sizes=[1, 2]", "name='a=b'"], {"method": "byol", "sizes": [1, 2], "name": "a=b"}),
        (["path=/data/CUB_200_2011"], {"path": "/data/CUB_200_2011"}),
    ],
)
def test_parameters_are_literals_else_strings(pairs: list[str], expected: dict) -> None:
    assert parse_parameters(pairs) == expected


@pytest.mark.parametrize("bad", ["epochs", "=3", "1x=2", "two words=1"])
def test_bad_parameter_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="write -p name=value"):
        parse_parameters([bad])


def test_record_converts_values_and_writes_the_results_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "sub" / "results.json"
    monkeypatch.setenv(nb_helpers.RESULTS_ENV, str(target))
    nb_helpers.record("acc", torch.tensor(0.25))
    nb_helpers.record("table", {"knn": np.float32(0.5), "n": np.int64(3), "curve": np.arange(3), 1: float("nan")})
    assert json.loads(target.read_text()) == {"acc": 0.25, "table": {"knn": 0.5, "n": 3, "curve": [0, 1, 2], "1": None}}
    assert nb_helpers.results()["acc"] == 0.25


def test_record_without_runner_keeps_values_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(nb_helpers.RESULTS_ENV, raising=False)
    assert nb_helpers.record("pairs", [(1, 2)]) is None  # a cell ending with record() prints no raw value
    assert nb_helpers.results()["pairs"] == [[1, 2]]
    with pytest.raises(TypeError, match="cannot store a object"):
        nb_helpers.record("bad", object())
    with pytest.raises(ValueError, match="non-empty string key"):
        nb_helpers.record("", 1)


def test_output_dir_follows_the_runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(nb_helpers.OUTPUT_ENV, str(tmp_path / "figs"))
    assert nb_helpers.output_dir() == tmp_path / "figs" and (tmp_path / "figs").is_dir()
    assert nb_helpers.in_colab() is False
