"""Runs started from a stage-1 run on the coarse world: the stage-1 run is keyed and trained once, its final backbone
is the stage-2 run's initial one, and the init is part of the stage-2 run's key."""

from __future__ import annotations

import pytest
import torch

from fgssl_lib import runs as runs_module
from fgssl_lib.runs import run_key, start_from, train_or_load
from fgssl_lib.train.recipes import stage1_config
from fgssl_lib.train import TrainConfig
from fgssl_lib.train.config import COARSE_INIT, PAPER_INIT, STAGE1_PREFIX
from fgssl_lib.train.snapshots import SNAPSHOTS, run_snapshot_images, training_snapshots

SMALL = dict(max_steps=2, num_images=64)

def test_with_init_needs_the_stage1_run_exactly_for_the_coarse_inits():
    config = TrainConfig.preset("smoke", method="byol")
    with pytest.raises(ValueError, match="start_from"):
        config.with_init("coarse_dual_stage")
    with pytest.raises(ValueError, match="takes no stage-1 run"):
        config.with_init("imagenet", stage1="byol-seed0-0123456789")
    started = config.with_init("coarse_dual_stage", stage1="byol-seed0-0123456789")
    assert started.pretrained == STAGE1_PREFIX + "byol-seed0-0123456789" and started.method_options["freeze_early"]
    assert set(COARSE_INIT) == set(PAPER_INIT.values())

def test_the_stage1_config_is_its_method_from_scratch_on_the_coarse_world():
    stage1 = stage1_config("coarse_supervised", "smoke", **SMALL, seed=3)
    assert (stage1.method, stage1.dataset, stage1.pretrained, stage1.seed) == ("supervised", "coarse", None, 3)
    assert stage1.dataset_options == {"image_size": stage1.image_size, "num_images": 64}
    assert stage1_config("coarse_dual_stage", "smoke").method == "byol"
    with pytest.raises(ValueError, match="no stage-1 run"):
        stage1_config("scratch", "smoke")

@pytest.mark.parametrize("init", ["coarse_supervised", "coarse_dual_stage"])
def test_stage2_starts_from_the_final_stage1_backbone_and_is_another_run(init, tmp_path, monkeypatch):
    config = TrainConfig.preset("smoke", method="byol", **SMALL)
    started = start_from(config, init, "smoke", root=tmp_path, **SMALL)
    stage1 = stage1_config(init, "smoke", **SMALL)
    assert started.pretrained == STAGE1_PREFIX + run_key(stage1)
    assert run_key(started) != run_key(config) != run_key(start_from(config, "scratch", "smoke"))
    other = start_from(config, init, "smoke", root=tmp_path, **{**SMALL, "max_steps": 3})
    assert run_key(other) != run_key(started)  # another stage-1 run: another stage-2 run

    final = train_or_load(stage1, root=tmp_path).method.backbone.state_dict()  # loaded: it finished once
    built = []
    real_fit = runs_module.fit
    monkeypatch.setattr(runs_module, "fit", lambda c, method=None, **k: built.append(
        {k: v.clone() for k, v in method.state_dict().items()}) or real_fit(c, method=method, **k))
    run = train_or_load(started, root=tmp_path)
    initial = built[0]
    prefixes = {name.rsplit("backbone.", 1)[0] for name in initial if "backbone." in name}
    assert prefixes == {"", "momentum_encoder."}
    for prefix in prefixes:
        for name, weight in final.items():  # online and momentum backbones alike
            assert torch.equal(initial[f"{prefix}backbone.{name}"], weight), f"{prefix}backbone.{name}"
    assert run.method.backbone.frozen_stages == (("stem", "layer1", "layer2") if init == "coarse_dual_stage" else ())
    assert run.path.name == run_key(started)
    with pytest.raises(ValueError, match="only fgssl_lib.runs.train_or_load loads"):
        real_fit(started)  # fit alone cannot find the stage-1 weights
    (run.path / SNAPSHOTS).unlink(missing_ok=True)  # no recorded series: its first snapshot cannot be rebuilt from the seed
    with pytest.raises(ValueError, match="initial weights are a stage-1 run's"):
        training_snapshots(run, started, run_snapshot_images(started)[0])

def test_a_stage2_run_without_its_finished_stage1_run_says_how_to_get_it(tmp_path):
    config = TrainConfig.preset("smoke", method="byol", **SMALL).with_init("coarse_supervised",
                                                                          stage1="supervised-seed0-0000000000")
    with pytest.raises(FileNotFoundError, match="start_from"):
        train_or_load(config, root=tmp_path)
