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

import cv2
import torch
import torch.nn.functional as F

from fgssl_lib.views.batched.geometry import Workspace, grouped_path
from fgssl_lib.views.photometric import SOLARIZE_THRESHOLD, PhotometricSpec, blur_kernel_size, blur_sigma_range

PHOTOMETRIC_UNIFORMS = 10
"""Uniforms one view's photometric ops draw: jitter applied, jitter order, 4 factors, greyscale, blur applied, sigma,
solarize applied."""
GREY = torch.tensor([0.2989, 0.587, 0.114], dtype=torch.float64)
"""Luma weights of torchvision's greyscale (ITU-R 601-2)."""
RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]],
                          dtype=torch.float64)
ORDERS = torch.tensor(list(itertools.permutations(range(4))))
"""The 24 orders of (brightness, contrast, saturation, hue)."""


YIQ_TO_RGB = torch.linalg.inv(RGB_TO_YIQ)


def hue_matrices(hue: torch.Tensor) -> torch.Tensor:
    """``N x 3 x 3`` RGB matrices that rotate the YIQ chroma plane by ``-2 pi hue`` (``hue``: ``N`` float64)."""
    cos, sin = torch.cos(-2 * math.pi * hue), torch.sin(-2 * math.pi * hue)
    rotation = torch.zeros(len(hue), 3, 3, dtype=torch.float64)
    rotation[:, 0, 0] = 1
    rotation[:, 1, 1], rotation[:, 1, 2], rotation[:, 2, 1], rotation[:, 2, 2] = cos, -sin, sin, cos
    return YIQ_TO_RGB @ rotation @ RGB_TO_YIQ


Specs = PhotometricSpec | tuple[PhotometricSpec, PhotometricSpec]
"""One spec for every view, or ``(view 1's, view 2's)`` for views stacked view 1's rows first."""


def per_view(specs: Specs, n: int, name: str) -> torch.Tensor:
    """``n`` float64: the field ``name`` of each of ``n`` views' spec (a pair: the first half of the rows has the
    first spec's, the rest the second's)."""
    first, second = (specs, specs) if isinstance(specs, PhotometricSpec) else specs
    values = torch.empty(n, dtype=torch.float64)
    values[:n // 2], values[n // 2:] = getattr(first, name), getattr(second, name)
    return values


def colour_transforms(u: torch.Tensor, spec: Specs, mean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-view colour jitter and greyscale as ``(A N x 3 x 3, t N x 3)`` float64, ``out = A x + t`` for views ``x``
    in [0, 255] (``mean``: their ``N x 3`` channel means; ``u``: ``N x PHOTOMETRIC_UNIFORMS`` uniforms; ``spec``: see
    :data:`Specs`).

    Composed in homogeneous ``4 x 4`` form: ops ``0..3`` are brightness, contrast, saturation, hue (contrast is
    rebuilt at each step, as it blends towards the current mean grey level) and op 4, the identity, stands in for
    every step of a view without jitter."""
    n = len(u)
    eye = torch.eye(4, dtype=torch.float64)
    grey = eye.clone()
    grey[:3, :3] = GREY.expand(3, 3)  # every channel <- the grey level
    strengths = torch.stack([per_view(spec, n, name) for name in ("brightness", "contrast", "saturation")], 1)
    factors = 1 + strengths * (2 * u[:, 2:5] - 1)  # Nx3
    ops = eye.repeat(n, 5, 1, 1)  # Nx5x4x4
    ops[:, 0, :3, :3] *= factors[:, 0, None, None]
    ops[:, 1, :3, :3] *= factors[:, 1, None, None]
    ops[:, 2, :3, :3] = factors[:, 2, None, None] * eye[:3, :3] + (1 - factors[:, 2, None, None]) * grey[:3, :3]
    ops[:, 3, :3, :3] = hue_matrices(per_view(spec, n, "hue") * (2 * u[:, 5] - 1))
    order = ORDERS[torch.floor(u[:, 1] * len(ORDERS)).long().clamp(max=len(ORDERS) - 1)]  # Nx4
    order = torch.where((u[:, 0] < per_view(spec, n, "jitter_p"))[:, None], order, 4)
    transform = torch.diag(torch.tensor([1 / 255] * 3 + [1], dtype=torch.float64)).repeat(n, 1, 1)  # Nx4x4
    mean = torch.cat([mean, torch.ones(n, 1, dtype=torch.float64)], 1)[:, :, None]  # Nx4x1, homogeneous
    rows = torch.arange(n)
    for step in range(4):
        level = (grey[0] @ (transform @ mean))[:, 0]  # N, the current mean grey level
        ops[:, 1, :3, 3] = ((1 - factors[:, 1]) * level)[:, None]  # contrast: c x + (1 - c) level
        transform = ops[rows, order[:, step]] @ transform
    transform = torch.where((u[:, 6] < per_view(spec, n, "grayscale_p"))[:, None, None], grey @ transform, transform)
    return transform[:, :3, :3], transform[:, :3, 3]


def gaussian_blur(x: torch.Tensor, rows: torch.Tensor, kernel_size: int, sigma: torch.Tensor,
                  grouped: bool | None = None) -> torch.Tensor:
    """Blur the views ``x[rows]`` (``x``: ``N x C x S x S`` float, contiguous; ``rows``: ``K`` CPU indices), each with
    its own ``sigma`` (``K``), in place, separably with a reflect-101 border as
    :func:`fgssl_lib.views.photometric.separable_gaussian_blur`: OpenCV per channel plane on a CPU,
    :func:`grouped_gaussian_blur` on the grouped path (:func:`~fgssl_lib.views.batched.geometry.grouped_path`)."""
    if grouped_path(x.device, grouped):
        return grouped_gaussian_blur(x, rows, kernel_size, sigma)
    views = x.numpy()
    for row, s in zip(rows.tolist(), sigma.tolist()):
        for plane in views[row]:
            cv2.GaussianBlur(plane, (kernel_size, kernel_size), s, dst=plane, borderType=cv2.BORDER_REFLECT_101)
    return x


def grouped_gaussian_blur(x: torch.Tensor, rows: torch.Tensor, kernel_size: int, sigma: torch.Tensor) -> torch.Tensor:
    """:func:`gaussian_blur` on any device: two grouped 1-D convolutions (one kernel per view and channel)."""
    rows = rows.to(x.device)
    n, channels = len(rows), x.shape[1]
    taps = torch.arange(kernel_size, dtype=x.dtype, device=x.device) - (kernel_size - 1) / 2
    kernels = torch.softmax(-(taps**2) / (2 * sigma.to(x)[:, None] ** 2), dim=1).repeat_interleave(channels, 0)
    pad = kernel_size // 2
    out = F.pad(x.index_select(0, rows).reshape(1, n * channels, *x.shape[2:]), (pad,) * 4, mode="reflect")
    out = F.conv2d(out, kernels[:, None, None, :], groups=n * channels)
    out = F.conv2d(out, kernels[:, None, :, None], groups=n * channels)
    return x.index_copy_(0, rows, out.reshape(n, channels, *x.shape[2:]))


def photometric(x: torch.Tensor, u: torch.Tensor, specs: tuple[PhotometricSpec, PhotometricSpec] | None,
                workspace: Workspace | None = None, grouped: bool | None = None) -> torch.Tensor:
    """Both views' photometric ops: ``x`` (``2B x S x S x 3`` uint8, view 1's rows first) to ``2B x 3 x S x S``
    float32 in [0, 1], view 1's rows with ``specs[0]``, view 2's with ``specs[1]``; ``u``: ``2B x
    PHOTOMETRIC_UNIFORMS`` CPU uniforms; ``specs=None`` only scales to [0, 1]. The colour transforms (which also
    scale to [0, 1]) take one batched ``t + A x`` over the float planes of ``x``, held in ``workspace`` if given;
    ``grouped`` chooses the blur's path (:func:`gaussian_blur`)."""
    n, size = len(x), x.shape[1]
    shape = (n, 3, size, size)
    planes = torch.empty(shape, device=x.device) if workspace is None else \
        workspace.buffer("planes", shape, x.device, torch.float32)
    planes.copy_(x.permute(0, 3, 1, 2))  # Nx3xSxS in [0, 255]
    if specs is None:
        return planes.div(255)
    A, t = (m.to(device=x.device, dtype=torch.float32)
            for m in colour_transforms(u, specs, planes.mean((-2, -1)).double().cpu()))
    out = torch.baddbmm(t[:, :, None], A, planes.view(n, 3, -1)).clamp_(0, 1).view(shape)
    low, high = blur_sigma_range(size)
    blur_p, solarize_p = (per_view(specs, n, name) for name in ("blur_p", "solarize_p"))
    blurred = (u[:, 7] < blur_p).nonzero()[:, 0]
    if len(blurred):
        gaussian_blur(out, blurred, blur_kernel_size(size), low + (high - low) * u[blurred, 8], grouped)
    solarized = (u[:, 9] < solarize_p).nonzero()[:, 0].to(x.device)
    if len(solarized):
        views = out.index_select(0, solarized)
        out.index_copy_(0, solarized, torch.where(views >= SOLARIZE_THRESHOLD, 1 - views, views))
    return out
