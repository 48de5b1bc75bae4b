"""The two-view transform interface shared by every view generator.

A view generator maps a sample ``dict(image 3xHxW uint8, label, box, mask HxW, index)`` to
``dict(view1, view2, mask1, mask2, label, index)``: views float32 ``3 x S x S`` in [0, 1] (not normalised: the
backbone normalises), masks float32 ``S x S`` in [0, 1], each the saliency mask of its view after every geometric
operation. The base class does the shared work (seeding, flip, photometric ops, dtype conversion); a generator
overrides one method, :meth:`TwoViewTransform.layout`, which produces one view's geometry at ``S x S``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from fgssl_lib.data.sample import clip_box
from fgssl_lib.views.photometric import build_photometric
from fgssl_lib.views.seeding import sample_rng

_SAMPLE_KEYS = ("image", "label", "box", "mask", "index")


def check_sample(sample: Mapping[str, Any]) -> None:
    """Raise a ``ValueError`` that says what is wrong if ``sample`` breaks the sample contract of ``fgssl_lib.data``."""
    missing = [key for key in _SAMPLE_KEYS if key not in sample]
    if missing:
        raise ValueError(f"sample is missing {missing}; a sample is dict(image, label, box, mask, index), "
                         "see fgssl_lib.data.sample")
    image, mask = sample["image"], sample["mask"]
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"sample['image'] must be a 3xHxW uint8 tensor, got {image.dtype} of shape "
                         f"{tuple(image.shape)}; decode images with torchvision.io.decode_image(mode=RGB)")
    if mask.shape[-2:] != image.shape[-2:]:
        raise ValueError(f"sample['mask'] has shape {tuple(mask.shape)} but the image is {tuple(image.shape[-2:])}; "
                         "the mask must be HxW like the image")


def object_box(box: torch.Tensor, height: int, width: int) -> tuple[int, int, int, int]:
    """Integer ``(x0, y0, x1, y1)`` (exclusive) of a sample box inside a ``height x width`` image.

    The box is clipped to the image and rounded outwards (so a box thinner than one pixel keeps one pixel); a box of
    zero area after clipping (no salient object found) means the whole image, as in the sample contract.
    """
    x0, y0, x1, y1 = (float(v) for v in clip_box(box, width, height))
    if x1 <= x0 or y1 <= y0:
        return 0, 0, width, height
    left, top = min(math.floor(x0), width - 1), min(math.floor(y0), height - 1)
    return left, top, max(math.ceil(x1), left + 1), max(math.ceil(y1), top + 1)


def as_float_image(image: torch.Tensor) -> torch.Tensor:
    """A uint8 or float image as float32 in [0, 1] (uint8 is scaled by 1/255)."""
    return F.to_dtype(image, torch.float32, scale=True) if image.dtype == torch.uint8 else image.float()


class TwoViewTransform:
    """Base two-view generator: ``layout`` (per generator) -> horizontal flip -> photometric ops, twice.

    Args:
        size: side ``S`` of the square views.
        photometric: ``mocov2``, ``byol`` (asymmetric) or ``none`` (see :mod:`fgssl_lib.views.photometric`).
        flip_p: probability of a horizontal flip (moves the mask with the view).
        seed: ``None`` draws from the global ``torch`` RNG (seeded per worker); an int makes each sample's views a
            function of ``(seed, epoch, index)`` (see :mod:`fgssl_lib.views.seeding`).
    """

    def __init__(self, size: int, photometric: str = "mocov2", flip_p: float = 0.5, seed: int | None = None):
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int (the side of the square views), got {size!r}")
        self.size = size
        self.photometric_name = photometric
        self.photometric = build_photometric(photometric, size)
        self.flip = v2.RandomHorizontalFlip(flip_p)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch, so seeded views differ between epochs but not between runs."""
        self.epoch = int(epoch)

    def layout(self, sample: Mapping[str, Any], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One view's geometry: ``(image 3xSxS uint8 or float in [0,1], mask SxS)`` before flip and colour.

        ``generator`` is the generator the global ``torch`` RNG draws from (pass it to background pools).
        """
        raise NotImplementedError

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        check_sample(sample)
        out: dict[str, Any] = {}
        with sample_rng(self.seed, self.epoch, int(sample["index"])) as generator:
            for k, photometric in enumerate(self.photometric, start=1):
                image, mask = self.layout(sample, generator)
                image, mask = self.flip(tv_tensors.Image(image), tv_tensors.Mask(mask))
                out[f"view{k}"] = photometric(as_float_image(image.as_subclass(torch.Tensor))).clamp(0, 1)
                out[f"mask{k}"] = mask.as_subclass(torch.Tensor).float()
        out["label"] = sample["label"]
        out["index"] = sample["index"]
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, photometric={self.photometric_name!r}, seed={self.seed})"


def resolve_backgrounds(backgrounds: Any) -> Any:
    """A background pool: an object with ``draw(height, width, generator) -> 3xHxW uint8``, or a name for
    ``fgssl_lib.data.backgrounds.build_backgrounds`` (``grey``, ``texture``; ``folder`` needs options, so build it
    yourself and pass the pool)."""
    if isinstance(backgrounds, str):
        from fgssl_lib.data.backgrounds import build_backgrounds

        return build_backgrounds(backgrounds)
    if not callable(getattr(backgrounds, "draw", None)):
        raise TypeError(f"backgrounds must be a BackgroundPool (with draw(height, width, generator)) or a name such "
                        f"as 'grey' or 'texture', got {type(backgrounds).__name__}")
    return backgrounds
