"""DiLo copy-paste views (Zhao et al. 2021, "Copy-and-paste for Background Augmentation"; METHODS.md "Views").

With probability ``p`` per view the background is replaced, ``view = S * x + (1 - S) * bg`` where ``S`` is the
saliency mask, before the usual RandomResizedCrop / flip / photometric ops. Blending (DiLo Table 2d):

- ``none``: ``S`` is the binary mask (hard paste);
- ``gaussian``: ``S`` is the mask blurred by a Gaussian (radius 5 px at 224 px, scaled with the view size), a soft
  border;
- ``mix``: each paste blurs with probability 0.5 (the authors' code; the best row of Table 2d).

Backgrounds (DiLo Table 2c) come from a pool of :mod:`fgssl_lib.data.backgrounds`: ``grey`` (a random grey level, the
code's choice and the default), ``texture``, or ``ImageFolderBackgrounds`` for crops of other images.

The paste is defined before the crop; because crop-and-resize acts on image, mask and background alike, we crop and
resize image and mask first (one resize each) and blend at ``S x S`` with a background drawn at ``S x S``. The result
is the same view up to resampling at the mask border, at ``O(S^2)`` instead of ``O(H W)`` cost.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from fgssl_lib.config import check_choice
from fgssl_lib.views.base import as_float_image, resolve_backgrounds
from fgssl_lib.views.photometric import separable_gaussian_blur
from fgssl_lib.views.standard import StandardViews

BLENDINGS = {"none": 0.0, "gaussian": 1.0, "mix": 0.5}
"""Blending name -> probability that a paste blurs its mask."""
BLUR_RADIUS = 5 / 224
"""DiLo's mask blur (Gaussian radius, i.e. sigma, 5 px at 224 px) as a fraction of the view size."""


class CopyPaste(StandardViews):
    """DiLo copy-paste two-view generator: RandomResizedCrop views whose background is replaced with probability ``p``.

    Args:
        size: side ``S`` of the views.
        p: probability per view of replacing the background (paper 0.3-0.5, code 0.3).
        backgrounds: a ``BackgroundPool`` or a name (``grey``, ``texture``).
        blending: ``none``, ``gaussian`` or ``mix`` (see the module docstring).
        **kwargs: ``scale``, ``ratio`` of :class:`~fgssl_lib.views.standard.StandardViews`; ``photometric``,
            ``flip_p``, ``seed`` of the base class.
    """

    def __init__(self, size: int, p: float = 0.3, backgrounds: Any = "grey", blending: str = "mix", **kwargs: Any):
        super().__init__(size, **kwargs)
        if not 0 <= p <= 1:
            raise ValueError(f"p is the probability of a copy-paste per view and must lie in [0, 1], got {p}")
        self.p = float(p)
        self.blending = check_choice("blending", blending, BLENDINGS)
        self.backgrounds = resolve_backgrounds(backgrounds)
        self.blur_sigma = BLUR_RADIUS * size
        self.blur_kernel = 2 * math.ceil(3 * self.blur_sigma) + 1

    def layout(self, sample: Mapping[str, Any], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """RandomResizedCrop view; with probability ``p`` blended onto a background: ``S x + (1 - S) bg``."""
        image, mask = super().layout(sample, generator)
        if float(torch.rand(())) >= self.p:
            return image, mask
        background = self.backgrounds.draw(self.size, self.size, generator).to(image.device)
        soft = mask.as_subclass(torch.Tensor).float()[None]  # 1xSxS
        if float(torch.rand(())) < BLENDINGS[self.blending]:
            soft = separable_gaussian_blur(soft, self.blur_kernel, self.blur_sigma)
        blended = torch.lerp(as_float_image(background), as_float_image(image.as_subclass(torch.Tensor)), soft)
        return blended, mask
