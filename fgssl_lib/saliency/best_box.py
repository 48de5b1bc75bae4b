"""The best box of a saliency map: CVSA Eq. 2 in the contrast form of METHODS.md ("Best box").

Among the axis-aligned boxes ``B`` whose corners lie on a coarse grid, pick ``B* = argmax_B score(B)`` with one of two
parameter-free objectives (``objective=``):

- ``"contrast"`` (METHODS.md, the default): ``mean_{p in B} S(p) - mean_{p not in B} S(p)``;
- ``"covariance"``: ``Cov(S, 1_B) = mean_p (S(p) - mean S) 1_B(p) = a (1 - a) (mean_in - mean_out)`` with ``a`` the
  box's area fraction: the saliency mass above the image mean that the box collects.

The contrast form prefers small boxes on smooth or peaked maps (a box at the maximum keeps ``mean_in`` near 1 while
``mean_out`` barely moves); the covariance form weights the same contrast by ``a (1 - a)`` and grows the box until it
holds all above-average pixels (``python -m fgssl_lib.bench saliency`` measures both). Both return the box itself for
a box-indicator map.

Conventions (all exact, no hyper-parameter other than the grid):

- **Grid.** With ``grid = G`` steps per side, the candidate edges along a side of length ``L`` are the integers
  ``floor(k * L / G)`` for ``k = 0..G`` (so the image borders ``0`` and ``L`` are always candidates; duplicates are
  dropped when ``L < G``). A box is any ``(x0, y0, x1, y1)`` with ``x0 < x1`` and ``y0 < y1`` taken from those edges;
  ends are exclusive, the whole ``W x H`` image is ``(0, 0, W, H)``.
- **Exactness.** Box sums come from a summed-area table (integral image) in float64, evaluated for all
  ``(y0, y1, x0, x1)`` candidates at once by broadcasting.
- **The whole image** has no outside; its score is defined as ``0`` ("no inside/outside difference").
- **Ties** (scores within ``TIE_TOLERANCE`` of the best, on the min-max normalised map) go to the largest box, then to
  the first in ``(y0, y1, x0, x1)`` order. Hence a constant or all-zero map, where every box scores 0, returns the
  whole image, and a scenic map whose best scores are tied returns the largest box.
- Both scores are invariant to ``S -> a S + b`` with ``a > 0``, so the map is min-max normalised first; any
  real-valued map is accepted, non-finite values are an error.
"""

from __future__ import annotations

import numpy as np
import torch

from fgssl_lib.config import check_choice

OBJECTIVES = ("contrast", "covariance")
DEFAULT_OBJECTIVE = "contrast"

DEFAULT_GRID = 16
"""Grid steps per side: 17 candidate edges, 136 x 136 = 18,496 candidate boxes."""

TIE_TOLERANCE = 1e-9
"""Two contrast scores of the min-max normalised map closer than this are a tie (float64 round-off is ~1e-13)."""

_CHUNK_ELEMENTS = 1 << 24
"""Score elements evaluated at once by :func:`best_boxes` (bounds memory at ~130 MB of float64)."""


def grid_edges(length: int, grid: int = DEFAULT_GRID, device: torch.device | None = None) -> torch.Tensor:
    """Candidate box edges ``floor(k * length / grid)``, ``k = 0..grid``, without duplicates (int64, ascending)."""
    if grid < 1:
        raise ValueError(f"grid must be a positive number of steps per side, got {grid}")
    if length < 1:
        raise ValueError(f"a saliency map side must have at least one pixel, got {length}")
    edges = torch.div(torch.arange(grid + 1, device=device) * length, grid, rounding_mode="floor")
    return torch.unique_consecutive(edges)


def _as_maps(maps: np.ndarray | torch.Tensor, ndim: int) -> torch.Tensor:
    """Validate and convert ``maps`` (``ndim``-D array or tensor) to a float64 tensor."""
    what = "a 2-D H x W saliency map" if ndim == 2 else "an N x H x W stack of saliency maps"
    if isinstance(maps, np.ndarray):
        maps = torch.from_numpy(maps)
    if not isinstance(maps, torch.Tensor):
        raise TypeError(f"expected {what} as a numpy array or torch tensor, got {type(maps).__name__}")
    if maps.ndim != ndim or min(maps.shape[-2:], default=0) < 1:
        raise ValueError(f"expected {what}, got shape {tuple(maps.shape)}")
    maps = maps.detach().to(torch.float64)
    if not torch.isfinite(maps).all():
        raise ValueError("the saliency map contains NaN or infinite values; fix the source that produced it")
    return maps


def _box_areas(ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """``Ky x Ky x Kx x Kx`` pixel areas of the grid boxes ``[y0, y1, x0, x1]``; ``0`` where ``y0 >= y1`` or ``x0 >= x1``."""
    heights = (ys[None, :] - ys[:, None]).clamp(min=0)  # Ky x Ky
    widths = (xs[None, :] - xs[:, None]).clamp(min=0)  # Kx x Kx
    return heights[:, :, None, None] * widths[None, None, :, :]


def box_scores(
    maps: torch.Tensor, grid: int = DEFAULT_GRID, objective: str = DEFAULT_OBJECTIVE
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Score of every grid box (CVSA Eq. 2, see the module docstring for the objectives) of min-max normalised maps.

    ``maps``: ``N x H x W`` float64. Returns ``(scores, ys, xs)`` where ``ys`` (``Ky``) and ``xs`` (``Kx``) are the
    candidate edges and ``scores`` is ``N x Ky x Ky x Kx x Kx`` indexed ``[n, y0, y1, x0, x1]`` (edge indices);
    invalid boxes (``y0 >= y1`` or ``x0 >= x1``) are ``-inf`` and the whole image is ``0``.
    """
    n, h, w = maps.shape
    low = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - low
    s = (maps - low) / torch.where(span > 0, span, torch.ones_like(span))  # NxHxW in [0,1]; constant maps -> 0
    ys, xs = grid_edges(h, grid, maps.device), grid_edges(w, grid, maps.device)
    sat = torch.nn.functional.pad(s.cumsum(1).cumsum(2), (1, 0, 1, 0))  # Nx(H+1)x(W+1) summed-area table
    sat = sat[:, ys][:, :, xs]  # NxKyxKx, only the grid corners are needed
    rows = sat[:, None, :, :] - sat[:, :, None, :]  # N x Ky(y0) x Ky(y1) x Kx: sums over rows y0..y1-1
    inside = rows[..., None, :] - rows[..., :, None]  # N x Ky x Ky x Kx(x0) x Kx(x1): box sums
    area_in = _box_areas(ys, xs).to(torch.float64)  # Ky x Ky x Kx x Kx
    area_out = h * w - area_in
    total = sat[:, -1, -1].reshape(n, 1, 1, 1, 1)
    mean_in = inside / area_in.clamp(min=1)
    mean_out = (total - inside) / area_out.clamp(min=1)
    contrast = mean_in - mean_out
    if check_choice("best-box objective", objective, OBJECTIVES) == "covariance":
        contrast = contrast * (area_in * area_out / (h * w) ** 2)  # a (1 - a) (mean_in - mean_out)
    scores = torch.where(area_out > 0, contrast, torch.zeros_like(contrast))
    return scores.masked_fill(area_in <= 0, float("-inf")), ys, xs


def _select(scores: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """Best box per map from ``N x Ky x Ky x Kx x Kx`` scores: ties within ``TIE_TOLERANCE`` go to the largest area."""
    n = scores.shape[0]
    flat = scores.reshape(n, -1)
    best = flat.amax(dim=1, keepdim=True)
    area = _box_areas(ys, xs).reshape(1, -1)  # 1 x (Ky*Ky*Kx*Kx)
    tied_area = torch.where(flat >= best - TIE_TOLERANCE, area, torch.full_like(area, -1))
    index = tied_area.argmax(dim=1)  # first maximum in (y0, y1, x0, x1) order
    ky, kx = len(ys), len(xs)
    y0, rest = index // (ky * kx * kx), index % (ky * kx * kx)
    y1, rest = rest // (kx * kx), rest % (kx * kx)
    x0, x1 = rest // kx, rest % kx
    return torch.stack([xs[x0], ys[y0], xs[x1], ys[y1]], dim=1)


def best_boxes(
    maps: np.ndarray | torch.Tensor, grid: int = DEFAULT_GRID, objective: str = DEFAULT_OBJECTIVE
) -> torch.Tensor:
    """Best box of each of ``N x H x W`` maps (see the module docstring): ``N x 4`` int64 ``(x0, y0, x1, y1)``.

    Vectorised over the batch and all candidate boxes, in chunks of the batch to bound memory; runs on the maps'
    device.
    """
    maps = _as_maps(maps, ndim=3)
    ky, kx = len(grid_edges(maps.shape[1], grid)), len(grid_edges(maps.shape[2], grid))
    chunk = max(1, _CHUNK_ELEMENTS // (ky * ky * kx * kx))
    boxes = [_select(*box_scores(part, grid, objective)) for part in maps.split(chunk)]
    return torch.cat(boxes).cpu() if boxes else torch.zeros(0, 4, dtype=torch.int64)


def best_box(
    saliency_map: np.ndarray | torch.Tensor, grid: int = DEFAULT_GRID, objective: str = DEFAULT_OBJECTIVE
) -> tuple[int, int, int, int]:
    """Best box ``(x0, y0, x1, y1)`` (ints, exclusive ends) of one ``H x W`` map (numpy array or tensor).

    ``argmax_B mean_in(S) - mean_out(S)`` over grid boxes (CVSA Eq. 2, contrast form; ``objective="covariance"``
    weights it by ``a (1 - a)``); a constant or empty map gives ``(0, 0, W, H)``. ``grid`` is the number of steps per
    side (see the module docstring).
    """
    x0, y0, x1, y1 = best_boxes(_as_maps(saliency_map, ndim=2)[None], grid, objective)[0].tolist()
    return x0, y0, x1, y1
