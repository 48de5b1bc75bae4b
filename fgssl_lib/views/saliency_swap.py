"""SaliencySwap views (CVSA §2.1; our formulation on the CVSA theory page).

For the foreground image ``x_f`` with box ``B_f``, each view crops a random patch of ``B_f`` whose area is a fraction
``s ~ U(s_min, s_max)`` of ``B_f`` (same aspect ratio as ``B_f``, random position inside it), then

- mode ``same``: draws another image ``x_b`` of the same dataset, resizes the patch to the shape of its box ``B_b`` and
  writes it over ``B_b``; the view's mask is ``B_b``;
- mode ``other``: draws a background from a pool (textures, COCO folder, ...), resizes the patch so that its area is a
  fraction ``r ~ U(r_min, r_max)`` of the background (keeping its aspect ratio while it fits) and pastes it at a random
  location; the view's mask is the pasted box.

SaliencySwap replaces RandomResizedCrop; flip and the MoCo v2 photometric ops follow (base class). Each view gets its
own background. Everything is composed directly at the view size ``S``: the background is resized once and the patch
is cropped-and-resized once, straight into its place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torchvision.transforms.v2 import functional as F

from fgssl_lib.config import check_choice
from fgssl_lib.views.base import TwoViewTransform, object_box, resolve_backgrounds

MODES = ("same", "other")
Box = tuple[int, int, int, int]


def _uniform(bounds: tuple[float, float]) -> float:
    return bounds[0] + (bounds[1] - bounds[0]) * float(torch.rand(()))


def _randint(high: int) -> int:
    """Uniform integer in ``[0, high]``."""
    return int(torch.randint(high + 1, ()))


def check_fractions(name: str, bounds: tuple[float, float]) -> tuple[float, float]:
    """``bounds`` as a ``(min, max)`` pair of area fractions with ``0 < min <= max <= 1``, else a ``ValueError``."""
    lo, hi = (float(v) for v in bounds)
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"{name} must satisfy 0 < min <= max <= 1 (area fractions), got {bounds}")
    return lo, hi


def sample_patch(box: Box, crop_scale: tuple[float, float]) -> Box:
    """A random patch of ``box`` (integer ``x0, y0, x1, y1``) with area fraction ``s ~ U(crop_scale)`` of the box.

    The patch keeps the box's aspect ratio (sides scaled by ``sqrt(s)``, at least one pixel) and lies inside the box.
    """
    x0, y0, x1, y1 = box
    side = math.sqrt(_uniform(crop_scale))
    width = min(x1 - x0, max(1, round((x1 - x0) * side)))
    height = min(y1 - y0, max(1, round((y1 - y0) * side)))
    left, top = x0 + _randint(x1 - x0 - width), y0 + _randint(y1 - y0 - height)
    return left, top, left + width, top + height


def paste_box(patch_height: int, patch_width: int, size: int, paste_ratio: tuple[float, float]) -> Box:
    """Where to paste a ``patch_height x patch_width`` patch in a ``size x size`` background (mode ``other``).

    The pasted box has area ``r * size**2`` with ``r ~ U(paste_ratio)`` and the patch's aspect ratio; when that is wider
    or taller than the background, the long side is clipped to ``size`` and the other side grows to keep the area.
    """
    area = _uniform(paste_ratio) * size * size
    width = math.sqrt(area * patch_width / patch_height)
    width = min(max(width, area / size), size)  # both sides within the background
    width = max(1, round(width))
    height = min(size, max(1, round(area / width)))
    left, top = _randint(size - width), _randint(size - height)
    return left, top, left + width, top + height


class SaliencySwap(TwoViewTransform):
    """SaliencySwap two-view generator (CVSA §2.1).

    Args:
        size: side ``S`` of the views.
        mode: ``same`` (background = another image of ``dataset`` with its box replaced) or ``other`` (a background
            from ``backgrounds`` with the patch pasted at a random place).
        crop_scale: ``(s_min, s_max)``, the patch's area as a fraction of ``B_f`` (the paper's value is lost in our copy;
            ``(0.5, 1.0)`` by default).
        paste_ratio: ``(r_min, r_max)``, the pasted patch's area as a fraction of the background (mode ``other``).
        dataset: mode ``same``: the raw dataset (samples, no view transform) or a callable ``index -> sample``.
        dataset_size: number of images when ``dataset`` is a callable (else ``len(dataset)``).
        backgrounds: mode ``other``: a ``fgssl_lib.data.backgrounds.BackgroundPool`` or a name (``texture``, ``grey``).
        **kwargs: ``photometric``, ``flip_p``, ``seed`` of :class:`~fgssl_lib.views.base.TwoViewTransform`.
    """

    def __init__(self, size: int, mode: str = "same", crop_scale: tuple[float, float] = (0.5, 1.0),
                 paste_ratio: tuple[float, float] = (0.3, 0.7),
                 dataset: Any = None, dataset_size: int | None = None,
                 backgrounds: Any = "texture", **kwargs: Any):
        super().__init__(size, **kwargs)
        self.mode = check_choice("SaliencySwap mode", mode, MODES)
        self.crop_scale = check_fractions("crop_scale", crop_scale)
        self.paste_ratio = check_fractions("paste_ratio", paste_ratio)
        if mode == "same":
            self.get_sample, self.dataset_size = self._background_source(dataset, dataset_size)
        else:
            self.backgrounds = resolve_backgrounds(backgrounds)

    @staticmethod
    def _background_source(dataset: Any, dataset_size: int | None) -> tuple[Callable[[int], Mapping], int]:
        if dataset is None:
            raise ValueError("SaliencySwap mode='same' pastes onto other images of the training set: pass "
                             "dataset=<the raw dataset of samples> (or a callable index -> sample with dataset_size=N), "
                             "or use mode='other' with a background pool")
        get = dataset if callable(dataset) and not hasattr(dataset, "__getitem__") else dataset.__getitem__
        size = dataset_size if dataset_size is not None else len(dataset) if hasattr(dataset, "__len__") else None
        if not size or size < 1:
            raise ValueError("SaliencySwap mode='same' needs the number of images: pass dataset_size=N with a callable "
                             "dataset")
        return get, int(size)

    def _same_background(self, index: int) -> tuple[torch.Tensor, Box]:
        """Another image of the dataset resized to ``3xSxS`` and its box ``B_b`` in that frame."""
        other = _randint(self.dataset_size - 2) if self.dataset_size > 1 else index
        other += int(self.dataset_size > 1 and other >= index)  # skip the foreground image itself
        sample = self.get_sample(other)
        height, width = sample["image"].shape[-2:]
        x0, y0, x1, y1 = object_box(sample["box"], height, width)
        image = F.resize(sample["image"], [self.size, self.size], antialias=True)  # 3xSxS
        sx, sy = self.size / width, self.size / height  # the resize's scale, applied to B_b
        x0, y0 = min(round(x0 * sx), self.size - 1), min(round(y0 * sy), self.size - 1)
        return image, (x0, y0, max(round(x1 * sx), x0 + 1), max(round(y1 * sy), y0 + 1))

    def layout(self, sample: Mapping[str, Any], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One SaliencySwap view: ``(3xSxS uint8 background with the foreground patch, SxS mask of the patch box)``."""
        image = sample["image"]
        height, width = image.shape[-2:]
        fx0, fy0, fx1, fy1 = sample_patch(object_box(sample["box"], height, width), self.crop_scale)
        if self.mode == "same":
            background, (x0, y0, x1, y1) = self._same_background(int(sample["index"]))
        else:
            background = self.backgrounds.draw(self.size, self.size, generator)
            x0, y0, x1, y1 = paste_box(fy1 - fy0, fx1 - fx0, self.size, self.paste_ratio)
        patch = F.resized_crop(image, fy0, fx0, fy1 - fy0, fx1 - fx0, [y1 - y0, x1 - x0], antialias=True)
        view = background.to(device=image.device, dtype=image.dtype, copy=True)  # 3xSxS
        view[:, y0:y1, x0:x1] = patch
        mask = torch.zeros(self.size, self.size, device=image.device)  # SxS
        mask[y0:y1, x0:x1] = 1
        return view, mask
