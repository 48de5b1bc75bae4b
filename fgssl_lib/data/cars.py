"""Stanford Cars (Krause et al. 2013) from its devkit ``.mat`` files (the layout of torchvision's ``StanfordCars``).

``root`` holds::

    devkit/cars_meta.mat               class_names (196)
    devkit/cars_train_annos.mat        annotations: bbox_x1, bbox_y1, bbox_x2, bbox_y2, class (1-based), fname
    cars_test_annos_withlabels.mat     the same for the test images (also accepted inside devkit/)
    cars_train/*.jpg, cars_test/*.jpg

The files are read with ``scipy.io.loadmat(..., squeeze_me=True)`` as torchvision does. Boxes are 1-based and
inclusive, so ``(x1, y1, x2, y2)`` becomes our exclusive ``(x1 - 1, y1 - 1, x2, y2)``. The standard split is
8,144 train / 8,041 test images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from fgssl_lib.config import check_choice
from fgssl_lib.data.annotated import (
    AnnotatedImageList,
    Record,
    from_inclusive,
    inside,
    parse_box,
    require_files,
)
from fgssl_lib.data.downloads import default_root, how_to_get

SPLITS = ("train", "test")
TEST_ANNOTATIONS = "cars_test_annos_withlabels.mat"


def _annotation_file(root: Path, split: str) -> str:
    if split == "train":
        return "devkit/cars_train_annos.mat"
    in_devkit = f"devkit/{TEST_ANNOTATIONS}"
    return in_devkit if (root / in_devkit).exists() else TEST_ANNOTATIONS


def load(root: str | Path | None = None, split: str = "train", *, on_corrupt: str = "raise",
         on_bad_box: str = "raise") -> AnnotatedImageList:
    """Stanford Cars ``split`` (``train``/``test``) with 196 classes and the devkit boxes; ``on_corrupt`` /
    ``on_bad_box`` as in :mod:`fgssl_lib.data.annotated`."""
    root = Path(root).expanduser() if root is not None else default_root("cars")
    check_choice("split", split, SPLITS)
    annotations_file = _annotation_file(root, split)
    images = root / f"cars_{split}"
    require_files(root, ("devkit/cars_meta.mat", annotations_file, images.name), "Stanford Cars",
                  how_to_get("cars", root))
    classes = [str(name) for name in np.atleast_1d(scipy.io.loadmat(root / "devkit/cars_meta.mat",
                                                                     squeeze_me=True)["class_names"])]
    annotations = np.atleast_1d(scipy.io.loadmat(root / annotations_file, squeeze_me=True)["annotations"])
    records = []
    for number, a in enumerate(annotations, start=1):
        where = f"{root / annotations_file}, annotation {number}"
        box = parse_box([a[f"bbox_{c}"] for c in ("x1", "y1", "x2", "y2")], where)
        records.append(Record(path=inside(images, str(a["fname"]), where), label=int(a["class"]) - 1,
                              box=from_inclusive(box),
                              where=where))
    return AnnotatedImageList(records, classes, on_corrupt=on_corrupt, on_bad_box=on_bad_box, root=root, split=split)
