"""Your own data: one folder of images per class, with optional boxes and split files.

Layout::

    root/<class name>/<image>.jpg   (also .jpeg, .png, .webp, .gif; classes are the sub-folders, sorted by name)
    root/boxes.csv                  optional, header ``path,x0,y0,x1,y1``
    root/split.csv                  optional, header ``path,split``

or, split by folders, ``root/<split>/<class name>/<image>.jpg`` with ``<split>`` among ``train``, ``val``, ``test``
(the classes are the class folders of all splits together). Hidden entries (``.thumbnails``, ``__MACOSX``,
``._x.jpg``) are not data and are skipped.

``path`` is the image path relative to ``root`` with ``/`` separators (``sparrow/001.jpg``). Boxes use fgssl's
convention: pixels, 0-based, ``x1``/``y1`` exclusive (the whole ``W x H`` image is ``0,0,W,H``); an image without a
row has the whole image as its box, and the mask is the box. ``split.csv`` assigns every image to a named split
(e.g. ``train``/``test``). Without it, each class is split on its own, reproducibly from ``seed``: a
``test_fraction`` share of its images (rounded; at least one image in each part when the class has two or more)
goes to ``test``, the rest to ``train``. ``split="all"`` returns every image. The CSV files are UTF-8.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import torch

from fgssl_lib.config import check_choice
from fgssl_lib.data.annotated import AnnotatedImageList, Record, Row, parse_box, read_table
from fgssl_lib.data.downloads import how_to_get

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif")
BOX_COLUMNS = ["path", "x0", "y0", "x1", "y1"]
SPLIT_COLUMNS = ["path", "split"]
SPLIT_FOLDERS = ("train", "val", "test")
"""Names of the top folders of a root split by folders (``root/<split>/<class>/``)."""


def _visible(folder: Path, dirs: bool) -> list[Path]:
    """The sub-folders (``dirs``) or image files of ``folder``, sorted, without hidden ones (``.x``, ``__x``)."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith((".", "__"))
                  and (p.is_dir() if dirs else p.suffix.lower() in IMAGE_SUFFIXES))


def _read_csv(path: Path, columns: list[str], images: set[str]) -> dict[str, Row]:
    """Image path -> the row's other values, for ``path`` with header ``columns``; every row must have one value per
    column and name one of ``images``, once (errors name the file and line). A UTF-8 byte-order mark is ignored."""
    rows: dict[str, Row] = {}
    reader = csv.reader(io.StringIO(read_table(path), newline=""))
    header = next(reader, None)
    if header != columns:
        raise ValueError(f"{path}: expected the header {','.join(columns)}, got {header}")
    for values in reader:
        where = f"{path}, line {reader.line_num}"
        if not values:
            continue
        if len(values) != len(columns):
            raise ValueError(f"{where}: expected {len(columns)} values ({','.join(columns)}), got "
                             f"{len(values)}: {','.join(values)}; fix the row")
        if values[0] in rows:
            raise ValueError(f"{where}: {values[0]} is listed again; list each image once")
        rows[values[0]] = Row(where, values[1:])
    unknown = [p for p in rows if p not in images]
    if unknown:
        raise ValueError(f"{path} names {len(unknown)} image(s) that are not in the class folders, e.g. {unknown[:5]}")
    return rows


def stratified_split(labels: list[int], test_fraction: float, seed: int) -> list[str]:
    """``train``/``test`` per item: a seeded ``test_fraction`` of each class goes to ``test``."""
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    generator = torch.Generator().manual_seed(seed)
    split = ["train"] * len(labels)
    for label in sorted(set(labels)):
        members = [i for i, l in enumerate(labels) if l == label]
        n_test = round(len(members) * test_fraction)
        if test_fraction > 0 and len(members) > 1:
            n_test = min(max(n_test, 1), len(members) - 1)
        for position in torch.randperm(len(members), generator=generator)[:n_test].tolist():
            split[members[position]] = "test"
    return split


def load(
    root: str | Path | None = None,
    split: str = "train",
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    on_corrupt: str = "raise",
    on_bad_box: str = "raise",
) -> AnnotatedImageList:
    """The images under ``root/<class>/`` (or ``root/<split>/<class>/``) in ``split`` (``train``, ``test``,
    ``all``, or a name from ``split.csv`` or a split folder);
    ``on_corrupt`` / ``on_bad_box`` as in :mod:`fgssl_lib.data.annotated`."""
    if root is None:
        raise ValueError("the folder dataset needs root=<folder with one sub-folder of images per class>")
    root = Path(root).expanduser()
    top = _visible(root, dirs=True) if root.is_dir() else []
    if not top:
        raise FileNotFoundError(f"no class folders found in {root}. {how_to_get('folder', root)}")
    by_split = {d.name for d in top} <= set(SPLIT_FOLDERS) and all(_visible(d, dirs=True) for d in top)
    if by_split and (root / "split.csv").exists():
        raise ValueError(f"{root} is split by its folders ({', '.join(d.name for d in top)}) and by split.csv: "
                         "keep one of the two (remove split.csv, or move the class folders up to the root)")
    class_names = sorted({c.name for d in top for c in _visible(d, dirs=True)}) if by_split else [d.name for d in top]
    folders = [(d.name, c) for d in top for c in _visible(d, dirs=True)] if by_split else [(None, d) for d in top]
    paths, labels, folder_splits = [], [], []
    for split_name, class_dir in folders:
        images = _visible(class_dir, dirs=False)
        if not images:
            inner = _visible(class_dir, dirs=True)
            layout = (f"; it holds folders ({', '.join(d.name for d in inner[:5])}): a root split by folders has "
                      f"only {', '.join(SPLIT_FOLDERS)} at its top, each with one folder per class") if inner else ""
            raise FileNotFoundError(f"class folder {class_dir} holds no images ({', '.join(IMAGE_SUFFIXES)}){layout}")
        paths += [p.relative_to(root).as_posix() for p in images]
        labels += [class_names.index(class_dir.name)] * len(images)
        folder_splits += [split_name] * len(images)
    known = set(paths)
    box_rows = _read_csv(root / "boxes.csv", BOX_COLUMNS, known) if (root / "boxes.csv").exists() else {}
    boxes = {p: parse_box(row.values, row.where) for p, row in box_rows.items()}
    if by_split:
        splits = folder_splits
        valid = {*splits, "all"}
    elif (root / "split.csv").exists():
        assigned = {p: row.values[0] for p, row in _read_csv(root / "split.csv", SPLIT_COLUMNS, known).items()}
        unassigned = [p for p in paths if p not in assigned]
        if unassigned:
            raise ValueError(f"{root / 'split.csv'} assigns no split to {len(unassigned)} image(s), "
                             f"e.g. {unassigned[:5]}; list every image")
        splits = [assigned[p] for p in paths]
        valid = {*splits, "all"}
    else:
        splits = stratified_split(labels, test_fraction, seed)
        valid = {"train", "test", "all"}
    check_choice("split", split, valid)
    records = [
        Record(path=root / p, label=l, box=boxes.get(p), where=box_rows[p].where if p in box_rows else Record.where)
        for p, l, s in zip(paths, labels, splits)
        if split in ("all", s)
    ]
    return AnnotatedImageList(records, class_names, on_corrupt=on_corrupt, on_bad_box=on_bad_box, root=root,
                              split=split)
