"""CVSA cross-view saliency alignment: cross-view attention, correspondence intensity and the alignment loss.

Our formulation of CVSA Eqs. 3-5 (the CVSA theory page):

- Eq. 3, cross-view attention ``A_{1->2} = P1^T Z2 / tau_a`` between the online prediction map ``P1`` of view 1 and
  the momentum projection map ``Z2`` of view 2, both L2-normalised along channels (so ``A`` holds cosine similarities
  over a temperature, default ``tau_a = 0.1``);
- Eq. 4, correspondence intensity ``M1`` of every location of view 1, in two readings (``INTENSITIES``):
  ``"softmax_max"`` (default) ``M1(i) = max_j softmax_i(A)[i, j]`` and ``"sigmoid_max"``
  ``M1(i) = sigma(max_j A[i, j])``;
- Eq. 5, ``L_align = BCE(M1, D(m1)) + BCE(M2, D(m2))`` with ``D`` an area (average) downsampling of each view's mask.

``M2`` is read from ``A_{2->1} = P2^T Z1 / tau_a`` (view 2's online prediction against view 1's momentum projection),
so both terms train the online branch, as BYOL's symmetrised loss does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fgssl_lib.config import check_choice
from fgssl_lib.precision import full_precision

INTENSITIES = ("softmax_max", "sigmoid_max")
"""Readings of CVSA Eq. 4; ``softmax_max`` is the default (the CVSA theory page explains why it departs from the
prose)."""

PROBABILITY_EPS = 1e-4
"""``softmax_max`` probabilities are clamped to ``[eps, 1 - eps]`` before the BCE (Eq. 5)."""


def cross_view_attention(p: Tensor, z: Tensor, temperature: float = 0.1) -> Tensor:
    """CVSA Eq. 3: ``A = P^T Z / tau_a``, with ``P`` and ``Z`` L2-normalised along channels here.

    ``p``: NxCxH1xW1 online prediction map, ``z``: NxCxH2xW2 target projection map. Returns N x (H1*W1) x (H2*W2):
    row ``i`` holds the similarities of location ``i`` of ``p`` to every location of ``z``.
    """
    if p.dim() != 4 or z.dim() != 4 or p.shape[:2] != z.shape[:2]:
        raise ValueError(f"expected two NxCxHxW maps with the same N and C, got {tuple(p.shape)} and {tuple(z.shape)}")
    p, z = F.normalize(p.flatten(2), dim=1), F.normalize(z.flatten(2), dim=1)  # N x C x H1W1, N x C x H2W2
    return torch.einsum("nci,ncj->nij", p, z) / temperature  # N x H1W1 x H2W2


def intensity_logits(attention: Tensor) -> Tensor:
    """``sigmoid_max`` reading of CVSA Eq. 4 before the sigmoid: ``max_j A[:, i, j]``, N x (H1*W1)."""
    return attention.amax(dim=2)


def correspondence_intensity(attention: Tensor, intensity: str = "softmax_max") -> Tensor:
    """CVSA Eq. 4: the intensity ``M(i)`` in [0, 1] of every row location ``i`` of ``attention`` (N x HW1 x HW2).

    ``"softmax_max"``: for every column ``j`` a softmax over the rows ``i``, then the max over ``j`` (how strongly
    ``i`` is the other view's best match); ``"sigmoid_max"``: ``sigma(max_j A[i, j])``. Returns N x HW1.
    """
    check_choice("intensity", intensity, INTENSITIES)
    if intensity == "sigmoid_max":
        return torch.sigmoid(intensity_logits(attention))
    return attention.softmax(dim=1).amax(dim=2)  # N x HW1


def downsample_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """``D(m)`` of CVSA Eq. 5: area (average) downsampling of an NxSxS mask in [0, 1] to N x H x W, values stay in
    [0, 1]."""
    if mask.dim() != 3:
        raise ValueError(f"expected view masks of shape NxSxS, got {tuple(mask.shape)}")
    return F.interpolate(mask[:, None].float(), size=size, mode="area")[:, 0]  # NxHxW


class CrossViewAlignmentLoss(nn.Module):
    """CVSA Eq. 5: ``L_align = BCE(M1, D(m1)) + BCE(M2, D(m2))``, each BCE averaged over the locations and the batch.

    ``sigmoid_max`` uses ``binary_cross_entropy_with_logits`` on ``max_j A`` (stable); ``softmax_max`` clamps its
    probabilities to ``[eps, 1 - eps]`` and takes the BCE in float32 with autocast off (CUDA autocast refuses it).
    ``temperature`` is ``tau_a`` of Eq. 3.
    """

    def __init__(self, intensity: str = "softmax_max", temperature: float = 0.1, eps: float = PROBABILITY_EPS) -> None:
        super().__init__()
        self.intensity = check_choice("intensity", intensity, INTENSITIES)
        if temperature <= 0:
            raise ValueError(f"the attention temperature tau_a must be > 0, got {temperature}")
        self.temperature = temperature
        self.eps = eps

    def term(self, p: Tensor, z: Tensor, mask: Tensor) -> Tensor:
        """One BCE of Eq. 5: intensity of ``p``'s locations (NxCxHxW) against ``z`` (NxCxH'xW'), target ``D(mask)``."""
        attention = cross_view_attention(p, z, self.temperature)  # N x HW x H'W'
        target = downsample_mask(mask, tuple(p.shape[-2:])).flatten(1)  # N x HW
        if self.intensity == "sigmoid_max":
            return F.binary_cross_entropy_with_logits(intensity_logits(attention), target)
        probability = correspondence_intensity(attention, self.intensity).clamp(self.eps, 1 - self.eps)
        with full_precision(probability):  # CUDA autocast refuses binary_cross_entropy
            return F.binary_cross_entropy(probability.float(), target.float())

    def forward(self, p1: Tensor, p2: Tensor, z1: Tensor, z2: Tensor, mask1: Tensor, mask2: Tensor) -> Tensor:
        """``p1, p2``: online predictions of views 1 and 2; ``z1, z2``: their momentum projections (all NxCxHxW;
        L2-normalised along C by ``cross_view_attention``); ``mask1, mask2``: NxSxS view masks. Returns the scalar
        ``L_align``."""
        return self.term(p1, z2, mask1) + self.term(p2, z1, mask2)
