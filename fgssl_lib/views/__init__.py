"""Two-view generators that carry the saliency mask: standard RRC, SaliencySwap (CVSA) and copy-paste (DiLo).

``build_views(name, size=..., **params)`` returns a callable ``sample -> dict(view1, view2, mask1, mask2, label,
index)`` (views float32 ``3xSxS`` in [0, 1], masks float32 ``SxS``); ``eval_view(size)`` is the deterministic view
for evaluation; ``seed_worker`` goes to ``DataLoader(worker_init_fn=...)``. See :mod:`fgssl_lib.views.seeding` for
reproducible views. ``build_batched_views(name, size, **params)`` builds the same generators as batched tensor ops on
the training device (:mod:`fgssl_lib.views.batched`).
"""

from __future__ import annotations

from typing import Any

from fgssl_lib.config import check_choice
from fgssl_lib.views.base import TwoViewTransform
from fgssl_lib.views.batched import BatchedTwoView, build_batched_views
from fgssl_lib.views.copy_paste import CopyPaste
from fgssl_lib.views.evaluation import EvalView, eval_view
from fgssl_lib.views.saliency_swap import SaliencySwap
from fgssl_lib.views.seeding import seed_worker
from fgssl_lib.views.standard import StandardViews

VIEWS: dict[str, type[TwoViewTransform]] = {"rrc": StandardViews, "saliency_swap": SaliencySwap,
                                            "copy_paste": CopyPaste}


def build_views(name: str, size: int = 224, **params: Any) -> TwoViewTransform:
    """The two-view generator ``name`` (``rrc``, ``saliency_swap``, ``copy_paste``) at view size ``size``.

    ``params`` go to the generator's class: :class:`StandardViews`, :class:`SaliencySwap` (``mode``, ``crop_scale``,
    ``paste_ratio``, ``dataset``, ``backgrounds``) or :class:`CopyPaste` (``p``, ``backgrounds``, ``blending``), plus
    ``photometric``, ``flip_p`` and ``seed`` for all.
    """
    return VIEWS[check_choice("view generator", name, VIEWS)](size, **params)


__all__ = ["VIEWS", "BatchedTwoView", "CopyPaste", "EvalView", "SaliencySwap", "StandardViews", "TwoViewTransform",
           "build_batched_views", "build_views", "eval_view", "seed_worker"]
