"""The training set as one uint8 store, decoded once, from which batched views are made on the training device.

Each sample is decoded once and resized so that its shorter side is ``side`` (``None``: as decoded), with its mask,
box and, where the data carries one, its saliency map (the soft map of DiLo's paste, the DiLo theory page). An entry
``<root>/<key>/`` (root ``$FGSSL_CACHE/store``, else ``~/.cache/fgssl/store``; the key hashes the dataset's
content, :func:`fgssl_lib.data.identity.dataset_fingerprint`, ``side`` and :data:`STORE_VERSION`) is written
atomically with a completeness marker written last (:func:`fgssl_lib.caches.atomic_directory`; a partial, damaged
or old-format entry is rebuilt with a warning), and read back memory-mapped. It holds

- ``image.u8``, ``mask.u8`` ({0, 1}) and, where the samples carry ``saliency``, ``saliency.u8`` (``round(255 S)``):
  the rows one after another, unpadded (``3 x h x w``, ``h x w``, ``h x w``), so that images of mixed orientation
  take only their own pixels;
- ``rows.npz``: ``box`` ``N x 4`` float32 (``x0, y0, x1, y1`` exclusive, stored pixels), ``hw`` ``N x 2`` int64
  (each row's height and width), ``start`` ``N`` int64 (its first pixel in the mask and saliency files; ``3 x`` in
  the image file), ``label`` and ``index`` (the sample's own ``index``) ``N`` int64;
- ``meta.json``, for humans; ``complete.json``, the marker.

:meth:`TrainingStore.batch` gathers rows into the batch form the batched view generators take
(:func:`fgssl_lib.views.build_batched_views`): each row top-left aligned and zero-padded to the batch's largest
``H x W``, with its valid ``hw``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F
from tqdm.auto import tqdm

from fgssl_lib.caches import atomic_directory, cache_folder, trusted
from fgssl_lib.data.identity import dataset_fingerprint
from fgssl_lib.views.base import check_sample

STORE_VERSION = 3
"""Part of the key: bump it whenever a change here changes what an entry holds."""
ARRAYS = {"image": 3, "mask": 1, "saliency": 1}
"""The per-pixel uint8 arrays of an entry and their channels (``saliency`` only where the samples carry one)."""
ROWS = ("box", "hw", "start", "label", "index")
"""The per-row arrays of an entry."""
FINGERPRINT_KEYS = ("image", "mask", "box", "label", "index", "saliency")
"""The sample entries that identify a dataset without a fingerprint of its own (a new saliency source changes boxes,
not pixels)."""


class StoreError(ValueError):
    """The samples cannot be stored (they break the sample contract, or carry ``saliency`` only sometimes)."""


def stored_shape(height: int, width: int, side: int | None) -> tuple[int, int]:
    """``(h, w)`` of an ``height x width`` image resized so its shorter side is ``side`` (``None``: unchanged)."""
    if side is None or min(height, width) == side:
        return height, width
    scale = side / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def stored_sample(sample: dict[str, Any], side: int | None) -> dict[str, torch.Tensor]:
    """One sample as stored: image ``3 x h x w`` (antialiased bilinear), mask ``h x w`` (nearest), saliency
    ``h x w`` uint8 ``round(255 S)`` (bilinear; where present) and the box scaled with the image."""
    try:
        check_sample(sample)
    except ValueError as error:
        raise StoreError(f"sample {sample.get('index')} cannot be stored: {error}") from error
    image = sample["image"]
    height, width = image.shape[-2:]
    h, w = stored_shape(height, width, side)
    box = torch.as_tensor(sample["box"], dtype=torch.float32) * torch.tensor([w / width, h / height] * 2)
    out = {"box": box, "image": image, "mask": sample["mask"].to(torch.uint8)}
    if (h, w) != (height, width):
        out["image"] = F.resize(image, [h, w], antialias=True)
        out["mask"] = F.resize(out["mask"][None], [h, w], interpolation=InterpolationMode.NEAREST)[0]
    if "saliency" in sample:
        saliency = torch.as_tensor(sample["saliency"], dtype=torch.float32)
        if saliency.shape != (height, width):
            raise StoreError(f"sample {sample['index']}: saliency is {tuple(saliency.shape)} but the image is "
                             f"{height} x {width}; a saliency map covers its image pixel for pixel")
        if (h, w) != (height, width):
            saliency = F.resize(saliency[None], [h, w], antialias=True)[0]
        out["saliency"] = (saliency.clamp(0, 1) * 255).round().to(torch.uint8)
    return out


def store_key(dataset: Dataset, side: int | None) -> str:
    """The entry's directory name: a hash of the dataset's content
    (:func:`~fgssl_lib.data.identity.dataset_fingerprint`; a dataset without one of its own by the entries
    :data:`FINGERPRINT_KEYS` of some samples), ``side`` and :data:`STORE_VERSION`."""
    identity = json.dumps({"dataset": dataset_fingerprint(dataset, FINGERPRINT_KEYS), "side": side,
                           "version": STORE_VERSION}, sort_keys=True)
    return f"store-{hashlib.sha256(identity.encode()).hexdigest()[:20]}"


def _write(path: Path, dataset: Dataset, side: int | None, progress: bool, setting: str) -> None:
    """Store every sample of ``dataset`` in a temporary directory, then rename it to ``path`` (whose folder is
    chosen by ``setting``)."""
    with atomic_directory(path, STORE_VERSION, setting) as tmp, contextlib.ExitStack() as files:
        rows: dict[str, list[Any]] = {name: [] for name in ROWS}
        out: dict[str, Any] = {}
        start = 0
        indices = tqdm(range(len(dataset)), desc="store") if progress else range(len(dataset))
        for position in indices:
            sample = dataset[position]
            stored = stored_sample(sample, side)
            names = [name for name in ARRAYS if name in stored]
            if not out:
                out = {name: files.enter_context(open(tmp / f"{name}.u8", "wb")) for name in names}
            elif names != list(out):
                raise StoreError(f"sample {position} carries {names}, but sample 0 carries {list(out)}: every sample "
                                 "must carry a saliency map, or none")
            for name in names:
                out[name].write(stored[name].contiguous().numpy().tobytes())
            height, width = stored["image"].shape[-2:]
            rows["box"].append(stored["box"].numpy())
            rows["hw"].append((height, width))
            rows["start"].append(start)
            rows["label"].append(int(sample["label"]))
            rows["index"].append(int(sample["index"]))
            start += height * width
        if not out:
            raise StoreError("the dataset is empty: there is nothing to store")
        np.savez(tmp / "rows.npz", box=np.array(rows["box"], dtype=np.float32).reshape(-1, 4),
                 **{name: np.array(rows[name], dtype=np.int64) for name in ROWS if name != "box"})
        meta = {"rows": len(rows["start"]), "pixels": start, "side": side, "arrays": list(out),
                "version": STORE_VERSION}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))


class TrainingStore:
    """The rows of one store entry: memory-mapped on the host until :meth:`to` moves them to a device.

    ``len(store)`` rows; ``store.batch(positions)`` is a batch dict (``image`` ``B x 3 x H x W``, ``mask``,
    ``saliency`` ``B x H x W`` uint8, zero-padded to the batch's largest ``H x W``; ``box`` ``B x 4``, ``hw``
    ``B x 2``, ``label``, ``index`` ``B``).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not (self.path / "rows.npz").is_file():
            raise FileNotFoundError(f"no training store at {self.path}; build one with TrainingStore.load(dataset)")
        with np.load(self.path / "rows.npz") as rows:
            self.rows = {name: torch.from_numpy(rows[name]) for name in ROWS}  # on the host: the batches' layout
        self.arrays = tuple(name for name in ARRAYS if (self.path / f"{name}.u8").is_file())
        hw, start = self.rows["hw"], self.rows["start"]
        uniform = bool((hw == hw[0]).all()) and torch.equal(start, torch.arange(len(hw)) * int(hw[0].prod()))
        self.row_shape = tuple(hw[0].tolist()) if uniform else None  # (h, w) when every row has it
        self._tensors: dict[str, torch.Tensor] | None = None  # opened lazily, so the store pickles to workers

    @classmethod
    def load(cls, dataset: Dataset, side: int | None = None, root: str | Path | None = None,
             progress: bool = False) -> TrainingStore:
        """The store of ``dataset`` at ``side``: read from ``root`` (default ``cache_root("store")``), written on a
        miss. Raises :class:`StoreError` for samples it cannot store."""
        if side is not None and side < 1:
            raise ValueError(f"side is the stored images' shorter side in pixels (or None: as decoded), got {side}")
        folder, setting = cache_folder("store", root, "root of TrainingStore.load")
        path = folder / store_key(dataset, side)
        if not trusted(path, STORE_VERSION, "training store"):
            _write(path, dataset, side, progress, setting)
        return cls(path)

    def __len__(self) -> int:
        return len(self.rows["index"])

    @property
    def tensors(self) -> dict[str, torch.Tensor]:
        """The flat pixel arrays and the per-row arrays by name, on :attr:`device`."""
        if self._tensors is None:
            self._tensors = {name: torch.from_numpy(np.memmap(self.path / f"{name}.u8", dtype=np.uint8, mode="c"))
                             for name in self.arrays}
            self._tensors.update(self.rows)
        return self._tensors

    @property
    def device(self) -> torch.device:
        return self.tensors["image"].device

    @property
    def nbytes(self) -> int:
        """Bytes of every array (what :meth:`to` moves)."""
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    def fits(self, device: torch.device, fraction: float) -> bool:
        """Whether the store takes at most ``fraction`` of ``device``'s free memory (the host always holds it)."""
        if device.type != "cuda":
            return True
        free, _ = torch.cuda.mem_get_info(device)
        return self.nbytes <= fraction * free

    def to(self, device: torch.device | str) -> TrainingStore:
        """Copy every array to ``device`` (in place); returns the store."""
        self._tensors = {name: tensor.to(device) for name, tensor in self.tensors.items()}
        return self

    def batch(self, positions: torch.Tensor, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """The rows at ``positions`` (``B`` int64, any device) as a batch dict on ``device`` (default: the store's),
        each row copied into the zero-padded batch from its place in the flat arrays (one gather per array when
        every row has the same size, as on the synthetic benchmark)."""
        positions = torch.as_tensor(positions, dtype=torch.int64).cpu()
        tensors, on_store = self.tensors, positions.to(self.device)
        if self.row_shape is not None:  # rows of one size, one after another: one gather per array
            out = {name: tensors[name].view(len(self), ARRAYS[name], *self.row_shape).index_select(0, on_store)
                   for name in self.arrays}
        else:
            hw, start = self.rows["hw"][positions], self.rows["start"][positions]
            height, width = (int(v) for v in hw.max(0).values)
            out = {name: torch.zeros((len(positions), ARRAYS[name], height, width), dtype=torch.uint8,
                                     device=self.device) for name in self.arrays}
            for row, (first, (h, w)) in enumerate(zip(start.tolist(), hw.tolist())):
                for name, pixels in out.items():
                    channels = ARRAYS[name]
                    pixels[row, :, :h, :w] = tensors[name][channels * first:channels * (first + h * w)].view(-1, h, w)
        out = {name: pixels if ARRAYS[name] == 3 else pixels[:, 0] for name, pixels in out.items()}
        out.update({name: tensors[name].index_select(0, on_store) for name in ROWS if name != "start"})
        return out if device is None else {name: t.to(device, non_blocking=True) for name, t in out.items()}

    def __getstate__(self) -> dict[str, Any]:
        if self._tensors is not None and self.device.type != "cpu":
            raise RuntimeError(f"a store on {self.device} cannot be sent to another process; gather its batches "
                               "on the training device (num_workers=0)")
        return {**self.__dict__, "_tensors": None}

    def __repr__(self) -> str:
        return f"TrainingStore({len(self)} rows, {'+'.join(self.arrays)}, {self.nbytes / 2**20:.1f} MiB, {self.path})"
