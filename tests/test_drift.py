"""The pages and the notebooks' markdown quote the code: parameter names, option names and defaults, budgets,
calibration targets and the study's verdicts are checked here against the code and the committed results, so a page
cannot drift from what the library does."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from functools import cache
from pathlib import Path

import nbformat
import pytest

import fgssl_lib
from fgssl_lib.data.calibration import TARGETS
from fgssl_lib.methods import METHODS
from fgssl_lib.methods.rationale import FITTINGS
from fgssl_lib.saliency.best_box import DEFAULT_OBJECTIVE
from fgssl_lib.study import CALIBRATION_VAL_IMAGES, read_study
from fgssl_lib.verdicts import CLAIMS, claims
from fgssl_lib.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
HISTORY = ("appendix_calibration.md",)
"""Pages that tell how things came to be: they quote past budgets and times on purpose."""
PAGES = sorted(p for p in (ROOT / "book").glob("*.md") if p.name not in HISTORY)


def _markdown(path: Path) -> list[str]:
    return [cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "markdown"]


def texts(readme: bool = True) -> dict[str, str]:
    """Every page (not the history appendix), the README (with ``readme``) and each notebook's markdown cells, by
    name; the notebooks' generated cost paragraphs are left out (``fgssl_lib.cost`` writes them from the code)."""
    out = {p.name: p.read_text() for p in PAGES}
    if readme:
        out["README.md"] = (ROOT / "README.md").read_text()
    for path in NOTEBOOKS:
        cells = ["\n\n".join(p for p in cell.split("\n\n") if not p.startswith("**Cost.**"))
                 for cell in _markdown(path)]
        out[path.name] = "\n\n".join(cells)
    return out


def paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, each list item its own paragraph."""
    return [p for block in re.split(r"\n\s*\n", text) for p in re.split(r"\n(?=\s*(?:[-*]|\d+\.) )", block)]


@cache
def notebook_parameters() -> frozenset[str]:
    names = set()
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            if "parameters" in cell.metadata.get("tags", []):
                names |= {t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign)
                          for t in node.targets if isinstance(t, ast.Name)}
    return frozenset(names)


@cache
def keyword_defaults() -> dict[str, set[str]]:
    """Every keyword a callable of ``fgssl_lib`` accepts (functions, classes, dataclass fields), with the
    ``repr`` of each default it has there."""
    found: dict[str, set[str]] = {}
    for info in pkgutil.walk_packages(fgssl_lib.__path__, "fgssl_lib."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, lambda o: inspect.isfunction(o) or inspect.isclass(o)):
            if not getattr(obj, "__module__", "").startswith("fgssl_lib"):
                continue
            for callable_ in (obj, *(m for _, m in inspect.getmembers(obj, inspect.isfunction))
                              ) if inspect.isclass(obj) else (obj,):
                try:
                    parameters = inspect.signature(callable_).parameters.values()
                except (TypeError, ValueError):
                    continue
                for p in parameters:
                    defaults = found.setdefault(p.name, set())
                    if p.default is not inspect.Parameter.empty:
                        defaults.add(repr(p.default))
    return found


QUOTED = re.compile(r"`([^`\n]+)`")
IDENTIFIER = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+")


def test_a_paragraph_about_notebook_parameters_names_only_parameters_the_notebooks_have():
    """e.g. a page that tells the reader to set `checkpoint_dir` where the notebooks have `runs_dir`: in a paragraph
    about the parameters cell, a quoted name is a notebook parameter (or a method or notebook name), unless it is
    quoted as a code option (`name=value`)."""
    known = notebook_parameters() | set(METHODS) | {p.stem for p in NOTEBOOKS} | {"fgssl_lib"}
    wrong = []
    for name, text in texts().items():
        for paragraph in paragraphs(text):
            if "parameters cell" not in paragraph:
                continue
            for quoted in QUOTED.findall(paragraph):
                word = quoted.split(" = ")[0].strip()
                if IDENTIFIER.fullmatch(word) and word not in known:
                    wrong.append(f"{name}: `{word}` is in no notebook's parameters cell")
    assert not wrong, wrong


def test_every_quoted_option_is_accepted_by_the_code():
    """`name=value` in a page is a keyword some function, class or config of fgssl_lib takes."""
    keywords = keyword_defaults()
    wrong = []
    for name, text in texts().items():
        for quoted in QUOTED.findall(text):
            for option in re.findall(r"(?:^|[(,\s])([a-z_][a-z0-9_]*)=(?!=)", quoted):
                if option not in keywords and option not in notebook_parameters():
                    wrong.append(f"{name}: `{quoted}`")
    assert not wrong, wrong


def departures_rows() -> list[list[str]]:
    text = (ROOT / "book" / "theory_departures.md").read_text()
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| Method") and "---" not in line]
    return [row for row in rows if len(row) == 6]


def test_the_departures_table_gives_the_code_default_of_the_option_it_names():
    """A row whose last column names an option (`objective=`) says which value is fgssl's default, and that value is
    the code's (e.g. the best box's `objective="covariance"`)."""
    keywords = keyword_defaults()
    wrong = []
    for row in departures_rows():
        default, theirs = row[3], row[5]
        for option in re.findall(r"`([a-z_]+)=`", theirs):
            quoted = re.findall(rf"`{option}=([^`]+)`", default)
            if not quoted or not set(quoted) <= keywords[option]:
                wrong.append(f"{row[0]} / {row[1]}: default column {default!r} should quote "
                             f"`{option}=<default>` from {sorted(keywords.get(option, ()))}")
        for option, value in re.findall(r"`([a-z_]+)=([^`,]+)`", theirs):
            if option in keywords and value in keywords[option]:
                wrong.append(f"{row[0]} / {row[1]}: `{option}={value}` is fgssl's default, not the authors' behaviour")
    assert not wrong, wrong
    module = importlib.import_module("fgssl_lib.saliency.best_box")
    assert f"{DEFAULT_OBJECTIVE} form" in inspect.getdoc(module).split("\n\n")[0]
    assert f"{DEFAULT_OBJECTIVE} form" in inspect.getdoc(module.best_box)


def test_a_notebook_quotes_the_lcr_weights_it_trains_with():
    """04's loss text gives fgssl's nu and tau (the notebooks train with the default fitting)."""
    fitting = FITTINGS["fgssl"]
    wrong = []
    for path in NOTEBOOKS:
        for cell in _markdown(path):
            for symbol, value in re.findall(r"\\(nu|tau)\s*=\s*([\d.]+)", cell):
                expected = fitting.kl_weight if symbol == "nu" else fitting.temperature
                if float(value) != expected:
                    wrong.append(f"{path.name}: {symbol} = {value}, the default is {expected}")
    assert not wrong, wrong


DURATION = re.compile(r"\b\d[\d,.]*\s*(?:s|min|minutes?|h|hours?)\b(?!-)|\ban hour\b")


def test_book_pages_and_notebooks_quote_no_typed_duration():
    """Times live in the README (measured) and in each notebook's generated cost paragraph; a page that types one
    goes stale with the next budget (e.g. "well under an hour")."""
    wrong = [f"{name}: {m.group(0)!r}" for name, text in texts(readme=False).items()
             for m in DURATION.finditer(text)]
    assert not wrong, wrong


BUDGET = re.compile(r"([\d,]+) (?:training )?images x (\d+) epochs")


def test_the_cpu_budget_quoted_is_the_presets():
    cpu = TrainConfig.preset("cpu")
    wrong = [f"{name}: {m.group(0)!r}" for name, text in texts(readme=False).items() for m in BUDGET.finditer(text)
             if (int(m.group(1).replace(",", "")), int(m.group(2))) != (cpu.num_images, cpu.epochs)]
    benchmark = (ROOT / "book" / "benchmark.md").read_text()
    assert f"{CALIBRATION_VAL_IMAGES['cpu']:,} `val` images" in benchmark
    assert not wrong, wrong


@pytest.mark.parametrize(("name", "unit"), [("learnable", "%"), ("biased", "points"), ("stable", "points")])
def test_the_calibration_targets_quoted_are_the_codes(name: str, unit: str):
    for page, text in texts().items():
        for sentence in re.findall(rf"\*{name}\*[^.;]*", text):
            numbers = [float(n) for n in re.findall(rf"(\d+(?:\.\d+)?) {unit}", sentence)]
            assert all(n == TARGETS[name] for n in numbers), f"{page}: {sentence!r}; the target is {TARGETS[name]}"


def test_the_claims_thresholds_quoted_are_the_codes():
    floors = {c.method: floor for c in CLAIMS for _, floor in c.at_least}
    text = texts()["07_cpu_study.ipynb"]
    (line,) = re.findall(r"- \(i\)[^\n]*", text)
    assert [float(n) for n in re.findall(r"at least (\d+(?:\.\d+)?)", line)] == sorted(set(floors.values()))


def test_the_reading_types_no_number():
    """07's reading is generated (`fgssl_lib.verdicts.reading`); its markdown says how, with no number of its own."""
    cells = _markdown(ROOT / "notebooks" / "07_cpu_study.ipynb")
    (reading,) = [cell for cell in cells if cell.startswith("## Reading")]
    assert not re.search(r"\d", reading.replace("07_cpu_study", "")), reading


REJECTED = {"(v)": ("DualPooling", "collapse"), "(vi)": ("branch map", "finds the bird"),
            "(iii)": ("alignment", "adds to SaliencySwap")}
"""Words by which a page would assert a claim of the study: where the committed study rejects the claim from every
start, a page that asserts it must send the reader to the verdict (a notebook that measures it says so itself)."""


def test_no_page_asserts_a_claim_the_study_rejects_without_its_verdict():
    answers = claims(read_study())
    wrong = []
    for number, words in REJECTED.items():
        if answers.loc[answers["claim"] == number, "holds"].any():
            continue
        for name, text in texts().items():
            if name.endswith(".ipynb"):
                continue
            for paragraph in paragraphs(text):
                if all(w.lower() in paragraph.lower() for w in words) and "07_cpu_study" not in paragraph:
                    wrong.append(f"{name}: {paragraph[:120]!r}")
    assert not wrong, wrong


def test_the_intro_figures_maxboxacc_is_the_studys():
    """The intro's caption quotes the MaxBoxAcc of the figure's two arms (`PROBLEM_AND_FIX`): the study's means."""
    from fgssl_lib.viz.study import PROBLEM_AND_FIX

    rows = read_study()
    means = [rows.loc[(rows["method"] == m) & (rows["init"] == i) & (rows["localiser"] == loc), "maxboxacc"].mean()
             for m, i, loc in PROBLEM_AND_FIX]
    quoted = re.search(r"([\d.]+) % against ([\d.]+) % for BYOL", (ROOT / "book" / "intro.md").read_text())
    assert quoted, "the intro's caption no longer quotes the two MaxBoxAccs: drop this check with it"
    assert [float(quoted.group(2)), float(quoted.group(1))] == [round(m, 1) for m in means]
