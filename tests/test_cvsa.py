"""CVSA: cross-view attention, both intensity readings, the alignment loss by hand, and the method on CPU."""

from __future__ import annotations

import math

import pytest
import torch

from fgssl_lib.methods.alignment import (
    CrossViewAlignmentLoss,
    correspondence_intensity,
    cross_view_attention,
    downsample_mask,
)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _maps() -> tuple[torch.Tensor, torch.Tensor]:
    """Two 2-channel 1x2 maps: p's locations (1, 0), (0, 1); z's (1, 0), (0.6, 0.8) -> cosines [[1, .6], [0, .8]]."""
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(1, 2, 1, 2)
    z = torch.tensor([[1.0, 0.6], [0.0, 0.8]]).reshape(1, 2, 1, 2)
    return p, z


def test_attention_is_cosine_over_temperature() -> None:
    p, z = _maps()
    attention = cross_view_attention(3.0 * p, z, temperature=0.5)  # scale does not matter: maps are L2-normalised
    torch.testing.assert_close(attention, torch.tensor([[[2.0, 1.2], [0.0, 1.6]]]))


@pytest.mark.parametrize(
    ("intensity", "m_first", "m_second"),
    [
        # A = [[2, 1.2], [0, 1.6]]; sigmoid_max: sigma(row max)
        ("sigmoid_max", _sigmoid(2.0), _sigmoid(1.6)),
        # softmax over rows per column: col 0 -> (s(2), s(-2)), col 1 -> (s(-0.4), s(0.4)); then row max
        ("softmax_max", _sigmoid(2.0), _sigmoid(0.4)),
    ],
)
def test_alignment_loss_matches_hand_computation(intensity: str, m_first: float, m_second: float) -> None:
    p, z = _maps()
    attention = cross_view_attention(p, z, temperature=0.5)
    torch.testing.assert_close(correspondence_intensity(attention, intensity), torch.tensor([[m_first, m_second]]))
    mask = torch.tensor([[[1.0, 0.0]]])  # view 1: first location foreground
    one_term = -(math.log(m_first) + math.log(1.0 - m_second)) / 2  # BCE averaged over the 2 locations
    # second term: view 2 = z against view 1 = p with the all-foreground mask of view 2
    attention_21 = [[1.0 / 0.5, 0.0], [0.6 / 0.5, 0.8 / 0.5]]
    if intensity == "sigmoid_max":
        m2 = [_sigmoid(max(row)) for row in attention_21]
    else:
        columns = list(zip(*attention_21))
        soft = [[math.exp(v) / sum(math.exp(u) for u in col) for v in col] for col in columns]  # per column j
        m2 = [max(soft[j][i] for j in range(2)) for i in range(2)]
    other_term = -(math.log(m2[0]) + math.log(m2[1])) / 2
    loss = CrossViewAlignmentLoss(intensity=intensity, temperature=0.5)
    value = loss(p, z, p, z, mask, torch.ones(1, 1, 2))  # p1 = p, p2 = z, z1 = p, z2 = z
    assert value.item() == pytest.approx(one_term + other_term, rel=1e-5)


def test_softmax_max_probabilities_are_clamped() -> None:
    p, z = _maps()
    loss = CrossViewAlignmentLoss(intensity="softmax_max", temperature=0.01, eps=1e-4)
    value = loss.term(p, z, torch.tensor([[[0.0, 0.0]]]))  # intensities (1, sigma(20)) against targets 0
    assert value.item() == pytest.approx(-math.log(1e-4), rel=1e-3)  # both clamped to 1 - 1e-4


def test_mask_is_area_downsampled() -> None:
    mask = torch.zeros(1, 4, 4)
    mask[0, :2, :3] = 1.0
    torch.testing.assert_close(downsample_mask(mask, (2, 2)), torch.tensor([[[1.0, 0.5], [0.0, 0.0]]]))


def test_bad_intensity_and_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="valid intensitys: sigmoid_max, softmax_max"):
        CrossViewAlignmentLoss(intensity="sigmoid")
    with pytest.raises(ValueError, match="NxCxHxW"):
        cross_view_attention(torch.zeros(1, 2, 3, 3), torch.zeros(1, 3, 3, 3))


# ----------------------------------------------------------------------------------------------- the CVSA method
TINY = dict(backbone="resnet_narrow", small_input=True, hidden_dim=32, proj_dim=16, conv_proj_dim=8)


def _batch(n: int = 4, size: int = 32) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    mask = torch.zeros(n, size, size)
    mask[:, 8:24, 4:20] = 1.0
    return dict(
        view1=torch.rand(n, 3, size, size, generator=generator),
        view2=torch.rand(n, 3, size, size, generator=generator),
        mask1=mask,
        mask2=mask.flip(-1),
        label=torch.zeros(n, dtype=torch.long),
        index=torch.arange(n),
    )


def test_alignment_gradient_reaches_conv_heads_and_backbone_not_the_target() -> None:
    from fgssl_lib.methods import build

    torch.manual_seed(0)
    method = build("cvsa", **TINY)
    assert method.views == "saliency_swap" and method.stages == ("layer3", "layer4")
    losses = method.losses(_batch())
    assert set(losses) == {"loss", "loss_ctr", "loss_align"}
    torch.testing.assert_close(losses["loss"], losses["loss_ctr"] + losses["loss_align"])
    losses["loss_align"].backward()
    for module in (method.conv_projector, method.conv_predictor, method.backbone.layer3, method.backbone.stem):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters()), module
    assert all(p.grad is None for p in method.backbone.layer4.parameters()), "L_align is on layer3: layer4 gets none"
    assert all(p.grad is None for p in method.conv_projector_target.parameters())
    assert (method.conv_projector, method.conv_projector_target) in method.momentum_pairs()


def test_byol_ss_is_byol_on_saliency_swap_views() -> None:
    from fgssl_lib.methods import build
    from fgssl_lib.methods.byol import BYOL

    tiny_byol = {k: v for k, v in TINY.items() if k != "conv_proj_dim"}
    method = build("byol_ss", **tiny_byol)
    assert type(method) is BYOL and method.views == "saliency_swap"
    assert set(method.state_dict()) == set(build("byol", **tiny_byol).state_dict())  # BYOL's modules, no CVSA branch
    assert set(method.losses(_batch())) == {"loss", "loss_ctr"}


def test_saliency_is_an_image_sized_map_in_unit_range() -> None:
    from fgssl_lib.methods import build

    for name in ("cvsa", "cvsa_sigmoid_max"):
        method = build(name, **TINY)
        maps = method.saliency(torch.rand(3, 3, 32, 32))
        assert maps.shape == (3, 32, 32) and maps.min() >= 0 and maps.max() <= 1
        assert method.training, "saliency restores the training mode"


def test_bad_options_are_refused() -> None:
    from fgssl_lib.methods import build

    with pytest.raises(ValueError, match="valid stages"):
        build("cvsa", stage="layer5", **TINY)
    for weight in (-1.0, 0.0):
        with pytest.raises(ValueError, match="byol_ss"):
            build("cvsa", align_weight=weight, **TINY)


@pytest.mark.parametrize("name", ["cvsa", "byol_ss"])
def test_smoke_training_run_completes(name: str, tmp_path) -> None:
    from fgssl_lib.train import TrainConfig, fit

    # mode="other" (a background pool): fit does not yet hand the training set to SaliencySwap's default mode="same"
    config = TrainConfig.preset("smoke", method=name, num_images=64, checkpoint_dir=str(tmp_path),
                                view_params={"mode": "other"})
    method, history = fit(config)
    steps = history.steps
    assert len(steps) == 2 and steps["loss"].notna().all()
    assert ("loss_align" in steps) == (name == "cvsa")
    assert any(tmp_path.rglob("last.ckpt"))
    assert method.embed(torch.rand(2, 3, 32, 32)).shape[0] == 2
