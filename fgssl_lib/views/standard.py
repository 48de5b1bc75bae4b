"""Standard views (the MoCo v2 / BYOL baselines): RandomResizedCrop, then flip and photometric ops, drawn twice."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from fgssl_lib.views.base import TwoViewTransform


class StandardViews(TwoViewTransform):
    """Two independent RandomResizedCrop views; the mask is cropped and resized with the image (nearest).

    Args:
        size: side ``S`` of the views.
        scale: range of the crop's area as a fraction of the image (MoCo v2: ``(0.2, 1.0)``; BYOL: ``(0.08, 1.0)``).
        ratio: range of the crop's aspect ratio.
        **kwargs: ``photometric``, ``flip_p``, ``seed`` of :class:`~fgssl_lib.views.base.TwoViewTransform`.
    """

    def __init__(self, size: int, scale: tuple[float, float] = (0.2, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), **kwargs: Any):
        super().__init__(size, **kwargs)
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1 (fractions of the image area), got {scale}")
        self.crop = v2.RandomResizedCrop(size, scale=scale, ratio=ratio, antialias=True)

    def layout(self, sample: Mapping[str, Any], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """RandomResizedCrop of ``(image 3xHxW, mask HxW)`` to ``(3xSxS uint8, SxS)``."""
        return self.crop(tv_tensors.Image(sample["image"]), tv_tensors.Mask(sample["mask"]))
