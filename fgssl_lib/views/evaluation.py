"""The deterministic evaluation view: a sample resized (optionally centre-cropped) to one ``S x S`` image."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from fgssl_lib.views.base import as_float_image, check_sample


class EvalView:
    """``sample -> dict(image float32 3xSxS in [0,1], mask float32 SxS, box float32 (4,), label, index)``.

    Without ``center_crop`` the whole image is resized to ``S x S`` (the frame the training views use, so the object
    is never cut off; MaxBoxAcc needs that). With ``center_crop`` the short side is resized to ``S / crop_fraction``
    and the centre ``S x S`` is kept (the usual linear-probe protocol, 0.875 = 224/256). Image, mask (nearest) and box
    move together through ``torchvision.transforms.v2``; the box is clipped to the view.
    """

    def __init__(self, size: int, center_crop: bool = False, crop_fraction: float = 0.875):
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int (the side of the square view), got {size!r}")
        if not 0 < crop_fraction <= 1:
            raise ValueError(f"crop_fraction must lie in (0, 1], got {crop_fraction}")
        self.size = size
        if center_crop:
            ops = [v2.Resize(round(size / crop_fraction), antialias=True), v2.CenterCrop(size)]
        else:
            ops = [v2.Resize((size, size), antialias=True)]
        self.transform = v2.Compose([*ops, v2.ClampBoundingBoxes()])

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        check_sample(sample)
        height, width = sample["image"].shape[-2:]
        box = tv_tensors.BoundingBoxes(torch.as_tensor(sample["box"], dtype=torch.float32).reshape(1, 4),
                                       format="XYXY", canvas_size=(height, width))
        image, mask, box = self.transform(tv_tensors.Image(sample["image"]), tv_tensors.Mask(sample["mask"]), box)
        return {
            "image": as_float_image(image.as_subclass(torch.Tensor)),
            "mask": mask.as_subclass(torch.Tensor).float(),
            "box": box.as_subclass(torch.Tensor)[0],
            "label": sample["label"],
            "index": sample["index"],
        }


def eval_view(size: int, center_crop: bool = False, crop_fraction: float = 0.875) -> EvalView:
    """The evaluation transform at view size ``size`` (see :class:`EvalView`)."""
    return EvalView(size, center_crop=center_crop, crop_fraction=crop_fraction)
