"""The one map interface: ``images float [0,1] N x 3 x S x S -> N x S x S`` in [0, 1].

A :class:`MapSource` holds a model and does the shared work, as pytorch-grad-cam's ``BaseCAM`` does: the model runs
in eval mode (:func:`evaluating`: no gradients unless the map needs them, the previous train/eval mode restored
afterwards), the raw ``N x h x w`` map is upsampled to image size (bicubic, ``cv2.INTER_CUBIC``'s kernel, as
wsolevaluation prepares CAMs for MaxBoxAcc; Choe et al. 2020) and min-max normalised per image
(:func:`normalise_per_image`). A subclass overrides one method, :meth:`MapSource.compute`: Grad-CAM
(:class:`fgssl_lib.eval.cams.GradCAMMap`), CVSA's correspondence intensity
(:class:`fgssl_lib.methods.cvsa.IntensityMap`), LCR's branch map (:class:`fgssl_lib.methods.lcr.BranchMap`) and
the classic saliency sources (:class:`fgssl_lib.saliency.sources.SaliencySource`, one image at a time).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NORMALISATION_EPS = 1e-7
"""The ``1e-7`` of LCR Eq. 8 and of wsolevaluation's CAM normalisation."""


def normalise_per_image(maps: Tensor, eps: float = NORMALISATION_EPS) -> Tensor:
    """``(M - min M) / (eps + max(M - min M))`` with min and max over each image's own ``N x H x W`` map (LCR Eq. 8;
    wsolevaluation's CAM scaling), so each map spans [0, 1] whatever the rest of its batch. ``eps=0`` makes it
    scale-free (a constant map becomes 0)."""
    low = maps.amin(dim=(-2, -1), keepdim=True)  # Nx1x1
    high = maps.amax(dim=(-2, -1), keepdim=True)  # Nx1x1
    return (maps - low) / (eps + high - low).clamp_min(torch.finfo(maps.dtype).tiny)


@contextlib.contextmanager
def evaluating(module: nn.Module | None, grad: bool = False) -> Iterator[None]:
    """Run the block with ``module`` in eval mode and, unless ``grad``, without gradients; its train/eval mode is
    restored afterwards (also on an error). ``module=None`` only switches gradients off."""
    was_training = module.training if module is not None else False
    if module is not None:
        module.eval()
    try:
        with contextlib.nullcontext() if grad else torch.no_grad():
            yield
    finally:
        if module is not None:
            module.train(was_training)


def module_device(module: nn.Module | None) -> torch.device:
    """The device of ``module``'s first parameter (the CPU for ``None`` or a module without parameters)."""
    parameter = next(module.parameters(), None) if module is not None else None
    return parameter.device if parameter is not None else torch.device("cpu")


class MapSource:
    """Base of every map: ``source(images N x 3 x S x S float in [0, 1]) -> N x S x S`` in [0, 1].

    Subclasses override :meth:`compute` (the raw ``N x h x w`` map of ``self.model``, any range) and may set
    ``needs_grad`` (Grad-CAM), ``interpolation`` and ``eps`` (of :func:`normalise_per_image`). As wsolevaluation,
    the bicubic overshoot is kept: the upsampled map is min-max normalised as it comes.
    """

    model: nn.Module | None = None
    needs_grad: ClassVar[bool] = False
    interpolation: ClassVar[str] = "bicubic"
    eps: ClassVar[float] = NORMALISATION_EPS

    def __init__(self, model: nn.Module | None = None) -> None:
        self.model = model

    def __call__(self, images: Tensor) -> Tensor:
        """The map of ``images`` at their size, ``N x S x S`` in [0, 1], on the model's device."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"{type(self).__name__} expects images N x 3 x S x S, got shape {tuple(images.shape)}")
        return self.finish(self.raw(images), tuple(images.shape[-2:]))

    def raw(self, images: Tensor) -> Tensor:
        """:meth:`compute` in eval mode (without gradients unless ``needs_grad``): the ``N x h x w`` map at the
        model's own resolution, before :meth:`finish`."""
        with evaluating(self.model, grad=self.needs_grad):
            return self.compute(images.to(module_device(self.model)))  # N x h x w

    def compute(self, images: Tensor) -> Tensor:
        """The raw ``N x h x w`` map of ``images`` (in eval mode, without gradients unless ``needs_grad``)."""
        raise NotImplementedError(f"{type(self).__name__} must override compute(images) -> N x h x w")

    def finish(self, raw: Tensor, size: tuple[int, int]) -> Tensor:
        """``raw`` ``N x h x w`` upsampled to ``size`` and normalised per image: ``N x H x W`` float32 in [0, 1]."""
        return self.normalise(resize_maps(raw.float(), size, self.interpolation))

    def normalise(self, maps: Tensor) -> Tensor:
        """Min-max per image (:func:`normalise_per_image` with ``eps``)."""
        return normalise_per_image(maps, self.eps)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.model).__name__ if self.model is not None else ''})"


def resize_maps(maps: Tensor, size: tuple[int, int], mode: str = "bicubic") -> Tensor:
    """``N x h x w`` maps resized to ``N x H x W`` (``mode``: ``bicubic`` or ``bilinear``, half-pixel centres). Maps
    already at ``size`` are returned as they are."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None], size=size, mode=mode, align_corners=False)[:, 0]


def as_maps(maps: Any) -> Tensor:
    """A model's output as an ``N x h x w`` float tensor, or a ``ValueError`` that says what it was."""
    maps = torch.as_tensor(maps)
    if maps.ndim != 3:
        raise ValueError(f"a map source must produce N x h x w maps, got shape {tuple(maps.shape)}")
    return maps.float()
