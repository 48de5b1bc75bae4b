"""Builders of tiny dataset directories in the official on-disk formats (CUB, NABirds, Aircraft, Cars, folder).

Each builder writes into ``root`` and returns it. The expected labels, boxes and masks are spelled out in
``tests/test_data_real.py`` from the constants here, so a reader that misparses a file fails there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

# (width, height) of every fixture image unless stated otherwise.
W, H = 48, 32


def write_image(path: Path, width: int = W, height: int = H, mode: str = "RGB", value: int = 0) -> Path:
    """Write a ``width x height`` image (``RGB`` gradient, ``L`` grey ``value``, ``RGBA`` with alpha 100)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "L":
        array = np.full((height, width), value, np.uint8)
    else:
        ys, xs = np.mgrid[0:height, 0:width]
        array = np.stack([xs * 5 % 256, ys * 7 % 256, np.full_like(xs, value)], axis=-1).astype(np.uint8)
        if mode == "RGBA":
            array = np.concatenate([array, np.full((height, width, 1), 100, np.uint8)], axis=-1)
    Image.fromarray(array, mode).save(path)
    return path


def corrupt(path: Path) -> Path:
    """Replace an image file by bytes that no decoder accepts."""
    path.write_bytes(b"this is not an image")
    return path


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


# --- CUB-200-2011 -------------------------------------------------------------------------------------------------
CUB_CLASSES = ["001.Alpha_bird", "002.Beta_bird", "003.Gamma_bird"]
# image id, relative path, class id (1-based), is_train, (x, y, w, h), (width, height)
CUB_IMAGES = [
    (1, "001.Alpha_bird/a_1.jpg", 1, 1, (2.0, 3.0, 10.0, 20.0), (W, H)),
    (2, "001.Alpha_bird/a_2.jpg", 1, 0, (0.0, 0.0, 48.0, 32.0), (W, H)),
    (3, "002.Beta_bird/b_1.jpg", 2, 1, (40.5, 20.0, 30.0, 30.0), (W, H)),  # runs off the image: clipped
    (4, "002.Beta_bird/b_2.jpg", 2, 0, (5.0, 6.0, 7.0, 8.0), (40, 30)),
    (5, "003.Gamma_bird/c_1.jpg", 3, 1, (1.0, 1.0, 4.0, 4.0), (40, 30)),
    (6, "003.Gamma_bird/c_2.jpg", 3, 0, (-3.0, -2.0, 10.0, 10.0), (W, H)),  # negative corner: clipped
]


def cub_segmentation(width: int, height: int) -> np.ndarray:
    """A soft CUB-style segmentation: 153 (3 of 5 annotators) left of x=width/2, 102 above y=height/2, else 0."""
    seg = np.zeros((height, width), np.uint8)
    seg[: height // 2, :] = 102
    seg[:, : width // 2] = 153
    return seg


def build_cub(root: Path, segmentations: bool = True) -> Path:
    """A ``CUB_200_2011`` folder with :data:`CUB_IMAGES` (and soft segmentations when asked)."""
    _write_lines(root / "classes.txt", [f"{i} {name}" for i, name in enumerate(CUB_CLASSES, start=1)])
    _write_lines(root / "images.txt", [f"{i} {p}" for i, p, *_ in CUB_IMAGES])
    _write_lines(root / "image_class_labels.txt", [f"{i} {c}" for i, _, c, *_ in CUB_IMAGES])
    _write_lines(root / "train_test_split.txt", [f"{i} {t}" for i, _, _, t, *_ in CUB_IMAGES])
    _write_lines(root / "bounding_boxes.txt", [f"{i} " + " ".join(map(str, b)) for i, _, _, _, b, _ in CUB_IMAGES])
    for _, rel, _, _, _, (width, height) in CUB_IMAGES:
        write_image(root / "images" / rel, width, height)
        if segmentations:
            seg_path = (root / "segmentations" / rel).with_suffix(".png")
            seg_path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(cub_segmentation(width, height), "L").save(seg_path)
    return root


# --- NABirds ------------------------------------------------------------------------------------------------------
# class id -> (name, parent id); 0 is the root. Leaf 21 has no image, so it is not a label.
NABIRDS_TAXONOMY = {
    0: ("Birds", None),
    1: ("Perching Birds", 0),
    2: ("Waterbirds", 0),
    10: ("Song Sparrow", 1),
    11: ("House Sparrow (Female)", 1),
    20: ("Mallard", 2),
    21: ("Wood Duck", 2),
}
# image id (UUID-like), relative path, class id, is_train, (x, y, w, h) integers
NABIRDS_IMAGES = [
    ("0b0e-aa11", "0010/aa11.jpg", 10, 1, (1, 2, 20, 10)),
    ("0b0e-bb22", "0010/bb22.jpg", 10, 0, (0, 0, 48, 32)),
    ("0b0e-cc33", "0011/cc33.jpg", 11, 1, (30, 5, 30, 40)),
    ("0b0e-dd44", "0020/dd44.jpg", 20, 1, (4, 4, 8, 8)),
    ("0b0e-ee55", "0020/ee55.jpg", 20, 0, (10, 10, 5, 5)),
]


def build_nabirds(root: Path) -> Path:
    """A ``nabirds`` folder with :data:`NABIRDS_TAXONOMY` and :data:`NABIRDS_IMAGES`."""
    _write_lines(root / "classes.txt", [f"{c} {name}" for c, (name, _) in NABIRDS_TAXONOMY.items()])
    _write_lines(root / "hierarchy.txt",
                 [f"{c} {parent}" for c, (_, parent) in NABIRDS_TAXONOMY.items() if parent is not None])
    _write_lines(root / "images.txt", [f"{i} {p}" for i, p, *_ in NABIRDS_IMAGES])
    _write_lines(root / "image_class_labels.txt", [f"{i} {c}" for i, _, c, *_ in NABIRDS_IMAGES])
    _write_lines(root / "train_test_split.txt", [f"{i} {t}" for i, _, _, t, _ in NABIRDS_IMAGES])
    _write_lines(root / "bounding_boxes.txt", [f"{i} " + " ".join(map(str, b)) for i, *_, b in NABIRDS_IMAGES])
    for _, rel, *_ in NABIRDS_IMAGES:
        write_image(root / "images" / rel)
    return root


# --- FGVC-Aircraft ------------------------------------------------------------------------------------------------
AIRCRAFT_BANNER = 20
AIRCRAFT_HEIGHT = H + AIRCRAFT_BANNER  # stored images carry the banner
AIRCRAFT_LEVELS = {
    "variant": ["707-320", "A320", "Cessna 172"],
    "family": ["Boeing 707", "A320", "Cessna 172"],
    "manufacturer": ["Boeing", "Airbus", "Cessna"],
}
# image id, class index (same at every level here), split, 1-based inclusive (xmin, ymin, xmax, ymax)
AIRCRAFT_IMAGES = [
    ("0000001", 0, "train", (1, 1, 48, 52)),  # covers the banner: clipped when it is cropped
    ("0000002", 1, "train", (5, 3, 20, 10)),
    ("0000003", 2, "val", (10, 10, 30, 31)),
    ("0000004", 0, "val", (2, 2, 3, 3)),
    ("0000005", 1, "test", (1, 30, 48, 40)),
    ("0000006", 2, "test", (12, 5, 40, 25)),
]


def build_aircraft(root: Path) -> Path:
    """A ``fgvc-aircraft-2013b`` folder with :data:`AIRCRAFT_IMAGES` at all three annotation levels."""
    data = root / "data"
    for level, classes in AIRCRAFT_LEVELS.items():
        plural = {"variant": "variants", "family": "families", "manufacturer": "manufacturers"}[level]
        _write_lines(data / f"{plural}.txt", classes)
        for split in ("train", "val", "trainval", "test"):
            members = [(i, c) for i, c, s, _ in AIRCRAFT_IMAGES if s == split or (split == "trainval" and s != "test")]
            _write_lines(data / f"images_{level}_{split}.txt", [f"{i} {classes[c]}" for i, c in members])
    _write_lines(data / "images_box.txt", [f"{i} " + " ".join(map(str, b)) for i, _, _, b in AIRCRAFT_IMAGES])
    for i, *_ in AIRCRAFT_IMAGES:
        write_image(data / "images" / f"{i}.jpg", W, AIRCRAFT_HEIGHT)
    return root


# --- Stanford Cars ------------------------------------------------------------------------------------------------
CARS_CLASSES = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012"]
# fname, class id (1-based), split, 1-based inclusive (x1, y1, x2, y2)
CARS_IMAGES = [
    ("00001.jpg", 1, "train", (1, 2, 30, 20)),
    ("00002.jpg", 2, "train", (10, 5, 60, 40)),  # runs off the image: clipped
    ("00003.jpg", 2, "train", (1, 1, 48, 32)),
    ("00001.jpg", 2, "test", (3, 4, 10, 12)),
    ("00002.jpg", 1, "test", (5, 5, 6, 6)),
]


def _annotations(split: str) -> np.ndarray:
    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    rows = [(*box, c, name) for name, c, s, box in CARS_IMAGES if s == split]
    return np.array(rows, dtype=[(f, "O") for f in fields])


def build_cars(root: Path, test_annotations_in_devkit: bool = False) -> Path:
    """A Stanford Cars folder (torchvision layout) with :data:`CARS_IMAGES` written as devkit ``.mat`` files."""
    devkit = root / "devkit"
    devkit.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(devkit / "cars_meta.mat", {"class_names": np.array(CARS_CLASSES, dtype=object)})
    scipy.io.savemat(devkit / "cars_train_annos.mat", {"annotations": _annotations("train")})
    test_dir = devkit if test_annotations_in_devkit else root
    scipy.io.savemat(test_dir / "cars_test_annos_withlabels.mat", {"annotations": _annotations("test")})
    for name, _, split, _ in CARS_IMAGES:
        write_image(root / f"cars_{split}" / name)
    return root


# --- folder -------------------------------------------------------------------------------------------------------
# relative path, image mode
FOLDER_IMAGES = [
    ("duck/d1.png", "L"),
    ("duck/d2.png", "RGBA"),
    ("duck/d3.jpg", "RGB"),
    ("sparrow/s1.jpg", "RGB"),
    ("sparrow/s2.jpg", "RGB"),
    ("sparrow/s3.jpg", "RGB"),
    ("sparrow/s4.jpg", "RGB"),
    ("sparrow/s5.jpg", "RGB"),
]
FOLDER_BOXES = {"duck/d1.png": (1.0, 2.0, 30.0, 40.0), "sparrow/s2.jpg": (-5.0, 4.0, 10.0, 12.0)}
FOLDER_GREY = 77


def build_folder(root: Path, boxes: bool = True, split: dict[str, str] | None = None) -> Path:
    """A class-per-folder dataset with :data:`FOLDER_IMAGES`, optional ``boxes.csv`` and ``split.csv``."""
    for rel, mode in FOLDER_IMAGES:
        write_image(root / rel, mode=mode, value=FOLDER_GREY)
    if boxes:
        _write_lines(root / "boxes.csv",
                     ["path,x0,y0,x1,y1"] + [f"{p}," + ",".join(map(str, b)) for p, b in FOLDER_BOXES.items()])
    if split is not None:
        _write_lines(root / "split.csv", ["path,split"] + [f"{p},{s}" for p, s in split.items()])
    return root
