"""Habitat textures: the backgrounds of the synthetic background-bias benchmark.

A *habitat* is a texture kind (stripes, checks, dots, ...) plus a fixed two-colour palette and a base frequency and
orientation, so that the habitat is an easy cue (the benchmark's spurious background feature, as in Xiao et al. 2020).
Per image only the phase, a small orientation / frequency / brightness jitter and a faint pixel noise vary: per-image
random colours would become the easiest instance cue and hide the bias (issue 8, calibration).

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
"""``(x, y, params) -> t``: ``x``, ``y`` are ``H x W`` coordinates in cycles (frequency and rotation applied),
``params`` a vector of uniform ``[0, 1)`` numbers for the pattern's own randomness; ``t`` is ``H x W`` in ``[0, 1]``,
the weight of the palette's second colour."""


def _stripes(x: torch.Tensor, y: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    return (torch.frac(x) < 0.45).float()


def _checks(x: torch.Tensor, y: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    return ((torch.floor(x) + torch.floor(y)) % 2).float()


def _dots(x: torch.Tensor, y: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    dx, dy = torch.frac(x) - 0.5, torch.frac(y) - 0.5
    return (dx * dx + dy * dy < 0.28**2).float()


def _waves(x: torch.Tensor, y: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    return 0.5 + 0.5 * torch.sin(2 * math.pi * (x + 0.35 * torch.sin(2 * math.pi * 0.5 * y)))


def _rings(x: torch.Tensor, y: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    r = torch.sqrt((x - x.mean() + 2 * params[0] - 1) ** 2 + (y - y.mean() + 2 * params[1] - 1) ** 2)
    return (torch.frac(r) < 0.5).float()


def _blades(x: torch.Tensor, y: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Grass: one thin blade per column cell, each with its own height (from a hash of the cell index)."""
    cell = torch.floor(x)
    height = torch.frac(torch.sin(cell * 12.9898 + params[0] * 78.233) * 43758.5453)  # per-blade height in [0, 1)
    y_rel = (y - y.min()) / (y.max() - y.min() + 1e-6)
    return ((torch.frac(x) < 0.35) & (y_rel > 0.6 * height)).float()


def _bricks(x: torch.Tensor, y: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    row = torch.floor(y)
    xs = x + 0.5 * (row % 2)
    return ((torch.frac(y) < 0.18) | (torch.frac(xs) < 0.1)).float()


def _zigzag(x: torch.Tensor, y: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    tri = 2 * torch.abs(torch.frac(y) - 0.5)  # triangle wave in [0, 1]
    return (torch.frac(x + 0.8 * tri) < 0.5).float()


def _cells(x: torch.Tensor, y: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Coarse random patches: a hash of the cell index, thresholded (mottled ground)."""
    h = torch.frac(torch.sin(torch.floor(x) * 12.9898 + torch.floor(y) * 78.233 + params[0] * 37.719) * 43758.5453)
    return (h < 0.5).float()


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


def render_habitat(index: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """Render habitat ``index`` as a ``3 x height x width`` uint8 image.

    Per image: random phase, orientation jitter ±12°, frequency jitter ±12 %, brightness jitter ±8 % and pixel noise
    (σ = 4 grey levels); the palette and texture kind are the habitat's own.
    """
    spec = habitat(index)
    u = torch.rand(8, generator=generator)  # phase x, phase y, angle, freq, brightness, 3 pattern params
    side = float(max(height, width))
    cycles = spec.cycles * (0.88 + 0.24 * u[3])
    theta = math.radians(spec.angle) + math.radians(24.0) * (float(u[2]) - 0.5)
    ys = torch.arange(height, dtype=torch.float32)[:, None] / side
    xs = torch.arange(width, dtype=torch.float32)[None, :] / side
    x = cycles * (math.cos(theta) * xs + math.sin(theta) * ys) + 10 * u[0]  # H x W, in cycles
    y = cycles * (-math.sin(theta) * xs + math.cos(theta) * ys) + 10 * u[1]
    t = PATTERNS[spec.kind](x, y, u[5:])[None]  # 1 x H x W in [0, 1]
    ca, cb = (torch.tensor(c, dtype=torch.float32)[:, None, None] for c in spec.colours)  # 3 x 1 x 1
    image = (1 - t) * ca + t * cb  # 3 x H x W
    image = image * (0.92 + 0.16 * u[4]) + 4.0 * torch.randn(1, height, width, generator=generator)
    return image.round_().clamp_(0, 255).to(torch.uint8)


def grey_image(height: int, width: int, level: int = 128) -> torch.Tensor:
    """A flat ``3 x height x width`` uint8 image of grey ``level`` (the ``only_fg`` background)."""
    return torch.full((3, height, width), level, dtype=torch.uint8)

