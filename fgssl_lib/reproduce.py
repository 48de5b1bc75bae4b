"""Batch-run the book's notebooks with papermill: ``python -m fgssl_lib.reproduce --preset {smoke,cpu,colab,paper}``.

The notebooks are the ``.ipynb`` entries of ``_toc.yml``, run in the order listed there. Each notebook runs with the
``python3`` kernel in its own folder, with the parameters ``preset=<preset>`` plus any ``-p key=value`` overrides, and
leaves under ``--out`` (default ``_build/executed``, where the book build reads from)::

    <out>/<name>/<name>.ipynb   the executed copy (the injected-parameters cell tagged ``remove-cell``)
    <out>/<name>/results.json   what the notebook stored with :func:`fgssl_lib.notebook.record`
    <out>/outputs/              figures and checkpoints (``fgssl_lib.notebook.output_dir()``), shared by the run

Before any notebook runs, the run plan (:mod:`fgssl_lib.plan`) trains every run the chosen notebooks will ask for at
these parameters, in parallel (``--jobs``, default one single-threaded run per CPU core, one run at a time where CUDA
trains), printing a line per finished run; the notebooks then find their runs finished. A killed plan resumes when
run again (finished runs are kept, the others resume from their last checkpoint). ``--no-plan`` lets each notebook
train its own runs instead.

The ``-p`` names and value types are checked against the notebooks' ``parameters`` cells before any cell runs
(:func:`check_parameters`). A failing notebook stops the run with a non-zero exit and a message naming the
notebook, the cell and the error; the executed copies of the notebooks that ran, the failing one included, are
kept.

``--stage DIR`` then copies the book's sources (``_config.yml``, ``_toc.yml`` and the folders the toc uses) to ``DIR``
with each notebook replaced by its executed copy, ready for ``jupyter-book build DIR``; the committed notebooks stay
without outputs.
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import sys
import time
import typing
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import yaml

from fgssl_lib.caches import UnusableDirectoryError, usable_directory
from fgssl_lib.config import PRESETS, check_choice, matches_type, type_name
from fgssl_lib.notebook import OUTPUT_ENV, RESULTS_ENV
from fgssl_lib.plan import PLANNED_ENV, PlanFailed, notebook_runs, train_plan

DEFAULT_OUT = Path("_build/executed")
KERNEL = "python3"
INJECTED_TAG = "injected-parameters"
HIDDEN_TAG = "remove-cell"
_STAGE_IGNORE = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "outputs", "checkpoints", "lightning_logs")


class NotebookFailed(RuntimeError):
    """A notebook raised while running; the message names the notebook, the cell and the error."""


@dataclass(frozen=True)
class NotebookRun:
    """The outcome of one notebook: where its executed copy and results are, how long it took, what went wrong."""

    name: str
    source: Path
    executed: Path
    results: Path
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _toc_files(entry: Any) -> Iterator[str]:
    """Every ``file:`` value of a ``_toc.yml`` tree (root, parts, chapters, sections), in reading order."""
    if isinstance(entry, dict):
        if isinstance(entry.get("root"), str):
            yield entry["root"]
        if isinstance(entry.get("file"), str):
            yield entry["file"]
        for key in ("parts", "chapters", "sections"):
            for child in entry.get(key) or []:
                yield from _toc_files(child)


def toc_notebooks(toc: Path) -> list[Path]:
    """The notebooks (``.ipynb`` files) listed in ``toc``, in book order (paths joined to the toc's folder)."""
    if not toc.is_file():
        raise FileNotFoundError(f"no table of contents at {toc}: run from the repository root or pass --toc PATH")
    root = toc.parent
    notebooks = []
    for entry in _toc_files(yaml.safe_load(toc.read_text())):
        path = Path(entry if entry.endswith(".ipynb") else f"{entry}.ipynb")
        if (root / path).is_file():
            notebooks.append(root / path)
    return notebooks


def parse_parameters(pairs: Sequence[str]) -> dict[str, Any]:
    """Parse ``-p key=value`` pairs: values are Python literals (``3``, ``0.5``, ``True``, ``None``, ``[1, 2]``,
    ``'x'``); anything that is not a literal is taken as a plain string (``method=byol``)."""
    parameters: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"bad parameter {pair!r}: write -p name=value, e.g. -p epochs=3 or -p method=byol")
        try:
            parameters[key] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            parameters[key] = text.strip()
    return parameters


def notebook_parameters(source: Path) -> dict[str, Any]:
    """The parameters of notebook ``source``, name -> type hint: the type of each literal of its ``parameters`` cell
    (``epochs = 3``: ``int``; an int also fits a float). A ``None`` default takes the type of the
    :class:`~fgssl_lib.train.TrainConfig` field of that name, or ``None`` (``epochs = None``: ``int | None``), else
    anything (``data_root = None``)."""
    from fgssl_lib.train import TrainConfig

    fields = typing.get_type_hints(TrainConfig)
    cells = [c for c in nbformat.read(source, as_version=4).cells if "parameters" in c.metadata.get("tags", [])]
    types: dict[str, Any] = {}
    for statement in ast.parse(cells[0].source if cells else "").body:
        target = statement.targets[0] if isinstance(statement, ast.Assign) else None
        if isinstance(target, ast.Name):
            name = target.id
            try:
                default = ast.literal_eval(statement.value)
            except ValueError:
                default = None
            types[name] = type(default) if default is not None else fields[name] | None if name in fields else Any
    return types


def parameter_values(source: Path) -> dict[str, Any]:
    """The values of the literals of notebook ``source``'s ``parameters`` cell (``epochs = None``: ``None``)."""
    cells = [c for c in nbformat.read(source, as_version=4).cells if "parameters" in c.metadata.get("tags", [])]
    values = {}
    for statement in ast.parse(cells[0].source if cells else "").body:
        target = statement.targets[0] if isinstance(statement, ast.Assign) else None
        if isinstance(target, ast.Name):
            values[target.id] = ast.literal_eval(statement.value)
    return values


def plan_notebooks(notebooks: Sequence[Path], parameters: dict[str, Any], jobs: int | None = None,
                   report: Callable[[str], None] = print) -> dict[str, Any]:
    """Train every run ``notebooks`` ask for with ``parameters`` (:mod:`fgssl_lib.plan`) before any of them runs;
    the parameters to run them with (``retrain`` done by the plan, so not again by each notebook)."""
    plan = notebook_runs({nb.stem: {**parameter_values(nb), **parameters} for nb in notebooks})
    train_plan(plan, jobs, report)
    return {**parameters, "retrain": False} if "retrain" in parameters else parameters


def check_parameters(parameters: dict[str, Any], notebooks: Sequence[Path]) -> None:
    """Refuse, before any notebook runs, a ``-p`` name that none of ``notebooks`` has, and a value whose type does
    not fit a notebook's parameter; the message lists the notebooks' parameters and their types."""
    per_notebook = {nb: notebook_parameters(nb) for nb in notebooks}
    known: dict[str, Any] = {}
    for types in per_notebook.values():
        for name, hint in types.items():
            known.setdefault(name, hint)
    listing = ", ".join(f"{name} ({'any' if hint is Any else type_name(hint)})" for name, hint in known.items())
    for name, value in parameters.items():
        if name not in known:
            raise ValueError(f"unknown parameter -p {name}=...: the notebooks to run have the parameters {listing}")
        for notebook, types in per_notebook.items():
            if name in types and not matches_type(value, types[name]):
                quote = f" (quote text: -p {name}=\"'{value}'\")" if matches_type("", types[name]) else ""
                raise ValueError(f"-p {name}={value!r}: {name} is {type_name(types[name])} in {notebook}, not "
                                 f"{type(value).__name__}{quote}; the notebooks' parameters: {listing}")


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of the block (the kernel inherits them)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _source_cell_index(source: Path, executed_index: int) -> int | None:
    """Map a cell index of the executed notebook back to the committed one (papermill inserts the injected-parameters
    cell right after the ``parameters`` cell, or first); ``None`` for the injected cell itself."""
    cells = nbformat.read(source, as_version=4).cells
    tagged = [i for i, cell in enumerate(cells) if "parameters" in cell.metadata.get("tags", [])]
    injected = tagged[0] + 1 if tagged else 0
    if executed_index == injected:
        return None
    return executed_index - 1 if executed_index > injected else executed_index


def _describe_failure(source: Path, error: Exception) -> str:
    """``"cell 4 ('x = f()'): ValueError: ..."`` for a papermill execution error, the exception otherwise."""
    from papermill.exceptions import PapermillExecutionError

    if not isinstance(error, PapermillExecutionError):
        return f"{type(error).__name__}: {error}"
    first_line = next((line for line in error.source.splitlines() if line.strip()), "")
    index = _source_cell_index(source, error.cell_index)
    where = "the injected parameters cell" if index is None else f"cell {index}"
    return f"{where} ({first_line!r}): {error.ename}: {error.evalue}"


def _hide_injected_parameters(executed: Path) -> None:
    """Tag papermill's injected-parameters cell ``remove-cell`` so the book does not show it."""
    nb = nbformat.read(executed, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if INJECTED_TAG in tags and HIDDEN_TAG not in tags:
            tags.append(HIDDEN_TAG)
    nbformat.write(nb, executed)


def run_notebook(source: Path, out: Path, parameters: dict[str, Any], kernel: str = KERNEL) -> NotebookRun:
    """Execute ``source`` with papermill in its own folder; write ``<out>/<name>/<name>.ipynb`` and ``results.json``."""
    import papermill

    name = source.stem
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    executed, results = folder / source.name, folder / "results.json"
    results.unlink(missing_ok=True)
    error = None
    start = time.perf_counter()
    with _environment(**{RESULTS_ENV: str(results.resolve()), OUTPUT_ENV: str((out / "outputs").resolve())}):
        try:
            papermill.execute_notebook(
                str(source), str(executed), parameters=parameters, kernel_name=kernel, cwd=str(source.parent),
                progress_bar=False,
            )
        except Exception as exc:  # any failure (cell error, dead kernel) is reported, not raised
            error = _describe_failure(source, exc)
    seconds = time.perf_counter() - start
    if executed.exists():
        _hide_injected_parameters(executed)
    if not results.exists():
        results.write_text("{}\n")
    return NotebookRun(name, source, executed, results, seconds, error)


def slowest_cells(runs: Sequence[NotebookRun], count: int = 5) -> list[str]:
    """The ``count`` cells of ``runs``' executed notebooks that took longest (papermill's ``duration`` of each
    cell), slowest first, one line each: seconds, notebook, cell index in the committed notebook, first line."""
    timed = []
    for run in (r for r in runs if r.executed.is_file()):
        for index, cell in enumerate(nbformat.read(run.executed, as_version=4).cells):
            seconds = cell.metadata.get("papermill", {}).get("duration")
            source = _source_cell_index(run.source, index)
            if seconds is not None and source is not None:
                first = next((line for line in cell.source.splitlines() if line.strip() and not line.startswith(
                    ("import ", "from "))), "")
                timed.append((float(seconds), run.name, source, first.strip()))
    return [f"{seconds:8.1f} s  {name} cell {index} ({first[:60]!r})"
            for seconds, name, index, first in sorted(timed, reverse=True)[:count]]


def run_all(
    notebooks: Sequence[Path], out: Path, parameters: dict[str, Any], report: Callable[[str], None] = print,
) -> list[NotebookRun]:
    """Run ``notebooks`` in order, reporting one line each; stop at the first failure (raised as ``NotebookFailed``)."""
    runs = []
    for number, source in enumerate(notebooks, start=1):
        run = run_notebook(source, out, parameters)
        runs.append(run)
        report(f"[{number}/{len(notebooks)}] {run.name:<28} {run.seconds:8.1f} s  {'ok' if run.ok else 'FAILED'}")
        if not run.ok:
            raise NotebookFailed(
                f"notebook {source} failed in {run.error}\n"
                f"executed copy (with the error) kept at {run.executed}; "
                f"{len(runs) - 1} notebook(s) that ran before it are kept under {out}"
            )
    return runs


def stage_book(root: Path, out: Path, stage: Path) -> list[Path]:
    """Copy the book sources under ``root`` to ``stage``, replacing each notebook by its executed copy in ``out``.

    Copies ``_config.yml``, ``_toc.yml`` and every top-level folder the toc names (plus ``book/``, which holds the
    bibliography and extensions, and ``fgssl_lib/results/``, the committed figures the pages show). Returns the
    notebooks replaced by an executed copy.
    """
    toc = root / "_toc.yml"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(root / name, stage / name)
    folders = {Path(entry).parts[0] for entry in _toc_files(yaml.safe_load(toc.read_text())) if "/" in entry}
    for folder in sorted(folders | {"book", "fgssl_lib/results"}):
        if (root / folder).is_dir():
            shutil.copytree(root / folder, stage / folder, ignore=_STAGE_IGNORE)
    replaced = []
    for notebook in toc_notebooks(toc):
        executed = out / notebook.stem / notebook.name
        if executed.is_file():
            shutil.copy2(executed, stage / notebook.relative_to(root))
            replaced.append(notebook)
    return replaced


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fgssl_lib.reproduce",
        description="Run the book's notebooks (from _toc.yml, in order) with papermill and collect their results.",
    )
    parser.add_argument("--preset", help=f"run the notebooks with this preset: {', '.join(PRESETS)}")
    parser.add_argument("--only", nargs="+", metavar="NAME", default=[], help="run only these notebooks (file stems)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("-p", dest="parameters", action="append", default=[], metavar="KEY=VALUE",
                        help="override a notebook parameter; the value is read as a Python literal, else a string")
    parser.add_argument("--no-plan", dest="plan", action="store_false",
                        help="let each notebook train its own runs, one after another, instead of training every "
                             "notebook's runs first, in parallel")
    parser.add_argument("--jobs", type=int, metavar="N",
                        help="runs the plan trains at once (default: one per CPU core, one where CUDA trains)")
    parser.add_argument("--toc", type=Path, default=Path("_toc.yml"), help="table of contents (default _toc.yml)")
    parser.add_argument("--stage", type=Path, metavar="DIR",
                        help="afterwards, copy the book sources to DIR with the executed notebooks from --out in place")
    args = parser.parse_args(argv)
    if args.preset is None and args.stage is None:
        parser.error("give --preset to run the notebooks, --stage DIR to assemble the book, or both")
    if args.preset is not None:
        check_choice("preset", args.preset, PRESETS)
    if args.jobs is not None and args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: give at least 1 (runs trained at once)")
    try:
        usable_directory(args.out, "--out", create=False)
    except UnusableDirectoryError as error:
        parser.error(str(error))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _arguments(argv)
        notebooks = toc_notebooks(args.toc)
        if args.preset is not None:
            names = {nb.stem: nb for nb in notebooks}
            selected = {check_choice("notebook", name, names) for name in args.only} or set(names)
            chosen = [nb for nb in notebooks if nb.stem in selected]
            parameters = parse_parameters(args.parameters)
            check_parameters(parameters, chosen)
            parameters = {**parameters, "preset": args.preset}
            if args.plan:
                parameters = plan_notebooks(chosen, parameters, args.jobs)
            with _environment(**({PLANNED_ENV: "1"} if args.plan else {})):
                runs = run_all(chosen, args.out, parameters)
            print(f"{len(runs)} notebook(s) ran at preset {args.preset!r} in {sum(r.seconds for r in runs):.0f} s; "
                  f"results under {args.out}; the slowest cells:", *slowest_cells(runs), sep="\n")
        if args.stage is not None:
            replaced = stage_book(args.toc.parent, args.out, args.stage)
            print(f"book sources staged in {args.stage} ({len(replaced)}/{len(notebooks)} notebooks executed)")
    except (NotebookFailed, PlanFailed, ValueError, FileNotFoundError) as error:
        print(f"reproduce: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("reproduce: interrupted; finished runs are kept and the others resume from their last checkpoint when "
              "you run it again", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
