"""Batched two-view generators on the training device (the book's API page, ``fgssl_lib.views``):
``build_batched_views(name, size, **params)`` returns a :class:`BatchedTwoView`, called as
``views(batch, epoch, source=None)`` on a batch of store rows.

Modules: :mod:`.randomness` (per-sample seeded uniforms), :mod:`.geometry` (vectorised boxes; antialiased uint8
resized crops that move the mask with the image), :mod:`.photometric` (colour jitter as one matrix per view, blur,
solarize), :mod:`.generators` (RandomResizedCrop, SaliencySwap, DiLo copy-paste).
"""

from fgssl_lib.views.batched.generators import (BATCHED_VIEWS, BatchedCopyPaste, BatchedSaliencySwap,
                                                BatchedStandardViews, BatchedTwoView, build_batched_views)

__all__ = ["BATCHED_VIEWS", "BatchedCopyPaste", "BatchedSaliencySwap", "BatchedStandardViews", "BatchedTwoView",
           "build_batched_views"]
