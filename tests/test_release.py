"""The Colab install cell: one release (``v<version>``, its wheel attached to the GitHub release), from the repository
URL set once in ``_config.yml``, stopping with the command to run by hand when pip fails; the tag check of the release
workflow; and every dependency pinned to a tested range (OpenCV at 4.x, as on Colab)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import fgssl_lib
from fgssl_lib.release import (check_tag, install_cell, main, release_tag, repository_url, stale_install_cells,
                               wheel_name, wheel_url)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_every_notebook_installs_this_release_from_the_configured_repository() -> None:
    assert len(NOTEBOOKS) == 8
    assert stale_install_cells(NOTEBOOKS) == [], "run `python -m fgssl_lib.release`"
    cell = install_cell()
    assert wheel_url() == f"{repository_url()}/releases/download/{release_tag()}/{wheel_name()}"
    assert f'"fgssl_lib @ {wheel_url()}"' in cell and "%pip install" not in cell and "@main" not in cell
    assert release_tag() == f"v{fgssl_lib.__version__}"
    assert main(["--check"]) == 0


def test_another_repository_url_makes_every_install_cell_stale_and_rewrites_them(tmp_path: Path) -> None:
    config = tmp_path / "_config.yml"
    config.write_text((ROOT / "_config.yml").read_text().replace("https://github.com/fgssl/fgssl",
                                                                  "https://github.com/someone/fork.git"))
    copies = []
    for path in NOTEBOOKS[:2]:
        copies.append(tmp_path / path.name)
        shutil.copy(path, copies[-1])
    assert stale_install_cells(copies, config) == copies
    assert stale_install_cells(copies, config, write=True) == copies
    assert stale_install_cells(copies, config) == []
    assert "https://github.com/someone/fork/releases/download/v" in copies[0].read_text()


def _run_install_cell(monkeypatch: pytest.MonkeyPatch, returncode: int, colab: bool = True) -> list[list[str]]:
    """Execute the install cell's code as Colab would, with ``subprocess.run`` replaced by an installer that exits
    ``returncode``; the commands it was given."""
    commands = []

    def installer(command: list[str], **options: object) -> subprocess.CompletedProcess:
        commands.append(command)
        return subprocess.CompletedProcess(command, returncode, "", "ERROR: 404 Client Error: Not Found for url")

    monkeypatch.setattr(subprocess, "run", installer)
    if colab:
        monkeypatch.setitem(sys.modules, "google.colab", object())
    exec(compile(install_cell(), "install cell", "exec"), {})
    return commands


def test_the_install_cell_raises_with_the_command_to_run_by_hand_when_pip_fails(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeError) as failure:
        _run_install_cell(monkeypatch, returncode=1)
    message = str(failure.value)
    assert "404 Client Error" in message and "pip exited 1" in message
    assert f'!pip install "fgssl_lib @ {wheel_url()}"' in message
    assert "`repository.url`" in message and "_config.yml" in message


def test_the_install_cell_runs_this_interpreters_pip_once_and_is_silent_when_it_succeeds_or_off_colab(
        monkeypatch: pytest.MonkeyPatch) -> None:
    (command,) = _run_install_cell(monkeypatch, returncode=0)
    assert command == [sys.executable, "-m", "pip", "install", "-q", f"fgssl_lib @ {wheel_url()}"]
    monkeypatch.delitem(sys.modules, "google.colab")
    assert _run_install_cell(monkeypatch, returncode=1, colab=False) == []


def test_a_release_tag_must_name_this_version(capsys: pytest.CaptureFixture[str]) -> None:
    check_tag(f"v{fgssl_lib.__version__}")
    for tag in (fgssl_lib.__version__, "v0.0.1", f"v{fgssl_lib.__version__}rc1"):
        with pytest.raises(ValueError, match="__version__"):
            check_tag(tag)
    assert main(["--tag", release_tag()]) == 0
    assert main(["--tag", "v0.0.1"]) == 1 and "must be 'v" in capsys.readouterr().err
    assert wheel_name("1.2.0") == "fgssl_lib-1.2.0-py3-none-any.whl"


def test_a_config_without_repository_url_says_what_is_missing(tmp_path: Path) -> None:
    config = tmp_path / "_config.yml"
    config.write_text("title: x\n")
    with pytest.raises(ValueError, match="repository.url"):
        install_cell(config)


def test_readme_names_the_one_place_of_the_repository_url() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "`repository.url`" in readme and "python -m fgssl_lib.release" in readme


def test_every_dependency_has_a_tested_range_and_opencv_stays_at_4() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    requirements += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    for requirement in requirements:
        operators = {spec.operator for spec in requirement.specifier}
        assert "==" in operators or {"<", ">="} <= operators, f"{requirement} needs a lower and an upper bound"
    for name in ("opencv-contrib-python-headless", "opencv-python-headless"):
        (cv,) = [r for r in requirements if r.name == name]
        assert not cv.specifier.contains("5.0.0") and cv.specifier.contains("4.12.0")
    assert project["dynamic"] == ["version"]


API_FLOORS = {  # distribution: (first release with the API, the API, a call of it in fgssl_lib)
    "pytorch-lightning": ("2.6", "Trainer.fit(weights_only=)", ("train/fit.py", "weights_only=True)")),
    "torch": ("2.4", "torch.is_autocast_enabled(device_type)", ("precision.py", 'torch.is_autocast_enabled("cpu")')),
    "torchvision": ("0.19", "the release of torch 2.4; tv_tensors.wrap", ("views/photometric.py", "tv_tensors.wrap(")),
    "grad-cam": ("1.5", "GradCAM(model, target_layers) without use_cuda", ("eval/cams.py", "GradCAM(")),
    "pandas": ("2.0", "Styler.hide(axis=)", ("../notebooks/07_cpu_study.ipynb", 'style.hide(axis=\\"index\\")')),
}
"""The dependencies whose lower bound an API fgssl calls decides: the bound must exclude the release before it."""


def _previous(version: str) -> str:
    major, minor = (int(part) for part in version.split("."))
    return f"{major}.{minor - 1}.99" if minor else f"{major - 1}.99"


def test_every_lower_bound_admits_only_versions_with_the_apis_the_code_calls() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = {Requirement(r).name: Requirement(r).specifier for r in project["dependencies"]}
    for name, (floor, api, (path, call)) in API_FLOORS.items():
        assert call in (ROOT / "fgssl_lib" / path).read_text(), f"fgssl no longer calls {api}: drop {name}'s row"
        specifier = requirements[name]
        assert specifier.contains(floor) and not specifier.contains(_previous(floor)), (
            f"{name}{specifier} must start at {floor}: {api}")
    conda = (ROOT / "environment.yml").read_text()
    for name in ("torch", "torchvision"):
        assert f"- {name}>={API_FLOORS[name][0]}\n" in conda, f"environment.yml: {name} from {API_FLOORS[name][0]}"
