"""The sample contract shared by every dataset, view transform and evaluator.

A sample is ``dict(image, label, box, mask, index)``:

- ``image``: ``3 x H x W`` ``torch.uint8`` tensor (RGB);
- ``label``: ``int`` class index in ``[0, num_classes)``;
- ``box``: ``torch.float32`` tensor ``(x0, y0, x1, y1)`` in pixels, ``x1``/``y1`` exclusive; the whole image is
  ``(0, 0, W, H)``;
- ``mask``: ``H x W`` ``torch.uint8`` tensor in ``{0, 1}`` (segmentation where the dataset has one, else the box);
- ``index``: ``int`` position of the sample in its dataset.
"""

from __future__ import annotations

from typing import TypedDict

import torch


class Sample(TypedDict):
    image: torch.Tensor
    label: int
    box: torch.Tensor
    mask: torch.Tensor
    index: int


def clip_box(box: torch.Tensor | tuple[float, float, float, float], width: int, height: int) -> torch.Tensor:
    """Clip an ``(x0, y0, x1, y1)`` box to a ``width x height`` image (exclusive convention)."""
    b = torch.as_tensor(box, dtype=torch.float32).clone()
    b[0::2] = b[0::2].clamp(0, width)
    b[1::2] = b[1::2].clamp(0, height)
    b[2] = torch.maximum(b[2], b[0])
    b[3] = torch.maximum(b[3], b[1])
    return b


def pixel_box(box: torch.Tensor | tuple[float, float, float, float], width: int, height: int) -> tuple[int, ...]:
    """``box`` clipped to a ``width x height`` image and rounded to whole pixels: the pixels :func:`box_to_mask`
    sets (none when ``x1 <= x0`` or ``y1 <= y0``)."""
    return tuple(int(round(float(v))) for v in clip_box(box, width, height))


def box_to_mask(box: torch.Tensor | tuple[float, float, float, float], height: int, width: int) -> torch.Tensor:
    """``H x W`` uint8 mask that is 1 on the pixels of ``box`` (rounded to whole pixels, exclusive end)."""
    x0, y0, x1, y1 = pixel_box(box, width, height)
    mask = torch.zeros(height, width, dtype=torch.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def mask_to_box(mask: torch.Tensor) -> torch.Tensor:
    """Tight ``(x0, y0, x1, y1)`` box around the non-zero pixels of an ``H x W`` mask; the whole image if empty."""
    h, w = mask.shape[-2:]
    ys, xs = torch.nonzero(mask.reshape(h, w) > 0, as_tuple=True)
    if ys.numel() == 0:
        return torch.tensor([0.0, 0.0, float(w), float(h)])
    return torch.tensor([xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1], dtype=torch.float32)
