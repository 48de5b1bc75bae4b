"""Recipes: one config per notebook method name (variants share the trained name's run), real datasets replacing the
synthetic options, papers' runs sized down, the reproduction configs and CVSA's short dual-stage recipe."""

from __future__ import annotations

import dataclasses

import pytest

from fgssl_lib.runs import run_key
from fgssl_lib.train import TrainConfig
from fgssl_lib.train.recipes import method_configs, reproduction_configs


def test_configs_share_the_run_of_the_trained_variant_and_follow_the_parameters():
    configs = method_configs(["lcr", "lcr_multitask", "byol"], "smoke", seed=3, epochs=2)
    assert configs["lcr_multitask"] == configs["lcr"]  # MultiTask is the LCR run evaluated differently
    assert configs["byol"] == TrainConfig.preset("smoke", method="byol", seed=3, epochs=2)
    assert run_key(configs["byol"]) == run_key(TrainConfig.preset("smoke", method="byol", seed=3, epochs=2))
    assert method_configs(["byol"], "smoke")["byol"].epochs == TrainConfig.preset("smoke").epochs


def test_a_real_dataset_replaces_the_synthetic_options():
    config = method_configs(["cvsa"], "cpu", dataset="cub", data_root="/data/cub")["cvsa"]
    assert (config.dataset, config.data_root, config.dataset_options) == ("cub", "/data/cub", {})
    with pytest.raises(ValueError, match="methods is empty"):
        method_configs([], "cpu")


def test_the_synthetic_benchmark_at_the_paper_preset_is_synthetic_and_takes_its_options():
    from fgssl_lib.train.fit import training_set

    config = method_configs(["byol"], "paper", dataset="synthetic", num_images=4)["byol"]
    assert (config.dataset, config.dataset_options, config.num_images) == ("synthetic", {"image_size": 224}, 4)
    stage1 = dataclasses.replace(config, dataset_options={**config.dataset_options, "seed": 1})  # 03's dual stage
    assert len(training_set(dataclasses.replace(stage1, dataset_options={"image_size": 32, "seed": 1}))) == 4


def test_a_paper_run_can_be_sized_down_and_none_keeps_the_preset():
    config = method_configs(["cvsa"], "paper", dataset="cub", data_root="/data/cub", seed=1, batch_size=8,
                            num_images=16, epochs=1, precision="32-true", device=None)["cvsa"]
    assert (config.batch_size, config.num_images, config.epochs, config.precision, config.seed) == (
        8, 16, 1, "32-true", 1)
    assert config.device == TrainConfig.preset("paper", method="cvsa").device


def test_reproduction_configs_start_as_the_reported_runs_or_fall_back_to_smoke():
    from fgssl_lib.paper_numbers import INIT

    paper = reproduction_configs(["lcr", "byol_dilo"], "paper", "aircraft", data_root="/data/air", epochs=None)
    assert {c.split for c in paper.values()} == {"trainval"} and paper["lcr"].dataset == "aircraft"
    assert paper["byol_dilo"] == TrainConfig.preset("paper", method="byol_dilo", dataset="aircraft",
                                                    data_root="/data/air", split="trainval").with_init(INIT)
    smoke = reproduction_configs(["lcr"], "cpu", "cub", seed=2)
    assert smoke["lcr"] == TrainConfig.preset("smoke", method="lcr", seed=2)
    with pytest.raises(ValueError, match="valid initialisations: paper, reported"):
        reproduction_configs(["lcr"], "paper", "cub", init="imagenet")
    colab = reproduction_configs(["lcr", "byol", "byol_dilo"], "colab", "cub", init="paper")
    assert {m: c.epochs for m, c in colab.items()} == {"lcr": 50, "byol": 24, "byol_dilo": 24}
    assert colab["byol"].pretrained == "imagenet" and colab["byol"].method_options["freeze_early"]  # CVSA's dual stage
    assert TrainConfig.preset("colab", method="byol_dilo").pretrained == "imagenet"  # DiLo's scratch: not in 2 hours
    assert TrainConfig.preset("colab", method="cvsa").dataset == "cub" and colab["lcr"].image_size == 224


def test_the_short_dual_stage_recipe_starts_byol_from_scratch_on_another_draw():
    from fgssl_lib.train.recipes import dual_stage_configs

    cvsa = method_configs(["cvsa"], "smoke", seed=2, epochs=3)["cvsa"]
    stage1, stage2 = dual_stage_configs("smoke", cvsa, 2, seed=2, epochs=3)
    assert (stage1.method, stage1.epochs, stage1.dataset_options["seed"], stage1.pretrained) == ("byol", 2, 3, None)
    assert stage2 == dataclasses.replace(cvsa, epochs=2)
    assert dual_stage_configs("smoke", cvsa, 9, seed=2)[1].epochs == 3  # never longer than the single-stage run
