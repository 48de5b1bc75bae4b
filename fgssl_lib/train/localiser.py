"""The localiser: where the training views' object box and saliency map come from (``TrainConfig.localiser``).

SaliencySwap crops the object box ``B_f`` and pastes over ``B_b`` (CVSA Sec. 2.1), DiLo blends with the saliency map
``S`` (the DiLo theory page); both read the sample's ``box``, ``mask`` and ``saliency``. The localiser fills them:

- a **detector** (:data:`DETECTORS`, the classic label-free sources of :mod:`fgssl_lib.saliency.sources`): ``S`` of
  the source, cached on disk (:class:`~fgssl_lib.saliency.SaliencyDataset`), its best box
  (:func:`~fgssl_lib.saliency.best_box`) and that box's mask. The papers use learned detectors (CVSA six saliency
  detectors, DiLo RBD and BASNet); the default, :data:`DEFAULT_LOCALISER` = ``spectral_residual``, was chosen on the
  synthetic benchmark's ``val`` stream before any training (``python -m fgssl_lib.bench localiser``,
  ``fgssl_lib/results/localiser.json``): its best box overlaps the drawn bird's at IoU >= 0.5 on 75.2 % of the 500
  ``val`` images, against 51.8 % for the centre prior and 16.4 % for fine-grained saliency;
- ``self`` (beyond the papers): the model's own map (:meth:`fgssl_lib.methods.SSLMethod.localisation_map`: CVSA's
  correspondence intensity, else its momentum encoder's :class:`~fgssl_lib.methods.base.EmbeddingMap`, the
  closed form of the Grad-CAM that MaxBoxAcc reads), recomputed at the end of every epoch but the last on every
  training image (:class:`SelfLocaliser`) and used by the next epoch; the first epoch uses
  :data:`DEFAULT_LOCALISER` (a random network's map is noise). Per epoch is the shortest schedule whose cost stays
  small (one forward pass per training image, against the epoch's two views with backward passes). On ``val``
  (``--self`` of the bench above), after the first epoch of its ``cpu`` run CVSA's own map boxes the bird in 99.0 % of
  the images, above the detector's 75.2 %; BYOL + DiLo's and BYOL + SS's embedding maps in 14.8 % and 15.8 %: a
  baseline's embedding looks at the habitat, so self-saliency feeds it back its own bias. The maps (at the map's own
  resolution, ``N x h x w``) are saved in the checkpoint, so a resumed run uses the maps the uninterrupted run used;
- ``annotation``: the dataset's own box and mask (the synthetic benchmark's drawn bird; CUB's annotated boxes). Not
  self-supervised: an upper bound, used only when named.

With a detector or ``self`` the training samples never read the dataset's ``box`` or ``mask`` (:class:`Unannotated`).
Methods whose views read no box (``rrc``) take no localiser (:func:`uses_localiser`); their runs do not depend on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import functional as F

ANNOTATION = "annotation"
SELF = "self"
DETECTORS = ("spectral_residual", "fine_grained", "centre")
"""The classic label-free saliency sources a run may localise with (:func:`fgssl_lib.saliency.build_saliency`)."""
LOCALISERS = (*DETECTORS, SELF, ANNOTATION)
DEFAULT_LOCALISER = "spectral_residual"
"""The label-free default, chosen on ``val`` (module docstring)."""
NO_LOCALISER = "none"
"""What the study table writes for a method whose views take no localiser."""
LOCALISED_VIEWS = ("saliency_swap", "copy_paste")
"""The view generators that read the object box or map."""
ANNOTATION_KEYS = ("box", "mask", "saliency", "gt_box", "gt_mask")
"""The sample entries that say where the object is; a label-free localiser replaces them without reading them."""
MAP_BATCH = 256
"""Images per forward pass when :class:`SelfLocaliser` refreshes the maps."""


def uses_localiser(views: str) -> bool:
    """Whether the view generator ``views`` reads the object box or map (SaliencySwap, DiLo's copy-paste)."""
    return views in LOCALISED_VIEWS


class _Wrapped(Dataset):
    """A view of ``dataset``'s samples that keeps its length and its ``classes`` / ``num_classes``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        for attribute in ("classes", "num_classes"):
            if hasattr(dataset, attribute):
                setattr(self, attribute, getattr(dataset, attribute))

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]


class Unannotated(_Wrapped):
    """``dataset``'s samples without :data:`ANNOTATION_KEYS`, which are never read (only the keys are listed)."""

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.dataset[index]
        return {key: sample[key] for key in sample.keys() if key not in ANNOTATION_KEYS}

    def fingerprint(self) -> str:
        """Its dataset's identity, unannotated (:mod:`fgssl_lib.data.identity`)."""
        from fgssl_lib.data.identity import dataset_fingerprint, digest

        return digest(dataset_fingerprint(self.dataset), "unannotated")


def localised(dataset: Dataset, localiser: str, progress: bool = False) -> Dataset:
    """``dataset`` with the samples' box, mask and saliency from ``localiser`` (``self``: :data:`DEFAULT_LOCALISER`'s
    until :class:`SelfLocaliser` replaces them)."""
    from fgssl_lib.config import check_choice
    from fgssl_lib.saliency import SaliencyDataset, build_saliency

    check_choice("localiser", localiser, LOCALISERS)
    if localiser == ANNOTATION:
        return dataset
    source = build_saliency(DEFAULT_LOCALISER if localiser == SELF else localiser)
    return SaliencyDataset(Unannotated(dataset), source, progress=progress)


def box_masks(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``B x H x W`` uint8 masks of ``B x 4`` boxes (``x0, y0, x1, y1``, rounded to whole pixels as
    :func:`~fgssl_lib.data.sample.box_to_mask` does)."""
    x0, y0, x1, y1 = boxes.round().unbind(1)  # B each
    cols, rows = torch.arange(width, device=boxes.device), torch.arange(height, device=boxes.device)
    inside_x = (cols >= x0[:, None]) & (cols < x1[:, None])  # B x W
    inside_y = (rows >= y0[:, None]) & (rows < y1[:, None])  # B x H
    return (inside_y[:, :, None] & inside_x[:, None, :]).to(torch.uint8)


class SelfLocaliser(pl.Callback):
    """Self-saliency: the model's own map of every training image (``method.localisation_map()``, taken on the whole
    image resized to ``image_size``), recomputed at the end of each epoch but the last
    and used by the next one; until then the samples keep the starting localiser's (module docstring).

    A refresh keeps the raw maps ``N x h x w`` (the map's own resolution) and their best boxes (CVSA Eq. 2) in the
    ``image_size`` frame; :meth:`localise` brings both to each image's frame (the map upsampled and normalised by the
    map source, the box scaled). :meth:`sample` and :meth:`rows` put them into a sample or a batch of store rows (the
    per-sample and batched views); :meth:`state_dict` carries them into the checkpoint. ``dataset``: the training
    set (only ``image`` and ``index`` are read).
    """

    def __init__(self, dataset: Dataset, image_size: int, method: torch.nn.Module) -> None:
        from fgssl_lib.saliency.maps import MapSource

        self.dataset, self.image_size = dataset, image_size
        # the source's class without its model: its upsampling and normalisation (finish), light to pickle
        self.finisher: MapSource = object.__new__(type(method.localisation_map()))
        self.maps: torch.Tensor | None = None  # N x h x w, by position
        self.boxes = torch.zeros(0, 4)  # N x 4 in the image_size frame
        self.position: dict[int, int] = {}  # sample index -> position
        self.after_epoch = -1

    def _images(self) -> DataLoader:
        def whole(samples: list[Mapping[str, Any]]) -> tuple[torch.Tensor, list[int]]:
            images = [F.resize(s["image"], [self.image_size] * 2, antialias=True) for s in samples]
            return torch.stack(images).float().div_(255), [int(s["index"]) for s in samples]  # N x 3 x S x S

        return DataLoader(Unannotated(self.dataset), batch_size=MAP_BATCH, collate_fn=whole)

    def refresh(self, method: torch.nn.Module) -> None:
        """Take the maps of every training image from ``method`` and their best boxes."""
        from fgssl_lib.saliency import best_boxes

        source = method.localisation_map()
        maps, boxes, indices = [], [], []
        for images, batch_indices in self._images():
            raw = source.raw(images).detach().float()  # N x h x w
            boxes.append(best_boxes(self.finisher.finish(raw, (self.image_size, self.image_size))).float())
            maps.append(raw.cpu())
            indices += batch_indices
        self.maps, self.boxes = torch.cat(maps), torch.cat(boxes)
        self.position = {index: position for position, index in enumerate(indices)}

    def localise(self, index: torch.Tensor, hw: torch.Tensor, height: int, width: int,
                 device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """``saliency`` (``B x H x W`` uint8 ``round(255 S)``), ``box`` (``B x 4`` float32) and ``mask`` (``B x H x
        W`` uint8) of the images ``index`` (``B``) whose frames are ``hw`` (``B x 2``), zero-padded to ``H x W``, on
        ``device``. Each map is resampled into its own frame as :meth:`~fgssl_lib.saliency.maps.MapSource.finish`
        does (half-pixel centres, edges replicated) and min-max normalised over that frame, all frames in one
        ``grid_sample``: a batch of photographs of many shapes costs one call, not one per shape."""
        if self.maps is None:
            raise RuntimeError("SelfLocaliser has no maps yet: call refresh(method) first")
        rows = torch.tensor([self.position[int(i)] for i in index.tolist()], dtype=torch.int64)
        hw = hw.to(device)
        scale = hw.flip(1).repeat(1, 2).float() / self.image_size  # B x 4: (w, h, w, h) / S
        box = self.boxes[rows].to(device) * scale
        ys = (torch.arange(height, device=device) + 0.5) / hw[:, :1] * 2 - 1  # B x H, each frame's [-1, 1]
        xs = (torch.arange(width, device=device) + 0.5) / hw[:, 1:] * 2 - 1  # B x W
        grid = torch.stack(torch.broadcast_tensors(xs[:, None, :], ys[:, :, None]), dim=-1)  # B x H x W x 2
        maps = self.maps[rows].to(device)[:, None].float()  # B x 1 x h x w
        resampled = torch.nn.functional.grid_sample(maps, grid, mode=self.finisher.interpolation,
                                                     padding_mode="border", align_corners=False)[:, 0]  # B x H x W
        inside = box_masks(torch.cat([torch.zeros_like(hw), hw.flip(1)], 1).float(), height, width).bool()
        low = resampled.masked_fill(~inside, float("inf")).amin(dim=(1, 2), keepdim=True)  # B x 1 x 1
        high = resampled.masked_fill(~inside, float("-inf")).amax(dim=(1, 2), keepdim=True)
        soft = (resampled - low) / (self.finisher.eps + high - low).clamp_min(torch.finfo(torch.float32).tiny)
        saliency = soft.clamp(0, 1).mul(255).round().to(torch.uint8) * inside  # zero outside each frame
        return {"saliency": saliency, "box": box, "mask": box_masks(box, height, width)}

    def sample(self, sample: dict[str, Any]) -> dict[str, Any]:
        """``sample`` with the model's saliency, box and mask (as it is before the first refresh)."""
        if self.maps is None:
            return sample
        height, width = sample["image"].shape[-2:]
        out = self.localise(torch.tensor([int(sample["index"])]), torch.tensor([[height, width]]), height, width)
        return {**sample, "saliency": out["saliency"][0].float() / 255, "box": out["box"][0], "mask": out["mask"][0]}

    def rows(self, rows: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A batch of store rows with the model's saliency, box and mask (as they are before the first refresh)."""
        if self.maps is None:
            return rows
        return {**rows, **self.localise(rows["index"], rows["hw"], *rows["image"].shape[-2:], rows["image"].device)}

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Refresh the maps for the next epoch (before the epoch's checkpoint is written, so it holds them)."""
        epoch = trainer.current_epoch
        if epoch + 1 < (trainer.max_epochs or 0) and not trainer.should_stop:
            self.refresh(pl_module)
            self.after_epoch = epoch

    def state_dict(self) -> dict[str, Any]:
        if self.maps is None:
            return {"after_epoch": self.after_epoch}
        indices = torch.tensor(sorted(self.position, key=self.position.__getitem__), dtype=torch.int64)
        return {"after_epoch": self.after_epoch, "maps": self.maps, "boxes": self.boxes, "indices": indices}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.after_epoch = int(state_dict["after_epoch"])
        if "maps" in state_dict:
            self.maps, self.boxes = state_dict["maps"], state_dict["boxes"]
            self.position = {int(i): k for k, i in enumerate(state_dict["indices"].tolist())}


class SelfLocalised(_Wrapped):
    """``dataset``'s samples localised by ``localiser`` (:meth:`SelfLocaliser.sample`): the per-sample views' data."""

    def __init__(self, dataset: Dataset, localiser: SelfLocaliser) -> None:
        super().__init__(dataset)
        self.localiser = localiser

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.localiser.sample(self.dataset[index])
