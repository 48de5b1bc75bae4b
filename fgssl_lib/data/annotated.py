"""The annotated image list shared by every real-dataset reader (CUB, NABirds, Aircraft, Cars, folder).

A reader parses its official annotation files into :class:`Record` s (image path, label, box, mask path) and hands
them to :class:`AnnotatedImageList`, which decodes images and yields the samples of :mod:`fgssl_lib.data.sample`.

Conventions (the readers convert their formats to these):

- ``Record.box`` is ``(x0, y0, x1, y1)`` in pixels of the image *as stored on disk*, 0-based, ``x1``/``y1``
  exclusive, or ``None`` (the whole image). It is clipped to the image when a sample is read, so a box that runs
  outside the image is never an error.
- ``Record.mask_path`` points to a segmentation PNG (CUB ``segmentations/``). Segmentations may be soft (CUB averages
  several annotators, grey levels ``0, 51, ..., 255``): a pixel is foreground when ``value > mask_threshold * 255``;
  the default ``0.5`` keeps the pixels most annotators marked. Without a segmentation the mask is the box.

Image checks: at construction every listed image file must exist (a ``FileNotFoundError`` lists the missing ones).
Decoding is lazy with ``on_corrupt="raise"`` (the default): a corrupt image raises :class:`CorruptImageError` naming
the file when it is read. With ``on_corrupt="skip"`` every image is decoded once at construction, the corrupt ones
are removed and reported in a single warning that counts and names them.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image

from fgssl_lib.config import check_choice
from fgssl_lib.data.sample import Sample, box_to_mask, clip_box

ON_CORRUPT = ("raise", "skip")
_MAX_LISTED = 10


class CorruptImageError(RuntimeError):
    """An image file exists but cannot be decoded."""


@dataclass(frozen=True)
class Record:
    """One annotated image: ``box`` is 0-based ``(x0, y0, x1, y1)`` with exclusive ends, or ``None``."""

    path: Path
    label: int
    box: tuple[float, float, float, float] | None = None
    mask_path: Path | None = None


def _listing(items: Sequence[object]) -> str:
    shown = "\n  ".join(str(item) for item in items[:_MAX_LISTED])
    more = f"\n  ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return f"  {shown}{more}"


def require_files(root: Path, names: Sequence[str], title: str, how_to_get: str) -> None:
    """Raise one ``FileNotFoundError`` listing every entry of ``names`` missing under ``root``, and how to get them."""
    missing = [name for name in names if not (root / name).exists()]
    if missing:
        raise FileNotFoundError(
            f"{title} not found or incomplete at {root}: missing\n{_listing(missing)}\n{how_to_get}"
        )


def read_table(path: Path, fields: int) -> list[list[str]]:
    """Rows of a whitespace-separated annotation file, each split into ``fields`` columns (the last keeps spaces)."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        row = line.split(maxsplit=fields - 1)
        if len(row) != fields:
            raise ValueError(f"{path}, line {number}: expected {fields} fields, got {line!r}")
        rows.append(row)
    return rows


def decode_rgb(path: Path) -> torch.Tensor:
    """Decode an image file to a ``3 x H x W`` uint8 RGB tensor (grey and RGBA are converted)."""
    try:
        return decode_image(str(path), mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError) as error:
        raise CorruptImageError(f"cannot decode image {path}: {error}") from error


def decode_segmentation(path: Path, threshold: float) -> torch.Tensor:
    """``H x W`` uint8 {0,1} mask: 1 where the grey level of the segmentation PNG exceeds ``threshold * 255``."""
    try:
        grey = decode_image(str(path), mode=ImageReadMode.GRAY)[0]  # HxW uint8
    except (RuntimeError, ValueError) as error:
        raise CorruptImageError(f"cannot decode segmentation {path}: {error}") from error
    return (grey.float() > threshold * 255).to(torch.uint8)


class AnnotatedImageList(Dataset):
    """A list of :class:`Record` s yielding ``dict(image, label, box, mask, index)`` samples.

    ``crop_bottom`` removes that many pixel rows from the bottom of every image (and mask) before the box is
    clipped: FGVC-Aircraft uses it for its 20-px copyright banner.
    """

    def __init__(
        self,
        records: Sequence[Record],
        classes: Sequence[str],
        *,
        crop_bottom: int = 0,
        mask_threshold: float = 0.5,
        on_corrupt: str = "raise",
    ) -> None:
        check_choice("on_corrupt", on_corrupt, ON_CORRUPT)
        if not 0.0 <= mask_threshold < 1.0:
            raise ValueError(f"mask_threshold must be in [0, 1), got {mask_threshold}")
        missing = [r.path for r in records if not r.path.is_file()]
        missing += [r.mask_path for r in records if r.mask_path is not None and not r.mask_path.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} annotated file(s) are missing:\n{_listing(missing)}\n"
                "Re-extract the dataset archive, or remove these entries from the annotation files."
            )
        self.classes = list(classes)
        self.crop_bottom = crop_bottom
        self.mask_threshold = mask_threshold
        self.records = list(records)
        for r in self.records:
            if not 0 <= r.label < len(self.classes):
                raise ValueError(f"label {r.label} of {r.path} is outside [0, {len(self.classes)})")
        if on_corrupt == "skip":
            self.records = self._drop_corrupt(self.records)

    def _drop_corrupt(self, records: list[Record]) -> list[Record]:
        kept, corrupt = [], []
        for r in records:
            try:
                decode_rgb(r.path)
                if r.mask_path is not None:
                    decode_segmentation(r.mask_path, self.mask_threshold)
            except CorruptImageError:
                corrupt.append(r.path)
            else:
                kept.append(r)
        if corrupt:
            warnings.warn(
                f"skipped {len(corrupt)} corrupt image(s) of {len(records)} (on_corrupt='skip'):\n{_listing(corrupt)}",
                stacklevel=3,
            )
        return kept

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def labels(self) -> list[int]:
        """Label of every sample, in order (no image is decoded)."""
        return [r.label for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        r = self.records[index]
        image = decode_rgb(r.path)  # 3xHxW uint8
        mask = None if r.mask_path is None else decode_segmentation(r.mask_path, self.mask_threshold)  # HxW
        if mask is not None and mask.shape != image.shape[1:]:
            raise CorruptImageError(
                f"segmentation {r.mask_path} is {tuple(mask.shape)} but image {r.path} is {tuple(image.shape[1:])}"
            )
        if self.crop_bottom:
            image = image[:, : image.shape[1] - self.crop_bottom]
            mask = None if mask is None else mask[: image.shape[1]]
        _, height, width = image.shape
        box = clip_box(r.box if r.box is not None else (0, 0, width, height), width, height)  # (4,) float32
        if mask is None:
            mask = box_to_mask(box, height, width)  # HxW uint8
        return Sample(image=image, label=r.label, box=box, mask=mask, index=index)
