"""Pictures of raw samples: images with their box, the object mask, and one object under several test variants."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def _show(ax: Axes, image: torch.Tensor, title: str = "") -> None:
    """A ``3 x H x W`` uint8 image without axes."""
    ax.imshow(image.permute(1, 2, 0).numpy())
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def sample_gallery(samples: Sequence[Mapping[str, Any]], classes: Sequence[str] | None = None) -> Figure:
    """Top row: each sample's image with its box (yellow) and class name; bottom row: the background darkened
    outside the mask, so box and mask can be checked against the object."""
    fig, axes = plt.subplots(2, len(samples), figsize=(2.0 * len(samples), 4.6), squeeze=False)
    for sample, top, bottom in zip(samples, axes[0], axes[1]):
        image, (x0, y0, x1, y1) = sample["image"], sample["box"].tolist()
        name = classes[sample["label"]].replace(" ", "\n") if classes else str(sample["label"])
        _show(top, image, name)
        top.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor="yellow", lw=1.5))
        _show(bottom, torch.where(sample["mask"].bool(), image, image // 4))
    fig.tight_layout()
    return fig


def variant_grid(datasets: Mapping[str, Any], indices: Sequence[int] = (0, 1, 2, 3)) -> Figure:
    """One row per index, one column per named dataset (e.g. the synthetic test variants of the same objects)."""
    names = list(datasets)
    fig, axes = plt.subplots(len(indices), len(names), figsize=(1.7 * len(names), 1.8 * len(indices)), squeeze=False)
    for row, index in enumerate(indices):
        for ax, name in zip(axes[row], names):
            _show(ax, datasets[name][index]["image"], name if row == 0 else "")
    fig.tight_layout()
    return fig
