"""Backbones: stage-map shapes, pooling, normalisation, freezing, name and weight errors."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision

from fgssl_lib.models import BACKBONES, EARLY_STAGES, Backbone, build_backbone, small_input_stem
from fgssl_lib.models.backbones import STAGES as STAGES_ALL


@pytest.mark.parametrize("name", ["resnet_narrow", "resnet18"])
@pytest.mark.parametrize("size", [32, 64])
def test_small_input_last_map_is_at_least_4x4(name: str, size: int) -> None:
    backbone = build_backbone(name, **small_input_stem(size)).eval()
    maps = backbone.forward_maps(torch.rand(2, 3, size, size), stages=("layer3", "layer4"))
    assert set(maps) == {"layer3", "layer4"}
    assert maps["layer4"].shape[-1] >= 4 and maps["layer4"].shape[-2] >= 4
    assert maps["layer3"].shape[-1] == 2 * maps["layer4"].shape[-1]
    for stage, fmap in maps.items():
        assert fmap.shape[:2] == (2, backbone.stage_channels[stage])


def test_stride_one_stem_keeps_size_over_8() -> None:
    backbone = build_backbone("resnet_narrow", small_input=True, stem_stride=1)
    assert backbone.forward_maps(torch.rand(1, 3, 64, 64), ("layer4",))["layer4"].shape[-2:] == (8, 8)


def test_standard_stem_total_stride_32() -> None:
    backbone = build_backbone("resnet18").eval()
    assert backbone.forward_maps(torch.rand(1, 3, 128, 128), ("layer4",))["layer4"].shape == (1, 512, 4, 4)
    assert build_backbone("resnet50").feature_dim == 2048


def test_forward_is_pooled_layer4_and_input_is_normalised() -> None:
    backbone = build_backbone("resnet_narrow", small_input=True).eval()
    x = torch.rand(3, 3, 32, 32)
    pooled = backbone(x)
    assert pooled.shape == (3, backbone.feature_dim)
    torch.testing.assert_close(pooled, backbone.forward_maps(x, ("layer4",))["layer4"].mean(dim=(2, 3)))
    # the first op is ImageNet normalisation: feeding the mean colour gives a zero input to conv1
    seen = {}

    def record_input(module: torch.nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        seen["x"] = inputs[0]

    backbone.stem[0].register_forward_hook(record_input)
    backbone(backbone.mean.expand(1, 3, 32, 32).clone())
    assert seen["x"].abs().max() < 1e-6
    assert "mean" not in backbone.state_dict()


def test_forward_maps_stops_at_the_deepest_stage_requested() -> None:
    backbone = build_backbone("resnet_narrow", small_input=True)
    called = []
    backbone.layer4.register_forward_hook(lambda *args: called.append(True))
    backbone.forward_maps(torch.rand(1, 3, 32, 32), ("layer2",))
    assert not called


def test_freeze_early_stops_gradients_and_batchnorm_statistics() -> None:
    backbone = build_backbone("resnet_narrow", small_input=True)
    backbone.freeze_early()
    backbone.train()
    stats_before = backbone.stem[1].running_mean.clone()
    late_stats_before = backbone.layer3[0].bn1.running_mean.clone()
    backbone(torch.rand(4, 3, 32, 32)).sum().backward()
    for stage in EARLY_STAGES:
        for p in getattr(backbone, stage).parameters():
            assert not p.requires_grad and p.grad is None
        assert not getattr(backbone, stage).training
    assert all(p.grad is not None for p in backbone.layer3.parameters())
    assert backbone.layer3.training
    torch.testing.assert_close(backbone.stem[1].running_mean, stats_before)
    assert not torch.equal(backbone.layer3[0].bn1.running_mean, late_stats_before)


def test_unknown_backbone_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match="resnet18, resnet50, resnet_narrow"):
        build_backbone("vit")
    assert set(BACKBONES) == {"resnet18", "resnet50", "resnet_narrow"}
    with pytest.raises(ValueError, match="stem_stride"):
        Backbone("resnet18", small_input=True, stem_stride=4)


@pytest.mark.parametrize("options", [{"name": "resnet_narrow"}, {"name": "resnet18", "small_input": True}])
def test_imagenet_weights_refused_for_changed_architectures(options: dict) -> None:
    with pytest.raises(ValueError, match="no ImageNet weights"):
        Backbone(pretrained="imagenet", **options)


def test_imagenet_weights_offline_give_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(name: str, weights: object = None) -> None:
        if weights is not None:
            raise urllib.error.URLError("no network")
        return None

    monkeypatch.setattr(torchvision.models, "get_model", offline)
    with pytest.raises(RuntimeError, match="could not download the ImageNet weights of resnet18.*pretrained=None"):
        Backbone("resnet18", pretrained="imagenet")
    with pytest.raises(ValueError, match="valid pretraineds: imagenet"):
        Backbone("resnet18", pretrained="imagenet21k")


def test_weights_and_maps_are_channels_last_with_nchw_values() -> None:
    torch.manual_seed(0)
    backbone = build_backbone("resnet_narrow", **small_input_stem(64)).eval()
    nchw = build_backbone("resnet_narrow", **small_input_stem(64)).eval()
    nchw.load_state_dict(backbone.state_dict())
    nchw.use_memory_format(torch.contiguous_format)
    assert backbone.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not nchw.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    images = torch.rand(4, 3, 64, 64)
    maps, reference = backbone.forward_maps(images, STAGES_ALL), nchw.forward_maps(images, STAGES_ALL)
    for stage in STAGES_ALL:
        assert maps[stage].is_contiguous(memory_format=torch.channels_last)
        assert reference[stage].is_contiguous()
        torch.testing.assert_close(maps[stage], reference[stage], rtol=1e-4, atol=1e-5)


def test_split_batchnorm_trains_on_channels_last_maps() -> None:
    """lightly's SplitBatchNorm regroups the batch with ``view``, which a channels_last map refuses."""
    torch.manual_seed(0)
    backbone = build_backbone("resnet_narrow", **small_input_stem(64))
    nchw = build_backbone("resnet_narrow", **small_input_stem(64))
    nchw.load_state_dict(backbone.state_dict())
    nchw.use_memory_format(torch.contiguous_format)
    for net in (backbone, nchw):
        net.split_batchnorm(2)
    images = torch.rand(4, 3, 64, 64, requires_grad=True)
    out, reference = backbone(images), nchw(images)
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-5)
    out.sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()
