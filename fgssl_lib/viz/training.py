"""Training figures: per-epoch curves of several runs (losses, the collapse monitor's ``embedding_std``) and a
method's saliency snapshots during training."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import pandas as pd
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

from fgssl_lib.train.snapshots import Snapshots
from fgssl_lib.viz.cam_grid import cam_grid


CURVES = ("loss", "loss_ctr", "loss_align", "loss_kl", "embedding_std")


def training_curves(histories: Mapping[str, pd.DataFrame], columns: Sequence[str] | None = None,
                    panel_size: float = 3.2) -> Figure:
    """One panel per column of ``columns`` (e.g. ``loss``, ``loss_align``, ``embedding_std``), one line per run:
    the per-epoch values of ``histories`` (run name -> ``Run.history``) against the epoch counted from 1.

    ``columns=None``: those of :data:`CURVES` that some run has. A run without a column (BYOL has no ``loss_align``)
    is left out of that panel; a column no run has is an error.
    """
    if not histories:
        raise ValueError("histories is empty: pass {run name: run.history}")
    if columns is None:
        columns = [c for c in CURVES if any(c in h for h in histories.values())]
    for column in columns:
        if not any(column in h for h in histories.values()):
            known = sorted({c for h in histories.values() for c in h.columns})
            raise ValueError(f"no run has column {column!r}; the histories have {known}")
    fig, axes = plt.subplots(1, len(columns), figsize=(panel_size * len(columns), 0.8 * panel_size), squeeze=False)
    for ax, column in zip(axes[0], columns):
        for name, history in histories.items():
            if column in history:
                ax.plot(history["epoch"] + 1, history[column], marker="o", ms=3, label=name)
        ax.set_title(column)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def snapshot_grid(images: torch.Tensor, snapshots: Snapshots,
                  boxes: Sequence[Sequence[float]] | torch.Tensor | None = None, panel_size: float = 1.6,
                  max_rows: int = 12) -> Figure:
    """The images on top, then one row per snapshot (``init``, ``epoch 1``, ...) with the map (upsampled to the
    image, bilinear) over each image and the GT boxes; ``images`` are the ``N x 3 x S x S`` batch the snapshots were
    taken on. A series longer than ``max_rows`` shows ``max_rows`` evenly spaced snapshots, the first and last among
    them."""
    if not snapshots.epochs:
        raise ValueError("snapshots is empty: train with SaliencySnapshots or use training_snapshots")
    count = len(snapshots.epochs)
    rows = sorted({round(k) for k in torch.linspace(0, count - 1, min(max_rows, count)).tolist()})
    labels = snapshots.labels()
    cams = {labels[k]: F.interpolate(snapshots.maps[k][:, None].float(), size=images.shape[-2:], mode="bilinear")[:, 0]
            for k in rows}
    return cam_grid(images, cams, boxes=boxes, panel_size=panel_size)
