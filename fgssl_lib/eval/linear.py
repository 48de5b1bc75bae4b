"""Linear probe on frozen features (LCR Table 2's protocol): top-1 / top-5 at label fractions 100 / 50 / 20 %.

Features are L2-normalised, then standardised with the mean / std of the training subset; a multinomial logistic
regression (one ``nn.Linear``, cross-entropy) is trained with large-batch SGD (batches of ``BATCH_SIZE``, momentum 0.9,
cosine schedule; the cost of an epoch is then the two ``N x D x C`` products, not per-step overhead). The
learning rate and weight decay are picked from a small grid on a validation split carved from the (subsampled)
training features, never from the test set; the picked setting is then retrained on the whole training subset.
Label fractions are class-balanced and seeded (:func:`class_balanced_subset`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fgssl_lib.config import resolve_device
from fgssl_lib.eval.features import check_features
from fgssl_lib.eval.knn import top_k_accuracy

FRACTIONS = (1.0, 0.5, 0.2)
LEARNING_RATES = (0.1, 0.01)
WEIGHT_DECAYS = (0.0, 1e-4)
BATCH_SIZE = 1024
"""Probe batch size: on CPU an epoch of 6k x 2048 features costs ~0.24 cpu-s at 1024 against ~0.32 at 256."""


def class_balanced_subset(labels: torch.Tensor, fraction: float, seed: int = 0) -> torch.Tensor:
    """Indices of a seeded random ``fraction`` of each class (``max(1, round(fraction * n_c))`` items), sorted."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"label fraction must be in (0, 1]; got {fraction}")
    generator = torch.Generator().manual_seed(seed)
    labels = labels.cpu()
    chosen = []
    for c in labels.unique().tolist():
        members = torch.nonzero(labels == c).flatten()
        keep = max(1, round(fraction * len(members)))
        chosen.append(members[torch.randperm(len(members), generator=generator)[:keep]])
    return torch.cat(chosen).sort().values


@dataclass
class LinearClassifier:
    """A trained probe: ``scores(feats) = W * standardise(normalise(feats)) + b``, ``N x D -> N x C``."""

    mean: torch.Tensor  # D
    std: torch.Tensor  # D
    linear: nn.Linear

    def scores(self, feats: torch.Tensor) -> torch.Tensor:
        device = self.mean.device
        with torch.no_grad():
            return self.linear((F.normalize(feats.to(device).float(), dim=1) - self.mean) / self.std)

    def accuracy(self, feats: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """``{"top1", "top5"}`` percentages."""
        return top_k_accuracy(self.scores(feats), labels.to(self.mean.device))


def fit_linear(
    feats: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    lr: float = 0.1,
    weight_decay: float = 0.0,
    epochs: int = 100,
    batch_size: int = BATCH_SIZE,
    seed: int = 0,
    device: str | torch.device = "auto",
) -> LinearClassifier:
    """Train a logistic-regression probe on ``feats`` (``N x D``) and ``labels`` (``N``) with SGD + cosine."""
    device = resolve_device(device)
    generator = torch.Generator().manual_seed(seed)
    x = F.normalize(feats.to(device).float(), dim=1)  # NxD
    mean, std = x.mean(dim=0), x.std(dim=0, unbiased=False).clamp(min=1e-6)
    x = (x - mean) / std
    y = labels.to(device)
    torch.manual_seed(seed)
    linear = nn.Linear(x.shape[1], num_classes).to(device)
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    optimizer = torch.optim.SGD(linear.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(x) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator).to(device)
        for start in range(0, len(x), batch_size):
            batch = order[start : start + batch_size]
            loss = F.cross_entropy(linear(x[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    linear.requires_grad_(False)
    return LinearClassifier(mean, std, linear)


def select_linear(
    feats: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    lrs: Sequence[float] = LEARNING_RATES,
    weight_decays: Sequence[float] = WEIGHT_DECAYS,
    epochs: int = 100,
    sweep_epochs: int | None = None,
    val_fraction: float = 0.2,
    batch_size: int = BATCH_SIZE,
    seed: int = 0,
    device: str | torch.device = "auto",
) -> tuple[LinearClassifier, dict[str, float]]:
    """Pick ``(lr, weight_decay)`` on a class-balanced validation split of the training features, then retrain.

    The sweep trains for ``sweep_epochs`` (default ``max(1, epochs // 4)``); the final probe for ``epochs`` on all of
    ``feats``. Returns the probe and ``{"lr", "weight_decay", "val_top1"}``. A one-point grid skips the sweep.
    """
    grid = list(itertools.product(lrs, weight_decays))
    chosen = {"lr": grid[0][0], "weight_decay": grid[0][1], "val_top1": float("nan")}
    if len(grid) > 1:
        val = class_balanced_subset(labels, val_fraction, seed + 1)
        is_train = torch.ones(len(labels), dtype=torch.bool)
        is_train[val] = False
        if not is_train.any():
            raise ValueError("too few training features to carve a validation split; lower val_fraction")
        sweep_epochs = max(1, epochs // 4) if sweep_epochs is None else sweep_epochs
        best = -1.0
        for lr, wd in grid:
            probe = fit_linear(
                feats[is_train], labels[is_train], num_classes, lr, wd, sweep_epochs, batch_size, seed, device
            )
            top1 = probe.accuracy(feats[val], labels[val])["top1"]
            if top1 > best:
                best, chosen = top1, {"lr": lr, "weight_decay": wd, "val_top1": top1}
    probe = fit_linear(
        feats, labels, num_classes, chosen["lr"], chosen["weight_decay"], epochs, batch_size, seed, device
    )
    return probe, chosen


def linear_probe(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    fractions: Sequence[float] = FRACTIONS,
    epochs: int = 100,
    lrs: Sequence[float] = LEARNING_RATES,
    weight_decays: Sequence[float] = WEIGHT_DECAYS,
    sweep_epochs: int | None = None,
    val_fraction: float = 0.2,
    batch_size: int = BATCH_SIZE,
    seed: int = 0,
    device: str | torch.device = "auto",
) -> dict[float, dict[str, float]]:
    """Linear-probe accuracy per label fraction: ``{fraction: {"top1", "top5", "lr", "weight_decay", "val_top1"}}``.

    Args:
        train_feats, train_labels: ``N x D`` frozen features and ``N`` labels of the training split.
        test_feats, test_labels: ``M x D`` and ``M`` of the test split (only used for the final numbers).
        fractions: label fractions; each takes a class-balanced seeded subset of the training split.
        epochs: epochs of the final probe (the sweep uses ``sweep_epochs``, see :func:`select_linear`).
    """
    check_features(train_feats, train_labels, "linear_probe (train)")
    check_features(test_feats, test_labels, "linear_probe (test)")
    if train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(f"train and test features differ in width: {train_feats.shape[1]} vs {test_feats.shape[1]}")
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    results: dict[float, dict[str, float]] = {}
    for fraction in fractions:
        subset = class_balanced_subset(train_labels, fraction, seed)
        probe, chosen = select_linear(
            train_feats[subset], train_labels[subset], num_classes, lrs, weight_decays, epochs, sweep_epochs,
            val_fraction, batch_size, seed, device,
        )
        results[fraction] = {**probe.accuracy(test_feats, test_labels), **chosen}
    return results
