"""CVSA (Wu et al.): BYOL on SaliencySwap views plus a cross-view saliency alignment loss on the stage-k map.

Our formulation of CVSA Eqs. 3-7 (the CVSA theory page). The global branch is BYOL, unchanged
(:meth:`BYOL.contrastive_forward` gives ``L_ctr``, Eq. 6). The local branch: a conv projector ``g_c`` and a conv
predictor ``q_c`` (each conv1x1 -> BN -> ReLU -> conv1x1) on the online stage-k maps ``F1, F2`` give
``P_v = q_c(g_c(F_v))``; the momentum twin ``g_c'`` on the target stage-k maps gives ``Z_v = g_c'(F_v')``; the
alignment loss (:class:`~fgssl_lib.methods.alignment.CrossViewAlignmentLoss`, Eqs. 3-5) asks the correspondence
intensity of every location to match the view's saliency mask (a box or, where the dataset has one, a segmentation).
Joint loss (Eq. 7): ``L = L_ctr + align_weight * L_align``. BYOL+SS (no alignment) is BYOL on SaliencySwap views, the
registry's ``byol_ss``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from fgssl_lib.config import check_choice
from fgssl_lib.methods.alignment import CrossViewAlignmentLoss, correspondence_intensity, cross_view_attention
from fgssl_lib.methods.byol import BYOL
from fgssl_lib.models import STAGES
from fgssl_lib.saliency.maps import MapSource


def conv_head(in_channels: int, hidden_channels: int, out_channels: int) -> nn.Sequential:
    """CVSA's conv projector / predictor: conv1x1 -> BN -> ReLU -> conv1x1, NxC_inxHxW -> NxC_outxHxW."""
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden_channels, kernel_size=1, bias=False),
        nn.BatchNorm2d(hidden_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden_channels, out_channels, kernel_size=1),
    )


class CVSA(BYOL):
    """BYOL + cross-view saliency alignment. Args:

    - ``stage``: backbone stage ``k`` whose map is aligned (default ``layer3``);
    - ``align_weight``: lambda of Eq. 7 (default 1; > 0: without alignment it is the registry's ``byol_ss``);
    - ``intensity``: Eq. 4 reading, ``softmax_max`` (default) or ``sigmoid_max``;
    - ``attention_temperature``: tau_a of Eq. 3 (default 0.1);
    - ``conv_hidden_dim`` / ``conv_proj_dim``: channels of the conv heads (default: the stage's channels /
      ``min(128, stage channels)``, so the heads never widen a narrow backbone's map);
    - BYOL's and :class:`~fgssl_lib.methods.base.MomentumMethod`'s options.

    The registry trains it on SaliencySwap views (``views="saliency_swap"``).
    """

    def __init__(
        self,
        stage: str = "layer3",
        align_weight: float = 1.0,
        intensity: str = "softmax_max",
        attention_temperature: float = 0.1,
        conv_hidden_dim: int | None = None,
        conv_proj_dim: int | None = None,
        **byol_options: Any,
    ) -> None:
        super().__init__(**byol_options)
        check_choice("stage", stage, STAGES[1:])
        if align_weight <= 0:
            raise ValueError(f"align_weight (lambda of CVSA Eq. 7) must be > 0, got {align_weight}; BYOL on "
                             "SaliencySwap views without the alignment is the method 'byol_ss'")
        self.stage = stage
        self.align_weight = align_weight
        channels = self.backbone.stage_channels[stage]
        hidden = conv_hidden_dim or channels
        conv_proj_dim = conv_proj_dim or min(128, channels)
        self.stages = (stage, "layer4")
        self.conv_projector = conv_head(channels, hidden, conv_proj_dim)  # g_c
        self.conv_predictor = conv_head(conv_proj_dim, hidden, conv_proj_dim)  # q_c
        self.conv_projector_target = self.momentum_twin(self.conv_projector)  # g_c'
        self.alignment = CrossViewAlignmentLoss(intensity, attention_temperature)

    def losses(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``loss_ctr`` (BYOL, Eq. 6), ``loss_align`` (Eq. 5) and ``loss = loss_ctr + lambda * loss_align`` (Eq. 7)."""
        out = self.contrastive_forward(batch)
        p1, p2 = (self.conv_predictor(self.conv_projector(out.maps[v][self.stage])) for v in (0, 1))  # NxdxHxW
        with torch.no_grad():
            z1, z2 = (self.conv_projector_target(out.target_maps[v][self.stage]) for v in (0, 1))  # NxdxHxW
        loss_align = self.alignment(p1, p2, z1, z2, batch["mask1"], batch["mask2"])
        loss = out.loss_ctr + self.align_weight * loss_align
        return {"loss": loss, "loss_ctr": out.loss_ctr, "loss_align": loss_align}

    def map_source(self) -> MapSource:
        """The correspondence intensity map (:class:`IntensityMap`)."""
        return IntensityMap(self)


class IntensityMap(MapSource):
    """CVSA's saliency map: the correspondence intensity (Eq. 4) of an image against its horizontally flipped copy.

    Our choice: the online ``P = q_c(g_c(F(x)))`` is matched with the momentum ``Z = g_c'(F'(flip(x)))`` as in
    training, where the second view shares the object but not the background; the intensity does not depend on the
    order of view 2's locations, so the flip only gives a second, slightly different reading of the same content.
    Under ``softmax_max`` locations whose features are distinctive (a good match for one location) score high and
    look-alike background scores low. Upsampled bicubically to the image size and min-max normalised per image
    (scale-free: ``eps = 0``) by :class:`~fgssl_lib.saliency.maps.MapSource`.
    """

    eps = 0.0

    def __init__(self, method: CVSA) -> None:
        super().__init__(method)
        self.method = method

    def compute(self, images: Tensor) -> Tensor:
        cvsa, stage = self.method, self.method.stage
        online = cvsa.backbone.forward_maps(images, (stage,))[stage]  # NxCxHxW
        target = cvsa.momentum_encoder.backbone.forward_maps(images.flip(-1), (stage,))[stage]
        p = cvsa.conv_predictor(cvsa.conv_projector(online))  # NxdxHxW
        z = cvsa.conv_projector_target(target)  # NxdxHxW
        attention = cross_view_attention(p, z, cvsa.alignment.temperature)  # N x HW x HW
        intensity = correspondence_intensity(attention, cvsa.alignment.intensity)  # N x HW
        return intensity.view(-1, *p.shape[-2:])  # NxHxW
