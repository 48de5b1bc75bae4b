"""``python -m fgssl_lib.bench pipeline --tiny``: per-sample, batched and premade views timed through ``fit``; the
premade views are the batched run's own views, made beforehand."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from fgssl_lib.bench import pipeline
from fgssl_lib.bench.__main__ import main as bench_main
from fgssl_lib.train import TrainConfig, fit

LINE = re.compile(r"pipeline (\S+) per_sample_ms=([\d.]+) batched_ms=([\d.]+) premade_ms=([\d.]+) "
                  r"views_share=(-?[\d.]+)")


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FGSSL_CACHE", str(tmp_path / "cache"))


@pytest.mark.slow
def test_tiny_prints_one_line_per_method(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main(["pipeline", "--tiny"]) == 0
    lines = [LINE.fullmatch(line) for line in capsys.readouterr().out.splitlines() if line.startswith("pipeline ")]
    assert all(lines) and [m.group(1) for m in lines] == list(pipeline.METHODS)
    for m in lines:
        per_sample, batched, premade, share = (float(v) for v in m.groups()[1:])
        assert min(per_sample, batched, premade) > 0
        assert share == pytest.approx((batched - premade) / batched, abs=0.006)


@pytest.mark.parametrize("method", ["byol", "cvsa"])
def test_premade_views_train_exactly_as_the_batched_run(tmp_path: Path, method: str) -> None:
    def config(name: str) -> TrainConfig:
        return TrainConfig.preset("smoke", method=method, num_images=64, view_pipeline="batched",
                                  checkpoint_dir=str(tmp_path / name))

    batched, _ = fit(config("batched"))
    premade, _ = fit(config("premade"), callbacks=[pipeline.PremadeViews(count=2)])
    for (name, a), b in zip(batched.state_dict().items(), premade.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(TypeError, match="view_pipeline='batched'"):
        fit(TrainConfig.preset("smoke", method=method, num_images=64, view_pipeline="per_sample",
                               checkpoint_dir=str(tmp_path / "per_sample")), callbacks=[pipeline.PremadeViews(2)])
