"""The Colab install cell: one release (``v<version>``), from the repository URL set once in ``_config.yml``; and
every dependency pinned to a tested range (OpenCV at 4.x, as on Colab)."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import fgssl_lib
from fgssl_lib.release import install_cell, main, release_tag, repository_url, stale_install_cells

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_every_notebook_installs_this_release_from_the_configured_repository() -> None:
    assert len(NOTEBOOKS) == 8
    assert stale_install_cells(NOTEBOOKS) == [], "run `python -m fgssl_lib.release`"
    cell = install_cell()
    assert f"git+{repository_url()}@{release_tag()}" in cell and "@main" not in cell
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
    assert "git+https://github.com/someone/fork@v" in copies[0].read_text()


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
