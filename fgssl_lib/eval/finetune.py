"""Fine-tune protocol of CVSA (§4, "fully supervised fine-tune evaluation"): the whole pre-trained encoder plus a
linear head trained with labels, SGD (momentum 0.9) with a cosine schedule, batch size 16, 50 epochs, on a label
fraction of the training set. The paper sweeps the initial learning rate and weight decay on a validation split (its
grid is lost in our copy); :func:`fine_tune` trains one setting, so a sweep is a loop over it.

Runs through ``pytorch_lightning`` (mixed precision on CUDA). The encoder is copied: the pre-trained model is left as
it was.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from fgssl_lib.config import resolve_device
from fgssl_lib.eval.features import Mapped, Pooled, encoder_of
from fgssl_lib.eval.knn import top_k_accuracy
from fgssl_lib.eval.linear import class_balanced_subset


class FineTuneClassifier(pl.LightningModule):
    """Encoder + linear head, ``images N x 3 x S x S -> logits N x C``; random horizontal flips in training."""

    def __init__(
        self, encoder: nn.Module, feature_dim: int, num_classes: int, lr: float, weight_decay: float, momentum: float
    ) -> None:
        super().__init__()
        self.encoder = Pooled(encoder)
        self.head = nn.Linear(feature_dim, num_classes)
        self.lr, self.weight_decay, self.momentum = lr, weight_decay, momentum

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(images))  # NxC

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        images = batch["image"]  # Nx3xSxS
        flip = torch.rand(len(images), device=images.device) < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        loss = F.cross_entropy(self(images), batch["label"])
        self.log("loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> dict:
        optimizer = torch.optim.SGD(
            self.parameters(), lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
        )
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, self.trainer.max_epochs))
        return {"optimizer": optimizer, "lr_scheduler": schedule}


def fine_tune(
    method_or_backbone: nn.Module,
    train_set: Dataset,
    test_set: Dataset,
    transform: Callable[[dict], dict] | None = None,
    epochs: int = 50,
    batch_size: int = 16,
    lr: float = 0.01,
    weight_decay: float = 1e-4,
    momentum: float = 0.9,
    label_fraction: float = 1.0,
    seed: int = 0,
    device: str | torch.device = "auto",
    num_workers: int = 0,
    image_size: int = 224,
    max_steps: int = -1,
) -> dict[str, float]:
    """Fine-tune a copy of the encoder (a method's ``backbone``, or a module ``images -> N x D``) with a linear head on
    a class-balanced ``label_fraction`` of ``train_set``; return test ``{"top1", "top5"}`` percentages.

    ``transform`` maps samples to views (default ``eval_view(image_size)``); ``max_steps`` caps training (smoke runs).
    """
    if transform is None:
        from fgssl_lib.views import eval_view

        transform = eval_view(image_size)
    device = resolve_device(device)
    pl.seed_everything(seed, verbose=False)
    train_views = Mapped(train_set, transform)
    labels = getattr(train_set, "labels", None)
    labels = torch.as_tensor(
        labels if labels is not None else [int(train_set[i]["label"]) for i in range(len(train_set))]
    ).long()
    subset = Subset(train_views, class_balanced_subset(labels, label_fraction, seed).tolist())
    encoder = copy.deepcopy(encoder_of(method_or_backbone)).cpu()
    encoder.requires_grad_(True)
    with torch.no_grad():
        feature_dim = Pooled(encoder).eval()(subset[0]["image"][None]).shape[1]
    encoder.train()
    num_classes = int(getattr(train_set, "num_classes", int(labels.max()) + 1))
    model = FineTuneClassifier(encoder, feature_dim, num_classes, lr, weight_decay, momentum)
    cuda = device.type == "cuda"
    trainer = pl.Trainer(
        max_epochs=epochs,
        max_steps=max_steps,
        accelerator="gpu" if cuda else "cpu",
        devices=[device.index or 0] if cuda else 1,
        precision="16-mixed" if cuda else "32-true",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    generator = torch.Generator().manual_seed(seed)
    trainer.fit(
        model,
        DataLoader(subset, batch_size=batch_size, shuffle=True, drop_last=len(subset) > batch_size,
                   num_workers=num_workers, generator=generator),
    )
    model.to(device).eval()
    scores, targets = [], []
    with torch.no_grad(), torch.autocast(device.type, enabled=cuda):
        for batch in DataLoader(Mapped(test_set, transform), batch_size=4 * batch_size, num_workers=num_workers):
            scores.append(model(batch["image"].to(device)).float())
            targets.append(torch.as_tensor(batch["label"]).to(device))
    return top_k_accuracy(torch.cat(scores), torch.cat(targets))
