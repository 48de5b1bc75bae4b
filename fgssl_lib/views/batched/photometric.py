"""Batched photometric ops of MoCo v2 and BYOL (:data:`fgssl_lib.views.photometric.PHOTOMETRIC_SPECS`), per-sample
random, in few passes over the pixels.

Colour jitter and greyscale are linear in the pixels, so each view's chain (brightness, contrast, saturation and hue in
a random order per view, as torchvision's ``ColorJitter``; then greyscale) is composed into one ``3 x 3`` matrix and an
offset, applied in one batched matrix product that also scales uint8 values to [0, 1], then clamped. How this relates
to torchvision's pipeline:

- brightness, contrast (blend with the mean grey level, which is propagated through the chain exactly) and
  saturation (blend with grey) use the same factors and grey weights; torchvision clamps to [0, 1] after each op,
  this clamps once at the end of the chain (identical unless an intermediate value leaves [0, 1]);
- hue is a rotation of the chroma plane of YIQ by ``-2 pi h`` (``h ~ U(-hue, hue)`` as torchvision), where torchvision
  shifts the hue channel of HSV by ``h``: the same direction and amount of hue change at far less cost (no HSV round
  trip), differing for saturated colours (YIQ keeps luma, HSV keeps the maximum channel).

Gaussian blur (per-sample sigma, kernel and range of :func:`~fgssl_lib.views.photometric.blur_kernel_size` and
:func:`~fgssl_lib.views.photometric.blur_sigma_range`) and solarize (threshold
:data:`~fgssl_lib.views.photometric.SOLARIZE_THRESHOLD`) follow, on the views that draw them.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F

from fgssl_lib.views.photometric import (SOLARIZE_THRESHOLD, PhotometricSpec, blur_kernel_size, blur_sigma_range,
                                         separable_gaussian_blur)

PHOTOMETRIC_UNIFORMS = 10
"""Uniforms one view's photometric ops draw: jitter applied, jitter order, 4 factors, greyscale, blur applied, sigma,
solarize applied."""
GREY = torch.tensor([0.2989, 0.587, 0.114], dtype=torch.float64)
"""Luma weights of torchvision's greyscale (ITU-R 601-2)."""
RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                          dtype=torch.float64)
ORDERS = torch.tensor(list(itertools.permutations(range(4))))
"""The 24 orders of (brightness, contrast, saturation, hue)."""


def hue_matrices(hue: torch.Tensor) -> torch.Tensor:
    """``N x 3 x 3`` RGB matrices that rotate the YIQ chroma plane by ``-2 pi hue`` (``hue``: ``N`` float64)."""
    cos, sin = torch.cos(-2 * math.pi * hue), torch.sin(-2 * math.pi * hue)
    rotation = torch.zeros(len(hue), 3, 3, dtype=torch.float64)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1], rotation[:, 1, 2], rotation[:, 2, 1], rotation[:, 2, 2] = cos, -sin, sin, cos
    return torch.linalg.inv(RGB_TO_YIQ) @ rotation @ RGB_TO_YIQ


def colour_transforms(u: torch.Tensor, spec: PhotometricSpec, mean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-view colour jitter and greyscale as ``(A N x 3 x 3, t N x 3)`` float64, ``out = A x + t`` for views ``x``
    in [0, 255] (``mean``: their ``N x 3`` channel means; ``u``: ``N x PHOTOMETRIC_UNIFORMS`` uniforms)."""
    n = len(u)
    eye = torch.eye(3, dtype=torch.float64).expand(n, 3, 3)
    grey = torch.ones(3, 1, dtype=torch.float64) @ GREY[None]  # 3x3: every channel <- the grey level
    A, t = eye / 255, torch.zeros(n, 3, dtype=torch.float64)
    jitter = u[:, 0] < spec.jitter_p
    order = ORDERS[torch.floor(u[:, 1] * len(ORDERS)).long().clamp(max=len(ORDERS) - 1)]  # Nx4
    brightness = 1 + spec.brightness * (2 * u[:, 2] - 1)
    contrast = 1 + spec.contrast * (2 * u[:, 3] - 1)
    saturation = 1 + spec.saturation * (2 * u[:, 4] - 1)
    rotate_hue = hue_matrices(spec.hue * (2 * u[:, 5] - 1))
    for step in range(4):
        op = torch.where(jitter, order[:, step], -1)[:, None, None]  # -1: no jitter
        level = (A @ mean[:, :, None])[:, :, 0] + t  # Nx3, the current channel means
        blend = (level @ GREY)[:, None] * torch.ones(3, dtype=torch.float64)  # Nx3, contrast's mean grey level
        scale = torch.where(op[:, :, 0] == 0, brightness[:, None], torch.where(op[:, :, 0] == 1, contrast[:, None], 1))
        matrix = torch.where(op == 2, saturation[:, None, None] * eye + (1 - saturation[:, None, None]) * grey,
                             torch.where(op == 3, rotate_hue, eye))
        offset = torch.where(op[:, :, 0] == 1, (1 - contrast[:, None]) * blend, 0)
        A, t = scale[:, :, None] * (matrix @ A), scale * (matrix @ t[:, :, None])[:, :, 0] + offset
    greyscale = (u[:, 6] < spec.grayscale_p)[:, None, None]
    return torch.where(greyscale, grey @ A, A), torch.where(greyscale[:, :, 0], (grey @ t[:, :, None])[:, :, 0], t)


def gaussian_blur(x: torch.Tensor, kernel_size: int, sigma: torch.Tensor) -> torch.Tensor:
    """Each ``C x S x S`` view of ``x`` (``N x C x S x S`` float) blurred with its own ``sigma`` (``N``), separably,
    reflect-101 border: OpenCV per view on a CPU, one grouped convolution per pass elsewhere."""
    n, channels = x.shape[:2]
    if x.device.type == "cpu":
        return torch.stack([separable_gaussian_blur(view, kernel_size, float(s)) for view, s in zip(x, sigma)])
    taps = torch.arange(kernel_size, dtype=x.dtype, device=x.device) - (kernel_size - 1) / 2
    kernels = torch.softmax(-(taps**2) / (2 * sigma.to(x)[:, None] ** 2), dim=1).repeat_interleave(channels, 0)
    pad = kernel_size // 2
    out = F.pad(x.reshape(1, n * channels, *x.shape[-2:]), (pad,) * 4, mode="reflect")
    out = F.conv2d(out, kernels[:, None, None, :], groups=n * channels)
    out = F.conv2d(out, kernels[:, None, :, None], groups=n * channels)
    return out.reshape(x.shape)


def photometric(x: torch.Tensor, u: torch.Tensor, spec: PhotometricSpec | None) -> torch.Tensor:
    """The views ``x`` (``N x 3 x S x S`` float in [0, 255]) after ``spec``'s ops, float32 in [0, 1];
    ``u``: ``N x PHOTOMETRIC_UNIFORMS`` uniforms (CPU); ``spec=None`` only scales to [0, 1]."""
    n, size = len(x), x.shape[-1]
    if spec is None:
        return (x / 255).clamp_(0, 1)
    mean = x.mean((-2, -1)).double().cpu()  # Nx3
    A, t = colour_transforms(u, spec, mean)
    A, t = A.to(device=x.device, dtype=torch.float32), t.to(device=x.device, dtype=torch.float32)
    out = torch.baddbmm(t[:, :, None], A, x.reshape(n, 3, -1)).clamp_(0, 1).reshape(x.shape)
    low, high = blur_sigma_range(size)
    blurred = (u[:, 7] < spec.blur_p).nonzero()[:, 0]
    if len(blurred):
        sigma = low + (high - low) * u[blurred, 8]
        rows = blurred.to(x.device)
        out.index_copy_(0, rows, gaussian_blur(out.index_select(0, rows), blur_kernel_size(size), sigma))
    solarized = (u[:, 9] < spec.solarize_p).nonzero()[:, 0].to(x.device)
    if len(solarized):
        views = out.index_select(0, solarized)
        out.index_copy_(0, solarized, torch.where(views >= SOLARIZE_THRESHOLD, 1 - views, views))
    return out
