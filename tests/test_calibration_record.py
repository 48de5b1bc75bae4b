"""The study's calibration record (the benchmark page's "Calibration"): measured values against the targets, in the
JSON the book reads."""

from __future__ import annotations

import json

import pytest

from fgssl_lib.data.calibration import TARGETS, calibration_record, write_calibration


def test_each_property_is_judged_against_its_target_and_written_as_json(tmp_path) -> None:
    record = calibration_record([70.0, 75.0], byol_bg_gap=[45.0, 41.0, 43.0], byol_mixed_rand=[20.0, 26.0, 23.0],
                                budget={"epochs": 20, "num_images": 6000, "image_size": 64},
                                runs=[{"method": "byol", "seed": 0, "key": "byol-seed0-abc"}])
    assert record["learnable"] == {"value": 72.5, "target": TARGETS["learnable"], "met": True, "seeds": [70.0, 75.0]}
    assert record["biased"]["value"] == 43.0 and record["biased"]["met"] and record["biased"]["target"] == 40
    assert record["stable"]["value"] == 3.0 and record["stable"]["met"]  # std 3.0 (ddof 1): at most 3
    assert not calibration_record([69.9], [39.0, 40.0], [10.0, 15.0], {})["learnable"]["met"]
    assert not calibration_record([80.0], [39.0, 40.0], [10.0, 15.0], {})["biased"]["met"]
    assert not calibration_record([80.0], [39.0, 40.0], [10.0, 15.0], {})["stable"]["met"]
    path = write_calibration(record, tmp_path / "results" / "calibration.json")
    assert json.loads(path.read_text()) == record


def test_the_std_needs_two_seeds_of_each_value() -> None:
    with pytest.raises(ValueError, match="at least two"):
        calibration_record([80.0], [45.0], [20.0], {})
    with pytest.raises(ValueError, match="same seeds"):
        calibration_record([80.0], [45.0, 44.0], [20.0, 21.0, 22.0], {})
    with pytest.raises(ValueError, match="ceiling's for at least one"):
        calibration_record([], [45.0, 44.0], [20.0, 21.0], {})
