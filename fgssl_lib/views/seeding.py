"""Reproducible views: one random stream per ``(seed, epoch, index)``, and per-worker seeding for ``DataLoader``.

Two ways to make views reproducible:

- **Per sample (recommended).** Build the views with ``seed=<int>`` and call ``views.set_epoch(epoch)`` before each
  epoch (with ``persistent_workers=False``, the default, workers get the updated transform each epoch). Each sample's
  two views then depend only on ``(seed, epoch, index)``: identical run to run, with any number of workers, in any
  order.
- **Per worker (PyTorch's convention).** Build the views with ``seed=None`` (they draw from the global ``torch`` RNG)
  and pass ``DataLoader(..., generator=torch.Generator().manual_seed(s), worker_init_fn=seed_worker)``: PyTorch seeds
  each worker's ``torch`` RNG from the loader's generator and :func:`seed_worker` seeds ``random`` and ``numpy`` the
  same way. Runs are identical for a fixed ``num_workers``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 63-bit seed for one sample, from ``(seed, epoch, index)`` (numpy ``SeedSequence`` hashing)."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


@contextmanager
def sample_rng(seed: int | None, epoch: int, index: int) -> Iterator[torch.Generator]:
    """Run the block with the global CPU ``torch`` RNG seeded from ``(seed, epoch, index)``; yield that generator.

    ``torchvision.transforms.v2`` draws its parameters from the global CPU generator, so seeding it (and passing the
    same generator to background pools) makes every random choice of a view reproducible. The previous RNG state is
    restored on exit, so the caller's random stream is untouched. ``seed=None`` leaves the RNG alone (per-worker
    seeding). Only the CPU generator is touched, never a CUDA one.
    """
    generator = torch.default_generator
    if seed is None:
        yield generator
        return
    state = generator.get_state()
    generator.manual_seed(sample_seed(seed, epoch, index))
    try:
        yield generator
    finally:
        generator.set_state(state)


def seed_worker(worker_id: int) -> None:
    """``DataLoader(worker_init_fn=seed_worker)``: seed ``random`` and ``numpy`` from the worker's ``torch`` seed.

    PyTorch already gives each worker a distinct ``torch`` seed (``base_seed + worker_id``); this propagates it to the
    other RNGs a dataset or a saliency source might use, so a seeded loader is reproducible end to end.
    """
    del worker_id  # the torch seed already encodes it
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)
