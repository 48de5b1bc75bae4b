"""A gallery of views for the notebooks: per sample the source, its saliency map and box, and draws of each generator.

The views are drawn as the network sees them (after photometric ops) with their mask outlined, so one can check at a
glance that the mask follows the object through crop, paste and flip. Figures are built with
``matplotlib.figure.Figure`` (no pyplot state), so returning one from a notebook cell shows it exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from matplotlib.figure import Figure

from fgssl_lib.saliency import best_box, build_saliency
from fgssl_lib.views import build_views
from fgssl_lib.viz.images import MASK_COLOUR, draw_box, show_image


def default_generators(dataset: Any, size: int, seed: int | None = 0) -> dict[str, Callable]:
    """The four generators the notebooks compare; copy-paste with ``p=1`` so that every draw shows a paste."""
    return {
        "RRC": build_views("rrc", size, seed=seed),
        "SaliencySwap same": build_views("saliency_swap", size, mode="same", dataset=dataset, seed=seed),
        "SaliencySwap other": build_views("saliency_swap", size, mode="other", seed=seed),
        "copy-paste (p=1)": build_views("copy_paste", size, p=1.0, seed=seed),
    }


def draws_of(transform: Callable, sample: Mapping[str, Any], draws: int) -> list[dict[str, Any]]:
    """``draws`` outputs of a two-view transform on one sample; a seeded transform is stepped through epochs
    ``0..draws-1`` (and its epoch restored) so that the draws differ."""
    epoch = getattr(transform, "epoch", None)
    outputs = []
    for d in range(draws):
        if epoch is not None:
            transform.set_epoch(d)
        outputs.append(transform(sample))
    if epoch is not None:
        transform.set_epoch(epoch)
    return outputs


def _saliency_map(saliency: Any, sample: Mapping[str, Any]) -> tuple[torch.Tensor, tuple[int, int, int, int] | None]:
    """The map to show and its best box: the sample's mask (no box search) or a ``fgssl_lib.saliency`` source's map."""
    if saliency is None:
        return sample["mask"].float(), None
    source = build_saliency(saliency) if isinstance(saliency, str) else saliency
    saliency_map = torch.as_tensor(source(sample["image"], sample)).float()
    return saliency_map, best_box(saliency_map)


def show_gallery(dataset: Any, samples: Sequence[int] = (0, 1, 2),
                 generators: Mapping[str, Callable] | None = None, draws: int = 3, size: int | None = None,
                 saliency: Any = None, seed: int | None = 0) -> Figure:
    """Gallery figure: one row per sample index in ``samples``.

    Columns: the source with its box (solid) and, when ``saliency`` is given, the best box of the map (dashed); the
    saliency map (``saliency``: a ``fgssl_lib.saliency`` source or its name; ``None`` shows the ground-truth mask);
    then ``draws`` views of each generator with the view's mask outlined. ``generators`` maps a label to a two-view
    transform (default: :func:`default_generators` at ``size``, which defaults to the first image's short side).
    """
    if draws < 1 or not samples:
        raise ValueError(f"show_gallery needs at least one sample and one draw, got samples={samples}, draws={draws}")
    first = dataset[samples[0]]
    size = size or min(int(v) for v in first["image"].shape[-2:])
    generators = generators if generators is not None else default_generators(dataset, size, seed)
    columns = 2 + draws * len(generators)
    figure = Figure(figsize=(1.25 * columns, 1.4 * len(samples)), layout="constrained")
    axes = figure.subplots(len(samples), columns, squeeze=False)
    for row, index in enumerate(samples):
        sample = dataset[index]
        saliency_map, found = _saliency_map(saliency, sample)
        show_image(axes[row, 0], sample["image"], title="source + box" if row == 0 else None, interpolation="nearest")
        draw_box(axes[row, 0], sample["box"], MASK_COLOUR)
        axes[row, 1].imshow(saliency_map.cpu().numpy(), cmap="magma", vmin=0, vmax=1)
        axes[row, 1].set_xticks([])
        axes[row, 1].set_yticks([])
        if row == 0:
            axes[row, 1].set_title("saliency", fontsize=8)
        if found is not None:
            draw_box(axes[row, 0], found, "cyan", "--")
            draw_box(axes[row, 1], found, "cyan", "--")
        for g, (label, transform) in enumerate(generators.items()):
            for d, out in enumerate(draws_of(transform, sample, draws)):
                show_image(axes[row, 2 + g * draws + d], out["view1"], out["mask1"],
                           title=label if row == 0 and d == 0 else None, interpolation="nearest")
    return figure
