"""Photometric augmentations of MoCo v2 and BYOL, as ``torchvision.transforms.v2`` pipelines on float images.

- ``mocov2`` (Chen et al. 2020, used by CVSA for every method): colour jitter (0.4, 0.4, 0.4, 0.1) with p=0.8,
  greyscale p=0.2, Gaussian blur p=0.5; both views alike.
- ``byol`` (Grill et al. 2020, asymmetric): colour jitter (0.4, 0.4, 0.2, 0.1) p=0.8, greyscale p=0.2, then blur
  p=1.0 / 0.1 and solarize p=0.0 / 0.2 for view 1 / view 2.
- ``none``: identity (for tests, galleries and ablations).

The blur is specified at 224 px (kernel 23, sigma in [0.1, 2.0]); both scale with the view size ``S`` so a 64 px view
is blurred as much, relative to its content, as a 224 px one. Inputs and outputs: float ``3 x S x S`` in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from fgssl_lib.config import check_choice

PHOTOMETRIC = ("mocov2", "byol", "none")
REFERENCE_SIZE = 224
"""View size at which the blur's kernel and sigma are specified."""
BLUR_SIGMA = (0.1, 2.0)
"""Range of the blur's sigma at :data:`REFERENCE_SIZE`."""
SOLARIZE_THRESHOLD = 0.5
"""Solarize inverts the values at or above this threshold (images in [0, 1])."""


@dataclass(frozen=True)
class PhotometricSpec:
    """One view's photometric ops: colour-jitter strengths (factors drawn from ``U(1 - s, 1 + s)``, hue from
    ``U(-hue, hue)``) and the probability of each op. Read by the per-sample pipelines here and by the batched ones
    (:mod:`fgssl_lib.views.batched`), so both draw from the same ranges."""

    saturation: float
    blur_p: float
    solarize_p: float = 0.0
    brightness: float = 0.4
    contrast: float = 0.4
    hue: float = 0.1
    jitter_p: float = 0.8
    grayscale_p: float = 0.2


PHOTOMETRIC_SPECS: dict[str, tuple[PhotometricSpec, PhotometricSpec] | None] = {
    "mocov2": (PhotometricSpec(saturation=0.4, blur_p=0.5),) * 2,
    "byol": (PhotometricSpec(saturation=0.2, blur_p=1.0),
             PhotometricSpec(saturation=0.2, blur_p=0.1, solarize_p=0.2)),
    "none": None,
}
"""Name -> the specs of ``(view 1, view 2)``; ``None`` is the identity."""


def blur_kernel_size(size: int) -> int:
    """The blur's kernel side at view ``size``: about 10% of it (23 at 224 px), odd, at least 3."""
    return max(3, 2 * int(0.05 * size) + 1)


def blur_sigma_range(size: int) -> tuple[float, float]:
    """The blur's sigma range at view ``size``: :data:`BLUR_SIGMA` scaled by ``size / REFERENCE_SIZE``."""
    scale = size / REFERENCE_SIZE
    return BLUR_SIGMA[0] * scale, BLUR_SIGMA[1] * scale


def separable_gaussian_blur(image: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    """Gaussian blur of a float ``C x H x W`` image, separably (two 1-D passes, reflect-101 border).

    Same result as ``torchvision.transforms.v2.functional.gaussian_blur`` (a 2-D ``k x k`` convolution) at ``2 k``
    instead of ``k**2`` multiply-adds per pixel: OpenCV's SIMD filter for CPU tensors of 1 or 3 channels (10x faster
    than the 2-D convolution for MoCo v2's 23-tap kernel at 224 px), two grouped 1-D convolutions otherwise (CUDA).
    """
    channels = image.shape[0]
    if image.device.type == "cpu" and image.dtype == torch.float32 and channels in (1, 3):
        out = cv2.GaussianBlur(image.permute(1, 2, 0).numpy(), (kernel_size, kernel_size), sigma,
                               borderType=cv2.BORDER_REFLECT_101)  # HxWxC (HxW for one channel)
        return torch.from_numpy(out.reshape(*image.shape[1:], channels)).permute(2, 0, 1).contiguous()
    x = torch.arange(kernel_size, dtype=image.dtype, device=image.device) - (kernel_size - 1) / 2
    kernel = torch.softmax(-(x**2) / (2 * sigma**2), dim=0)  # k, normalised
    pad = kernel_size // 2
    out = torch.nn.functional.pad(image[None], (pad, pad, pad, pad), mode="reflect")  # 1xCx(H+2p)x(W+2p)
    out = torch.nn.functional.conv2d(out, kernel.expand(channels, 1, 1, kernel_size), groups=channels)
    out = torch.nn.functional.conv2d(out, kernel[:, None].expand(channels, 1, kernel_size, 1), groups=channels)
    return out[0]


class SeparableGaussianBlur(v2.GaussianBlur):
    """``v2.GaussianBlur`` (same parameters, same random sigma) computed with :func:`separable_gaussian_blur`."""

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, torch.Tensor) or not inpt.is_floating_point() or inpt.ndim != 3:
            return super().transform(inpt, params)
        out = separable_gaussian_blur(inpt.as_subclass(torch.Tensor), self.kernel_size[0], params["sigma"][0])
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out


def gaussian_blur(size: int, p: float) -> v2.Transform:
    """Random Gaussian blur with probability ``p``, kernel ~ 10% of ``size`` (23 at 224 px) and sigma scaled likewise."""
    return v2.RandomApply([SeparableGaussianBlur(blur_kernel_size(size), sigma=blur_sigma_range(size))], p=p)


def _pipeline(size: int, spec: PhotometricSpec) -> v2.Compose:
    ops: list[v2.Transform] = [
        v2.RandomApply([v2.ColorJitter(spec.brightness, spec.contrast, spec.saturation, spec.hue)], p=spec.jitter_p),
        v2.RandomGrayscale(p=spec.grayscale_p),
    ]
    if spec.blur_p > 0:
        ops.append(gaussian_blur(size, spec.blur_p))
    if spec.solarize_p > 0:
        ops.append(v2.RandomSolarize(threshold=SOLARIZE_THRESHOLD, p=spec.solarize_p))
    return v2.Compose(ops)


def build_photometric(name: str, size: int) -> tuple[Callable[[torch.Tensor], torch.Tensor], ...]:
    """The photometric pipelines ``(for view 1, for view 2)`` of ``name`` in ``mocov2 byol none`` at view ``size``."""
    specs = PHOTOMETRIC_SPECS[check_choice("photometric", name, PHOTOMETRIC)]
    if specs is None:
        return (v2.Identity(), v2.Identity())
    first = _pipeline(size, specs[0])
    return (first, first if specs[1] == specs[0] else _pipeline(size, specs[1]))
