"""``python -m fgssl_lib.bench memory``: measured activation memory per image and the micro-batch of each card; at
``colab`` a 16 GiB card is predicted to hold every method within 14.5 GiB."""

from __future__ import annotations

import pytest

from fgssl_lib.bench.__main__ import areas
from fgssl_lib.bench.memory import main, memory_table
from fgssl_lib.train.memory import GIB, MEMORY_FRACTION


def test_the_tiny_table_runs_and_is_a_bench_area(capsys: pytest.CaptureFixture[str]) -> None:
    assert "memory" in areas()
    assert main(["--tiny", "--methods", "byol", "mocov2"]) == 0
    out = capsys.readouterr().out
    assert "MiB/image" in out and "16 GiB" in out and "mocov2" in out


def test_at_colab_the_largest_methods_fit_a_16_gib_card_with_accumulation() -> None:
    # DiLo's copy-paste views run both views through the whole network: the most memory per image
    table = memory_table(("byol_dilo", "supervised"), ("colab",), "16-mixed", cards=(16, 80))
    dilo, supervised = (row for _, row in table.iterrows())
    assert dilo["MiB/image"] > 1.5 * supervised["MiB/image"] > 0
    assert dilo["16 GiB"].startswith(("64 x 4", "32 x 8")) and dilo["80 GiB"].startswith("256 x 1")
    assert (table["peak 16"] <= 14.5).all() and (table["peak 16"] <= MEMORY_FRACTION * 16).all()
    assert (table["peak 80"] * GIB > table["peak 16"] * GIB).all()
