"""The annotated image list shared by every real-dataset reader (CUB, NABirds, Aircraft, Cars, folder).

A reader parses its official annotation files into :class:`Record` s (image path, label, box, mask path) and hands
them to :class:`AnnotatedImageList`, which decodes images and yields the samples of :mod:`fgssl_lib.data.sample`.

Conventions (the readers convert their formats to these):

- ``Record.box`` is ``(x0, y0, x1, y1)`` in pixels of the image *as stored on disk*, 0-based, ``x1``/``y1``
  exclusive, or ``None`` (the whole image); ``Record.where`` names its annotation (file and line). It is clipped to
  the image when a sample is read, so a box that runs partly outside the image is never an error. A box that is
  empty (``x1 <= x0`` or ``y1 <= y0``, or no pixel left after clipping) would give an all-zero mask, a view of pure
  background: with ``on_bad_box="raise"`` (the default) it is a :class:`BadBoxError` naming the annotation (at
  construction, or when the sample is read for a box outside the image); with ``on_bad_box="skip"`` the image sizes
  are read at construction and such images are left out, counted in one warning and listed in ``skipped_boxes``.
- ``Record.mask_path`` points to a segmentation PNG (CUB ``segmentations/``). Segmentations may be soft (CUB averages
  several annotators, grey levels ``0, 51, ..., 255``): a pixel is foreground when ``value > mask_threshold * 255``;
  the default ``0.5`` keeps the pixels most annotators marked. Without a segmentation the mask is the box.

Tables are UTF-8 text (a byte-order mark is ignored); another encoding is an error naming the file and line. An
image path listed in a table must lie inside its dataset folder (no ``..``, no absolute path): an error names the line.

Image checks: at construction every listed image file must exist (a ``FileNotFoundError`` lists the missing ones).
Images are decoded to 8-bit RGB: grey and RGBA are converted, 16-bit images scaled to 8 bits, and an animated image
(GIF, WebP) gives its first frame. Decoding is lazy with ``on_corrupt="raise"`` (the default): a corrupt image
raises :class:`CorruptImageError` naming the file when it is read. With ``on_corrupt="skip"`` every image is decoded
once at construction, the corrupt ones are removed and reported in a single warning that counts and names them.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as F

from fgssl_lib.config import check_choice
from fgssl_lib.data.identity import digest, file_digest
from fgssl_lib.data.sample import Sample, box_to_mask, clip_box, pixel_box

ON_CORRUPT = ("raise", "skip")
ON_BAD_BOX = ("raise", "skip")
_MAX_LISTED = 10


class CorruptImageError(RuntimeError):
    """An image file exists but cannot be decoded."""


class BadBoxError(ValueError):
    """An annotated box is empty: zero or negative width or height, or outside its image."""


@dataclass(frozen=True)
class Record:
    """One annotated image: ``box`` is 0-based ``(x0, y0, x1, y1)`` with exclusive ends, or ``None``."""

    path: Path
    label: int
    box: tuple[float, float, float, float] | None = None
    mask_path: Path | None = None
    where: str = "the annotations"


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


class Row(NamedTuple):
    """One line of an annotation table: ``where`` is ``"<file>, line <n>"``, ``values`` its fields after the id."""

    where: str
    values: list[str]


def read_table(path: Path) -> str:
    """The text of an annotation table in UTF-8 (a byte-order mark is ignored); another encoding is a ``ValueError``
    naming the file, the line and how to convert it."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(f"{path}, line {line}: not UTF-8 text (byte {data[error.start]:#04x}); save the file as "
                         f"UTF-8, e.g. iconv -f latin1 -t utf-8 {path.name} > {path.name}.utf8 && mv "
                         f"{path.name}.utf8 {path.name}") from None


def inside(folder: Path, relative: str, where: str) -> Path:
    """``folder / relative`` for a path read from an annotation table at ``where``; a path that is absolute or
    climbs out of ``folder`` (``..``) is a ``ValueError`` naming the line."""
    parts = Path(relative).parts
    if Path(relative).is_absolute() or ".." in parts or not parts:
        raise ValueError(f"{where}: the image path {relative!r} points outside {folder}; list paths relative to it "
                         "(e.g. 001.Black_footed_Albatross/x.jpg), without '..' or a leading '/'")
    return folder / relative


def read_rows(path: Path, fields: int) -> list[Row]:
    """The lines of a whitespace-separated annotation file (:func:`read_table`), each split into ``fields``
    columns (the last keeps spaces)."""
    rows = []
    for number, line in enumerate(read_table(path).splitlines(), start=1):
        if not line.strip():
            continue
        row = line.split(maxsplit=fields - 1)
        if len(row) != fields:
            raise ValueError(f"{path}, line {number}: expected {fields} fields, got {line!r}; fix or remove the line")
        rows.append(Row(f"{path}, line {number}", row))
    return rows


def read_keyed(path: Path, fields: int) -> dict[str, Row]:
    """:func:`read_rows` keyed by the first column (an image or class id), in file order; an id listed twice is an
    error naming both lines (a duplicate would silently keep its last label)."""
    keyed: dict[str, Row] = {}
    for row in read_rows(path, fields):
        key, *values = row.values
        if key in keyed:
            raise ValueError(f"{row.where}: id {key} is listed again (first at {keyed[key].where.rsplit(', ', 1)[1]}); "
                             "each id must appear once: remove one of the two lines")
        keyed[key] = Row(row.where, values)
    return keyed


def parse_box(values: Sequence[object], where: str) -> tuple[float, float, float, float]:
    """Four finite numbers of an annotated box, or a ``ValueError`` naming ``where`` (file and line)."""
    try:
        box = tuple(float(v) for v in values)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        box = ()
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise ValueError(f"{where}: a box needs 4 finite numbers, got {list(values)}; fix or remove the line")
    return box  # type: ignore[return-value]


def decode_rgb(path: Path) -> torch.Tensor:
    """Decode an image file to a ``3 x H x W`` uint8 RGB tensor: grey and RGBA are converted, 16 bits scaled to 8,
    an animated image gives its first frame (through PIL where torchvision cannot decode it, e.g. animated WebP)."""
    try:
        image = decode_image(str(path), mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError) as error:
        try:
            with Image.open(path) as opened:
                image = F.pil_to_tensor(opened.convert("RGB"))  # the first frame
        except OSError:
            raise CorruptImageError(f"cannot decode image {path}: {error}") from error
    if image.ndim == 4:
        image = image[0]  # an animated GIF: its first frame
    return F.to_dtype(image, torch.uint8, scale=True)  # 16-bit PNGs


def decode_segmentation(path: Path, threshold: float) -> torch.Tensor:
    """``H x W`` uint8 {0,1} mask: 1 where the grey level of the segmentation PNG exceeds ``threshold * 255``."""
    try:
        grey = F.to_dtype(decode_image(str(path), mode=ImageReadMode.GRAY), torch.uint8, scale=True)[0]  # HxW
    except (RuntimeError, ValueError) as error:
        raise CorruptImageError(f"cannot decode segmentation {path}: {error}") from error
    return (grey.float() > threshold * 255).to(torch.uint8)


def _bad_boxes_message(problems: Sequence[str]) -> str:
    """The first empty box on the first line, then every one of them, and the two ways out."""
    more = f"\n{len(problems)} empty boxes:\n{_listing(problems)}" if len(problems) > 1 else ""
    return (f"{problems[0]}: its mask would be all background{more}\nFix or remove the line(s), or pass "
            "on_bad_box='skip' to leave such images out (counted in a warning and in skipped_boxes)")


def from_inclusive(box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """A 1-based inclusive ``(xmin, ymin, xmax, ymax)`` (FGVC-Aircraft, Stanford Cars) as our 0-based exclusive box."""
    x0, y0, x1, y1 = box
    return (x0 - 1, y0 - 1, x1, y1)


class AnnotatedImageList(Dataset):
    """A list of :class:`Record` s yielding ``dict(image, label, box, mask, index)`` samples.

    ``crop_bottom`` removes that many pixel rows from the bottom of every image (and mask) before the box is
    clipped: FGVC-Aircraft uses it for its 20-px copyright banner. ``root`` (the dataset folder) and ``split`` name
    the list; :meth:`fingerprint` names its files relative to ``root``.
    """

    def __init__(
        self,
        records: Sequence[Record],
        classes: Sequence[str],
        *,
        crop_bottom: int = 0,
        mask_threshold: float = 0.5,
        on_corrupt: str = "raise",
        on_bad_box: str = "raise",
        root: Path | None = None,
        split: str | None = None,
    ) -> None:
        self.root, self.split = root, split
        check_choice("on_corrupt", on_corrupt, ON_CORRUPT)
        check_choice("on_bad_box", on_bad_box, ON_BAD_BOX)
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
        self.skipped_boxes: list[str] = []
        self.records = self._drop_bad_boxes(self.records, skip=on_bad_box == "skip")

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

    def _empty_box(self, r: Record, size: tuple[int, int] | None) -> str | None:
        """Why ``r``'s box is empty (``size``: its image's ``(width, height)`` once cropped, if known), or ``None``."""
        if r.box is None:
            return None
        x0, y0, x1, y1 = r.box
        if x1 <= x0 or y1 <= y0:
            return (f"{r.where}: the box (x0, y0, x1, y1) = {r.box} of {r.path} has width {x1 - x0:g} and "
                    f"height {y1 - y0:g}")
        if size is not None:
            px0, py0, px1, py1 = pixel_box(r.box, *size)
            if px1 <= px0 or py1 <= py0:
                return f"{r.where}: the box {r.box} of {r.path} holds no pixel of its {size[0]} x {size[1]} image"
        return None

    def _drop_bad_boxes(self, records: list[Record], skip: bool) -> list[Record]:
        """``records`` without the empty boxes (``skip``, reading image sizes), or a :class:`BadBoxError` listing the
        boxes that are empty whatever the image size."""
        bad = [(r, self._empty_box(r, self._stored_size(r) if skip else None)) for r in records]
        problems = [why for _, why in bad if why is not None]
        if problems and not skip:
            raise BadBoxError(_bad_boxes_message(problems))
        if problems:
            warnings.warn(f"skipped {len(problems)} image(s) with an empty box of {len(records)} "
                          f"(on_bad_box='skip'; listed in skipped_boxes):\n{_listing(problems)}", stacklevel=3)
            self.skipped_boxes = problems
        return [r for r, why in bad if why is None]

    def _stored_size(self, r: Record) -> tuple[int, int] | None:
        """``(width, height)`` of ``r``'s image after ``crop_bottom``, from its header (``None`` if unreadable)."""
        try:
            with Image.open(r.path) as image:
                width, height = image.size
        except OSError:
            return None  # a corrupt image: decoding it raises CorruptImageError when it is read
        return width, height - self.crop_bottom

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def fingerprint(self) -> str:
        """The identity of this list's content (:mod:`fgssl_lib.data.identity`): per image its path relative to
        ``root``, label, box and segmentation, each file by :func:`~fgssl_lib.data.identity.file_digest`; the
        classes and decoding options. The same wherever the dataset folder lies."""
        def name(path: Path) -> str:
            return path.relative_to(self.root).as_posix() if self.root is not None else os.fspath(path)

        rows = [(name(r.path), file_digest(r.path), r.label, r.box,
                 None if r.mask_path is None else (name(r.mask_path), file_digest(r.mask_path)))
                for r in self.records]
        return digest(type(self).__qualname__, self.classes, self.crop_bottom, self.mask_threshold, rows)

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
        why = self._empty_box(r, (width, height))
        if why is not None:
            raise BadBoxError(_bad_boxes_message([why]))
        box = clip_box(r.box if r.box is not None else (0, 0, width, height), width, height)  # (4,) float32
        if mask is None:
            mask = box_to_mask(box, height, width)  # HxW uint8
        return Sample(image=image, label=r.label, box=box, mask=mask, index=index)
