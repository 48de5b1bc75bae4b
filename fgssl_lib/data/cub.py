"""CUB-200-2011 (Wah et al. 2011) in its official layout, and the annotation tables it shares with NABirds.

``root`` is the extracted ``CUB_200_2011`` folder::

    images.txt               <image_id> <relative path under images/>
    image_class_labels.txt   <image_id> <class_id>            (class ids are 1-based)
    train_test_split.txt     <image_id> <1 = train, 0 = test>
    bounding_boxes.txt       <image_id> <x> <y> <width> <height>   (floats, pixels)
    classes.txt              <class_id> <name>, e.g. "1 001.Black_footed_Albatross"
    images/                  the JPEGs
    segmentations/           optional (separate archive): one PNG per image, same relative path

Boxes become ``(x, y, x + width, y + height)``: the corner is read as a 0-based pixel position and the extent as a
width, which gives our exclusive-end convention directly. Class names drop the ``001.`` prefix. The standard split
is 5,994 train / 5,794 test images over 200 classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fgssl_lib.config import check_choice
from fgssl_lib.data.annotated import (
    AnnotatedImageList,
    Record,
    Row,
    inside,
    parse_box,
    read_keyed,
    require_files,
)
from fgssl_lib.data.downloads import default_root, how_to_get

SPLITS = ("train", "test")
TABLES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt", "classes.txt")


@dataclass(frozen=True)
class ImageTables:
    """The per-image tables of the CUB family, restricted to one split (ids in ``images.txt`` order)."""

    ids: list[str]
    paths: dict[str, str]
    class_ids: dict[str, str]
    boxes: dict[str, tuple[float, float, float, float]]
    class_names: dict[str, str]
    box_lines: dict[str, str]  # image id -> "<bounding_boxes.txt>, line <n>"


def read_image_tables(root: Path, split: str, name: str, title: str, extra: tuple[str, ...] = ()) -> ImageTables:
    """Parse the CUB-family tables under ``root`` for ``split`` (``train`` or ``test``).

    Raises ``FileNotFoundError`` listing every missing table (plus ``extra``) and ``ValueError`` for an image id
    that lacks a label, split flag or box, is listed twice, has a split flag other than 0/1, a box that is not
    four numbers or an image path outside ``images/`` (naming the file and line), so no image is dropped or
    relabelled silently.
    """
    check_choice("split", split, SPLITS)
    require_files(root, (*TABLES, *extra, "images"), title, how_to_get(name, root))
    path_rows = read_keyed(root / "images.txt", 2)
    for row in path_rows.values():
        inside(root / "images", row.values[0], row.where)
    paths = _column(path_rows)
    class_ids = _column(read_keyed(root / "image_class_labels.txt", 2))
    split_rows = read_keyed(root / "train_test_split.txt", 2)
    for i, (where, (flag,)) in split_rows.items():
        if flag not in ("0", "1"):
            raise ValueError(f"{where}: the split flag of image {i} is {flag!r}; write 1 (train) or 0 (test)")
    is_train = _column(split_rows)
    box_rows = read_keyed(root / "bounding_boxes.txt", 5)
    boxes = {i: _xywh_to_box(*parse_box(row.values, row.where)) for i, row in box_rows.items()}
    for table_name, table in (("image_class_labels.txt", class_ids), ("train_test_split.txt", is_train),
                              ("bounding_boxes.txt", boxes)):
        lacking = [i for i in paths if i not in table]
        if lacking:
            raise ValueError(f"{root / table_name} has no entry for {len(lacking)} image id(s) of images.txt, "
                             f"e.g. {lacking[:5]}; the annotation files do not match, re-extract the dataset")
    class_names = _column(read_keyed(root / "classes.txt", 2))
    unknown = sorted({c for c in class_ids.values() if c not in class_names})
    if unknown:
        raise ValueError(f"{root / 'image_class_labels.txt'} uses class ids missing from classes.txt: {unknown[:10]}")
    wanted = "1" if split == "train" else "0"
    return ImageTables(
        ids=[i for i in paths if is_train[i] == wanted],
        paths=paths,
        class_ids=class_ids,
        boxes=boxes,
        class_names=class_names,
        box_lines={i: row.where for i, row in box_rows.items()},
    )


def _column(rows: dict[str, Row]) -> dict[str, str]:
    """id -> the one value of each row of a two-column table."""
    return {key: row.values[0] for key, row in rows.items()}


def _xywh_to_box(x: float, y: float, w: float, h: float) -> tuple[float, float, float, float]:
    return (x, y, x + w, y + h)


def load(
    root: str | Path | None = None,
    split: str = "train",
    *,
    segmentations: bool | None = None,
    mask_threshold: float = 0.5,
    on_corrupt: str = "raise",
    on_bad_box: str = "raise",
) -> AnnotatedImageList:
    """CUB-200-2011 ``split`` (``train``/``test``) as samples with 200 classes.

    ``segmentations``: ``None`` uses ``root/segmentations`` when it exists (masks from the box otherwise), ``True``
    requires it, ``False`` ignores it. Soft segmentations are thresholded at ``mask_threshold``; ``on_corrupt`` and
    ``on_bad_box`` (``raise``/``skip``) handle undecodable images and empty boxes (see :mod:`fgssl_lib.data.annotated`).
    """
    root = Path(root).expanduser() if root is not None else default_root("cub")
    if segmentations is None:
        segmentations = (root / "segmentations").is_dir()
    tables = read_image_tables(root, split, "cub", "CUB-200-2011", ("segmentations",) if segmentations else ())
    class_order = list(tables.class_names)  # classes.txt order, i.e. ids 1..200
    label_of = {class_id: index for index, class_id in enumerate(class_order)}
    records = [
        Record(
            path=root / "images" / tables.paths[i],
            label=label_of[tables.class_ids[i]],
            box=tables.boxes[i],
            mask_path=(root / "segmentations" / tables.paths[i]).with_suffix(".png") if segmentations else None,
            where=tables.box_lines[i],
        )
        for i in tables.ids
    ]
    classes = [tables.class_names[c].split(".", 1)[-1] for c in class_order]
    return AnnotatedImageList(records, classes, mask_threshold=mask_threshold, on_corrupt=on_corrupt,
                              on_bad_box=on_bad_box, root=root, split=split)
