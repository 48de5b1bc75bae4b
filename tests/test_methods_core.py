"""Core methods: registry, base-class machinery (momentum, hooks, embed), BYOL / MoCo v2 / SimCLR / supervised."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

from fgssl_lib.methods import METHODS, SSLMethod, build, method_class
from fgssl_lib.methods.base import PairOutput

TINY = {"backbone": "resnet_narrow", "small_input": True, "hidden_dim": 32, "proj_dim": 16}


def tiny(name: str, **options: object) -> SSLMethod:
    extra = {"queue_size": 64} if name.startswith("mocov2") else {}
    if name == "supervised":
        return build(name, backbone="resnet_narrow", small_input=True, num_classes=3, **options)
    return build(name, **{**TINY, **extra, **options})


def batch(n: int = 8, size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"view1": torch.rand(n, 3, size, size, generator=g), "view2": torch.rand(n, 3, size, size, generator=g),
            "mask1": torch.ones(n, size, size), "mask2": torch.ones(n, size, size),
            "label": torch.arange(n) % 3, "index": torch.arange(n)}


def test_registry_names_and_errors() -> None:
    expected = {"byol", "byol_dilo", "mocov2", "mocov2_dilo", "simclr", "supervised", "byol_ss", "cvsa",
                "cvsa_sigmoid_max", "lcr", "lcr_multitask", "lcr_dual_pooling", "byol_lcr"}
    assert set(METHODS) == expected
    with pytest.raises(ValueError, match="valid methods: byol, byol_dilo, byol_lcr"):
        build("moco")


def test_dilo_is_the_baseline_on_copy_paste_views() -> None:
    for name, cls in (("byol_dilo", "BYOL"), ("mocov2_dilo", "MoCoV2")):
        method = tiny(name)
        assert type(method).__name__ == cls and method.views == "copy_paste" and method.method_name == name
    assert tiny("byol").views == "rrc"
    assert method_class("mocov2_dilo") is method_class("mocov2")


@pytest.mark.parametrize("name", ["byol", "mocov2", "simclr", "supervised"])
def test_losses_embed_and_plain_hyperparameters(name: str) -> None:
    method = tiny(name)
    losses = method.losses(batch())
    assert "loss" in losses and losses["loss"].ndim == 0 and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert method.backbone.layer1[0].conv1.weight.grad is not None
    method.train()
    features = method.embed(batch()["view1"])
    assert features.shape == (8, method.backbone.feature_dim) and method.training
    with pytest.raises(NotImplementedError):
        method.saliency(batch()["view1"])
    buffer = io.BytesIO()
    torch.save(dict(method.hparams), buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True) == dict(method.hparams)


def test_momentum_encoder_gets_no_gradient_and_follows_the_ema() -> None:
    method = tiny("byol", momentum_start=0.9)
    method.losses(batch())["loss"].backward()
    target = method.momentum_encoder
    assert all(p.grad is None and not p.requires_grad for p in target.parameters())
    with torch.no_grad():
        for p in method.backbone.parameters():
            p.add_(1.0)
    online = method.backbone.layer4[0].conv1.weight.detach().clone()
    before = target.backbone.layer4[0].conv1.weight.detach().clone()
    method.update_momentum()
    torch.testing.assert_close(target.backbone.layer4[0].conv1.weight, 0.9 * before + 0.1 * online)


def test_byol_loss_is_twice_two_minus_two_cosine() -> None:
    method = tiny("byol").eval()
    b = batch(4)
    out = method.contrastive_forward(b)
    p = [method.prediction_head(method.projection_head(method.backbone(b[v]))) for v in ("view1", "view2")]
    z = [method.momentum_encoder.head(method.momentum_encoder.backbone(b[v])) for v in ("view1", "view2")]
    expected = sum((2 - 2 * F.cosine_similarity(p[v], z[1 - v])).mean() for v in (0, 1))
    torch.testing.assert_close(out.loss_ctr, expected)


def test_pair_output_carries_the_requested_stage_maps() -> None:
    method = tiny("byol")
    method.stages = ("layer3", "layer4")
    out = method.contrastive_forward(batch())
    assert isinstance(out, PairOutput)
    for v in (0, 1):
        assert set(out.maps[v]) == set(out.target_maps[v]) == {"layer3", "layer4"}
        assert out.maps[v]["layer3"].requires_grad and not out.target_maps[v]["layer3"].requires_grad
    assert out.features.shape == (8, method.backbone.feature_dim)
    moco = tiny("mocov2")
    out = moco.contrastive_forward(batch())
    assert set(out.maps[0]) == {"layer4"} and out.maps[1] == {} and out.target_maps[0] == {}
    grad = torch.autograd.grad(out.loss_ctr, out.maps[0]["layer4"])[0]  # the LCR hook point
    assert grad.shape == out.maps[0]["layer4"].shape and grad.abs().sum() > 0


def paired_batch(n: int, size: int, seed: int) -> dict[str, torch.Tensor]:
    """Two related views: view 2 is view 1 flipped, with a little noise (what the methods learn to ignore)."""
    g = torch.Generator().manual_seed(seed)
    view1 = torch.rand(n, 3, size, size, generator=g)
    view2 = (view1.flip(-1) + 0.05 * torch.randn(view1.shape, generator=g)).clamp(0, 1)
    return {"view1": view1, "view2": view2}


@pytest.mark.parametrize("name", ["byol", "mocov2"])
def test_loss_decreases_on_tiny_batches(name: str) -> None:
    torch.manual_seed(0)
    # MoCo: a queue of two batches (full from step 2 on, when its loss becomes comparable) and a faster key encoder
    method = tiny(name, queue_size=32, momentum_start=0.99) if name == "mocov2" else tiny(name)
    method.train()
    optimizer = torch.optim.SGD(method.parameters(), lr=0.05, momentum=0.9)
    values = []
    for step in range(16):
        method.update_momentum()
        loss = method.losses(paired_batch(16, 16, seed=step % 4))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        values.append(float(loss.detach()))
    assert sum(values[-4:]) / 4 < 0.9 * sum(values[2:6]) / 4, values


def test_moco_key_encoder_sees_a_shuffled_batch_and_returns_keys_in_order() -> None:
    """Shuffled BatchNorm (MoCo Sec. 3.3): the key encoder's input is a permutation of the batch, not the batch; the
    keys come back in the batch's order, equal to the key encoder run on the unshuffled batch (train-mode BN is
    permutation invariant on one device)."""
    method = tiny("mocov2")
    images = batch(n=16)["view2"]
    seen = []
    stem = next(m for m in method.momentum_encoder.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    stem.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    torch.manual_seed(0)
    maps, keys = method.encode_target(images)
    assert maps == {}
    _, expected = method.momentum_encoder(images)
    shuffled, in_order = seen  # what the stem saw: the shuffled batch, then the batch
    assert not torch.equal(shuffled, in_order)
    order = [next(j for j in range(16) if torch.equal(shuffled[i], in_order[j])) for i in range(16)]
    assert sorted(order) == list(range(16))
    torch.testing.assert_close(keys, expected, rtol=1e-4, atol=1e-5)


def test_moco_queue_is_saved_and_restored() -> None:
    method = tiny("mocov2")
    method.losses(batch())  # enqueues 8 keys
    checkpoint: dict = {}
    method.on_save_checkpoint(checkpoint)
    assert checkpoint["fgssl_method"] == "mocov2"
    other = tiny("mocov2")
    other.on_load_checkpoint(checkpoint)
    torch.testing.assert_close(other.criterion.memory_bank.bank, method.criterion.memory_bank.bank)
    assert int(other.criterion.memory_bank.bank_ptr) == 8
    with pytest.raises(ValueError, match="queue_size"):
        tiny("mocov2", queue_size=32).on_load_checkpoint(checkpoint)


def test_supervised_is_cross_entropy_on_view1() -> None:
    method = tiny("supervised").eval()
    b = batch()
    expected = F.cross_entropy(method.classifier(method.backbone(b["view1"])), b["label"])
    torch.testing.assert_close(method.losses(b)["loss"], expected)
    with pytest.raises(ValueError, match="num_classes"):
        build("supervised", backbone="resnet_narrow", num_classes=1)


def test_unknown_optimizer_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="adam, adamw, sgd"):
        tiny("byol", optimizer="lars")
