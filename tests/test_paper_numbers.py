import math

import pytest

from fgssl_lib.paper_numbers import REPORTED, reported


def test_lcr_table2_values_land_in_the_right_cells():
    cub = reported("cub")
    assert cub.loc["lcr", "retrieval_rank1"] == 49.69
    assert cub.loc["mocov2", "linear_original_20"] == 46.91
    assert reported("aircraft").loc["lcr", "retrieval_map"] == 15.43


def test_methods_filter_and_missing_values_are_nan():
    table = reported("cub", ["cvsa", "lcr"])
    assert set(table.index) == {"cvsa", "lcr"}
    assert math.isnan(table.loc["cvsa", "retrieval_rank1"])


def test_every_row_names_its_source_and_no_duplicates():
    assert REPORTED["source"].str.startswith("LCR Table").all()
    assert not REPORTED.duplicated(["dataset", "method", "metric"]).any()


def test_unknown_dataset_lists_the_valid_ones():
    with pytest.raises(ValueError, match="aircraft, cars, cub"):
        reported("nabirds")
