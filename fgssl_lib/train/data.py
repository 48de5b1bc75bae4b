"""The training data path: dataset of samples -> two-view dataset -> seeded, epoch-reproducible ``DataLoader``.

Views are built with ``seed=`` so each sample's two views depend only on ``(seed, epoch, index)``
(:mod:`fgssl_lib.views.seeding`), and the shuffling order depends only on ``(seed, epoch)``: a run resumed at an
epoch boundary sees exactly the batches the uninterrupted run saw, for any ``num_workers``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Subset

from fgssl_lib.views import seed_worker


class TwoViewDataset(Dataset):
    """``dataset[i]`` (a sample dict) passed through a two-view generator ``views`` (``sample -> dict(view1, ...)``)."""

    def __init__(self, dataset: Dataset, views: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.dataset = dataset
        self.views = views

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.views(self.dataset[index])

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch of seeded views (a no-op for generators without ``set_epoch``)."""
        if hasattr(self.views, "set_epoch"):
            self.views.set_epoch(epoch)


class EpochRandomSampler(RandomSampler):
    """A ``RandomSampler`` whose permutation is a function of ``(seed, epoch)``; Lightning calls ``set_epoch``.

    Under DDP Lightning replaces it by a ``DistributedSampler`` seeded with the global seed, which is epoch-seeded too.
    """

    def __init__(self, data_source: Dataset, seed: int) -> None:
        super().__init__(data_source, generator=torch.Generator())
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed * 100_003 + epoch)


def random_subset(dataset: Dataset, num_images: int | None, seed: int) -> Dataset:
    """A seeded random subset of ``num_images`` samples (``None`` or >= the length: the dataset itself)."""
    if num_images is None or num_images >= len(dataset):
        return dataset
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1 (or None for the whole dataset), got {num_images}")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    return Subset(dataset, sorted(order[:num_images].tolist()))


def train_loader(dataset: TwoViewDataset, batch_size: int, num_workers: int, seed: int) -> DataLoader:
    """Shuffled, ``drop_last`` (equal batches for BatchNorm and the MoCo queue), worker-seeded loader."""
    if len(dataset) < batch_size:
        raise ValueError(f"the training set has {len(dataset)} images, fewer than batch_size={batch_size}; "
                         "lower batch_size or use more images (num_images)")
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=EpochRandomSampler(dataset, seed),
        num_workers=num_workers,
        worker_init_fn=seed_worker,
        generator=torch.Generator().manual_seed(seed),
        drop_last=True,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
    )
