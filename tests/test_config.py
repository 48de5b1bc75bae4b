"""TrainConfig checks its fields' types, and a preset's dataset options stay with the preset's dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

import fixtures_real as fx
from fgssl_lib.config import matches_type
from fgssl_lib.train import TrainConfig
from fgssl_lib.train.fit import training_set


@pytest.mark.parametrize(("field", "value", "message"), [
    ("epochs", 1.5, "TrainConfig.epochs must be int, got 1.5 (float)"),
    ("lr", "fast", "TrainConfig.lr must be float, got 'fast' (str)"),
    ("num_images", "all", "TrainConfig.num_images must be int | None, got 'all'"),
    ("resume", 1, "TrainConfig.resume must be bool, got 1 (int)"),
    ("batch_size", True, "TrainConfig.batch_size must be int | str, got True (bool)"),
    ("method_options", [1], "TrainConfig.method_options must be dict"),
])
def test_fields_are_type_checked_naming_field_value_and_type(field: str, value: object, message: str) -> None:
    with pytest.raises(TypeError, match=message.replace("|", r"\|").replace("(", r"\(").replace(")", r"\)")):
        TrainConfig(**{field: value})


def test_sensible_values_pass_and_a_path_becomes_a_str() -> None:
    config = TrainConfig(lr=1, num_images=None, devices=[0, 1], data_root=Path("/data/cub"), checkpoint_minutes=20)
    assert config.data_root == "/data/cub" and config.lr == 1
    assert matches_type(3, float) and not matches_type(3.0, int) and matches_type({"a": 1}, dict[str, object])


def test_a_real_dataset_does_not_inherit_the_synthetic_options_of_a_preset(tmp_path: Path) -> None:
    root = fx.build_cub(tmp_path / "CUB_200_2011")
    assert len(training_set(TrainConfig.preset("smoke", dataset="cub", data_root=str(root)))) == 3
    for preset in ("smoke", "cpu"):
        cub = TrainConfig.preset(preset, dataset="cub", data_root=str(root))
        assert cub.dataset_options == {} and cub.image_size == TrainConfig.preset(preset).image_size
        options = TrainConfig.preset(preset, dataset="cub", dataset_options={"segmentations": False})
        assert options.dataset_options == {"segmentations": False}
    assert TrainConfig.preset("smoke", dataset_options={"rho": 0.5}).dataset_options == {"image_size": 32, "rho": 0.5}


def test_the_paper_preset_starts_each_method_as_its_paper_does() -> None:
    from fgssl_lib.methods import METHODS
    from fgssl_lib.train.config import PAPER_INIT

    expected = {  # (pretrained, freeze_early): LCR and all it compares with from ImageNet, CVSA dual stage, DiLo scratch
        "lcr": ("imagenet", False), "lcr_multitask": ("imagenet", False), "lcr_dual_pooling": ("imagenet", False),
        "byol_lcr": ("imagenet", False), "mocov2": ("imagenet", False), "simclr": ("imagenet", False),
        "supervised": ("imagenet", False), "byol": ("imagenet", True), "byol_ss": ("imagenet", True),
        "cvsa": ("imagenet", True), "cvsa_sigmoid_max": ("imagenet", True), "byol_dilo": (None, False),
        "mocov2_dilo": (None, False), "supervised_oracle": (None, False),  # the benchmark's ceiling: no paper
    }
    assert set(PAPER_INIT) == set(METHODS) == set(expected)
    for method, (pretrained, frozen) in expected.items():
        config = TrainConfig.preset("paper", method=method)
        assert (config.pretrained, config.method_options["freeze_early"]) == (pretrained, frozen), method
    cvsa = TrainConfig.preset("paper", method="cvsa")
    scratch = cvsa.with_init("scratch")
    assert scratch.pretrained is None and scratch.method_options == {**cvsa.method_options, "freeze_early": False}
    with pytest.raises(ValueError, match="valid initialisations: coarse_dual_stage, coarse_supervised, dual_stage, imagenet, scratch"):
        cvsa.with_init("coco")


def test_dual_stage_refuses_a_stage_1_that_freezes_the_early_stages(tmp_path) -> None:
    from fgssl_lib.train import fit_dual_stage

    stage = TrainConfig.preset("smoke", method="byol", checkpoint_dir=str(tmp_path))
    with pytest.raises(ValueError, match="stage 1 of the dual-stage recipe trains the whole network"):
        fit_dual_stage(stage.with_init("dual_stage"), stage)
