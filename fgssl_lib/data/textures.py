"""Habitat textures: the backgrounds of the synthetic background-bias benchmark.

A *habitat* is a texture kind (stripes, checks, dots, ...) plus a fixed two-colour palette and a base frequency and
orientation, so that the habitat is an easy cue (the benchmark's spurious background feature, as in Xiao et al. 2020).
Per image only the phase, a small orientation / frequency / brightness jitter and a faint pixel noise vary: per-image
random colours would become the easiest instance cue and hide the bias (the book's calibration appendix).

Rendering is vectorised over the pixel grid with torch; all randomness comes from the ``torch.Generator`` passed in,
so the same generator state renders the same texture.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

Pattern = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``(x, y, params) -> t``: ``x``, ``y`` are ``N x H x W`` coordinates in cycles (frequency and rotation applied),
``params`` ``N x 3 x 1 x 1`` uniform ``[0, 1)`` numbers for the pattern's own randomness; ``t`` is ``N x H x W`` in
``[0, 1]``, the weight of the palette's second colour. Patterns use only exactly rounded operations (no ``sin``), so
a pixel's value does not depend on how the batch is split across threads or SIMD lanes."""


def _triangle(x: torch.Tensor) -> torch.Tensor:
    """Triangle wave of period 1 in ``[0, 1]`` (0 at integers)."""
    return 1 - 2 * torch.abs(torch.frac(x) - 0.5)


def _hash(i: torch.Tensor, j: torch.Tensor, salt: torch.Tensor) -> torch.Tensor:
    """A pseudo-random value in ``[0, 1)`` per integer cell ``(i, j)`` (integer arithmetic, exact)."""
    h = (i.long() * 73856093) ^ (j.long() * 19349663) ^ (salt * 1e6).long()
    return ((h * 2654435761) % 1000003).float() / 1000003


def _stripes(x: torch.Tensor, y: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    return (torch.frac(x) < 0.45).float()


def _checks(x: torch.Tensor, y: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    return ((torch.floor(x) + torch.floor(y)) % 2).float()


def _dots(x: torch.Tensor, y: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    dx, dy = torch.frac(x) - 0.5, torch.frac(y) - 0.5
    return (dx * dx + dy * dy < 0.28**2).float()


def _waves(x: torch.Tensor, y: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    t = _triangle(x + 0.35 * _triangle(0.5 * y))
    return t * t * (3 - 2 * t)  # smoothstep: soft bands


def _rings(x: torch.Tensor, y: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    cx = x.mean((-2, -1), keepdim=True) + 2 * params[:, 0] - 1
    cy = y.mean((-2, -1), keepdim=True) + 2 * params[:, 1] - 1
    return (torch.frac(torch.sqrt((x - cx) ** 2 + (y - cy) ** 2)) < 0.5).float()


def _blades(x: torch.Tensor, y: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Grass: one thin blade per column cell, each with its own height."""
    height = _hash(torch.floor(x), torch.zeros_like(x), params[:, 0])
    low, high = y.amin((-2, -1), keepdim=True), y.amax((-2, -1), keepdim=True)
    return ((torch.frac(x) < 0.35) & ((y - low) / (high - low + 1e-6) > 0.6 * height)).float()


def _bricks(x: torch.Tensor, y: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    xs = x + 0.5 * (torch.floor(y) % 2)
    return ((torch.frac(y) < 0.18) | (torch.frac(xs) < 0.1)).float()


def _zigzag(x: torch.Tensor, y: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    return (torch.frac(x + 0.8 * _triangle(y)) < 0.5).float()


def _cells(x: torch.Tensor, y: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Coarse random patches (mottled ground)."""
    return (_hash(torch.floor(x), torch.floor(y), params[:, 0]) < 0.5).float()


def _grid(x: torch.Tensor, y: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    return ((torch.frac(x) < 0.2) | (torch.frac(y) < 0.2)).float()


PATTERNS: dict[str, Pattern] = {
    "stripes": _stripes,
    "checks": _checks,
    "dots": _dots,
    "waves": _waves,
    "rings": _rings,
    "blades": _blades,
    "bricks": _bricks,
    "zigzag": _zigzag,
    "cells": _cells,
    "grid": _grid,
}


@dataclass(frozen=True)
class Habitat:
    """One habitat: texture ``kind`` (a key of :data:`PATTERNS`), palette ``colours`` (two RGB triples in
    ``[0, 255]``), base ``cycles`` per image side and base ``angle`` in degrees."""

    name: str
    kind: str
    colours: tuple[tuple[int, int, int], tuple[int, int, int]]
    cycles: float
    angle: float


_NAMED_HABITATS = (
    Habitat("meadow", "blades", ((196, 214, 150), (62, 128, 52)), 9.0, 0.0),
    Habitat("sea", "waves", ((40, 92, 160), (120, 180, 220)), 4.0, 10.0),
    Habitat("desert", "stripes", ((232, 200, 140), (190, 140, 80)), 5.0, 30.0),
    Habitat("marsh", "dots", ((90, 110, 70), (170, 160, 90)), 6.0, 15.0),
    Habitat("city", "bricks", ((150, 70, 60), (210, 200, 190)), 5.0, 0.0),
    Habitat("snow", "cells", ((245, 245, 250), (175, 195, 215)), 6.0, 20.0),
    Habitat("forest", "zigzag", ((30, 70, 40), (110, 80, 50)), 5.0, 90.0),
    Habitat("orchard", "checks", ((230, 150, 170), (120, 40, 80)), 4.0, 45.0),
    Habitat("lake", "rings", ((70, 150, 150), (20, 60, 90)), 3.0, 0.0),
    Habitat("farm", "grid", ((240, 220, 60), (150, 110, 30)), 4.0, 0.0),
)


def habitat(index: int) -> Habitat:
    """Habitat number ``index``: the ten named habitats first, then generated ones (texture kind cycling through
    :data:`PATTERNS`, hue spread by the golden ratio) so that any number of classes has its own habitat."""
    if index < 0:
        raise ValueError(f"habitat index must be >= 0, got {index}")
    if index < len(_NAMED_HABITATS):
        return _NAMED_HABITATS[index]
    kinds = tuple(PATTERNS)
    hue = (index * 0.618034) % 1.0
    a = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.45, 0.9))
    b = tuple(int(255 * c) for c in colorsys.hsv_to_rgb((hue + 0.07) % 1.0, 0.75, 0.45))
    return Habitat(f"habitat{index}", kinds[index % len(kinds)], (a, b), 3.0 + index % 5, 17.0 * index % 180)


def render_habitats(habitats: list[int], height: int, width: int,
                    generators: list[torch.Generator]) -> torch.Tensor:
    """Render ``habitats[k]`` with the randomness of ``generators[k]``: ``N x 3 x height x width`` uint8.

    Per image: random phase, orientation jitter ±12°, frequency jitter ±12 %, brightness jitter ±8 % and pixel noise
    (σ = 4 grey levels); the palette and texture kind are the habitat's own. Image ``k`` depends only on
    ``habitats[k]`` and ``generators[k]``, not on the rest of the batch.
    """
    n = len(habitats)
    u = torch.stack([torch.rand(8, generator=g) for g in generators])  # N x 8: phases, angle, freq, bright, params
    noise = torch.stack([torch.randn(1, height, width, generator=g) for g in generators])  # N x 1 x H x W
    specs = [habitat(h) for h in habitats]
    cycles = torch.tensor([sp.cycles for sp in specs]) * (0.88 + 0.24 * u[:, 3])  # N
    theta = torch.tensor([math.radians(sp.angle) for sp in specs]) + math.radians(24.0) * (u[:, 2] - 0.5)
    cos_t = torch.tensor([math.cos(t) for t in theta.tolist()])[:, None, None]  # python cos: exact per image
    sin_t = torch.tensor([math.sin(t) for t in theta.tolist()])[:, None, None]
    side = float(max(height, width))
    ys = torch.arange(height, dtype=torch.float32)[None, :, None] / side  # 1 x H x 1
    xs = torch.arange(width, dtype=torch.float32)[None, None, :] / side  # 1 x 1 x W
    c = cycles[:, None, None]
    x = c * (cos_t * xs + sin_t * ys) + 10 * u[:, 0, None, None]  # N x H x W, in cycles
    y = c * (cos_t * ys - sin_t * xs) + 10 * u[:, 1, None, None]
    t = torch.empty(n, 1, height, width)
    for kind in {sp.kind for sp in specs}:
        rows = torch.tensor([k for k, sp in enumerate(specs) if sp.kind == kind])
        t[rows, 0] = PATTERNS[kind](x[rows], y[rows], u[rows, 5:, None, None])
    ca = torch.tensor([sp.colours[0] for sp in specs], dtype=torch.float32)[:, :, None, None]  # N x 3 x 1 x 1
    cb = torch.tensor([sp.colours[1] for sp in specs], dtype=torch.float32)[:, :, None, None]
    image = ((1 - t) * ca + t * cb) * (0.92 + 0.16 * u[:, 4, None, None, None]) + 4.0 * noise  # N x 3 x H x W
    return image.round_().clamp_(0, 255).to(torch.uint8)


def render_habitat(index: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """One ``3 x height x width`` uint8 image of habitat ``index`` (see :func:`render_habitats`)."""
    return render_habitats([index], height, width, [generator])[0]


def grey_image(height: int, width: int, level: int = 128) -> torch.Tensor:
    """A flat ``3 x height x width`` uint8 image of grey ``level`` (the ``only_fg`` background)."""
    return torch.full((3, height, width), level, dtype=torch.uint8)

