"""LCR: SSL-loss Grad-CAM, fitting branch, KL fitting loss, per-image weighted pooling, and the method on CPU."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fgssl_lib.methods.rationale import (
    GradCAMFittingBranch,
    normalise_per_image,
    rationale_kl,
    ssl_gradcam,
    weighted_pool,
)


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


def _softmax(values: list[float], temperature: float) -> list[float]:
    exps = [math.exp(v / temperature) for v in values]
    return [e / sum(exps) for e in exps]


def test_kl_direction_temperature_and_reduction_on_2x2_maps() -> None:
    branch = [[[0.0, 1.0], [2.0, 0.5]], [[1.0, 1.0], [0.0, 3.0]]]
    gradcam = [[[3.0, 0.0], [0.0, 0.2]], [[0.0, 2.0], [1.0, 1.0]]]
    tau = 0.4
    expected_per_image = []
    for a_map, g_map in zip(branch, gradcam):
        a_bar = _softmax(sum(a_map, []), tau)
        g_bar = _softmax(sum(g_map, []), tau)
        expected_per_image.append(sum(g * math.log(g / a) for g, a in zip(g_bar, a_bar)))
    expected = sum(expected_per_image) / 2  # summed over the 4 positions, averaged over the batch of 2

    value = rationale_kl(torch.tensor(branch), torch.tensor(gradcam), temperature=tau)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    reversed_kl = rationale_kl(torch.tensor(gradcam), torch.tensor(branch), temperature=tau)
    assert abs(reversed_kl.item() - expected) > 1e-2, "KL(G || A) and KL(A || G) must differ on this example"
    assert abs(rationale_kl(torch.tensor(branch), torch.tensor(gradcam), temperature=1.0).item() - expected) > 1e-2


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
    expected = (maps[0] - maps[0].min()) / (1e-7 + maps[0].max())
    torch.testing.assert_close(normalised[0], expected)
    torch.testing.assert_close(alone, (expected * phi[0]).mean(dim=(1, 2))[None])
