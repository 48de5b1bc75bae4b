"""Nearest-neighbour panels (DiLo Fig. 2): each query followed by its top-k retrievals, correct ones framed green,
wrong ones red."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from fgssl_lib.eval.retrieval import top_k_neighbours
from fgssl_lib.viz.images import show_image

CORRECT, WRONG = "tab:green", "tab:red"


def neighbour_panel(
    query_images: torch.Tensor,
    query_feats: torch.Tensor,
    query_labels: torch.Tensor,
    gallery_images: torch.Tensor,
    gallery_feats: torch.Tensor,
    gallery_labels: torch.Tensor,
    k: int = 5,
    same_set: bool = False,
    panel_size: float = 1.6,
) -> Figure:
    """A ``Q x (1 + k)`` grid of queries and their ``k`` cosine nearest neighbours in the gallery.

    ``same_set=True`` when the queries are the gallery itself (the query is then not its own neighbour).
    """
    _, indices = top_k_neighbours(query_feats, gallery_feats, k, exclude_self=same_set)  # Qxk
    q = len(query_images)
    fig, axes = plt.subplots(q, 1 + k, figsize=(panel_size * (1 + k), panel_size * q), squeeze=False)
    for i in range(q):
        show_image(axes[i, 0], query_images[i])
        axes[i, 0].set_title("query" if i == 0 else "", fontsize=9)
        for j, g in enumerate(indices[i].tolist(), start=1):
            ax = axes[i, j]
            show_image(ax, gallery_images[g])
            colour = CORRECT if int(gallery_labels[g]) == int(query_labels[i]) else WRONG
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(3)
            if i == 0:
                ax.set_title(f"top-{j}", fontsize=9)
    fig.tight_layout()
    return fig
