"""NABirds (Van Horn et al. 2015) in its official layout: the CUB family of tables plus a class hierarchy.

``root`` is the extracted ``nabirds`` folder with ``images.txt``, ``image_class_labels.txt``,
``train_test_split.txt``, ``bounding_boxes.txt`` (``<id> <x> <y> <width> <height>``, integer pixels),
``classes.txt`` (``<class_id> <name with spaces>``), ``hierarchy.txt`` (``<child_id> <parent_id>``) and ``images/``.
Image ids are UUIDs. Boxes follow CUB: ``(x, y, x + width, y + height)``.

``classes.txt`` lists every node of the taxonomy (1,011), but images are labelled with leaves only: the labels are
the classes that occur in the images, ordered by class id and remapped to ``0..C-1`` (555 for the full dataset).
``level=k`` labels each image with its ancestor at depth ``k`` of the hierarchy instead (the root is depth 0; a leaf
shallower than ``k`` keeps its own class).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fgssl_lib.data.annotated import AnnotatedImageList, Record, read_keyed
from fgssl_lib.data.cub import read_image_tables
from fgssl_lib.data.downloads import default_root


class NABirds(AnnotatedImageList):
    """NABirds samples; ``class_ids[label]`` is the official class id and ``parents[label]`` its parent's name."""

    def __init__(self, records: Sequence[Record], classes: Sequence[str], class_ids: Sequence[str],
                 parents: Sequence[str | None], hierarchy: dict[str, str], **options: Any) -> None:
        super().__init__(records, classes, **options)
        self.class_ids = list(class_ids)
        self.parents = list(parents)
        self.hierarchy = hierarchy


def ancestor_at(class_id: str, level: int, hierarchy: dict[str, str]) -> str:
    """The ancestor of ``class_id`` at depth ``level`` (root = 0) in ``hierarchy`` (child -> parent)."""
    chain = [class_id]
    while chain[-1] in hierarchy:
        chain.append(hierarchy[chain[-1]])
        if len(chain) > len(hierarchy) + 1:
            raise ValueError(f"hierarchy.txt has a cycle through class {class_id}")
    return chain[max(len(chain) - 1 - level, 0)]


def load(
    root: str | Path | None = None,
    split: str = "train",
    *,
    level: int | None = None,
    on_corrupt: str = "raise",
    on_bad_box: str = "raise",
) -> NABirds:
    """NABirds ``split`` (``train``/``test``); leaf labels, or depth-``level`` ancestors of the hierarchy.
    ``on_corrupt`` / ``on_bad_box`` as in :mod:`fgssl_lib.data.annotated`."""
    root = Path(root).expanduser() if root is not None else default_root("nabirds")
    tables = read_image_tables(root, split, "nabirds", "NABirds", ("hierarchy.txt",))
    hierarchy = {child: row.values[0] for child, row in read_keyed(root / "hierarchy.txt", 2).items()}
    if level is not None and level < 0:
        raise ValueError(f"level must be >= 0 (0 is the root of the hierarchy), got {level}")
    # Labels are defined over the whole dataset (train and test) so both splits share the same class indices.
    label_class = {
        i: c if level is None else ancestor_at(c, level, hierarchy) for i, c in tables.class_ids.items()
    }
    class_ids = sorted(set(label_class.values()), key=int)
    label_of = {c: index for index, c in enumerate(class_ids)}
    records = [
        Record(path=root / "images" / tables.paths[i], label=label_of[label_class[i]], box=tables.boxes[i],
               where=tables.box_lines[i])
        for i in tables.ids
    ]
    names = tables.class_names
    return NABirds(
        records,
        [names[c] for c in class_ids],
        class_ids,
        [names.get(hierarchy[c]) if c in hierarchy else None for c in class_ids],
        hierarchy,
        on_corrupt=on_corrupt,
        on_bad_box=on_bad_box,
        root=root,
        split=split,
    )
