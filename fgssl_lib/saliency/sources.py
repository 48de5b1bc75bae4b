"""Saliency sources behind one interface (the DiLo theory page, "Where the saliency comes from").

A source maps an image to a saliency map ``S`` in ``[0, 1]`` at image size::

    source(image: 3 x H x W uint8, sample: dict | None = None) -> H x W float32 in [0, 1]

:class:`SaliencySource` is the one-image form of the map interface :class:`~fgssl_lib.saliency.maps.MapSource`
(no gradients, bilinear resizing to image size, min-max normalisation); each source is a small subclass that
overrides :meth:`SaliencySource.compute`. The box is derived from the map by :func:`fgssl_lib.saliency.best_box`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import cv2
import numpy as np
import torch

from fgssl_lib.config import check_choice, resolve_device
from fgssl_lib.data.sample import box_to_mask
from fgssl_lib.saliency.maps import MapSource, as_maps, evaluating, module_device, normalise_per_image

FLAT_TOLERANCE = 1e-2
"""A map whose range ``max S - min S`` is at most this fraction of ``max |S|`` is constant (no contrast): OpenCV's
spectral residual of a uniform grey image spans 0.997..1.0, float noise that min-max normalising would blow up."""


def min_max_normalise(raw: torch.Tensor) -> torch.Tensor:
    """``(S - min S) / (max S - min S)`` as float32; a constant or near-constant map (:data:`FLAT_TOLERANCE`) has no
    contrast and becomes its mean clipped to ``[0, 1]``, so :func:`~fgssl_lib.saliency.best_box` returns the whole
    image."""
    raw = raw.to(torch.float32)
    low, high = raw.min(), raw.max()
    if high - low > FLAT_TOLERANCE * max(abs(low), abs(high)):
        return normalise_per_image(raw[None], eps=0.0)[0]
    return torch.full_like(raw, float(raw.mean().clamp(0, 1)))


class SaliencySource(MapSource):
    """Base class: ``__call__(image, sample)`` checks the input, calls :meth:`compute` without gradients, resizes its
    output bilinearly to the image size and normalises it (:func:`min_max_normalise`).

    Subclasses set ``name`` (the :func:`build_saliency` name) and override :meth:`compute`; :meth:`params` returns the
    options that change the maps (they key the on-disk cache of :mod:`fgssl_lib.saliency.cache`).
    """

    name: ClassVar[str] = ""
    interpolation: ClassVar[str] = "bilinear"

    def __call__(  # type: ignore[override]
        self, image: torch.Tensor, sample: dict[str, Any] | None = None
    ) -> torch.Tensor:
        """Saliency of ``image`` (``3 x H x W`` uint8): ``H x W`` float32 in ``[0, 1]``."""
        if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
            got = f"{tuple(image.shape)} {image.dtype}" if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(f"{type(self).__name__} expects a 3 x H x W uint8 RGB image tensor, got {got}")
        with evaluating(self.model):
            raw = torch.as_tensor(self.compute(image, sample)).to(torch.float32)
        if raw.ndim != 2:
            raise ValueError(f"{type(self).__name__}.compute must return a 2-D h x w map, got shape {tuple(raw.shape)}")
        return self.finish(raw[None], tuple(image.shape[1:]))[0].cpu()

    def normalise(self, maps: torch.Tensor) -> torch.Tensor:
        """:func:`min_max_normalise` of each map (a flat map has no contrast)."""
        return torch.stack([min_max_normalise(m.cpu()) for m in maps])

    def compute(  # type: ignore[override]
        self, image: torch.Tensor, sample: dict[str, Any] | None
    ) -> torch.Tensor | np.ndarray:
        """The raw ``h x w`` map of ``image`` (any real range, any size: the base resizes and normalises it)."""
        raise NotImplementedError(f"{type(self).__name__} must override compute(image, sample) -> h x w")

    def params(self) -> dict[str, Any]:
        """The options that determine the maps (JSON-serialisable); empty when there are none."""
        return {}

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({options})"


def _require(sample: dict[str, Any] | None, key: str, source: str) -> Any:
    if sample is None or key not in sample:
        raise ValueError(
            f"the {source!r} saliency source reads the ground-truth {key!r} from the sample: call it as "
            f"source(sample['image'], sample) with a sample dict that has a {key!r} entry"
        )
    return sample[key]


class BoxSaliency(SaliencySource):
    """Ground truth: the indicator of the sample's ``box`` (``(x0, y0, x1, y1)``, exclusive ends)."""

    name = "box"

    def compute(self, image: torch.Tensor, sample: dict[str, Any] | None) -> torch.Tensor:
        return box_to_mask(_require(sample, "box", self.name), *image.shape[1:])


class MaskSaliency(SaliencySource):
    """Ground truth: the sample's ``H x W`` ``mask`` (segmentation where the dataset has one, else its box)."""

    name = "mask"

    def compute(self, image: torch.Tensor, sample: dict[str, Any] | None) -> torch.Tensor:
        mask = torch.as_tensor(_require(sample, "mask", self.name))
        if mask.shape != image.shape[1:]:
            raise ValueError(f"the sample's mask has shape {tuple(mask.shape)} but its image is {tuple(image.shape)}")
        return mask


class OpenCVStaticSaliency(SaliencySource):
    """A static saliency algorithm of OpenCV contrib (``cv2.saliency``), named by its factory function ``factory``.

    The algorithm object is created per call (microseconds) so that sources stay picklable for DataLoader workers.
    """

    factory: ClassVar[str] = ""

    def compute(self, image: torch.Tensor, sample: dict[str, Any] | None) -> np.ndarray:
        if (image == image[:, :1, :1]).all():  # a uniform image has no salient region (OpenCV: corner artefacts)
            return np.zeros(image.shape[1:], np.float32)
        bgr = np.ascontiguousarray(image.permute(1, 2, 0).numpy()[:, :, ::-1])  # HxWx3 uint8, OpenCV's channel order
        ok, saliency = getattr(cv2.saliency, self.factory)().computeSaliency(bgr)
        if not ok:
            raise RuntimeError(f"OpenCV {self.factory} failed on an image of shape {tuple(image.shape)}")
        return saliency


class SpectralResidualSaliency(OpenCVStaticSaliency):
    """Spectral residual (Hou & Zhang 2007): OpenCV's ``StaticSaliencySpectralResidual``."""

    name = "spectral_residual"
    factory = "StaticSaliencySpectralResidual_create"


class FineGrainedSaliency(OpenCVStaticSaliency):
    """Fine-grained static saliency (Montabone & Soto 2010, "VSF" in CVSA Appendix B): ``StaticSaliencyFineGrained``."""

    name = "fine_grained"
    factory = "StaticSaliencyFineGrained_create"


class CentrePrior(SaliencySource):
    """Baseline: ``exp(-((u - 1/2)^2 + (v - 1/2)^2) / (2 sigma^2))`` at pixel centres ``(u, v)`` in ``[0, 1]^2``.

    ``sigma`` is a fraction of each image side (the Gaussian stretches with the aspect ratio).
    """

    name = "centre"

    def __init__(self, sigma: float = 0.25) -> None:
        if not sigma > 0:
            raise ValueError(f"CentrePrior needs sigma > 0 (a fraction of the image side), got {sigma}")
        self.sigma = float(sigma)

    def compute(self, image: torch.Tensor, sample: dict[str, Any] | None) -> torch.Tensor:
        height, width = image.shape[1:]
        v = (torch.arange(height, dtype=torch.float32) + 0.5) / height - 0.5  # H
        u = (torch.arange(width, dtype=torch.float32) + 0.5) / width - 0.5  # W
        return torch.exp(-(v[:, None] ** 2 + u[None, :] ** 2) / (2 * self.sigma**2))  # HxW

    def params(self) -> dict[str, Any]:
        return {"sigma": self.sigma}


class ModelSaliency(SaliencySource):
    """Any model-produced map, e.g. a CAM or the LCR branch map (``SSLMethod.saliency``).

    ``fn(images: N x 3 x H x W float in [0, 1]) -> N x h x w`` is called without gradients on ``device``; its map is
    upsampled bilinearly to the image size and min-max normalised by the base class. ``device=None`` uses the device
    of ``fn``'s parameters when ``fn`` is a ``torch.nn.Module`` or one of its bound methods, else the CPU. ``key``
    names the model (e.g. a checkpoint hash) so that its maps can be cached; without it caching is refused.
    """

    name = "model"

    def __init__(
        self,
        fn: Callable[[torch.Tensor], torch.Tensor],
        device: str | torch.device | None = None,
        key: str | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"ModelSaliency needs a callable fn(images N x 3 x H x W) -> N x h x w, got {fn!r}")
        self.fn = fn
        module = fn if isinstance(fn, torch.nn.Module) else getattr(fn, "__self__", None)
        self.device = resolve_device(device) if device is not None else module_device(
            module if isinstance(module, torch.nn.Module) else None)
        self.key = key

    def compute(self, image: torch.Tensor, sample: dict[str, Any] | None) -> torch.Tensor:
        images = image[None].to(self.device, torch.float32) / 255  # 1x3xHxW in [0, 1]
        maps = as_maps(self.fn(images))
        if maps.shape[0] != 1:
            raise ValueError(f"ModelSaliency's fn must return an N x h x w map for N images, got {tuple(maps.shape)}")
        return maps[0]

    def params(self) -> dict[str, Any]:
        if self.key is None:
            raise ValueError(
                "ModelSaliency maps are cached only with a key that names the model: ModelSaliency(fn, key=...)"
            )
        return {"key": self.key}

    def __repr__(self) -> str:
        return f"ModelSaliency(fn={self.fn!r}, key={self.key!r})"


SOURCES: dict[str, type[SaliencySource]] = {
    cls.name: cls
    for cls in (BoxSaliency, MaskSaliency, SpectralResidualSaliency, FineGrainedSaliency, CentrePrior, ModelSaliency)
}


def build_saliency(name: str, **options: Any) -> SaliencySource:
    """Saliency source ``name`` (``box mask spectral_residual fine_grained centre model``) built with ``options``.

    ``build_saliency("centre", sigma=0.3)``; ``build_saliency("model", fn=method.saliency, key="byol-ep100")``.
    """
    cls = SOURCES[check_choice("saliency source", name, SOURCES)]
    try:
        return cls(**options)
    except TypeError as error:
        raise TypeError(f"invalid options {sorted(options)} for saliency source {name!r}: {error}") from error
