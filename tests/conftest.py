"""Shared test set-up: the ``browser`` marker and where executed notebooks are kept."""

from __future__ import annotations

import os
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
