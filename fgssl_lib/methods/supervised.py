"""The supervised reference of the study: the same backbone trained with cross-entropy on the labels of ``view1``.

It shares the data path, optimizer and ``embed`` (GAP backbone features) with the self-supervised methods, so
its features are evaluated exactly like theirs.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from fgssl_lib.methods.base import SSLMethod


class Supervised(SSLMethod):
    """Linear classifier on the pooled backbone features, cross-entropy on ``view1``'s labels.

    Args: ``num_classes`` (the trainer passes the dataset's), ``label_smoothing``; see :class:`SSLMethod`.
    """

    dataset_options: ClassVar[tuple[str, ...]] = ("num_classes",)

    def __init__(self, num_classes: int, label_smoothing: float = 0.0, **base_options: Any) -> None:
        super().__init__(**base_options)
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 for the supervised reference; got {num_classes}")
        self.classifier = nn.Linear(self.backbone.feature_dim, num_classes)
        self.label_smoothing = label_smoothing

    def losses(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """``loss = CE(W f(view1), label)``; ``view1`` is ``N x 3 x S x S``, ``label`` ``N``."""
        logits = self.classifier(self.backbone(batch["view1"]))  # N x num_classes
        loss = F.cross_entropy(logits, batch["label"], label_smoothing=self.label_smoothing)
        return {"loss": loss, "loss_ce": loss}
