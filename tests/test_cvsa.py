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
