"""Grad-CAM overlay grid: one row of input images, then one row per model with its CAMs over the images."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from fgssl_lib.viz.images import draw_box, show_image


def cam_grid(
    images: torch.Tensor,
    cams: Mapping[str, torch.Tensor],
    boxes: Sequence[Sequence[float]] | torch.Tensor | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    panel_size: float = 1.8,
) -> Figure:
    """A ``(1 + models) x images`` grid: inputs on top, then each model's CAM overlaid (model x image).

    Args:
        images: ``N x 3 x H x W`` (uint8 or float [0, 1]).
        cams: model name -> ``N x H x W`` maps in [0, 1] at image size.
        boxes: optional ``N`` GT boxes ``(x0, y0, x1, y1)`` (exclusive) drawn on every panel.
    """
    n = len(images)
    for name, maps in cams.items():
        if maps.shape[0] != n or maps.shape[-2:] != images.shape[-2:]:
            raise ValueError(f"cams[{name!r}] has shape {tuple(maps.shape)}; expected {n} x H x W at image size")
    rows = 1 + len(cams)
    fig, axes = plt.subplots(rows, n, figsize=(panel_size * n, panel_size * rows), squeeze=False)
    for j in range(n):
        show_image(axes[0, j], images[j])
        for i, maps in enumerate(cams.values(), start=1):
            show_image(axes[i, j], images[j])
            axes[i, j].imshow(maps[j].detach().float().cpu().numpy(), cmap=cmap, alpha=alpha, vmin=0, vmax=1)
        if boxes is not None:
            for i in range(rows):
                draw_box(axes[i, j], boxes[j], "lime", linewidth=1.5)
    axes[0, 0].set_ylabel("image")
    for i, name in enumerate(cams, start=1):
        axes[i, 0].set_ylabel(name)
    fig.tight_layout()
    return fig
