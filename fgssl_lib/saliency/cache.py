"""Saliency maps of a whole dataset, computed once and cached on disk, and a dataset wrapper that serves them.

A cache entry is a directory ``<root>/<key>/`` keyed by a stable hash of (the dataset's content,
:func:`fgssl_lib.data.identity.dataset_fingerprint`; source name; source parameters) and written atomically (built in a
temporary directory, then renamed). It holds

- ``maps.u8``: every map quantised to uint8 (``round(255 S)``), concatenated row-major (read back memory-mapped);
- ``index.npz``: ``shapes`` (``N x 2``: ``H, W`` per map) and ``offsets`` (``N + 1`` byte offsets into ``maps.u8``);
- ``meta.json``: the dataset key, source name and parameters, for humans;
- ``complete.json``: the format and every file's size, written last (:func:`fgssl_lib.caches.atomic_directory`): a
  partial, damaged or old-format entry is rebuilt with a warning.

The root is ``$FGSSL_CACHE/saliency`` when ``FGSSL_CACHE`` is set, else ``~/.cache/fgssl/saliency``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from fgssl_lib.caches import atomic_directory, cache_folder, cache_root, trusted
from fgssl_lib.config import check_choice
from fgssl_lib.data.identity import dataset_fingerprint, digest
from fgssl_lib.data.sample import box_to_mask
from fgssl_lib.saliency.best_box import DEFAULT_GRID, DEFAULT_OBJECTIVE, OBJECTIVES, best_box
from fgssl_lib.saliency.sources import SaliencySource

SALIENCY_FORMAT = 2
"""The format of a cache entry; an entry of another format (or without the completeness marker) is rebuilt."""
MASK_MODES = ("box", "threshold")


def cache_key(dataset_key: str, source: SaliencySource) -> str:
    """Stable hash of (dataset key, source name, source parameters): the entry's directory name."""
    identity = json.dumps({"dataset": dataset_key, "source": source.name, "params": source.params()}, sort_keys=True)
    return f"{source.name}-{hashlib.sha256(identity.encode()).hexdigest()[:20]}"


class CachedMaps(Sequence[torch.Tensor]):
    """The maps of one cache entry: ``maps[i]`` is an ``H_i x W_i`` float32 tensor in ``[0, 1]`` (uint8 / 255)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        index = np.load(path / "index.npz")
        self.shapes, self.offsets = index["shapes"], index["offsets"]
        self._data: np.memmap | None = None  # opened lazily, so that the object pickles to DataLoader workers

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, index: int) -> torch.Tensor:  # type: ignore[override]
        if not 0 <= index < len(self):
            raise IndexError(f"map {index} out of range for a cache of {len(self)} maps")
        if self._data is None:
            size = int(self.offsets[-1])
            self._data = np.memmap(self.path / "maps.u8", dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
        flat = self._data[self.offsets[index] : self.offsets[index + 1]]
        return torch.from_numpy(flat.reshape(self.shapes[index]).astype(np.float32) / 255)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_data": None}


class SaliencyCache:
    """On-disk store of per-dataset saliency maps under ``root`` (default :func:`cache_root`)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root, self.setting = cache_folder("saliency", root, "root of SaliencyCache")

    def path(self, dataset: Dataset, source: SaliencySource, dataset_key: str | None = None) -> Path:
        """Directory of the entry for ``dataset`` and ``source``; ``dataset_key`` overrides the fingerprint."""
        return self.root / cache_key(dataset_key or dataset_fingerprint(dataset), source)

    def load(
        self, dataset: Dataset, source: SaliencySource, dataset_key: str | None = None, progress: bool = False
    ) -> CachedMaps:
        """The maps of ``source`` on every sample of ``dataset``: read from the cache, computed and stored on a miss.

        ``dataset_key`` names the dataset (default: :func:`dataset_fingerprint`).
        """
        dataset_key = dataset_key or dataset_fingerprint(dataset)
        path = self.root / cache_key(dataset_key, source)
        if not trusted(path, SALIENCY_FORMAT, f"saliency cache of {source.name}"):
            self._build(path, dataset, source, dataset_key, progress)
        return CachedMaps(path)

    def _build(
        self, path: Path, dataset: Dataset, source: SaliencySource, dataset_key: str, progress: bool
    ) -> None:
        """Compute every map into a temporary directory next to ``path``, then rename it into place."""
        with atomic_directory(path, SALIENCY_FORMAT, self.setting) as tmp:
            shapes, offsets = [], [0]
            indices = range(len(dataset))  # type: ignore[arg-type]
            if progress:
                indices = tqdm(indices, desc=f"saliency {source.name}")
            with open(tmp / "maps.u8", "wb") as out:
                for index in indices:
                    sample = dataset[index]
                    quantised = (source(sample["image"], sample) * 255).round().to(torch.uint8).numpy()
                    out.write(quantised.tobytes())
                    shapes.append(quantised.shape)
                    offsets.append(offsets[-1] + quantised.size)
            np.savez(
                tmp / "index.npz", shapes=np.array(shapes, dtype=np.int64).reshape(-1, 2), offsets=np.array(offsets)
            )
            meta = {"dataset": dataset_key, "source": source.name, "params": source.params(), "maps": len(shapes)}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))

    def clear(self, dataset: Dataset, source: SaliencySource, dataset_key: str | None = None) -> None:
        """Remove the entry for ``dataset`` and ``source`` (no-op if absent)."""
        shutil.rmtree(self.path(dataset, source, dataset_key), ignore_errors=True)


class SaliencyDataset(Dataset):
    """Wrap a dataset so its samples carry a saliency map from ``source`` and the box and mask derived from it.

    Each sample gains ``saliency`` (``H x W`` float32 in ``[0, 1]``) and its ``box`` becomes ``best_box(saliency,
    grid, objective)`` (float32, as in the sample contract); its ``mask`` becomes the box's mask (``mask="box"``) or
    ``saliency >= threshold`` (``mask="threshold"``; an empty result falls back to the whole image, like
    :func:`best_box`). The ground truth the map replaces stays available as ``gt_box`` and ``gt_mask``. Maps come from
    the on-disk cache (``cache=True``: default root; a path or :class:`SaliencyCache`: that store) or are computed on
    access (``cache=False``).
    """

    def __init__(
        self,
        dataset: Dataset,
        source: SaliencySource,
        cache: bool | str | Path | SaliencyCache = True,
        grid: int = DEFAULT_GRID,
        objective: str = DEFAULT_OBJECTIVE,
        mask: str = "box",
        threshold: float = 0.5,
        dataset_key: str | None = None,
        progress: bool = False,
    ) -> None:
        self.dataset, self.source, self.grid, self.threshold = dataset, source, grid, threshold
        self.objective = check_choice("best-box objective", objective, OBJECTIVES)
        self.mask = check_choice("mask mode", mask, MASK_MODES)
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must lie in (0, 1] (the maps are in [0, 1]), got {threshold}")
        if cache is True:
            cache = SaliencyCache()
        elif isinstance(cache, (str, Path)):
            cache = SaliencyCache(cache)
        self.maps = cache.load(dataset, source, dataset_key, progress) if cache else None
        for attribute in ("classes", "num_classes"):
            if hasattr(dataset, attribute):
                setattr(self, attribute, getattr(dataset, attribute))

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def fingerprint(self) -> str:
        """Its dataset's identity with the source and how boxes and masks come from its maps
        (:mod:`fgssl_lib.data.identity`)."""
        return digest(dataset_fingerprint(self.dataset), self.source.name, self.source.params(), self.grid,
                      self.objective, self.mask, self.threshold)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = dict(self.dataset[index])
        saliency = self.maps[index] if self.maps is not None else self.source(sample["image"], sample)  # HxW
        height, width = sample["image"].shape[1:]
        if saliency.shape != (height, width):
            raise RuntimeError(
                f"cached saliency map {index} is {tuple(saliency.shape)} but the image is {height} x {width}: the "
                "dataset changed under the same key; pass a new dataset_key or clear the cache"
            )
        box = torch.tensor(best_box(saliency, self.grid, self.objective), dtype=torch.float32)
        if self.mask == "box":
            mask = box_to_mask(box, height, width)
        else:
            mask = (saliency >= self.threshold).to(torch.uint8)
            if not mask.any():
                mask = torch.ones_like(mask)
        sample.update({f"gt_{key}": sample[key] for key in ("box", "mask") if key in sample})
        sample.update(saliency=saliency, box=box, mask=mask)
        return sample
