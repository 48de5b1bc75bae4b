"""``python -m fgssl_lib.bench fidelity`` at smoke: one row per setting and seed, on the val stream, resumable."""

from __future__ import annotations

import pandas as pd
import pytest

from fgssl_lib.bench import fidelity


@pytest.mark.slow
def test_fidelity_bench_scores_every_setting_on_val_and_resumes(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("FGSSL_RUNS", str(tmp_path / "runs"))
    csv = tmp_path / "fidelity.csv"
    args = ["--methods", "lcr", "--seeds", "0", "--preset", "smoke", "--jobs", "1", "--csv", str(csv)]
    assert fidelity.main(args) == 0
    rows = pd.read_csv(csv)
    assert list(rows["setting"]) == list(fidelity.SETTINGS["lcr"]) and set(rows["seed"]) == {0}
    assert rows[list(fidelity.METRICS)].notna().all().all()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("fidelity ")]
    assert [line.split()[2] for line in lines] == ["fgssl", "authors"]
    assert all("knn_mixed_rand=" in line and "seeds=1" in line for line in lines)
    assert fidelity.main(args) == 0  # everything is in the CSV: nothing is trained again
    assert "lcr fgssl 0:" not in capsys.readouterr().out and len(pd.read_csv(csv)) == 2
