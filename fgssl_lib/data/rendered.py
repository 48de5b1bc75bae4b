"""Procedurally rendered splits: per-index randomness, rendering in chunks, and the disk cache.

A rendered dataset (the synthetic benchmark, :mod:`fgssl_lib.data.synthetic`; the coarse world,
:mod:`fgssl_lib.data.coarse`) draws image ``i`` only from generators seeded by a hash of its key parts (seed, stream,
index, role), so an image is a pure function of them; it renders :data:`CHUNK` consecutive indices as one batch and
can keep a whole split in one cache file keyed by every parameter, so the many runs of a study render it once.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset

from fgssl_lib.caches import load_file, save_file
from fgssl_lib.data.identity import digest
from fgssl_lib.data.sample import mask_to_box

CHUNK = 256
"""Images are rendered (and kept in memory) in batches of this many consecutive indices."""
RENDER_CACHE_FORMAT = 1
"""The format of a cache file (:func:`fgssl_lib.caches.save_file`); a file of another format is rendered again."""


def index_generator(*key: object) -> torch.Generator:
    """A generator seeded by a stable hash of ``key`` (e.g. ``(seed, stream, index, role)``), joined with ``/``."""
    text = "/".join(str(part) for part in key).encode()
    return torch.Generator().manual_seed(int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little"))


@dataclass(frozen=True)
class WorldConfig:
    """The parameters every rendered world has: ``image_size`` (pixels) and ``num_classes``; a subclass adds its own
    (its ``seed`` last) and says what it draws (``drawn``, e.g. "the parts"), how many classes it can make
    (``most_classes``) and of what (``classes_from``)."""

    image_size: int = 64
    num_classes: int = 10
    drawn: ClassVar[str] = "the objects"
    most_classes: ClassVar[int] = 2
    classes_from: ClassVar[str] = ""

    def __post_init__(self) -> None:
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16 pixels for {self.drawn} to be visible, got {self.image_size}")
        if not 2 <= self.num_classes <= self.most_classes:
            raise ValueError(f"num_classes must be in [2, {self.most_classes}] ({self.classes_from}), got "
                             f"{self.num_classes}")


def split_options(world: str, config_type: type, num_images: int | None, default: int, options: dict[str, Any]
                  ) -> tuple[Any, int]:
    """``(config_type(**options), image count)`` of a split of ``world``: unknown options and a count below 1 are
    refused with the valid options; ``num_images=None`` means ``default``."""
    unknown = set(options) - {f.name for f in fields(config_type)}
    if unknown:
        raise ValueError(f"unknown {world} option(s) {sorted(unknown)}; valid options: num_images, cache_dir, "
                         f"{', '.join(f.name for f in fields(config_type))}")
    count = default if num_images is None else int(num_images)
    if count < 1:
        raise ValueError(f"num_images must be >= 1, got {count}")
    return config_type(**options), count


class RenderedSplit(Dataset):
    """One rendered split; subclasses set ``split`` and ``num_images`` and define :meth:`label` and :meth:`render`.

    ``dataset[i]`` is the sample dict ``image, label, box, mask, index`` plus one ``int`` per extra entry of
    :meth:`render` (e.g. the benchmark's ``habitat``).
    """

    split: str
    num_images: int
    _chunks: dict[int, dict[str, torch.Tensor]]

    def label(self, index: int) -> int:
        """Class of image ``index``."""
        raise NotImplementedError

    def render(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """Images ``indices`` as one batch: ``image`` N x 3 x S x S uint8, ``mask`` N x S x S uint8 (exactly the
        object's pixels) and per-image int64 extras (N); image ``k`` depends only on ``indices[k]``."""
        raise NotImplementedError

    def __len__(self) -> int:
        return self.num_images

    def check_indices(self, indices: list[int]) -> None:
        """Raise ``IndexError`` for an index outside ``[0, num_images)``."""
        for i in indices:
            if not 0 <= i < self.num_images:
                raise IndexError(f"index {i} out of range for {self.split!r} with {self.num_images} images")

    def _chunk(self, chunk: int) -> dict[str, torch.Tensor]:
        if chunk not in self._chunks:
            self._chunks[chunk] = self.render(list(range(chunk * CHUNK, min((chunk + 1) * CHUNK, self.num_images))))
        return self._chunks[chunk]

    def __getitem__(self, index: int) -> dict[str, Any]:
        self.check_indices([index])
        rendered, row = self._chunk(index // CHUNK), index % CHUNK
        mask = rendered["mask"][row].clone()  # copies: callers may write into the sample
        extras = {key: int(value[row]) for key, value in rendered.items() if key not in ("image", "mask")}
        return dict(image=rendered["image"][row].clone(), label=self.label(index), box=mask_to_box(mask), mask=mask,
                    index=index, **extras)

    def fingerprint(self) -> str:
        """The identity of the split (:mod:`fgssl_lib.data.identity`): its generator settings."""
        return digest(*self._settings)

    def use_cache(self, cache_dir: str | Path | None, prefix: str, params: tuple) -> None:
        """Start with no rendered chunk, ``params`` (every generator setting) being the split's identity; with
        ``cache_dir``, render the whole split once into ``<cache_dir>/<prefix>-<split>-<hash of params>.pt`` (written
        atomically; a damaged or old-format file is rendered again), or load it."""
        self._chunks, self._settings = {}, (prefix, params)
        if cache_dir is None:
            return
        key = hashlib.blake2b(repr(params).encode(), digest_size=8)
        path = Path(cache_dir).expanduser() / f"{prefix}-{self.split}-{key.hexdigest()}.pt"
        cached = load_file(path, RENDER_CACHE_FORMAT, f"rendered {prefix} split")
        if cached is not None:
            self._chunks = cached
            return
        self._chunks = {c: self._chunk(c) for c in range(math.ceil(self.num_images / CHUNK))}
        save_file(self._chunks, path, RENDER_CACHE_FORMAT, f"the option cache_dir ({cache_dir})")
