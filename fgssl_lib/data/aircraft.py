"""FGVC-Aircraft (Maji et al. 2013) in its official layout (the one ``torchvision.datasets.FGVCAircraft`` reads).

``root`` is the extracted ``fgvc-aircraft-2013b`` folder::

    data/images/<image_id>.jpg
    data/images_<level>_<split>.txt   <image_id> <class name with spaces>
    data/variants.txt, families.txt, manufacturers.txt   one class name per line (the class order)
    data/images_box.txt               <image_id> <xmin> <ymin> <xmax> <ymax>   (1-based, inclusive)

``annotation_level`` is ``variant`` (100 classes, the standard benchmark), ``family`` (70) or ``manufacturer`` (30);
``split`` is ``train``, ``val``, ``trainval`` or ``test`` (the standard protocol trains on ``trainval``: 6,667
images, and tests on ``test``: 3,333).

Boxes: a 1-based inclusive ``(xmin, ymin, xmax, ymax)`` covers 0-based pixels ``xmin - 1 .. xmax - 1``, i.e. our
exclusive ``(xmin - 1, ymin - 1, xmax, ymax)``. Every official image carries a 20-pixel copyright banner at the
bottom; ``crop_banner=True`` (the standard protocol) removes it and clips the box to the remaining image.
"""

from __future__ import annotations

from pathlib import Path

from fgssl_lib.config import check_choice
from fgssl_lib.data.annotated import (
    AnnotatedImageList,
    Record,
    from_inclusive,
    inside,
    parse_box,
    read_keyed,
    read_table,
    require_files,
)
from fgssl_lib.data.downloads import default_root, how_to_get

SPLITS = ("train", "val", "trainval", "test")
CLASS_FILES = {"variant": "variants.txt", "family": "families.txt", "manufacturer": "manufacturers.txt"}
BANNER_HEIGHT = 20


def load(
    root: str | Path | None = None,
    split: str = "trainval",
    *,
    annotation_level: str = "variant",
    crop_banner: bool = True,
    on_corrupt: str = "raise",
    on_bad_box: str = "raise",
) -> AnnotatedImageList:
    """FGVC-Aircraft ``split`` labelled at ``annotation_level``, boxes converted to our exclusive convention;
    ``on_corrupt`` / ``on_bad_box`` as in :mod:`fgssl_lib.data.annotated`."""
    root = Path(root).expanduser() if root is not None else default_root("aircraft")
    check_choice("split", split, SPLITS)
    check_choice("annotation_level", annotation_level, CLASS_FILES)
    data = root / "data"
    labels_file = f"data/images_{annotation_level}_{split}.txt"
    require_files(root, (labels_file, f"data/{CLASS_FILES[annotation_level]}", "data/images_box.txt",
                         "data/images"), "FGVC-Aircraft", how_to_get("aircraft", root))
    classes = [line.strip() for line in read_table(data / CLASS_FILES[annotation_level]).splitlines() if line.strip()]
    label_of = {name: index for index, name in enumerate(classes)}
    box_rows = read_keyed(data / "images_box.txt", 5)
    boxes = {i: from_inclusive(parse_box(row.values, row.where)) for i, row in box_rows.items()}
    records = []
    for image_id, (where, (name,)) in read_keyed(root / labels_file, 2).items():
        if name not in label_of:
            raise ValueError(f"{root / labels_file}: class {name!r} of image {image_id} is not in "
                             f"{CLASS_FILES[annotation_level]}")
        if image_id not in boxes:
            raise ValueError(f"{data / 'images_box.txt'} has no box for image {image_id}")
        records.append(Record(path=inside(data / "images", f"{image_id}.jpg", where), label=label_of[name],
                              box=boxes[image_id], where=box_rows[image_id].where))
    return AnnotatedImageList(records, classes, crop_bottom=BANNER_HEIGHT if crop_banner else 0, on_corrupt=on_corrupt,
                              on_bad_box=on_bad_box, root=root, split=split)
