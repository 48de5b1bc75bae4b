"""An interactive explorer of the view generators' parameters (ipywidgets), with a static fallback.

In Jupyter, JupyterLab, VS Code or Colab, :func:`explore` shows sliders for the crop scale, the paste ratio, ``p``,
the blending and the SaliencySwap mode, and redraws a few views on every change. Where widgets cannot work (no
``ipywidgets``, a plain Python process, or a notebook executed headless by papermill or the book build) it returns a
static figure of the same views over a small grid of settings instead.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from typing import Any

from matplotlib.figure import Figure

from fgssl_lib.views import build_views
from fgssl_lib.views.copy_paste import BLENDINGS
from fgssl_lib.views.saliency_swap import MODES
from fgssl_lib.viz.gallery import draws_of
from fgssl_lib.viz.images import show_image

GENERATORS = ("rrc", "saliency_swap", "copy_paste")
STATIC_GRID: tuple[dict[str, Any], ...] = (
    dict(generator="rrc", crop_scale=(0.2, 1.0)),
    dict(generator="saliency_swap", mode="same", crop_scale=(0.2, 0.4)),
    dict(generator="saliency_swap", mode="same", crop_scale=(0.8, 1.0)),
    dict(generator="saliency_swap", mode="other", paste_ratio=(0.1, 0.2)),
    dict(generator="saliency_swap", mode="other", paste_ratio=(0.6, 0.8)),
    dict(generator="copy_paste", p=1.0, blending="none"),
    dict(generator="copy_paste", p=1.0, blending="gaussian"),
)
"""The settings the static fallback shows, one row each."""


def views_for(dataset: Any, size: int, generator: str = "saliency_swap", mode: str = "same",
              crop_scale: tuple[float, float] = (0.5, 1.0), paste_ratio: tuple[float, float] = (0.3, 0.7),
              p: float = 1.0, blending: str = "mix", seed: int | None = 0) -> Callable:
    """A two-view transform from the explorer's settings: ``crop_scale`` is SaliencySwap's ``s`` range and the
    RandomResizedCrop scale of ``rrc`` and ``copy_paste``; ``paste_ratio`` and ``mode`` apply to SaliencySwap, ``p``
    and ``blending`` to copy-paste."""
    if generator == "saliency_swap":
        return build_views(generator, size, mode=mode, crop_scale=crop_scale, paste_ratio=paste_ratio,
                           dataset=dataset, seed=seed)
    if generator == "copy_paste":
        return build_views(generator, size, scale=crop_scale, p=p, blending=blending, seed=seed)
    return build_views(generator, size, scale=crop_scale, seed=seed)


def _label(settings: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in settings.items())


def settings_figure(dataset: Any, index: int, size: int, draws: int, grid: tuple[dict[str, Any], ...]) -> Figure:
    """One row per setting in ``grid``: the source, then ``draws`` views (mask outlined)."""
    sample = dataset[index]
    figure = Figure(figsize=(1.5 * (draws + 1), 1.6 * len(grid)), layout="constrained")
    axes = figure.subplots(len(grid), draws + 1, squeeze=False)
    for row, settings in enumerate(grid):
        show_image(axes[row, 0], sample["image"], sample["mask"], title="source" if row == 0 else None,
                   interpolation="nearest")
        axes[row, 1].set_title(_label(settings), fontsize=7, loc="left")
        for d, out in enumerate(draws_of(views_for(dataset, size, **settings), sample, draws)):
            show_image(axes[row, d + 1], out["view1"], out["mask1"], interpolation="nearest")
    return figure


def interactive_frontend() -> bool:
    """True when ipywidgets can render: an IPython kernel attached to Jupyter (server), VS Code or Colab.

    Headless execution (papermill, the book build, nbclient) starts kernels without a Jupyter server session, so
    ``JPY_SESSION_NAME`` is unset there.
    """
    if importlib.util.find_spec("ipywidgets") is None:
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return False
    return "google.colab" in sys.modules or "JPY_SESSION_NAME" in os.environ or "VSCODE_PID" in os.environ


def explore(dataset: Any, index: int = 0, size: int | None = None, draws: int = 4,
            interactive: bool | None = None) -> Any:
    """Explore the generators on ``dataset[index]``: an ipywidgets panel, or a static :class:`Figure` over
    :data:`STATIC_GRID` when ``interactive`` is False (``None``: :func:`interactive_frontend` decides)."""
    size = size or min(int(v) for v in dataset[index]["image"].shape[-2:])
    if not (interactive_frontend() if interactive is None else interactive):
        return settings_figure(dataset, index, size, draws, STATIC_GRID)
    import ipywidgets as widgets
    from IPython.display import display

    range_slider = dict(min=0.05, max=1.0, step=0.05, readout_format=".2f", continuous_update=False)
    controls = dict(
        generator=widgets.Dropdown(options=GENERATORS, value="saliency_swap", description="generator"),
        mode=widgets.Dropdown(options=MODES, value="same", description="mode"),
        crop_scale=widgets.FloatRangeSlider(value=(0.5, 1.0), description="crop scale", **range_slider),
        paste_ratio=widgets.FloatRangeSlider(value=(0.3, 0.7), description="paste ratio", **range_slider),
        p=widgets.FloatSlider(value=1.0, min=0.0, max=1.0, step=0.1, description="p", continuous_update=False),
        blending=widgets.Dropdown(options=tuple(BLENDINGS), value="mix", description="blending"),
        index=widgets.IntSlider(value=index, min=0, max=len(dataset) - 1, description="sample",
                                continuous_update=False),
        seed=widgets.IntSlider(value=0, min=0, max=99, description="seed", continuous_update=False),
    )

    def redraw(index: int, seed: int, **settings: Any) -> None:
        settings["crop_scale"], settings["paste_ratio"] = tuple(settings["crop_scale"]), tuple(settings["paste_ratio"])
        grid = (dict(settings, seed=seed),)
        display(settings_figure(dataset, index, size, draws, grid))

    output = widgets.interactive_output(redraw, controls)
    return widgets.VBox([widgets.HBox(list(controls.values())[:4]), widgets.HBox(list(controls.values())[4:]), output])
