"""Per-sample random streams of the batched views: a batch's views are a function of ``(seed, epoch, index)`` only.

Each sample's stream is counter-based: its key hashes ``(seed, epoch, index)`` and its ``j``-th uniform (float64,
53 random bits) is the SplitMix64 output at ``key + j`` (Steele, Lea and Flood, "Fast splittable pseudorandom number
generators", OOPSLA 2014), so a whole batch's ``B x U`` uniforms are a few vectorised integer ops, with no generator
object per sample. Background pools, which draw from a ``torch.Generator``, get one per sample, seeded from its key
and made only when a view draws a background. A sample's views thus do not depend on the rest of the batch, and the
global RNG is never touched.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

GOLDEN = -7046029254386353131
"""SplitMix64's increment ``0x9E3779B97F4A7C15`` as a signed 64-bit integer (torch's ``int64`` wraps around)."""
MIX = (-4658895280553007687, -7723592293110705685)
"""SplitMix64's multipliers ``0xBF58476D1CE4E5B9``, ``0x94D049BB133111EB`` as signed 64-bit integers."""


def _shift_right(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of ``int64`` ``x`` (torch's ``>>`` is arithmetic)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def splitmix64(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64's output function on ``int64`` states ``x`` (``x + GOLDEN`` mixed), elementwise."""
    z = x + GOLDEN
    z = (z ^ _shift_right(z, 30)) * MIX[0]
    z = (z ^ _shift_right(z, 27)) * MIX[1]
    return z ^ _shift_right(z, 31)


def sample_keys(seed: int, epoch: int, indices: torch.Tensor) -> torch.Tensor:
    """``B`` int64 keys, one per sample, hashing ``(seed, epoch, index)``; ``indices`` is a ``B`` integer tensor."""
    key = splitmix64(splitmix64(torch.tensor(int(seed), dtype=torch.int64)) ^ int(epoch))
    return splitmix64(key ^ indices.cpu().to(torch.int64))


def draw_uniforms(keys: torch.Tensor, count: int) -> torch.Tensor:
    """``B x count`` float64 uniforms in [0, 1) on the CPU, row ``b`` the stream of ``keys[b]``."""
    bits = splitmix64(keys[:, None] + torch.arange(1, count + 1, dtype=torch.int64) * GOLDEN)
    return _shift_right(bits, 11).double() * 2.0**-53


class SampleGenerators(Sequence[torch.Generator]):
    """The samples' CPU ``torch.Generator`` s (for background pools), ``generators[b]`` seeded from ``keys[b]``, each
    made on first use."""

    def __init__(self, keys: torch.Tensor) -> None:
        self.seeds = _shift_right(splitmix64(keys), 1).tolist()  # non-negative, apart from the uniforms' stream
        self._made: dict[int, torch.Generator] = {}

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, b: int) -> torch.Generator:  # type: ignore[override]
        if b not in self._made:
            self._made[b] = torch.Generator().manual_seed(self.seeds[b])
        return self._made[b]
