"""The one way every figure draws an image: :func:`show_image` (with an optional mask contour) and :func:`draw_box`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle

MASK_COLOUR = "#ffd400"


def show_image(ax: Axes, image: torch.Tensor, mask: torch.Tensor | None = None, title: str | None = None,
               frame: bool = True, interpolation: str | None = None, fontsize: float = 8) -> None:
    """Draw a ``3 x H x W`` image (uint8, or float in [0, 1]) on ``ax`` without ticks, with the 0.5 contour of an
    ``H x W`` ``mask`` and a ``title``; ``frame=False`` hides the frame too."""
    image = image.detach().cpu()
    image = image.float() / 255 if image.dtype == torch.uint8 else image.float()
    ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation=interpolation)
    if mask is not None and float(mask.min()) < 0.5 < float(mask.max()):
        ax.contour(mask.float().cpu().numpy(), levels=[0.5], colors=MASK_COLOUR, linewidths=1.0)
    if frame:
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        ax.axis("off")
    if title:
        ax.set_title(title, fontsize=fontsize)


def draw_box(ax: Axes, box: Sequence[float] | torch.Tensor, colour: str = MASK_COLOUR, style: str = "-",
             linewidth: float = 1.2) -> None:
    """Outline an ``(x0, y0, x1, y1)`` box (exclusive ends, pixels) on an image drawn by :func:`show_image`."""
    x0, y0, x1, y1 = (float(v) for v in box)
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linestyle=style,
                           linewidth=linewidth))
