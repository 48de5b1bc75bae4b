"""Pictures of raw samples: images with their box, the object mask, and one object under several test variants."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from fgssl_lib.viz.images import draw_box, show_image


def sample_gallery(samples: Sequence[Mapping[str, Any]], classes: Sequence[str] | None = None) -> Figure:
    """Top row: each sample's image with its box (yellow) and class name; bottom row: the background darkened
    outside the mask, so box and mask can be checked against the object."""
    fig, axes = plt.subplots(2, len(samples), figsize=(2.0 * len(samples), 4.6), squeeze=False)
    for sample, top, bottom in zip(samples, axes[0], axes[1]):
        image = sample["image"]
        name = classes[sample["label"]].replace(" ", "\n") if classes else str(sample["label"])
        show_image(top, image, title=name, frame=False, fontsize=9)
        draw_box(top, sample["box"], "yellow", linewidth=1.5)
        show_image(bottom, torch.where(sample["mask"].bool(), image, image // 4), frame=False)
    fig.tight_layout()
    return fig


def variant_grid(datasets: Mapping[str, Any], indices: Sequence[int] = (0, 1, 2, 3)) -> Figure:
    """One row per index, one column per named dataset (e.g. the synthetic test variants of the same objects)."""
    names = list(datasets)
    fig, axes = plt.subplots(len(indices), len(names), figsize=(1.7 * len(names), 1.8 * len(indices)), squeeze=False)
    for row, index in enumerate(indices):
        for ax, name in zip(axes[row], names):
            show_image(ax, datasets[name][index]["image"], title=name if row == 0 else None, frame=False, fontsize=9)
    fig.tight_layout()
    return fig
