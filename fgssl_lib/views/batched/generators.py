"""Batched two-view generators: the per-sample generators of :mod:`fgssl_lib.views` as tensor ops on a whole batch,
on the batch's device (CPU or GPU), with per-sample random parameters.

A batch is the device-resident store's rows: ``image B x 3 x H x W`` uint8 (zero-padded), ``mask B x H x W`` uint8,
optional ``saliency B x H x W`` uint8 (``round(255 S)``), ``box B x 4`` float (exclusive ends, stored pixels),
``hw B x 2`` int64 (each row's valid height and width), ``label`` and ``index`` (``B`` int64). The output is the
collated contract of the per-sample generators: ``view1, view2`` float32 ``B x 3 x S x S`` in [0, 1], ``mask1, mask2``
float32 ``B x S x S`` in {0, 1}, ``label``, ``index``. Views are a function of ``(seed, epoch, index)`` only
(:mod:`~fgssl_lib.views.batched.randomness`). Each view's geometry comes first, in uint8 (antialiased resized crops
that move the mask with the image, :mod:`~fgssl_lib.views.batched.geometry`), then the flip and the photometric ops
(:mod:`~fgssl_lib.views.batched.photometric`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from fgssl_lib.config import check_choice
from fgssl_lib.views.base import resolve_backgrounds
from fgssl_lib.views.batched.geometry import (RRC_UNIFORMS, Workspace, as_rows, blur_matrices, box_masks,
                                              channels_last, flip_rows, grouped_path, object_boxes, paste_boxes,
                                              patch_boxes, random_resized_crop_boxes, resample, resampling_matrices,
                                              resized_boxes, resized_crop, resized_crops)
from fgssl_lib.views.batched.photometric import PHOTOMETRIC_UNIFORMS, photometric
from fgssl_lib.views.batched.randomness import SampleGenerators, draw_uniforms, sample_keys
from fgssl_lib.views.copy_paste import BLENDINGS, BLUR_RADIUS, blur_at_source, paste_options
from fgssl_lib.views.photometric import PHOTOMETRIC, PHOTOMETRIC_SPECS
from fgssl_lib.views.saliency_swap import MODES, check_fractions

Source = Callable[[torch.Tensor], Mapping[str, torch.Tensor]]
GEOMETRY = slice(0, RRC_UNIFORMS)
"""Uniform slots of one view (``U`` per view): the geometry's, the flip's, the photometric ops' and the generator's
own."""
FLIP = RRC_UNIFORMS
PHOTOMETRY = slice(FLIP + 1, FLIP + 1 + PHOTOMETRIC_UNIFORMS)
OWN = PHOTOMETRY.stop
UNIFORMS = OWN + 8
_BATCH_KEYS = ("image", "mask", "box", "hw", "label", "index")
HOST_DRAWS = "views.host_draws"
"""The profiler label of the draws from background pools: per view, from the sample's own CPU generator, on the host
(no kernel on the training device; the drawn backgrounds go to the device in one copy)."""


def check_batch(batch: Mapping[str, Any]) -> None:
    """Raise a ``ValueError`` that says what is wrong if ``batch`` breaks the store-batch contract."""
    problems = [f"it lacks {key!r}" for key in _BATCH_KEYS if key not in batch]
    image, mask = batch.get("image"), batch.get("mask")
    if image is not None and (image.dtype != torch.uint8 or image.ndim != 4 or image.shape[1] != 3):
        problems.append(f"'image' must be Bx3xHxW uint8, not {image.dtype} {tuple(image.shape)}")
    elif image is not None and mask is not None and mask.shape != (image.shape[0], *image.shape[-2:]):
        problems.append(f"'mask' must be BxHxW like the images, not {tuple(mask.shape)}")
    if problems:
        raise ValueError(f"not a batch of store rows ({'; '.join(problems)}): pass dict(image, mask, box, hw, label, "
                         "index[, saliency]) as fgssl_lib.views.batched.generators describes")


class BatchedTwoView:
    """Base batched two-view generator: ``layout`` (per generator) -> flip -> photometric ops, both views at once.

    Args:
        size: side ``S`` of the square views.
        photometric: ``mocov2``, ``byol`` (asymmetric) or ``none`` (:mod:`fgssl_lib.views.photometric`).
        flip_p: probability of a horizontal flip (moves the mask with the view).
        seed: the views' seed (with the epoch and each sample's index).
        grouped: make the views with a fixed number of ops per batch (batched matrix products and index ops,
            :mod:`~fgssl_lib.views.batched.geometry`) rather than per-view kernels; default: on every device but the
            CPU, where the per-view uint8 kernels are faster.
    """

    def __init__(self, size: int, photometric: str = "mocov2", flip_p: float = 0.5, seed: int = 0,
                 grouped: bool | None = None):
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int (the side of the square views), got {size!r}")
        self.size, self.flip_p, self.seed = size, float(flip_p), int(seed)
        self.photometric_name = check_choice("photometric", photometric, PHOTOMETRIC)
        self.specs = PHOTOMETRIC_SPECS[photometric]
        self.workspace = Workspace()
        self.grouped = grouped

    def layout(self, batch: Mapping[str, torch.Tensor], u: torch.Tensor, generators: Sequence[torch.Generator],
               source: Source | None) -> torch.Tensor:
        """Both views' geometry: ``2B x S x S x 4`` uint8, the image and ``255 * mask`` as the fourth channel, rows
        ``v B + b`` (view ``v``, sample ``b``).

        ``u``: ``2B x UNIFORMS`` CPU uniforms in the same row order; ``generators``: the ``B`` samples' generators
        (for background pools)."""
        raise NotImplementedError

    def __call__(self, batch: Mapping[str, torch.Tensor], epoch: int, source: Source | None = None) -> dict[str, Any]:
        check_batch(batch)
        n, device = len(batch["index"]), batch["image"].device
        keys = sample_keys(self.seed, int(epoch), batch["index"])
        u = draw_uniforms(keys, 2 * UNIFORMS).view(n, 2, UNIFORMS).transpose(0, 1).reshape(2 * n, UNIFORMS)
        generators = SampleGenerators(keys)
        no_autocast = torch.autocast(device.type, enabled=False) if device.type in ("cpu", "cuda") else \
            contextlib.nullcontext()
        with no_autocast:
            layouts = flip_rows(self.layout(batch, u, generators, source), u[:, FLIP] < self.flip_p, dim=2,
                                grouped=self.grouped)
            views = photometric(layouts[..., :3], u[:, PHOTOMETRY], self.specs, self.workspace, grouped=self.grouped)
            masks = layouts[..., 3].float().div_(255).round_()  # 255 * mask thresholded at 128
        return dict(view1=views[:n], view2=views[n:], mask1=masks[:n], mask2=masks[n:], label=batch["label"],
                    index=batch["index"])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, photometric={self.photometric_name!r}, seed={self.seed})"


class BatchedStandardViews(BatchedTwoView):
    """:class:`fgssl_lib.views.StandardViews` batched: two RandomResizedCrop views of each row's valid region.

    Args:
        size: side ``S`` of the views.
        scale: range of the crop's area as a fraction of the image; ratio: range of its aspect ratio.
        **kwargs: ``photometric``, ``flip_p``, ``seed`` of :class:`BatchedTwoView`.
    """

    def __init__(self, size: int, scale: tuple[float, float] = (0.2, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), **kwargs: Any):
        super().__init__(size, **kwargs)
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1 (fractions of the image area), got {scale}")
        self.scale, self.ratio = (float(scale[0]), float(scale[1])), (float(ratio[0]), float(ratio[1]))

    def crops(self, batch: Mapping[str, torch.Tensor], u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows each view reads (``2B``) and its RandomResizedCrop boxes (``2B x 4``)."""
        hw = batch["hw"].cpu().repeat(2, 1)
        rows = torch.arange(len(hw)) % len(batch["hw"])
        return rows, random_resized_crop_boxes(u[:, GEOMETRY], hw, self.scale, self.ratio)

    def layout(self, batch: Mapping[str, torch.Tensor], u: torch.Tensor, generators: Sequence[torch.Generator],
               source: Source | None) -> torch.Tensor:
        """RandomResizedCrop of image and mask (one resize of the 4 channels per view, or all views at once)."""
        rows, boxes = self.crops(batch, u)
        image = batch["image"]
        out = self.workspace.buffer("views", (len(rows), self.size, self.size, 4), image.device)
        if grouped_path(image.device, self.grouped):
            planes = torch.cat([image, batch["mask"][:, None] * 255], 1)  # Bx4xHxW
            matrices = resampling_matrices(boxes, image.shape[-2:], self.size, device=image.device)
            return as_rows(resample(planes, rows, *matrices), torch.uint8, out)
        source = channels_last(self.workspace, image, batch["mask"])
        return resized_crops(source, rows, boxes, self.size, out=out)


class BatchedCopyPaste(BatchedStandardViews):
    """:class:`fgssl_lib.views.CopyPaste` batched (DiLo): RandomResizedCrop views whose background is replaced with
    probability ``p``, ``S x + (1 - S) bg``, with ``S`` the soft map (the batch's ``saliency``, else its mask; or the
    mask with ``paste_map="mask"``) blurred at the stored resolution before the crop per ``blending``; image, mask and
    ``S`` share one crop box. Backgrounds are drawn per pasted view from the sample's generator.

    Args:
        size: side ``S`` of the views.
        p, backgrounds, blending, paste_map: as :class:`fgssl_lib.views.CopyPaste`.
        **kwargs: ``scale``, ``ratio`` of :class:`BatchedStandardViews`; ``photometric``, ``flip_p``, ``seed``.
    """

    def __init__(self, size: int, p: float = 0.3, backgrounds: Any = "grey", blending: str = "mix",
                 paste_map: str = "saliency", **kwargs: Any):
        super().__init__(size, **kwargs)
        self.p, self.backgrounds, self.blending, self.paste_map = paste_options(p, backgrounds, blending, paste_map)

    def soft_maps(self, batch: Mapping[str, torch.Tensor], rows: list[int], blur: list[bool]) -> torch.Tensor:
        """``K x H x W x 4`` uint8 for the batch rows ``rows``: channel 0 is ``round(255 S)`` of the soft map, channel 1
        the same blurred at the stored resolution (:func:`fgssl_lib.views.copy_paste.blur_at_source`) where ``blur``
        (else undefined); four channels because the uint8 resize is fast for 3 or 4."""
        image = batch["image"]
        maps = self.workspace.buffer("soft", (image.shape[0], *image.shape[-2:], 4), image.device)[:len(rows)]
        use_saliency = self.paste_map == "saliency" and "saliency" in batch
        sizes = batch["hw"].tolist()
        for k, (row, blurred) in enumerate(zip(rows, blur)):
            height, width = sizes[row]
            soft = batch["saliency"][row] if use_saliency else batch["mask"][row] * 255
            maps[k, :height, :width, 0] = soft[:height, :width]
            if blurred:
                smooth = blur_at_source(soft[:height, :width].float() / 255)
                maps[k, :height, :width, 1] = smooth.mul_(255).round_().to(torch.uint8)
        return maps

    def grouped_soft_maps(self, batch: Mapping[str, torch.Tensor], rows: torch.Tensor, boxes: torch.Tensor,
                          blur: torch.Tensor) -> torch.Tensor:
        """:meth:`soft_maps` cropped and resized on the grouped path: ``K x S x S x 1`` float ``round(255 S)`` of the
        views reading the batch rows ``rows`` through ``boxes``, the maps of views with ``blur`` blurred at the stored
        resolution (sigma of :func:`fgssl_lib.views.copy_paste.blur_at_source`) by blur matrices composed with the
        resize (:func:`~fgssl_lib.views.batched.geometry.blur_matrices`)."""
        image = batch["image"]
        device, (height, width) = image.device, image.shape[-2:]
        soft = batch["saliency"] if self.paste_map == "saliency" and "saliency" in batch else batch["mask"] * 255
        weights_y, weights_x = resampling_matrices(boxes, (height, width), self.size, device=device)
        if BLENDINGS[self.blending] > 0:  # a blending that blurs some maps
            hw = batch["hw"].cpu()[rows]
            sigma = (BLUR_RADIUS * hw.min(1).values.double()).clamp(min=0.5)  # blur_at_source's, per view
            blurred = blur.to(device)[:, None, None]
            weights_y = torch.where(blurred, weights_y @ blur_matrices(hw[:, 0], sigma, height, device), weights_y)
            weights_x = torch.where(blurred, weights_x @ blur_matrices(hw[:, 1], sigma, width, device), weights_x)
        return resample(soft[:, None], rows, weights_y, weights_x).round_().clamp_(0, 255).permute(0, 2, 3, 1)

    def layout(self, batch: Mapping[str, torch.Tensor], u: torch.Tensor, generators: Sequence[torch.Generator],
               source: Source | None) -> torch.Tensor:
        """RandomResizedCrop views; those that paste are blended onto their background with ``S`` cropped alike."""
        layouts = super().layout(batch, u, generators, source)
        n = len(generators)
        pasted = (u[:, OWN] < self.p).nonzero()[:, 0]
        if not len(pasted):
            return layouts
        blur = u[pasted, OWN + 1] < BLENDINGS[self.blending]
        boxes = self.crops(batch, u)[1][pasted]
        if grouped_path(layouts.device, self.grouped):
            soft = self.grouped_soft_maps(batch, pasted % n, boxes, blur)
        else:
            rows, slots = (pasted % n).unique(return_inverse=True)
            blur_rows = torch.zeros(len(rows), dtype=torch.bool).index_put_((slots,), blur, accumulate=True)
            maps = self.soft_maps(batch, rows.tolist(), blur_rows.tolist())
            softs = resized_crops(maps, slots, boxes, self.size)  # KxSxSx4
            soft = torch.where(blur.to(softs.device)[:, None, None], softs[..., 1], softs[..., 0])[..., None]
        with torch.profiler.record_function(HOST_DRAWS):
            backgrounds = torch.stack([self.backgrounds.draw(self.size, self.size, generators[view % n])
                                       for view in pasted.tolist()])
        backgrounds = backgrounds.to(layouts.device).permute(0, 2, 3, 1)  # KxSxSx3
        views = pasted.to(layouts.device)
        images = layouts.index_select(0, views)[..., :3]
        blended = torch.lerp(backgrounds.float(), images.float(), soft / 255).round_()
        layouts[views, :, :, :3] = blended.to(torch.uint8)
        return layouts


class BatchedSaliencySwap(BatchedTwoView):
    """:class:`fgssl_lib.views.SaliencySwap` batched (CVSA §2.1): each view pastes a random patch of the object box
    ``B_f`` over another training image's box ``B_b`` (``same``, drawn through ``source``) or at a random place of a
    background from a pool (``other``); the view's mask is the pasted box. The patch is resized straight into its box
    of the background. Mode ``same`` calls ``source`` once per batch with the distinct other indices (sorted, in the
    index space of ``batch['index']``, never a view's own index unless ``N == 1``), on the batch's device.

    Args:
        size: side ``S`` of the views.
        mode, crop_scale, paste_ratio, backgrounds: as :class:`fgssl_lib.views.SaliencySwap`.
        dataset_size: mode ``same``: the number of training images (the indices ``source`` accepts, ``[0, N)``);
            ``dataset``: or anything with ``len``, for the same number.
        **kwargs: ``photometric``, ``flip_p``, ``seed`` of :class:`BatchedTwoView`.
    """

    def __init__(self, size: int, mode: str = "same", crop_scale: tuple[float, float] = (0.5, 1.0),
                 paste_ratio: tuple[float, float] = (0.3, 0.7), dataset: Any = None,
                 dataset_size: int | None = None, backgrounds: Any = "texture", **kwargs: Any):
        super().__init__(size, **kwargs)
        self.mode = check_choice("SaliencySwap mode", mode, MODES)
        self.crop_scale = check_fractions("crop_scale", crop_scale)
        self.paste_ratio = check_fractions("paste_ratio", paste_ratio)
        if mode == "same":
            self.dataset_size = dataset_size if dataset_size is not None else \
                len(dataset) if hasattr(dataset, "__len__") else None
            if not self.dataset_size or self.dataset_size < 1:
                raise ValueError("batched SaliencySwap mode='same' pastes onto other training images: pass "
                                 "dataset_size=N (the number of training images; source(indices) must accept [0, N)) "
                                 "or dataset=<the training set>, or use mode='other' with a background pool")
        else:
            self.backgrounds = resolve_backgrounds(backgrounds)

    def other_indices(self, index: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Per view, another training image's index, uniform over ``[0, N)`` without the view's own ``index``."""
        if self.dataset_size == 1:
            return index.clone()
        other = torch.floor(u * (self.dataset_size - 1)).long().clamp(max=self.dataset_size - 2)
        return other + (other >= index).long()

    def backgrounds_of(self, u: torch.Tensor, generators: Sequence[torch.Generator], source: Source | None,
                       index: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The views' ``2B x S x S x 3`` uint8 backgrounds and the boxes ``B_b`` the patches replace (``same``: other
        training images resized to ``S x S`` and their boxes; ``other``: pool backgrounds, ``None``: boxes drawn
        later)."""
        n = len(generators)
        if self.mode == "other":
            with torch.profiler.record_function(HOST_DRAWS):
                draws = torch.stack([self.backgrounds.draw(self.size, self.size, generators[k % n])
                                     for k in range(2 * n)])
            return draws.to(device).permute(0, 2, 3, 1), None
        if source is None:
            raise ValueError("batched SaliencySwap mode='same' draws its backgrounds from the training set: call it "
                             "with source=<indices -> store batch of those rows>, or build it with mode='other'")
        others, slots = self.other_indices(index.repeat(2), u).unique(return_inverse=True)
        rows = source(others.to(device))
        hw = rows["hw"].cpu()
        whole = torch.cat([torch.zeros(len(hw), 2), hw.flip(1).double()], 1)  # each image's box, (0, 0, w, h)
        resized = resized_crops(rows["image"].permute(0, 2, 3, 1), torch.arange(len(hw)), whole, self.size,
                                grouped=self.grouped)
        boxes = resized_boxes(object_boxes(rows["box"].cpu().double(), hw), hw, self.size)
        return resized.index_select(0, slots.to(device)), boxes[slots]

    def layout(self, batch: Mapping[str, torch.Tensor], u: torch.Tensor, generators: Sequence[torch.Generator],
               source: Source | None) -> torch.Tensor:
        """The patch resized onto its box of the background (view by view, or all at once on the grouped path); the
        mask is that box."""
        n, device = len(generators), batch["image"].device
        hw = batch["hw"].cpu().repeat(2, 1)
        patch = patch_boxes(u[:, OWN:OWN + 3], object_boxes(batch["box"].cpu().double().repeat(2, 1), hw),
                            self.crop_scale)
        backgrounds, target = self.backgrounds_of(u[:, OWN + 6], generators, source, batch["index"].cpu(), device)
        if target is None:
            target = paste_boxes(u[:, OWN + 3:OWN + 6], patch, self.size, self.paste_ratio)
        views = torch.empty(2 * n, self.size, self.size, 4, dtype=torch.uint8, device=device)
        inside = box_masks(target, self.size, device)  # 2BxSxS
        views[..., 3] = inside.to(torch.uint8).mul_(255)
        if grouped_path(device, self.grouped):
            image = batch["image"]
            matrices = resampling_matrices(patch, image.shape[-2:], self.size, targets=target, device=device)
            patches = as_rows(resample(image, torch.arange(2 * n) % n, *matrices), torch.uint8)  # 0 off the box
            views[..., :3] = torch.where(inside[..., None], patches, backgrounds)
            return views
        views[..., :3] = backgrounds
        data = channels_last(self.workspace, batch["image"])
        for k, (box, (x0, y0, x1, y1)) in enumerate(zip(patch.long().tolist(), target.long().tolist())):
            resized_crop(data, k % n, box, y1 - y0, x1 - x0, out=views[k, y0:y1, x0:x1, :3])
        return views


BATCHED_VIEWS: dict[str, type[BatchedTwoView]] = {"rrc": BatchedStandardViews, "saliency_swap": BatchedSaliencySwap,
                                                  "copy_paste": BatchedCopyPaste}


def build_batched_views(name: str, size: int = 224, **params: Any) -> BatchedTwoView:
    """The batched two-view generator ``name`` (``rrc``, ``saliency_swap``, ``copy_paste``) at view size ``size``,
    with the parameters of :func:`fgssl_lib.views.build_views` (``seed=None`` means seed 0: batched views are
    always seeded)."""
    if params.get("seed", 0) is None:
        params["seed"] = 0
    return BATCHED_VIEWS[check_choice("view generator", name, BATCHED_VIEWS)](size, **params)
