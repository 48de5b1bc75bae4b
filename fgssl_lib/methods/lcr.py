"""LCR (Shu et al., CVPR 2023): learn the common rationale by fitting the Grad-CAM of the SSL loss.

On MoCo v2 (:class:`MoCoV2LCR`, the paper's) or BYOL (:class:`BYOLLCR`). With ``phi`` the online last map (``layer4``)
of every view that went through the online encoder and ``L_CL`` the baseline's contrastive loss:

- ``G = ReLU(sum_c (dL_CL/dphi)_c phi_c)`` (Eq. 3), by :func:`~fgssl_lib.methods.rationale.ssl_gradcam`;
- ``A = GradCAMFittingBranch(phi)`` (Eq. 4), K 1x1 filters and a max-out;
- ``L = lambda L_CL + nu KL(softmax(G/tau) || softmax(A/tau))`` (Eqs. 5-7; ``lambda = 1``), with ``A`` (and, by
  default, ``G``) min-max normalised per image first; :data:`~fgssl_lib.methods.rationale.FITTINGS` holds fgssl's
  fitting (``tau = 0.4``, ``nu = 1.28`` on the batch mean) and the authors' (``fitting="authors"``: ``G`` raw,
  their script's ``tau`` (none in the MoCo script, 0.4 in the BYOL one), ``nu = 0.01`` on the batch sum, view 1
  only, the authors' loss scale);
- ``embed``: the per-image weighted pooling of Eq. 8, L2-normalised.

Why the Grad-CAM costs no second backbone backward: Lightning's automatic optimisation runs ``loss.backward()`` after
``training_step`` returns, but the KL term needs ``G`` before that. ``torch.autograd.grad(L_CL, phi,
retain_graph=True)`` differentiates only the part of the graph between ``phi`` and the loss (pooling, projection
head and, for MoCo, the queue logits); the backbone below ``phi`` is traversed once, by the training backward.

Variants (LCR Table 1), registry names of :mod:`fgssl_lib.methods`: ``lcr`` (Ours), ``lcr_multitask``
(``test_pooling=False``: GAP features at test; it trains exactly as ``lcr``, so it is evaluated from ``lcr``'s run)
and ``lcr_dual_pooling`` (``train_pooling=True``: the weighted pooling also feeds the contrastive head in training;
the key / target encoder then pools with a momentum copy of the branch).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from fgssl_lib.config import check_choice
from fgssl_lib.methods.base import Encoding, MomentumMethod
from fgssl_lib.methods.byol import BYOL
from fgssl_lib.methods.mocov2 import MoCoV2
from fgssl_lib.methods.rationale import FITTINGS, GradCAMFittingBranch, rationale_kl, ssl_gradcam, weighted_pool
from fgssl_lib.models import split_batchnorm
from fgssl_lib.saliency.maps import MapSource


class LCR(MomentumMethod):
    """LCR's parts on top of a baseline; combined with it as :class:`MoCoV2LCR` or :class:`BYOLLCR` (``LCR`` itself
    is the ``isinstance`` check for both). Args:

    - ``num_filters``: K of the fitting branch (32);
    - ``kl_temperature``: tau of Eqs. 5-6 (``None``: the fitting's, the paper's 0.4 for fgssl's,
      :attr:`authors_temperature` for the authors');
    - ``fitting``: ``"fgssl"`` or ``"authors"`` (:class:`~fgssl_lib.methods.rationale.Fitting`: how ``G`` and
      ``A`` enter the KL, its reduction, the views fitted, the loss scale);
    - ``ssl_weight`` / ``kl_weight``: lambda / nu of Eq. 7 (1 / ``None``: the fitting's, 1.28 for fgssl's batch mean,
      0.01 for the authors' batch sum);
    - ``detach_branch_input``: the branch sees ``phi.detach()``, so the KL trains the branch only (the authors'
      code lets it reach the backbone: ``False``);
    - ``train_pooling``: weighted pooling in training too (DualPooling, registry name ``lcr_dual_pooling``);
      ``test_pooling``: weighted pooling in ``embed`` (``False``: MultiTask, ``lcr_multitask``);
    - the base method's options (e.g. ``queue_size``, ``temperature``, ``bn_splits`` for MoCo v2, whose BatchNorm
      groups the fitting branch shares; ``hidden_dim``, ``proj_dim``).
    """

    authors_loss_scale: ClassVar[float]
    """The factor that puts the baseline's ``L_CL`` on the authors' scale (``fitting="authors"``)."""
    authors_temperature: ClassVar[float]
    """tau of Eqs. 5-6 in the authors' script for the baseline (``fitting="authors"``)."""

    def __init__(
        self,
        num_filters: int = 32,
        kl_temperature: float | None = None,
        fitting: str = "fgssl",
        ssl_weight: float = 1.0,
        kl_weight: float | None = None,
        detach_branch_input: bool = False,
        train_pooling: bool = False,
        test_pooling: bool = True,
        **base_options: Any,
    ) -> None:
        if type(self) is LCR:
            raise TypeError("LCR needs a baseline: build MoCoV2LCR or BYOLLCR (registry names lcr, byol_lcr)")
        super().__init__(**base_options)
        self.branch = GradCAMFittingBranch(self.backbone.feature_dim, num_filters)
        if getattr(self, "bn_splits", 0):  # MoCo's BatchNorm groups: the authors' branch saw 32 images per GPU
            split_batchnorm(self.branch, self.bn_splits)
        self.branch_target = self.momentum_twin(self.branch) if train_pooling else None
        self.fitting = FITTINGS[check_choice("LCR fitting", fitting, FITTINGS)]
        default_temperature = self.fitting.temperature or self.authors_temperature
        self.kl_temperature = default_temperature if kl_temperature is None else kl_temperature
        if self.kl_temperature <= 0:
            raise ValueError(f"kl_temperature (tau of LCR Eqs. 5-6) must be > 0, got {kl_temperature}")
        self.ssl_weight = ssl_weight
        self.kl_weight = self.fitting.kl_weight if kl_weight is None else kl_weight
        self.detach_branch_input = detach_branch_input
        self.train_pooling = train_pooling
        self.test_pooling = test_pooling

    def rationale(self, phi: Tensor) -> Tensor:
        """The branch map ``A`` (Eq. 4) of ``phi`` NxCxHxW -> NxHxW, on ``phi.detach()`` if ``detach_branch_input``."""
        return self.branch(phi.detach() if self.detach_branch_input else phi)

    def encode(self, x: Tensor) -> Encoding:
        """The baseline's online encoder; with ``train_pooling`` the pooled feature is Eq. 8's weighted pooling by
        the branch map ``A``, which the encoding keeps (``branch_map``) for the fitting loss."""
        encoding = super().encode(x)
        if not self.train_pooling:
            return encoding
        branch_map = self.rationale(encoding.maps["layer4"])  # NxHxW
        return Encoding(encoding.maps, weighted_pool(encoding.maps["layer4"], branch_map), branch_map)  # NxD

    @torch.no_grad()
    def target_forward(self, x: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """The baseline's momentum encoder; with ``train_pooling`` its projection pools with the branch's momentum
        copy (so query and key are pooled the same way). Runs inside MoCo's batch shuffle."""
        maps, z = super().target_forward(x)
        if self.branch_target is not None:
            phi = maps["layer4"]  # NxCxHxW
            z = self.momentum_encoder.head(weighted_pool(phi, self.branch_target(phi)))  # Nxd
        return maps, z

    def losses(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``loss_ctr`` (``L_CL``, on the authors' scale with their fitting), ``loss_kl`` (Eqs. 5-6, averaged over
        the fitted views) and ``loss`` (Eq. 7)."""
        out = self.contrastive_forward(batch)
        loss_ctr = out.loss_ctr * (self.authors_loss_scale if self.fitting.authors_loss else 1.0)
        online = [e for e in out.online if e is not None]  # the views that went through the online encoder
        fitted = online[:1] if self.fitting.views == "first" else online
        phis = [e.maps["layer4"] for e in fitted]  # NxCxHxW each
        gradcams = ssl_gradcam(loss_ctr, phis, detach=self.fitting.detach_gradcam)  # NxHxW each
        branch_maps = [e.branch_map if e.branch_map is not None else self.rationale(e.maps["layer4"]) for e in fitted]
        normalise = self.fitting.gradcam == "per_image"
        loss_kl = sum(
            rationale_kl(a.float(), g.float(), self.kl_temperature, normalise, self.fitting.reduction)
            for a, g in zip(branch_maps, gradcams)
        ) / len(fitted)
        loss = self.ssl_weight * loss_ctr + self.kl_weight * loss_kl
        return {"loss": loss, "loss_ctr": loss_ctr, "loss_kl": loss_kl}

    def embed_features(self, images: Tensor) -> Tensor:
        """Eq. 8: ``f = mean_ij A'_ij phi_ij`` with the per-image normalised branch map, L2-normalised, ``N x D``;
        GAP features (the baseline's) when ``test_pooling`` is off (MultiTask)."""
        if not self.test_pooling:
            return super().embed_features(images)
        phi = self.backbone.forward_maps(images, ("layer4",))["layer4"]  # NxDxHxW
        return F.normalize(weighted_pool(phi, self.branch(phi)), dim=1)

    def map_source(self) -> MapSource:
        """The branch map ``A`` (:class:`BranchMap`)."""
        return BranchMap(self)


class BranchMap(MapSource):
    """LCR's saliency map: the fitting branch's ``A`` (Eq. 4) on the online last map, upsampled bicubically to the
    image size and min-max normalised per image (Eq. 8; wsolevaluation's CAM scaling, bicubic overshoot included), by
    :class:`~fgssl_lib.saliency.maps.MapSource`."""

    def __init__(self, method: LCR) -> None:
        super().__init__(method)
        self.method = method

    def compute(self, images: Tensor) -> Tensor:
        phi = self.method.backbone.forward_maps(images, ("layer4",))["layer4"]  # NxDxHxW
        return self.method.branch(phi)  # NxHxW


class MoCoV2LCR(LCR, MoCoV2):
    """LCR on MoCo v2 (the paper's setting)."""

    authors_loss_scale = 1.0
    """The authors' MoCo loss is fgssl's (the InfoNCE mean over the batch)."""
    authors_temperature = 1.0
    """The authors' MoCo script divides by no temperature."""


class BYOLLCR(LCR, BYOL):
    """LCR on BYOL."""

    authors_loss_scale = 0.25
    """The authors' BYOL loss ``mean_v(-cos)`` is a quarter of fgssl's ``sum_v (2 - 2 cos)`` (up to a constant)."""
    authors_temperature = 0.4
    """The authors' BYOL script divides ``G`` and ``A'`` by ``t = 0.4``, the paper's tau."""

