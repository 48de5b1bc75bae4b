"""Shared test set-up: the ``browser`` marker and where executed notebooks are kept."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: opens the built book (_build/html) in headless Chromium")


@pytest.fixture(scope="session")
def executed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where notebook tests write executed copies: ``$FGSSL_TEST_EXECUTED`` (``make test`` builds the book from it),
    else a temporary folder."""
    path = os.environ.get("FGSSL_TEST_EXECUTED")
    return (ROOT / path if path else tmp_path_factory.mktemp("executed")).resolve()


@pytest.fixture(scope="session", autouse=True)
def isolated_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Training runs made by tests (and the notebooks they execute) go to one temporary folder per session, so
    tests never load a stale run from ``~/.cache/fgssl/runs`` and the notebooks share their smoke runs."""
    path = tmp_path_factory.mktemp("runs")
    previous = os.environ.get("FGSSL_RUNS")
    os.environ["FGSSL_RUNS"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("FGSSL_RUNS", None)
    else:
        os.environ["FGSSL_RUNS"] = previous
