"""LCR's common-rationale parts: the SSL-loss Grad-CAM, the Grad-CAM fitting branch, the KL fitting loss and the
per-image weighted pooling (LCR Eqs. 3-6 and 8; the book's LCR theory page).

``phi`` is the last convolutional map of the online backbone, NxCxHxW.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fgssl_lib.config import check_choice
from fgssl_lib.saliency.maps import NORMALISATION_EPS, normalise_per_image

GRADCAM_LOSS_SCALE = 2.0**16
"""Factor on the SSL loss before :func:`ssl_gradcam` differentiates it in float16 (a gradient scaler's initial
scale), so that ``dL/dphi`` leaves float16's subnormal range."""


def ssl_gradcam(loss: Tensor, phis: Sequence[Tensor], detach: bool = True) -> list[Tensor]:
    """LCR Eq. 3: ``G = ReLU(sum_c (dL_CL/dphi)_c * phi_c)``, one float32 NxHxW map per NxCxHxW map in ``phis`` (e.g.
    the online last maps of both views), from the SSL loss ``L_CL`` (a scalar).

    The gradients come from ``torch.autograd.grad(loss, phis, retain_graph=True)``: autograd walks back only from the
    loss to ``phis`` (through the projection head and pooling), never into the backbone that produced them, and the
    graph is kept for the one training backward. The gradient is a constant (no ``create_graph``). With ``detach``
    (default) ``G`` is a fixed fitting target; ``detach=False`` keeps the activations' graph in ``G`` as the authors'
    script does, so the KL gradient also flows through the ``phi_c`` factor of ``G``.

    Under 16-mixed precision ``phi`` is float16 and ``dL/dphi`` (about 1e-6 at batch 128) lies in float16's subnormal
    range, where much of it rounds to zero. As a gradient scaler does, the loss is then multiplied by
    :data:`GRADCAM_LOSS_SCALE` before differentiating (divided by 2**8 until every gradient is finite) and the
    gradient is unscaled in float32; the product and sum of Eq. 3 are always taken in float32.
    """
    if loss.dim() != 0:
        raise ValueError(f"the SSL loss must be a scalar to take its Grad-CAM, got shape {tuple(loss.shape)}")
    for phi in phis:
        if phi.dim() != 4:
            raise ValueError(f"phi must be an NxCxHxW last convolutional map, got shape {tuple(phi.shape)}")
    scale = GRADCAM_LOSS_SCALE if any(phi.dtype == torch.float16 for phi in phis) else 1.0
    while True:
        grads = torch.autograd.grad(loss.float() * scale, list(phis), retain_graph=True)  # NxCxHxW each, no graph
        if scale == 1.0 or all(bool(torch.isfinite(grad).all()) for grad in grads):
            break
        scale = max(scale / 2**8, 1.0)
    return [
        F.relu(((grad.float() / scale) * (phi.detach() if detach else phi).float()).sum(dim=1))  # NxHxW
        for grad, phi in zip(grads, phis)
    ]


class GradCAMFittingBranch(nn.Module):
    """LCR Eq. 4: ``A_ij = max_k ReLU(BN(w_k^T phi_ij))``: a 1x1 convolution with K filters (no bias), batch norm, ReLU
    and a max-out over the K channels. Maps ``phi`` NxCxHxW to the predicted Grad-CAM ``A`` NxHxW (K = 32 in LCR)."""

    def __init__(self, in_channels: int, num_filters: int = 32) -> None:
        super().__init__()
        if num_filters < 1:
            raise ValueError(f"the fitting branch needs at least one filter, got num_filters={num_filters}")
        self.projections = nn.Sequential(
            nn.Conv2d(in_channels, num_filters, kernel_size=1, bias=False),
            nn.BatchNorm2d(num_filters),
            nn.ReLU(inplace=True),
        )

    def forward(self, phi: Tensor) -> Tensor:
        return self.projections(phi).amax(dim=1)  # NxKxHxW -> NxHxW


@dataclass(frozen=True)
class Fitting:
    """How LCR's fitting loss (Eqs. 5-7) reads ``G`` and ``A``: the settings where fgssl and the authors' code differ
    (the LCR theory page's table names each). Both normalise ``A`` per image to [0, 1] before the softmax (the
    authors' code normalises per batch: a bug, fixed in both).

    - ``gradcam``: ``"per_image"`` min-max normalises ``G`` per image, so an image's target does not depend on the
      loss scale, nor on the batch size with BatchNorm in eval mode (in training, BatchNorm's batch statistics reach
      ``phi`` and so ``G``, as in the authors' code); ``"raw"`` takes ``G`` as it comes (its size shrinks as 1/B
      with a batch-mean loss);
    - ``reduction``: the per-image KL ``"mean"`` or ``"sum"`` over the batch;
    - ``views``: fit every online view (``"all"``) or view 1 only (``"first"``);
    - ``detach_gradcam``: ``G`` is a constant target, or keeps ``phi``'s graph;
    - ``authors_loss``: ``L_CL`` on the authors' scale (BYOL: ``mean_v(-cos)``, a quarter of fgssl's
      ``sum_v (2 - 2 cos)``), for the Grad-CAM and Eq. 7;
    - ``kl_weight``: the default ``nu`` of Eq. 7 (fgssl's 1.28 on the batch mean is the authors' 0.01 times their
      batch of 128; their MoCo script sums the KL per GPU, 32 images on each of 4, and averages the gradients over
      the GPUs, so their effective weight on the batch mean is 0.32; on one device ``kl_weight=0.0025`` gives their
      weighting of the sum, while their raw ``G``, from each GPU's 32-image loss, is 4 times one device's at 128: the
      book's departures page);
    - ``temperature``: the default ``tau`` of Eqs. 5-6 (the paper's 0.4; ``None``: the authors' script of the
      baseline, :attr:`LCR.authors_temperature <fgssl_lib.methods.lcr.LCR.authors_temperature>`).
    """

    gradcam: str
    reduction: str
    views: str
    detach_gradcam: bool
    authors_loss: bool
    kl_weight: float
    temperature: float | None


FITTINGS = {
    "fgssl": Fitting(gradcam="per_image", reduction="mean", views="all", detach_gradcam=True, authors_loss=False,
                     kl_weight=1.28, temperature=0.4),
    "authors": Fitting(gradcam="raw", reduction="sum", views="first", detach_gradcam=False, authors_loss=True,
                       kl_weight=0.01, temperature=None),
}
"""The two fittings: fgssl's default and the authors' code (``GANPerf/LCR``) on the same inputs."""


def fitting_distribution(maps: Tensor, temperature: float, eps: float | None = NORMALISATION_EPS) -> Tensor:
    """LCR Eqs. 5-6: ``softmax(X / tau)`` over all H*W positions of each NxHxW map, as ``N x HW`` log-probabilities;
    the map is first min-max normalised per image (:func:`normalise_per_image` with ``eps``), or taken raw with
    ``eps=None``."""
    maps = normalise_per_image(maps, eps) if eps is not None else maps
    return F.log_softmax(maps.flatten(1) / temperature, dim=1)  # N x HW


def rationale_kl(branch_map: Tensor, gradcam: Tensor, temperature: float = 0.4, normalise_gradcam: bool = True,
                 reduction: str = "mean") -> Tensor:
    """LCR Eqs. 5-6: ``KL(G_bar || A_bar)`` with the distributions of :func:`fitting_distribution` (``A`` always
    normalised per image as Eq. 8, ``G`` scale-free if ``normalise_gradcam``), summed over positions and averaged
    (``reduction="mean"``) or summed (``"sum"``) over the batch. ``branch_map`` ``A`` and ``gradcam`` ``G``: NxHxW."""
    if branch_map.shape != gradcam.shape:
        raise ValueError(
            f"A and G must have the same NxHxW shape, got {tuple(branch_map.shape)} and {tuple(gradcam.shape)}"
        )
    check_choice("KL reduction over the batch", reduction, ("mean", "sum"))
    log_a = fitting_distribution(branch_map, temperature)  # N x HW
    log_g = fitting_distribution(gradcam, temperature, 0.0 if normalise_gradcam else None)  # N x HW
    return F.kl_div(log_a, log_g, log_target=True, reduction="batchmean" if reduction == "mean" else "sum")


def weighted_pool(phi: Tensor, branch_map: Tensor) -> Tensor:
    """LCR Eq. 8: ``f = mean_ij A'_ij phi_ij`` with the per-image normalised ``A'``; ``phi`` NxCxHxW, ``branch_map``
    NxHxW; returns the NxC pooled feature (not normalised: callers L2-normalise the embedding)."""
    weights = normalise_per_image(branch_map)[:, None]  # Nx1xHxW
    return (weights * phi).mean(dim=(2, 3))  # NxC
