"""Per-sample random streams of the batched views: a batch's views are a function of ``(seed, epoch, index)`` only.

Each sample gets its own CPU ``torch.Generator`` seeded with :func:`fgssl_lib.views.seeding.sample_seed`, draws a
fixed number of uniforms per view at once (``B x 2 x U``, float64), and every random parameter of its two views is a
deterministic function of those uniforms; background pools then draw from the same generator. A sample's views thus
do not depend on the rest of the batch, and the global RNG is never touched.
"""

from __future__ import annotations

import torch

from fgssl_lib.views.seeding import sample_seed


def sample_generators(seed: int, epoch: int, indices: torch.Tensor) -> list[torch.Generator]:
    """One CPU generator per sample, seeded from ``(seed, epoch, index)``; ``indices`` is a ``B`` integer tensor."""
    return [torch.Generator().manual_seed(sample_seed(seed, epoch, index)) for index in indices.tolist()]


def draw_uniforms(generators: list[torch.Generator], count: int) -> torch.Tensor:
    """``B x count`` float64 uniforms in [0, 1) on the CPU, row ``b`` from ``generators[b]``."""
    return torch.stack([torch.rand(count, dtype=torch.float64, generator=g) for g in generators])
