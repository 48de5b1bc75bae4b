"""SimCLR (Chen et al. 2020): NT-Xent between the projections of two views, in-batch negatives, no momentum encoder.

lightly's ``SimCLRProjectionHead`` (2-layer MLP) and ``NTXentLoss`` (SimCLR Eq. 1, with ``temperature``; negatives
gathered across devices under DDP). The negatives are the other images of the micro-batch (``TrainConfig.batch_size``):
``2N - 2`` per view for ``N`` images, so gradient accumulation up to a larger effective batch does not bring back the
negatives of that batch (the book's "Reproduce on a GPU" page).
"""

from __future__ import annotations

from typing import Any

from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from torch import Tensor

from fgssl_lib.methods.base import PairOutput, SSLMethod


class SimCLR(SSLMethod):
    """SimCLR. Args: ``hidden_dim`` / ``proj_dim`` (paper 2048 / 128), ``temperature`` (paper 0.5 at batch 256-512
    in its ablation, 0.1 at 4096); see :class:`SSLMethod`."""

    def __init__(self, hidden_dim: int = 2048, proj_dim: int = 128, temperature: float = 0.5, **base_options: Any):
        super().__init__(**base_options)
        self.projection_head = SimCLRProjectionHead(self.backbone.feature_dim, hidden_dim, proj_dim)
        self.criterion = NTXentLoss(temperature=temperature, gather_distributed=True)

    def contrastive_forward(self, batch: dict[str, Tensor]) -> PairOutput:
        """NT-Xent of ``g(f(view1))`` and ``g(f(view2))`` over the 2N views of the batch (SimCLR Eq. 1)."""
        e1, e2 = self.encode(batch["view1"]), self.encode(batch["view2"])  # features: NxD
        loss = self.criterion(self.projection_head(e1.features), self.projection_head(e2.features))  # z: Nxd
        return PairOutput((e1, e2), ({}, {}), loss)
