"""The training data paths: seeded, epoch-reproducible ``DataLoader`` s of two-view batches.

- per sample: dataset of samples -> :class:`TwoViewDataset` (views made one sample at a time in the loader's
  workers) -> loader;
- batched: :class:`~fgssl_lib.train.store.TrainingStore` -> :class:`BatchedViewData`, whose loader yields positions
  in the store (or their uint8 rows, for a store kept on the host) and whose ``on_after_batch_transfer`` makes the
  batch's two views on the training device (:func:`fgssl_lib.views.build_batched_views`).

Views are built with ``seed=`` so each sample's two views depend only on ``(seed, epoch, index)``
(:mod:`fgssl_lib.views.seeding`), and the shuffling order depends only on ``(seed, epoch)``: a run resumed at an
epoch boundary sees exactly the batches the uninterrupted run saw, for any ``num_workers``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Subset

from fgssl_lib.train.store import TrainingStore
from fgssl_lib.views import seed_worker

STORE_MEMORY_FRACTION = 0.25
"""At most this fraction of the training GPU's free memory holds the training store; a larger store stays on the host
and its batches are gathered by the loader's workers."""

log = logging.getLogger(__name__)


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
    """A ``RandomSampler`` whose permutation is a function of ``(seed, epoch)``; Lightning calls ``set_epoch``. With
    ``num_samples``, the permutation's first ``num_samples`` positions.

    Under DDP Lightning replaces it by a ``DistributedSampler`` seeded with the global seed, which is epoch-seeded too.
    """

    def __init__(self, data_source: Dataset, seed: int, num_samples: int | None = None) -> None:
        super().__init__(data_source, num_samples=num_samples, generator=torch.Generator())
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


def train_loader(dataset: Dataset, batch_size: int, num_workers: int, seed: int,
                 collate_fn: Callable[[list[Any]], Any] | None = None,
                 effective_batch: int | None = None) -> DataLoader:
    """Shuffled, ``drop_last`` (equal batches for BatchNorm and the MoCo queue), worker-seeded loader of
    micro-batches of ``batch_size``. With ``effective_batch`` (a multiple of ``batch_size``: gradient accumulation)
    an epoch holds whole effective batches only, the images of each the same as an unaccumulated run's batch."""
    effective = effective_batch or batch_size
    if len(dataset) < effective:
        raise ValueError(f"the training set has {len(dataset)} images, fewer than the batch of {effective}; "
                         "lower batch_size (and effective_batch_size) or use more images (num_images)")
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=EpochRandomSampler(dataset, seed, len(dataset) // effective * effective),
        num_workers=num_workers,
        worker_init_fn=seed_worker,
        generator=torch.Generator().manual_seed(seed),
        drop_last=True,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
        collate_fn=collate_fn,
    )


class BatchedViewData(pl.LightningDataModule):
    """The batched view pipeline: a seeded loader over the positions of ``store``, and the two views of each batch
    made on the training device by ``views`` (``views(batch, epoch, source=...)``, see
    :func:`fgssl_lib.views.build_batched_views`) in :meth:`on_after_batch_transfer`.

    :meth:`setup` moves the store to the training device when it takes at most ``memory_fraction`` of its free
    memory; else the store stays memory-mapped on the host and ``num_workers`` workers gather each batch's uint8 rows
    (pinned on CUDA). ``localise`` rewrites the rows' box, mask and saliency before the views are made (self-saliency,
    :meth:`fgssl_lib.train.localiser.SelfLocaliser.rows`). The method's ``training_step`` receives ``dict(view1, view2, mask1, mask2, label, index)`` as
    from the per-sample pipeline.
    """

    def __init__(self, store: TrainingStore, views: Callable[..., dict[str, Any]], batch_size: int, num_workers: int,
                 seed: int, memory_fraction: float = STORE_MEMORY_FRACTION, effective_batch: int | None = None,
                 localise: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.store, self.views = store, views
        self.localise = localise
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.effective_batch = effective_batch
        self.memory_fraction = memory_fraction
        self.resident = True  # the store is on the training device: the loader yields positions only

    def setup(self, stage: str) -> None:
        device = self.trainer.strategy.root_device
        self.resident = self.store.fits(device, self.memory_fraction)
        if self.resident:
            self.store.to(device)
        else:
            log.warning("the training store (%.0f MiB) exceeds %.0f %% of the free memory of %s: it stays on the host "
                        "and %d loader workers gather its batches", self.store.nbytes / 2**20,
                        100 * self.memory_fraction, device, self.num_workers)

    def train_dataloader(self) -> DataLoader:
        loader = train_loader(range(len(self.store)), self.batch_size, 0 if self.resident else self.num_workers,
                              self.seed, collate_fn=None if self.resident else self.store.batch,
                              effective_batch=self.effective_batch)
        loader.sampler.set_epoch(self.trainer.current_epoch)  # a resumed run builds its first iterator before the
        return loader                                         # epoch hooks run

    def localised(self, rows: dict[str, Any]) -> dict[str, Any]:
        """``rows`` with the box, mask and saliency of ``localise`` (unchanged without one)."""
        return rows if self.localise is None else self.localise(rows)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Rows go to the device; positions stay on the host, where the store reads its row layout."""
        return batch if self.resident else super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> dict[str, Any]:
        """Positions (or uint8 rows on the training device) -> the batch's two views on the training device."""
        rows = self.localised(self.store.batch(batch) if self.resident else batch)
        device = rows["image"].device

        def source(positions: torch.Tensor) -> dict[str, Any]:  # other rows, e.g. SaliencySwap's backgrounds
            return self.localised(self.store.batch(positions, device=device))

        return self.views(rows, self.trainer.current_epoch, source=source)
