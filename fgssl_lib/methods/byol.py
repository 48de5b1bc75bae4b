"""BYOL (Grill et al. 2020): an online network predicts the momentum (target) network's projection of the other view.

Heads and loss from lightly: ``BYOLProjectionHead`` (g), ``BYOLPredictionHead`` (q), ``NegativeCosineSimilarity``.
The target network is a :class:`~fgssl_lib.methods.base.MomentumEncoder` whose EMA momentum follows a cosine
schedule from ``momentum_start`` (BYOL: 0.996) to 1.
"""

from __future__ import annotations

from typing import Any

from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
from torch import Tensor

from fgssl_lib.methods.base import MomentumEncoder, MomentumMethod, PairOutput


class BYOL(MomentumMethod):
    """BYOL. Args: ``hidden_dim`` / ``proj_dim`` of the MLP heads (paper: 4096 / 256); see :class:`MomentumMethod`."""

    def __init__(self, hidden_dim: int = 4096, proj_dim: int = 256, **base_options: Any) -> None:
        super().__init__(**base_options)
        self.projection_head = BYOLProjectionHead(self.backbone.feature_dim, hidden_dim, proj_dim)
        self.prediction_head = BYOLPredictionHead(proj_dim, hidden_dim, proj_dim)
        self.momentum_encoder = MomentumEncoder(self.backbone, self.projection_head)
        self.criterion = NegativeCosineSimilarity()

    def contrastive_forward(self, batch: dict[str, Tensor]) -> PairOutput:
        """BYOL's symmetrised loss ``sum_v (2 - 2 cos(q(g(f(x_v))), g'(f'(x_{1-v}))))`` (BYOL Eq. 2 + its mirror)."""
        online, predictions, target_maps, targets = [], [], [], []
        for view in (batch["view1"], batch["view2"]):  # each Nx3xSxS
            encoding = self.encode(view)  # features: NxD
            online.append(encoding)
            predictions.append(self.prediction_head(self.projection_head(encoding.features)))  # Nxd
            t_maps, z = self.encode_target(view)  # z: Nxd, no grad
            target_maps.append(t_maps)
            targets.append(z)
        # NegativeCosineSimilarity is -mean(cos), so 2 - 2 cos = 2 + 2 * criterion
        loss = sum(2 + 2 * self.criterion(predictions[v], targets[1 - v]) for v in (0, 1))
        return PairOutput((online[0], online[1]), (target_maps[0], target_maps[1]), loss)
