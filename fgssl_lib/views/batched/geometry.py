"""Batched geometry of the two-view generators: per-sample boxes (RandomResizedCrop, SaliencySwap's patch and paste
boxes), vectorised, and the crops resized with the mask moved along.

Boxes are ``N x 4`` float64 ``(x0, y0, x1, y1)`` with exclusive ends, integer-valued like the per-sample generators'
(drawn from the uniforms of :mod:`~fgssl_lib.views.batched.randomness`). Resizing is the per-sample generators'
antialiased bilinear resize, in one of two ways:

- on a CPU, one call per view of PyTorch's uint8 kernel on a channels-last uint8 batch (its fastest layout: it beats
  any one-call batched resampler such as ``roi_align`` or ``grid_sample`` on float copies by about 10x at 224 px);
- elsewhere (``grouped``), the same resize as two batched matrix products: an antialiased bilinear resize is linear
  and separable, ``out = W_y crop W_x^T``, and each view's crop, resize and place in its output box is one pair of
  resampling matrices over the whole padded image (:func:`resampling_matrices`), so a batch of views of any sizes
  takes a fixed number of kernel launches (:func:`resample`). The matrices hold the kernel's own weights (the
  triangle filter stretched by the scale when shrinking, normalised per output pixel, as Pillow and
  ``F.interpolate(antialias=True)``), so the pixels equal the uint8 kernel's up to rounding.

The mask rides along as a fourth channel ``255 * mask`` and is thresholded at 128, which matches the per-sample
nearest-neighbour masks up to a one-pixel border.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ATTEMPTS = 10
"""RandomResizedCrop's tries before the central-crop fallback (as torchvision)."""
RRC_UNIFORMS = 2 * ATTEMPTS + 2
"""Uniforms one RandomResizedCrop draws: a scale and a log-aspect per try, then the position."""
_bilinear_aa = torch._C._nn._upsample_bilinear2d_aa
"""The antialiased bilinear kernel behind ``F.interpolate(mode="bilinear", antialias=True)``, with ``out=``."""


def _randint(u: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Integers uniform in ``[0, high]`` from uniforms ``u`` in [0, 1)."""
    return torch.minimum(torch.floor(u * (high + 1)), high)


def random_resized_crop_boxes(u: torch.Tensor, hw: torch.Tensor, scale: tuple[float, float],
                              ratio: tuple[float, float]) -> torch.Tensor:
    """RandomResizedCrop boxes ``N x 4`` in images of valid size ``hw`` (``N x 2``), from uniforms ``u``
    (``N x RRC_UNIFORMS``): torchvision's rule (up to ``ATTEMPTS`` tries of area ``U(scale)`` and log-uniform aspect
    ``ratio``; the first that fits wins; otherwise the central crop of the clamped aspect), vectorised."""
    height, width = hw[:, :1].double(), hw[:, 1:].double()  # Nx1
    area = height * width * (scale[0] + (scale[1] - scale[0]) * u[:, :ATTEMPTS])  # NxA
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[:, ATTEMPTS:2 * ATTEMPTS])  # NxA
    w, h = torch.round(torch.sqrt(area * aspect)), torch.round(torch.sqrt(area / aspect))  # NxA
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.double().argmax(1, keepdim=True)  # Nx1, the first try that fits
    w, h, found = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0], fits.any(1)
    height, width = height[:, 0], width[:, 0]
    in_ratio = width / height
    fallback_w = torch.where(in_ratio > ratio[1], torch.round(height * ratio[1]), width)
    fallback_h = torch.where(in_ratio < ratio[0], torch.round(width / ratio[0]), height)
    w, h = torch.where(found, w, fallback_w), torch.where(found, h, fallback_h)
    left = torch.where(found, _randint(u[:, -2], width - w), torch.floor((width - w) / 2))
    top = torch.where(found, _randint(u[:, -1], height - h), torch.floor((height - h) / 2))
    return torch.stack([left, top, left + w, top + h], 1)


def object_boxes(box: torch.Tensor, hw: torch.Tensor) -> torch.Tensor:
    """:func:`fgssl_lib.views.base.object_box`, vectorised: sample boxes ``N x 4`` clipped to ``hw`` and rounded
    outwards to whole pixels; an empty box means the whole image."""
    height, width = hw[:, 0].double(), hw[:, 1].double()
    box = box.double()
    x0, x1 = box[:, 0].clamp(min=0).minimum(width), box[:, 2].clamp(min=0).minimum(width)
    y0, y1 = box[:, 1].clamp(min=0).minimum(height), box[:, 3].clamp(min=0).minimum(height)
    empty = (x1 <= x0) | (y1 <= y0)
    left, top = torch.floor(x0).minimum(width - 1), torch.floor(y0).minimum(height - 1)
    right, bottom = torch.ceil(x1).maximum(left + 1), torch.ceil(y1).maximum(top + 1)
    whole = torch.stack([torch.zeros_like(width), torch.zeros_like(width), width, height], 1)
    return torch.where(empty[:, None], whole, torch.stack([left, top, right, bottom], 1))


def patch_boxes(u: torch.Tensor, box: torch.Tensor, crop_scale: tuple[float, float]) -> torch.Tensor:
    """SaliencySwap's random patch of each ``box`` (``N x 4``, whole pixels), vectorised
    :func:`fgssl_lib.views.saliency_swap.sample_patch`: area fraction ``U(crop_scale)``, the box's aspect, inside the
    box. ``u``: ``N x 3`` uniforms (scale, x, y)."""
    side = torch.sqrt(crop_scale[0] + (crop_scale[1] - crop_scale[0]) * u[:, 0])
    box_w, box_h = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    w = torch.round(box_w * side).clamp(min=1).minimum(box_w)
    h = torch.round(box_h * side).clamp(min=1).minimum(box_h)
    left, top = box[:, 0] + _randint(u[:, 1], box_w - w), box[:, 1] + _randint(u[:, 2], box_h - h)
    return torch.stack([left, top, left + w, top + h], 1)


def paste_boxes(u: torch.Tensor, patch: torch.Tensor, size: int, paste_ratio: tuple[float, float]) -> torch.Tensor:
    """Where SaliencySwap ``other`` pastes each patch (``N x 4``) in an ``S x S`` background, vectorised
    :func:`fgssl_lib.views.saliency_swap.paste_box`: area ``U(paste_ratio) S^2`` with the patch's aspect, clipped to
    the background. ``u``: ``N x 3`` uniforms (area, x, y)."""
    area = (paste_ratio[0] + (paste_ratio[1] - paste_ratio[0]) * u[:, 0]) * size * size
    aspect = (patch[:, 2] - patch[:, 0]) / (patch[:, 3] - patch[:, 1])
    w = torch.sqrt(area * aspect).maximum(area / size).clamp(max=size)
    w = torch.round(w).clamp(min=1)
    h = torch.round(area / w).clamp(1, size)
    left, top = _randint(u[:, 1], size - w), _randint(u[:, 2], size - h)
    return torch.stack([left, top, left + w, top + h], 1)


def resized_boxes(box: torch.Tensor, hw: torch.Tensor, size: int) -> torch.Tensor:
    """Whole-pixel boxes ``N x 4`` of images ``hw`` mapped into the images resized to ``S x S`` (SaliencySwap
    ``same``'s ``B_b``), at least one pixel, as :class:`fgssl_lib.views.saliency_swap.SaliencySwap` does."""
    sx, sy = size / hw[:, 1].double(), size / hw[:, 0].double()
    x0, y0 = torch.round(box[:, 0] * sx).clamp(max=size - 1), torch.round(box[:, 1] * sy).clamp(max=size - 1)
    x1, y1 = torch.round(box[:, 2] * sx).maximum(x0 + 1), torch.round(box[:, 3] * sy).maximum(y0 + 1)
    return torch.stack([x0, y0, x1, y1], 1)


def box_masks(box: torch.Tensor, size: int, device: torch.device) -> torch.Tensor:
    """``N x S x S`` bool masks, set inside each whole-pixel ``box``."""
    grid = torch.arange(size, device=device, dtype=torch.float64)
    box = box.to(device=device, dtype=torch.float64)
    inside_y = (grid >= box[:, 1:2]) & (grid < box[:, 3:4])  # NxS
    inside_x = (grid >= box[:, 0:1]) & (grid < box[:, 2:3])  # NxS
    return inside_y[:, :, None] & inside_x[:, None, :]


def grouped_path(device: torch.device, grouped: bool | None = None) -> bool:
    """Whether views made on ``device`` take the grouped path (batched matrix products, a fixed number of ops per
    batch) instead of the CPU's per-view kernels: ``grouped`` when given (to run either path anywhere), else on every
    device but the CPU."""
    return device.type != "cpu" if grouped is None else bool(grouped)


def _axis_weights(start: torch.Tensor, stop: torch.Tensor, out_start: torch.Tensor, out_stop: torch.Tensor,
                  length: int, size: int, device: torch.device) -> torch.Tensor:
    """``K x size x length`` float32 weights along one axis: input pixels ``[start, stop)`` (of ``length``) resized
    bilinearly with antialiasing onto output pixels ``[out_start, out_stop)`` (of ``size``), zero rows elsewhere.
    Output pixel ``o`` of the target is centred at ``c = s (o + 1/2)`` in the crop (``s``: input over output length)
    and weighs crop pixel ``t`` by the triangle ``max(0, 1 - |t + 1/2 - c| / max(s, 1))``, normalised."""
    start, stop, out_start, out_stop = (v.to(device=device, dtype=torch.float32)[:, None, None]
                                        for v in (start, stop, out_start, out_stop))  # Kx1x1 each
    scale = (stop - start) / (out_stop - out_start)
    o = torch.arange(size, device=device, dtype=torch.float32)[None, :, None] - out_start  # KxSx1
    t = torch.arange(length, device=device, dtype=torch.float32)[None, None, :] - start  # Kx1xL
    weights = (1 - (t + 0.5 - scale * (o + 0.5)).abs_() / scale.clamp(min=1)).clamp_(min=0)  # KxSxL
    weights.mul_((o >= 0) & (o < out_stop - out_start)).mul_((t >= 0) & (t < stop - start))
    return weights.div_(weights.sum(-1, keepdim=True).clamp_(min=1e-12))


def resampling_matrices(boxes: torch.Tensor, shape: tuple[int, int], size: int, targets: torch.Tensor | None = None,
                        device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The antialiased bilinear resize of each whole-pixel box ``boxes[k]`` (``K x 4``) of an ``H x W`` image
    (``shape``) onto its box ``targets[k]`` of an ``S x S`` output (default: all of it), as the matrices ``(W_y K x S x
    H, W_x K x S x W)`` float32 on ``device``: the view is ``W_y image W_x^T`` per channel (:func:`resample`), zero
    outside its target box."""
    if targets is None:
        targets = torch.tensor([0.0, 0.0, size, size]).expand(len(boxes), 4)
    weights_y = _axis_weights(boxes[:, 1], boxes[:, 3], targets[:, 1], targets[:, 3], shape[0], size, device)
    weights_x = _axis_weights(boxes[:, 0], boxes[:, 2], targets[:, 0], targets[:, 2], shape[1], size, device)
    return weights_y, weights_x


def blur_matrices(hw: torch.Tensor, sigma: torch.Tensor, length: int, device: torch.device) -> torch.Tensor:
    """``K x L x L`` float32: along one axis of valid length ``hw[k]`` (padded to ``L``), a Gaussian blur of standard
    deviation ``sigma[k]`` with ``2 ceil(3 sigma) + 1`` taps and a reflect-101 border (as
    :func:`fgssl_lib.views.photometric.separable_gaussian_blur`), as a matrix; composed with a resampling matrix it
    blurs before the resize in the same product."""
    radius = torch.ceil(3 * sigma.double())  # K
    taps = torch.arange(-int(radius.max()), int(radius.max()) + 1, dtype=torch.float64)  # T
    weights = torch.exp(-taps**2 / (2 * sigma.double()[:, None] ** 2)) * (taps.abs() <= radius[:, None])  # KxT
    weights = (weights / weights.sum(1, keepdim=True)).float().to(device)
    hw = hw.to(device)[:, None, None]
    period = (2 * hw - 2).clamp(min=1)
    position = torch.arange(length, device=device)[None, :, None]  # 1xLx1
    source = torch.remainder(position + taps.long().to(device), period)  # KxLxT, reflected at 0 ...
    source = torch.where(source >= hw, period - source, source).clamp_(max=length - 1)  # ... and at hw - 1
    kept = weights[:, None, :] * (position < hw)  # rows past the valid length stay zero
    out = torch.zeros(len(hw), length, length, device=device)
    for tap in range(len(taps)):  # a tap per call: no entry is added to twice in one call (deterministic on a GPU)
        out.scatter_add_(2, source[:, :, tap:tap + 1], kept[:, :, tap:tap + 1])
    return out


def resample(source: torch.Tensor, rows: torch.Tensor, weights_y: torch.Tensor,
             weights_x: torch.Tensor) -> torch.Tensor:
    """``K x C x S x S`` float32: ``W_y[k] source[rows[k]] W_x[k]^T`` for every channel of ``source`` (``B x C x H
    x W``, any dtype, on the matrices' device) with matrices of :func:`resampling_matrices`: two batched matrix
    products, whatever the sizes of the crops."""
    crops = source.index_select(0, rows.to(source.device)).float()  # KxCxHxW
    return weights_y[:, None] @ crops @ weights_x[:, None].transpose(-1, -2)


def as_rows(views: torch.Tensor, dtype: torch.dtype, out: torch.Tensor | None = None) -> torch.Tensor:
    """``K x S x S x C`` channels-last ``dtype`` (uint8: rounded and clamped to [0, 255]) of float ``K x C x S x
    S`` ``views``, written into ``out`` when given."""
    if dtype == torch.uint8:
        views = views.round_().clamp_(0, 255)
    views = views.permute(0, 2, 3, 1)
    return views.to(dtype) if out is None else out.copy_(views)


class Workspace:
    """Reusable buffers of a generator's intermediates (the channels-last rows, the views' layouts, their float
    planes): a fresh tensor per batch costs page faults on a CPU on top of the writes."""

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def buffer(self, role: str, shape: tuple[int, ...], device: torch.device,
               dtype: torch.dtype = torch.uint8) -> torch.Tensor:
        """A ``dtype`` tensor of ``shape`` on ``device`` (contents undefined), reused across calls for ``role``."""
        buffer = self._buffers.get(role)
        if buffer is None or buffer.shape != shape or buffer.device != device or buffer.dtype != dtype:
            buffer = self._buffers[role] = torch.empty(shape, dtype=dtype, device=device)
        return buffer


def channels_last(workspace: Workspace, image: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``B x H x W x C`` uint8: the ``B x 3 x H x W`` images, with ``255 * mask`` (``B x H x W``) as a fourth channel
    when given, in one reused buffer (the layout the antialiased uint8 resize is fastest on)."""
    channels = 3 if mask is None else 4
    out = workspace.buffer(f"rows{channels}", (image.shape[0], *image.shape[-2:], channels), image.device)
    out[..., :3].copy_(image.permute(0, 2, 3, 1))
    if mask is not None:
        out[..., 3].copy_(mask).mul_(255)
    return out


def resized_crop(source: torch.Tensor, row: int, box: list[int], height: int, width: int,
                 out: torch.Tensor | None = None) -> torch.Tensor:
    """``height x width x C``: pixels ``box`` (``x0, y0, x1, y1``) of ``source[row]`` (``B x H x W x C``) resized
    bilinearly with antialiasing, as ``torchvision``'s ``resized_crop``, written into ``out`` (``height x width x C``,
    e.g. a row of a channels-last buffer) when given. uint8 in, uint8 out on a CPU: PyTorch's uint8 kernel, the one
    ``F.interpolate(..., antialias=True)`` dispatches to, called directly so that it writes into ``out`` (no copy)
    and skips ``interpolate``'s per-call checks; elsewhere, and for float sources, through float (rounded back to
    uint8 for uint8 sources)."""
    x0, y0, x1, y1 = box
    crop = source[row, y0:y1, x0:x1].permute(2, 0, 1)[None]  # 1xCxhxw
    target = None if out is None else out.permute(2, 0, 1)[None]
    if crop.device.type == "cpu" and crop.dtype == torch.uint8:
        # the kernel writes in place only whole channels-last outputs, of channels-last inputs
        if target is None or (crop.stride(1) == 1 and target.is_contiguous(memory_format=torch.channels_last)):
            return _bilinear_aa(crop, (height, width), False, out=target)[0].permute(1, 2, 0)
        resized = _bilinear_aa(crop, (height, width), False)
    else:
        resized = F.interpolate(crop.float(), size=(height, width), mode="bilinear", antialias=True,
                                align_corners=False)
        resized = resized.round_().clamp_(0, 255).to(source.dtype) if source.dtype == torch.uint8 else resized
    return resized[0].permute(1, 2, 0) if target is None else target.copy_(resized)[0].permute(1, 2, 0)


def resized_crops(source: torch.Tensor, rows: torch.Tensor, boxes: torch.Tensor, size: int,
                  out: torch.Tensor | None = None, grouped: bool | None = None) -> torch.Tensor:
    """``K x S x S x C``: each box ``boxes[k]`` (whole pixels) of ``source[rows[k]]`` (``B x H x W x C``) resized to
    ``S x S``, written into ``out`` (``K x S x S x C``, e.g. a reused :class:`Workspace` buffer; default: a new
    tensor). The grouped path (:func:`grouped_path`) resamples all views at once (:func:`resample`); otherwise view
    by view, a contiguous uint8 source on a CPU taking the kernel of :func:`resized_crop` straight from channel-first
    views into ``out`` (the loop is most of the cost at small sizes)."""
    if out is None:
        out = torch.empty((len(rows), size, size, source.shape[-1]), dtype=source.dtype, device=source.device)
    if grouped_path(source.device, grouped):
        matrices = resampling_matrices(boxes, source.shape[1:3], size, device=source.device)
        return as_rows(resample(source.permute(0, 3, 1, 2), rows, *matrices), source.dtype, out)
    crops = zip(rows.tolist(), boxes.long().tolist())
    direct = source.device.type == "cpu" and source.dtype == torch.uint8 and source.is_contiguous() and \
        out.is_contiguous()
    if not direct:
        for k, (row, box) in enumerate(crops):
            resized_crop(source, row, box, size, size, out=out[k])
        return out
    planes, targets = source.permute(0, 3, 1, 2), out.permute(0, 3, 1, 2)  # channel-first views, no copy
    for k, (row, (x0, y0, x1, y1)) in enumerate(crops):
        _bilinear_aa(planes[row:row + 1, :, y0:y1, x0:x1], (size, size), False, out=targets[k:k + 1])
    return out


def flip_rows(x: torch.Tensor, flip: torch.Tensor, dim: int, grouped: bool | None = None) -> torch.Tensor:
    """Mirror the rows of ``x`` along ``dim`` where ``flip`` (``N`` bool, CPU) is set, in place: row by row on a CPU
    (no gathered copy), in one gather and scatter on the grouped path (:func:`grouped_path`)."""
    rows = flip.nonzero()[:, 0]
    if not grouped_path(x.device, grouped):
        for row in rows.tolist():
            x[row] = x[row].flip(dim - 1)
    elif len(rows):
        rows = rows.to(x.device)
        x.index_copy_(0, rows, x.index_select(0, rows).flip(dim))
    return x
