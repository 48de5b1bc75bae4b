"""The wheel is the package a reader installs (a release asset, what the Colab install cell fetches): built from this
checkout (or ``$FGSSL_WHEEL``, the release workflow's own wheel), installed with ``--no-deps`` into a fresh venv
that sees this venv's dependencies but not its ``fgssl_lib``, it runs notebook 07 at ``cpu`` from an empty folder:
the committed study travels with the package, and 07 reads it without training."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import nbformat
import pytest

from fgssl_lib.release import wheel_name

ROOT = Path(__file__).resolve().parents[1]
RESULTS_FILES = ("cpu_study.csv", "calibration.json", "fidelity_val.csv", "problem_and_fix.png")


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def build_wheel(out: Path) -> Path:
    """The wheel of a copy of this checkout's sources (the checkout stays clean), built offline with this venv's
    setuptools: ``$FGSSL_WHEEL`` instead when set."""
    if os.environ.get("FGSSL_WHEEL"):
        return Path(os.environ["FGSSL_WHEEL"]).resolve()
    source = out / "source"
    source.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "fgssl_lib", source / "fgssl_lib", ignore=shutil.ignore_patterns("__pycache__"))
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", str(out / "dist"), str(source)], cwd=out)
    (wheel,) = (out / "dist").glob("*.whl")
    return wheel


def fresh_venv(directory: Path) -> tuple[Path, dict[str, str]]:
    """A venv without pip whose ``sys.path`` ends with this venv's site-packages (a ``.pth`` path line, so their
    ``.pth`` files, the editable ``fgssl_lib`` finder among them, are not run); its python and a clean environment."""
    _run([sys.executable, "-m", "venv", "--without-pip", str(directory)], cwd=directory.parent)
    python = directory / "bin" / "python"
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=directory).strip())
    ours = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    (site / "parent_dependencies.pth").write_text("".join(f"{path}\n" for path in ours))
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env.update(VIRTUAL_ENV=str(directory), PATH=f"{directory / 'bin'}{os.pathsep}{env.get('PATH', '')}",
               JUPYTER_DATA_DIR=str(directory / "jupyter"), MPLBACKEND="Agg")
    return python, env


@pytest.mark.slow
def test_the_wheel_in_an_empty_venv_runs_07_from_an_empty_folder(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "build")
    assert wheel.name == wheel_name(), "the install cell fetches the release asset by this name"
    with zipfile.ZipFile(wheel) as archive:
        assert {f"fgssl_lib/results/{name}" for name in RESULTS_FILES} <= set(archive.namelist())

    python, env = fresh_venv(tmp_path / "venv")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
          "--force-reinstall", str(wheel)], cwd=tmp_path, env=env)  # into the venv, whatever this one holds
    empty = tmp_path / "reader"
    empty.mkdir()
    installed = Path(_run([str(python), "-c", "import fgssl_lib; print(fgssl_lib.__file__)"], cwd=empty,
                          env=env).strip())
    assert installed.is_relative_to(tmp_path / "venv"), f"imported {installed}, not the wheel's copy"

    notebook = nbformat.read(ROOT / "notebooks" / "07_cpu_study.ipynb", as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell("import fgssl_lib\nrecord('package', fgssl_lib.__file__)"))
    nbformat.write(notebook, empty / "07_cpu_study.ipynb")
    env.update(FGSSL_RESULTS=str(empty / "results.json"), FGSSL_OUTPUT=str(empty / "outputs"))
    _run([str(python), "-m", "papermill", "-k", "python3", "-p", "preset", "cpu", "--log-level", "ERROR",
          "07_cpu_study.ipynb", "07_executed.ipynb"], cwd=empty, env=env)
    recorded = json.loads((empty / "results.json").read_text())
    assert Path(recorded["package"]).is_relative_to(tmp_path / "venv"), "the kernel imported another fgssl_lib"
    assert "study_seconds" not in recorded, "07 at cpu reads the committed study, it trains nothing"
    assert recorded["claims"] and recorded["table"]
    assert sorted(path.name for path in empty.iterdir()) == ["07_cpu_study.ipynb", "07_executed.ipynb", "outputs",
                                                            "results.json"]
