"""DiLo copy-paste views (Zhao et al. 2021, "Distilling Localization for Self-Supervised Representation Learning";
the DiLo theory page).

With probability ``p`` per view the background is replaced, ``view = S * x + (1 - S) * bg``, before the usual
RandomResizedCrop / flip / photometric ops. ``S`` is the **soft saliency map** of the configured source: the sample's
``saliency`` where the data carries one (:class:`~fgssl_lib.saliency.SaliencyDataset`), else its mask (data whose
ground-truth mask is the saliency source, as the synthetic benchmark's silhouettes); ``paste_map="mask"`` pastes
with the binary mask instead (on real data, the best box: the background inside the box is never replaced).

Blending (DiLo Table 2d): ``S`` is blurred by a Gaussian at the **source image's resolution, before the crop**, as
the authors do (radius, i.e. sigma, 5 px on ImageNet-sized images: :data:`BLUR_RADIUS` of the shorter side), so a
view's border is as soft as its zoom makes it:

- ``none``: never blurred (hard paste);
- ``gaussian``: always blurred;
- ``mix``: each paste blurs with probability 0.5 (the authors' code; the best row of Table 2d).

Backgrounds (DiLo Table 2c) come from a pool of :mod:`fgssl_lib.data.backgrounds`: ``grey`` (a random grey level, the
code's choice and the default), ``texture``, or ``ImageFolderBackgrounds`` for crops of other images. Image, mask and
``S`` share one crop (``S`` resampled bilinearly, the mask by nearest); the blend is taken at ``S x S`` with a
background drawn at ``S x S``: the same view as blending at the source resolution, up to resampling, at ``O(S^2)``
instead of ``O(H W)`` cost. Every random choice comes from the sample's seeded generator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torchvision import tv_tensors

from fgssl_lib.config import check_choice
from fgssl_lib.views.base import as_float_image, resolve_backgrounds
from fgssl_lib.views.photometric import separable_gaussian_blur
from fgssl_lib.views.standard import StandardViews

BLENDINGS = {"none": 0.0, "gaussian": 1.0, "mix": 0.5}
"""Blending name -> probability that a paste blurs its map."""
BLUR_RADIUS = 5 / 375
"""DiLo's map blur (Gaussian radius, i.e. sigma, 5 px on an ImageNet-sized image, about 500 x 375) as a fraction of
the source image's shorter side."""
PASTE_MAPS = ("saliency", "mask")


def paste_options(p: float, backgrounds: Any, blending: str, paste_map: str) -> tuple[float, Any, str, str]:
    """The copy-paste options checked (``p`` in [0, 1], known names) and the background pool resolved."""
    if not 0 <= p <= 1:
        raise ValueError(f"p is the probability of a copy-paste per view and must lie in [0, 1], got {p}")
    return (float(p), resolve_backgrounds(backgrounds), check_choice("blending", blending, BLENDINGS),
            check_choice("paste map", paste_map, PASTE_MAPS))


def soft_map(sample: Mapping[str, Any], paste_map: str) -> torch.Tensor:
    """The ``H x W`` float map ``S`` a paste blends with: the sample's ``saliency`` (else its mask), or its mask."""
    if paste_map == "saliency" and "saliency" in sample:
        return sample["saliency"].float()
    return sample["mask"].float()


def blur_at_source(soft: torch.Tensor) -> torch.Tensor:
    """``S`` (HxW) blurred with sigma :data:`BLUR_RADIUS` of its shorter side (at least half a pixel)."""
    sigma = max(BLUR_RADIUS * min(soft.shape), 0.5)
    return separable_gaussian_blur(soft[None].contiguous(), 2 * math.ceil(3 * sigma) + 1, sigma)[0]


class CopyPaste(StandardViews):
    """DiLo copy-paste two-view generator: RandomResizedCrop views whose background is replaced with probability ``p``.

    Args:
        size: side ``S`` of the views.
        p: probability per view of replacing the background (paper 0.3-0.5, code 0.3).
        backgrounds: a ``BackgroundPool`` or a name (``grey``, ``texture``).
        blending: ``none``, ``gaussian`` or ``mix`` (see the module docstring).
        paste_map: ``saliency`` (the soft map, default) or ``mask`` (the binary mask).
        **kwargs: ``scale``, ``ratio`` of :class:`~fgssl_lib.views.standard.StandardViews`; ``photometric``,
            ``flip_p``, ``seed`` of the base class.
    """

    def __init__(self, size: int, p: float = 0.3, backgrounds: Any = "grey", blending: str = "mix",
                 paste_map: str = "saliency", **kwargs: Any):
        super().__init__(size, **kwargs)
        self.p, self.backgrounds, self.blending, self.paste_map = paste_options(p, backgrounds, blending, paste_map)

    def layout(self, sample: Mapping[str, Any], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """RandomResizedCrop view; with probability ``p`` blended onto a background: ``S x + (1 - S) bg``."""
        if float(torch.rand((), generator=generator)) >= self.p:
            return super().layout(sample, generator)
        soft = soft_map(sample, self.paste_map)  # HxW in [0, 1]
        if float(torch.rand((), generator=generator)) < BLENDINGS[self.blending]:
            soft = blur_at_source(soft)
        image, mask, soft = self.crop(tv_tensors.Image(sample["image"]), tv_tensors.Mask(sample["mask"]),
                                      tv_tensors.Image(soft[None]))  # one crop for all three: 3xSxS, SxS, 1xSxS
        background = self.backgrounds.draw(self.size, self.size, generator).to(image.device)
        blended = torch.lerp(as_float_image(background), as_float_image(image.as_subclass(torch.Tensor)),
                             soft.as_subclass(torch.Tensor).clamp(0, 1))
        return blended, mask
