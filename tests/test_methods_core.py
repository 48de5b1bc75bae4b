"""Core methods: registry, base-class machinery (momentum, hooks, embed), BYOL / MoCo v2 / SimCLR / supervised."""

from __future__ import annotations

import copy
import dataclasses
import io

import pytest
import torch
import torch.nn.functional as F

from fgssl_lib.methods import METHODS, SSLMethod, build, method_class
from fgssl_lib.methods.base import PairOutput

TINY = {"backbone": "resnet_narrow", "small_input": True, "hidden_dim": 32, "proj_dim": 16}


def tiny(name: str, **options: object) -> SSLMethod:
    extra = {"queue_size": 64} if name.startswith("mocov2") else {}
    if name.startswith("supervised"):
        return build(name, backbone="resnet_narrow", small_input=True, num_classes=3, **options)
    return build(name, **{**TINY, **extra, **options})


def batch(n: int = 8, size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"view1": torch.rand(n, 3, size, size, generator=g), "view2": torch.rand(n, 3, size, size, generator=g),
            "mask1": torch.ones(n, size, size), "mask2": torch.ones(n, size, size),
            "label": torch.arange(n) % 3, "index": torch.arange(n)}


def test_registry_names_and_errors() -> None:
    expected = {"byol", "byol_dilo", "mocov2", "mocov2_dilo", "simclr", "supervised", "supervised_oracle", "byol_ss", "cvsa",
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
    assert out.online[0].features.shape == (8, method.backbone.feature_dim) and out.online[0].branch_map is None
    moco = tiny("mocov2")
    out = moco.contrastive_forward(batch())
    assert set(out.maps[0]) == {"layer4"} and out.online[1] is None and out.maps[1] == {} and out.target_maps[0] == {}
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


def test_split_batchnorm_normalises_each_group_in_training_and_keeps_eval_outputs() -> None:
    from fgssl_lib.models import build_backbone

    torch.manual_seed(0)
    plain = build_backbone("resnet_narrow", small_input=True)
    plain.train()
    plain(torch.rand(8, 3, 16, 16))  # move the running statistics off their initial values
    split = copy.deepcopy(plain)
    split.split_batchnorm(2)
    images = torch.rand(8, 3, 16, 16)
    plain.eval(), split.eval()
    torch.testing.assert_close(split(images), plain(images))  # eval: the statistics it had
    plain.train(), split.train()
    groups = torch.empty(8, plain.feature_dim)  # lightly's groups interleave: images 0, 2, 4, 6 and 1, 3, 5, 7
    groups[0::2], groups[1::2] = plain(images[0::2]), plain(images[1::2])  # each normalised by its own statistics
    torch.testing.assert_close(split(images), groups, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(plain(images), groups, atol=1e-3)
    with pytest.raises(ValueError, match="at least 2"):
        split.split_batchnorm(1)


@pytest.mark.parametrize(("bn_splits", "changes"), [(0, False), (2, True)])
def test_the_key_shuffle_changes_the_keys_only_with_split_batchnorm(bn_splits: int, changes: bool) -> None:
    """On one device the shuffle is a no-op for one BatchNorm group; with groups it takes a key's statistics from
    other images than its query's, as MoCo's shuffle across GPUs does."""
    method = tiny("mocov2", bn_splits=bn_splits)
    images = batch(n=16)["view2"]
    torch.manual_seed(0)
    _, shuffled = method.encode_target(images)
    _, unshuffled = method.target_forward(images)
    assert torch.allclose(shuffled, unshuffled, rtol=1e-4, atol=1e-5) != changes


def test_split_batchnorm_needs_even_groups_and_no_sync_batchnorm(tmp_path) -> None:
    from fgssl_lib.train import TrainConfig
    from fgssl_lib.train.config import moco_bn_splits
    from fgssl_lib.train.fit import check_bn_splits

    method = tiny("mocov2", bn_splits=4)
    config = TrainConfig.preset("smoke", method="mocov2", batch_size=30, checkpoint_dir=str(tmp_path))
    with pytest.raises(ValueError, match="batch_size 30 does not split into bn_splits=4"):
        check_bn_splits(method, config)
    with pytest.raises(ValueError, match="sync_batchnorm"):
        whole = dataclasses.replace(config, batch_size=32, effective_batch_size=None, sync_batchnorm=True)
        check_bn_splits(method, whole)
    assert [moco_bn_splits(b) for b in (16, 64, 100, 128, 256)] == [0, 2, 2, 4, 8]
    for method_name, batch_size, splits in (("mocov2", None, 8), ("lcr", None, 4), ("lcr", 64, 2), ("lcr", 8, 0)):
        sized = {"batch_size": batch_size} if batch_size else {}
        assert TrainConfig.preset("paper", method=method_name, **sized).method_options["bn_splits"] == splits


def test_plain_methods_have_no_momentum_machinery_and_momentum_methods_declare_theirs() -> None:
    from fgssl_lib.methods import MomentumMethod

    for name in ("simclr", "supervised"):
        method = tiny(name)
        assert not isinstance(method, MomentumMethod)
        assert not hasattr(method, "momentum_encoder") and not hasattr(method, "update_momentum")
        assert "momentum_start" not in method.hparams
    for name in ("byol", "mocov2", "cvsa", "lcr", "byol_lcr"):
        method = tiny(name)
        assert isinstance(method, MomentumMethod)
        assert method.momentum_pairs()[:2] == [(method.backbone, method.momentum_encoder.backbone),
                                               (method.projection_head, method.momentum_encoder.head)]


def test_a_plain_method_builds_from_a_checkpoint_that_recorded_momentum_options() -> None:
    # checkpoints written before the plain / momentum split record momentum_start / momentum_end for every method
    method = tiny("supervised", momentum_start=0.99, momentum_end=1.0, views=None)
    assert "momentum_start" not in method.hparams and method.views == "rrc"
    with pytest.raises(TypeError):
        tiny("supervised", momentum_typo=0.5)


def test_the_registry_states_each_method_s_views_once() -> None:
    from fgssl_lib.methods import variant

    assert {name: variant(name).views for name in METHODS if variant(name).views != "rrc"} == {
        "byol_dilo": "copy_paste", "mocov2_dilo": "copy_paste", "byol_ss": "saliency_swap", "cvsa": "saliency_swap",
        "cvsa_sigmoid_max": "saliency_swap"}
    for name in METHODS:
        assert tiny(name).views == variant(name).views
        assert not hasattr(method_class(name), "default_views")
    assert tiny("byol", views="copy_paste").views == "copy_paste"  # an explicit choice overrides the registry


def test_the_ema_runs_before_every_training_step_of_a_momentum_method() -> None:
    method = tiny("byol", momentum_start=0.5)
    with torch.no_grad():
        method.projection_head.layers[0].weight.add_(1.0)  # online and target now differ
    expected = 0.5 * method.momentum_encoder.head.layers[0].weight + 0.5 * method.projection_head.layers[0].weight
    seen = []
    method.losses = lambda b: seen.append(method.momentum_encoder.head.layers[0].weight.clone()) or {  # type: ignore
        "loss": torch.zeros((), requires_grad=True)}
    method.log_dict = method.log = lambda *args, **kwargs: None  # type: ignore[method-assign]
    method.training_step(batch(), 0)
    torch.testing.assert_close(seen[0], expected)  # the target had moved when the losses were computed
