"""LCR: SSL-loss Grad-CAM, fitting branch, KL fitting loss, per-image weighted pooling, and the method on CPU."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fgssl_lib.methods.rationale import FITTINGS, GradCAMFittingBranch, rationale_kl, ssl_gradcam, weighted_pool
from fgssl_lib.saliency.maps import normalise_per_image


def _tiny_network() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3, stride=2, padding=1))
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 4))
    return backbone, head


def test_gradcam_is_gradient_times_activation_without_backbone_backward() -> None:
    backbone, head = _tiny_network()
    images = torch.randn(3, 3, 8, 8)
    phi = backbone(images)  # 3x5x4x4
    loss = head(phi).pow(2).sum(dim=1).log().mean()
    backbone_backwards = []
    backbone[0].weight.register_hook(lambda grad: backbone_backwards.append(1))

    (gradcam,) = ssl_gradcam(loss, [phi])
    assert gradcam.shape == (3, 4, 4)
    assert not backbone_backwards, "the Grad-CAM must not backpropagate into the backbone"
    assert backbone[0].weight.grad is None
    assert not gradcam.requires_grad

    (reference_grad,) = torch.autograd.grad(loss, phi, retain_graph=True)
    expected = (reference_grad * phi.detach()).sum(dim=1).clamp_min(0)
    torch.testing.assert_close(gradcam, expected)
    assert (gradcam > 0).any() and (expected == 0).any(), "the example must exercise the ReLU"

    loss.backward()  # the one training backward still works on the retained graph
    assert len(backbone_backwards) == 1


def test_gradcam_without_detach_keeps_the_activation_graph() -> None:
    backbone, head = _tiny_network()
    phi = backbone(torch.randn(2, 3, 8, 8))
    (gradcam,) = ssl_gradcam(head(phi).sum(), [phi], detach=False)
    assert gradcam.requires_grad


def test_gradcam_rejects_non_scalar_loss() -> None:
    phi = torch.randn(2, 3, 4, 4, requires_grad=True)
    with pytest.raises(ValueError, match="scalar"):
        ssl_gradcam(phi.sum(dim=(1, 2, 3)), [phi])


def _gradcam_of_a_resnet50_sized_head(dtype: torch.dtype | None, old: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """G of a MoCo-like loss (GAP, linear head, cosine to fixed keys, mean over the batch of 128) on a 7x7x2048 map,
    under CPU float16 autocast (``dtype``) or in float64 (``None``); ``old``: without the loss scale. Returns
    (G, the gradient dL/dphi)."""
    torch.manual_seed(0)
    phi64 = torch.randn(128, 2048, 7, 7, dtype=torch.float64).relu()
    head = nn.Linear(2048, 128).double()
    keys = F.normalize(torch.randn(128, 128, dtype=torch.float64), dim=1)
    phi = phi64.clone() if dtype is None else phi64.to(dtype)
    phi.requires_grad_(True)
    if dtype is not None:
        head = head.float()
        keys = keys.float()
    with torch.autocast("cpu", dtype=dtype or torch.float16, enabled=dtype is not None):
        loss = 2 - 2 * (F.normalize(head(phi.mean(dim=(2, 3))).float(), dim=1) * keys).sum(dim=1).mean()
        (grad,) = torch.autograd.grad(loss, [phi], retain_graph=True)
        if old:
            gradcam = F.relu((grad * phi.detach()).sum(dim=1)).float()
        else:
            (gradcam,) = ssl_gradcam(loss, [phi])
    return gradcam, grad


def test_gradcam_under_float16_autocast_keeps_the_gradient_that_underflows() -> None:
    """At batch 128 dL/dphi is about 1e-6, in float16's subnormal range: taken naively, part of it rounds to zero
    and the rest loses most of its digits. ssl_gradcam scales the loss as a gradient scaler does."""
    reference, grad64 = _gradcam_of_a_resnet50_sized_head(None)
    naive, grad16 = _gradcam_of_a_resnet50_sized_head(torch.float16, old=True)
    flushed = ((grad16 == 0) & (grad64 != 0)).double().mean().item()
    assert flushed > 0.01, f"the example must underflow float16 (flushed {flushed:.4f})"
    gradcam, _ = _gradcam_of_a_resnet50_sized_head(torch.float16)
    assert gradcam.dtype == torch.float32
    error = lambda g: ((g.double() - reference).abs().sum() / reference.abs().sum()).item()  # noqa: E731
    assert error(naive) > 0.01
    assert error(gradcam) < error(naive) / 5, (error(gradcam), error(naive))


def _softmax(values: list[float], temperature: float) -> list[float]:
    exps = [math.exp(v / temperature) for v in values]
    return [e / sum(exps) for e in exps]


def _min_max(values: list[float], eps: float = 1e-7) -> list[float]:
    return [(v - min(values)) / (eps + max(values) - min(values)) for v in values]


@pytest.mark.parametrize("normalise_gradcam", [True, False])
def test_kl_direction_temperature_normalisation_and_reduction_on_2x2_maps(normalise_gradcam: bool) -> None:
    branch = [[[0.0, 1.0], [2.0, 0.5]], [[1.0, 1.0], [0.0, 3.0]]]
    gradcam = [[[3.0, 0.0], [0.0, 0.2]], [[0.0, 2.0], [1.0, 1.0]]]
    tau = 0.4
    expected_per_image = []
    for a_map, g_map in zip(branch, gradcam):
        a_bar = _softmax(_min_max(sum(a_map, [])), tau)  # A is always min-max normalised per image
        g_values = sum(g_map, [])
        g_bar = _softmax(_min_max(g_values, eps=0.0) if normalise_gradcam else g_values, tau)
        expected_per_image.append(sum(g * math.log(g / a) for g, a in zip(g_bar, a_bar)))
    a, g = torch.tensor(branch), torch.tensor(gradcam)
    value = rationale_kl(a, g, temperature=tau, normalise_gradcam=normalise_gradcam)
    assert value.item() == pytest.approx(sum(expected_per_image) / 2, rel=1e-5)  # mean over the batch of 2
    summed = rationale_kl(a, g, temperature=tau, normalise_gradcam=normalise_gradcam, reduction="sum")
    assert summed.item() == pytest.approx(sum(expected_per_image), rel=1e-5)
    reversed_kl = rationale_kl(g, a, temperature=tau, normalise_gradcam=normalise_gradcam)
    assert abs(reversed_kl.item() - value.item()) > 1e-2, "KL(G || A) and KL(A || G) must differ on this example"
    assert abs(rationale_kl(a, g, temperature=1.0, normalise_gradcam=normalise_gradcam).item() - value.item()) > 1e-2
    with pytest.raises(ValueError, match="valid KL reduction over the batch"):
        rationale_kl(a, g, reduction="batchmean")


def test_kl_rejects_mismatched_maps() -> None:
    with pytest.raises(ValueError, match="same"):
        rationale_kl(torch.zeros(2, 3, 3), torch.zeros(2, 4, 4))


def test_fitting_branch_is_max_out_over_k_projections() -> None:
    torch.manual_seed(0)
    branch = GradCAMFittingBranch(in_channels=8, num_filters=32).eval()
    phi = torch.randn(2, 8, 3, 5)
    conv, norm = branch.projections[0], branch.projections[1]
    assert conv.weight.shape == (32, 8, 1, 1) and conv.bias is None
    out = branch(phi)
    assert out.shape == (2, 3, 5)
    expected = F.relu(norm(conv(phi))).amax(dim=1)
    torch.testing.assert_close(out, expected)
    assert (out >= 0).all()
    with pytest.raises(ValueError, match="filter"):
        GradCAMFittingBranch(in_channels=8, num_filters=0)


def test_per_image_normalisation_makes_features_independent_of_the_batch() -> None:
    torch.manual_seed(0)
    phi = torch.randn(3, 4, 5, 5)
    maps = torch.rand(3, 5, 5)
    maps[2] *= 100.0  # a batch-mate with a much larger range
    alone = weighted_pool(phi[:1], maps[:1])
    in_batch = weighted_pool(phi, maps)[:1]
    torch.testing.assert_close(alone, in_batch)
    normalised = normalise_per_image(maps)
    assert torch.allclose(normalised.amin(dim=(1, 2)), torch.zeros(3))
    expected = (maps[0] - maps[0].min()) / (1e-7 + maps[0].max() - maps[0].min())
    torch.testing.assert_close(normalised.amax(dim=(1, 2)), torch.ones(3))  # each map spans [0, 1]
    torch.testing.assert_close(normalised[0], expected)
    torch.testing.assert_close(alone, (expected * phi[0]).mean(dim=(1, 2))[None])


# ----------------------------------------------------------------------------------------------- the LCR method
TINY = dict(backbone="resnet_narrow", small_input=True, hidden_dim=32, proj_dim=16)
TINY_MOCO = dict(TINY, queue_size=32)


def _batch(n: int = 4, size: int = 32) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return dict(
        view1=torch.rand(n, 3, size, size, generator=generator),
        view2=torch.rand(n, 3, size, size, generator=generator),
        mask1=torch.ones(n, size, size),
        mask2=torch.ones(n, size, size),
        label=torch.zeros(n, dtype=torch.long),
        index=torch.arange(n),
    )


@pytest.mark.parametrize(("name", "options"), [("lcr", TINY_MOCO), ("byol_lcr", TINY), ("lcr_dual_pooling", TINY_MOCO)])
def test_training_loss_backpropagates_through_the_backbone_once(name: str, options: dict) -> None:
    from fgssl_lib.methods import build

    torch.manual_seed(0)
    method = build(name, **options)
    calls = []
    method.backbone.stem[0].weight.register_hook(lambda grad: calls.append(1))
    losses = method.losses(_batch())
    assert set(losses) == {"loss", "loss_ctr", "loss_kl"} and not calls
    torch.testing.assert_close(losses["loss"], losses["loss_ctr"] + method.kl_weight * losses["loss_kl"])
    losses["loss"].backward()
    assert len(calls) == 1
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.branch.parameters())


def test_detach_branch_input_keeps_the_kl_off_the_backbone() -> None:
    from fgssl_lib.methods import build

    torch.manual_seed(0)
    for detach, reaches_backbone in ((True, False), (False, True)):
        method = build("lcr", detach_branch_input=detach, **TINY_MOCO)
        method.losses(_batch())["loss_kl"].backward()
        assert any(p.grad is not None for p in method.branch.parameters())
        assert any(p.grad is not None for p in method.backbone.layer4.parameters()) == reaches_backbone


def test_each_lcr_name_is_its_baseline_class_and_rebuilds_from_its_hyperparameters() -> None:
    from fgssl_lib.methods import build, method_class
    from fgssl_lib.methods.byol import BYOL
    from fgssl_lib.methods.lcr import BYOLLCR, LCR, MoCoV2LCR
    from fgssl_lib.methods.mocov2 import MoCoV2

    assert [method_class(n) for n in ("lcr", "lcr_multitask", "lcr_dual_pooling", "byol_lcr")] == [
        MoCoV2LCR, MoCoV2LCR, MoCoV2LCR, BYOLLCR]
    byol_lcr, lcr = build("byol_lcr", **TINY), build("lcr", **TINY_MOCO)
    assert isinstance(byol_lcr, LCR) and isinstance(byol_lcr, BYOL) and not isinstance(byol_lcr, MoCoV2)
    assert isinstance(lcr, LCR) and isinstance(lcr, MoCoV2)
    rebuilt = BYOLLCR(**dict(byol_lcr.hparams))
    assert rebuilt.state_dict().keys() == byol_lcr.state_dict().keys()
    with pytest.raises(TypeError, match="LCR needs a baseline"):
        LCR(**TINY)


def test_embed_uses_per_image_weighted_pooling_unless_multitask() -> None:
    from fgssl_lib.methods import build

    torch.manual_seed(0)
    images = torch.rand(5, 3, 32, 32)
    lcr = build("lcr", **TINY_MOCO)
    features = lcr.embed(images)
    torch.testing.assert_close(features[:2], lcr.embed(images[:2]))  # independent of the rest of the batch
    torch.testing.assert_close(features.norm(dim=1), torch.ones(5))
    lcr.eval()
    phi = lcr.backbone.forward_maps(images, ("layer4",))["layer4"]
    expected = F.normalize(weighted_pool(phi, lcr.branch(phi)), dim=1)
    torch.testing.assert_close(features, expected)
    multitask = build("lcr_multitask", **TINY_MOCO).eval()
    torch.testing.assert_close(multitask.embed(images), multitask.backbone(images))
    maps = lcr.saliency(images)
    assert maps.shape == (5, 32, 32) and maps.min() >= 0 and maps.max() <= 1


def test_multitask_is_evaluated_from_the_lcr_run_with_gap_features() -> None:
    from fgssl_lib.methods import build, evaluated_as, evaluated_from

    assert evaluated_from("lcr_multitask") == "lcr" and evaluated_from("lcr_dual_pooling") == "lcr_dual_pooling"
    torch.manual_seed(0)
    images = torch.rand(3, 3, 32, 32)
    lcr = build("lcr", **TINY_MOCO).train()
    state = torch.get_rng_state()
    multitask = evaluated_as(lcr, "lcr_multitask")
    assert torch.equal(torch.get_rng_state(), state)  # rebuilding draws nothing from the seeded stream
    assert multitask.method_name == "lcr_multitask" and not multitask.test_pooling and lcr.test_pooling
    assert all(torch.equal(a, b) for a, b in zip(multitask.state_dict().values(), lcr.state_dict().values()))
    torch.testing.assert_close(multitask.embed(images), lcr.eval().backbone(images))
    assert evaluated_as(lcr, "lcr") is lcr
    with pytest.raises(ValueError, match="evaluated from a 'lcr' run"):
        evaluated_as(build("byol_lcr", **TINY), "lcr_multitask")


def test_dual_pooling_keeps_the_branch_map_that_pooled_each_view() -> None:
    from fgssl_lib.methods import build

    torch.manual_seed(0)
    method = build("lcr_dual_pooling", **TINY_MOCO)
    out = method.contrastive_forward(_batch())
    encoding = out.online[0]
    assert encoding.branch_map is not None and encoding.branch_map.shape == encoding.maps["layer4"].shape[:1] + \
        encoding.maps["layer4"].shape[2:]
    torch.testing.assert_close(encoding.features, weighted_pool(encoding.maps["layer4"], encoding.branch_map))
    assert build("lcr", **TINY_MOCO).contrastive_forward(_batch()).online[0].branch_map is None


@pytest.mark.parametrize("name", ["lcr", "lcr_multitask", "lcr_dual_pooling", "byol_lcr"])
def test_smoke_training_run_completes(name: str, tmp_path) -> None:
    from fgssl_lib.train import TrainConfig, fit

    config = TrainConfig.preset("smoke", method=name, num_images=64, checkpoint_dir=str(tmp_path))
    method, history = fit(config)
    steps = history.steps
    assert len(steps) == 2 and steps["loss"].notna().all() and steps["loss_kl"].notna().all()
    assert any(tmp_path.rglob("last.ckpt"))
    assert method.embed(torch.rand(2, 3, 32, 32)).shape[0] == 2


def _first_view_target(method, batch: dict[str, torch.Tensor], n: int) -> torch.Tensor:
    """The fitting target of view 1's first image when ``method`` (copied: the forward moves the MoCo queue) sees
    the first ``n`` images of ``batch``, as ``HW`` probabilities."""
    import copy

    from fgssl_lib.methods.rationale import fitting_distribution

    method = copy.deepcopy(method)
    out = method.contrastive_forward({key: value[:n] for key, value in batch.items()})
    loss = out.loss_ctr * (method.authors_loss_scale if method.fitting.authors_loss else 1.0)
    gradcam = ssl_gradcam(loss, [out.maps[0]["layer4"]])[0]  # NxHxW
    eps = 0.0 if method.fitting.gradcam == "per_image" else None
    return fitting_distribution(gradcam, method.kl_temperature, eps)[0].exp()


@pytest.mark.parametrize(("name", "options"), [("lcr", TINY_MOCO), ("byol_lcr", TINY)])
def test_an_images_fitting_target_is_the_same_at_batch_8_and_batch_128(name: str, options: dict) -> None:
    from fgssl_lib.methods import build

    torch.manual_seed(0)
    batch = _batch(128)
    targets = {}
    for fitting in ("fgssl", "authors"):
        method = build(name, fitting=fitting, **options).eval()  # eval: BatchNorm does not mix the batch
        targets[fitting] = _first_view_target(method, batch, 8), _first_view_target(method, batch, 128)
    torch.testing.assert_close(*targets["fgssl"], rtol=1e-4, atol=1e-6)
    assert targets["fgssl"][1].max() > 2 * targets["fgssl"][1].min()
    # the authors' raw G shrinks as 1 / B through the loss's batch mean: their target is nearly uniform, and its
    # distance from uniform is 16 times smaller at batch 128 than at batch 8
    uniform = 1 / targets["authors"][0].numel()
    distance = [float((target - uniform).abs().max()) for target in targets["authors"]]
    assert distance[0] < 1e-3 * uniform and distance[0] / distance[1] == pytest.approx(16, rel=0.1)


def test_the_fitting_target_is_far_from_uniform_on_a_trained_smoke_model(tmp_path) -> None:
    from fgssl_lib.train import TrainConfig, fit

    config = TrainConfig.preset("smoke", method="lcr", checkpoint_dir=str(tmp_path))
    method, _ = fit(config)
    batch = _batch(32, size=32)
    for fitting, floor in (("fgssl", 2.0), ("authors", None)):
        method.fitting = FITTINGS[fitting]
        method.kl_temperature = method.fitting.temperature or method.authors_temperature
        target = _first_view_target(method.eval(), batch, 32)
        ratio = float(target.max() / target.min())
        if floor is not None:
            assert ratio > floor, f"{fitting}: the most likely position is only {ratio:.3f} x the least likely"
        else:
            assert ratio < 1.05, f"the authors' raw target should be nearly uniform here, got a ratio of {ratio:.3f}"


@pytest.mark.parametrize(("name", "options", "scale", "t"), [("lcr", TINY_MOCO, 1.0, 1.0),
                                                             ("byol_lcr", TINY, 0.25, 0.4)])
def test_the_authors_fitting_computes_the_authors_loss_on_the_same_tensors(name: str, options: dict,
                                                                            scale: float, t: float) -> None:
    """The authors' code, written out here: L = L_CL + 0.01 * sum_n KL(softmax(G_n / t) || softmax(A'_n / t)) with G
    raw and not detached, A' = A min-max normalised (per image: our fix of their per-batch one), view 1 only; their
    MoCo script has no temperature (t = 1), their BYOL script t = 0.4 and BYOL's loss as mean_v(-cos) (a quarter of
    ours)."""
    import copy

    from fgssl_lib.methods import build

    torch.manual_seed(0)
    method = build(name, fitting="authors", **options)
    reference = copy.deepcopy(method)
    batch = _batch(8)
    losses = method.losses(batch)

    out = reference.contrastive_forward(batch)
    loss_cl = out.loss_ctr * scale
    phi = out.maps[0]["layer4"]
    (grad,) = torch.autograd.grad(loss_cl, phi, retain_graph=True)
    gradcam = F.relu((phi * grad).sum(dim=1)).flatten(1)  # keeps phi's graph, as their script does
    branch = reference.branch(phi).flatten(1)
    branch = (branch - branch.amin(1, keepdim=True)) / (1e-7 + branch.amax(1, keepdim=True) - branch.amin(1, keepdim=True))
    loss_cam = F.kl_div((branch / t).softmax(dim=1).log(), (gradcam / t).softmax(dim=1), reduction="sum")
    torch.testing.assert_close(losses["loss_kl"], loss_cam)
    torch.testing.assert_close(losses["loss"], loss_cl + 0.01 * loss_cam)
    assert losses["loss_kl"].requires_grad


def test_the_fitting_branch_shares_mocos_batchnorm_groups() -> None:
    """The authors' branch normalised each GPU's 32 images: with ``bn_splits`` it is split as the backbone is."""
    from lightly.models.batchnorm import SplitBatchNorm

    from fgssl_lib.methods import build

    split = build("lcr", bn_splits=2, **TINY_MOCO)
    assert isinstance(split.branch.projections[1], SplitBatchNorm) and split.branch.projections[1].num_splits == 2
    assert not isinstance(build("lcr", **TINY_MOCO).branch.projections[1], SplitBatchNorm)


def test_the_branch_map_is_scaled_as_wsolevaluation_scales_a_cam() -> None:
    """Bicubic upsampling, then min-max per image with the overshoot below 0 kept (no clipping)."""
    from fgssl_lib.methods import build
    from fgssl_lib.methods.lcr import BranchMap

    raw = torch.zeros(1, 4, 4)
    raw[0, 1, 1] = 1.0  # a peak beside zeros: bicubic rings below 0 around it
    up = F.interpolate(raw[:, None], size=(32, 32), mode="bicubic", align_corners=False)[:, 0]
    assert up.min() < 0
    expected = (up - up.min()) / (1e-7 + up.max() - up.min())
    torch.testing.assert_close(BranchMap(build("lcr", **TINY_MOCO)).finish(raw, (32, 32)), expected)
