"""Datasets that yield the sample dicts of :mod:`fgssl_lib.data.sample`.

``load_dataset(name, root=None, split="train", **options)`` is the single entry point; each name maps to one
reader module so that importing :mod:`fgssl_lib.data` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from torch.utils.data import Dataset

from fgssl_lib.config import check_choice
from fgssl_lib.data.downloads import data_home, download
from fgssl_lib.data.sample import Sample, box_to_mask, clip_box, mask_to_box

_READERS = {
    "cub": "fgssl_lib.data.cub:load",
    "nabirds": "fgssl_lib.data.nabirds:load",
    "aircraft": "fgssl_lib.data.aircraft:load",
    "cars": "fgssl_lib.data.cars:load",
    "folder": "fgssl_lib.data.folder:load",
    "synthetic": "fgssl_lib.data.synthetic:load",
    "coarse": "fgssl_lib.data.coarse:load",
}
DATASETS = tuple(_READERS)


def load_dataset(name: str, root: str | None = None, split: str = "train", **options: Any) -> Dataset:
    """Return the ``split`` of dataset ``name`` as a ``Dataset`` of sample dicts.

    ``root=None`` means the dataset's default location under the cache directory (``$FGSSL_DATA``); the synthetic
    benchmark and the coarse world (``coarse``: streams ``train`` / ``val``) ignore it. For ``synthetic``, ``split``
    also takes the test variants (``test_mixed_rand``, ...).
    """
    module_name, func = _READERS[check_choice("dataset", name, _READERS)].split(":")
    return getattr(importlib.import_module(module_name), func)(root=root, split=split, **options)


__all__ = ["DATASETS", "Sample", "box_to_mask", "clip_box", "data_home", "download", "load_dataset", "mask_to_box"]
