"""The identity of a dataset's content: one fingerprint that keys runs and every derived cache.

:func:`dataset_fingerprint` is cheap enough to compute at every load and changes whenever what a sample holds
changes, but not when the dataset moves to another folder (Drive to ``/content``):

- an annotated image list (CUB, NABirds, Aircraft, Cars, folder) hashes, per image, its path relative to the
  dataset root, label, box and segmentation path, with each file's size and the bytes of its head and tail
  (:func:`file_digest`: modification times change on every copy, so they are not used), plus its classes and
  options. A fixed label, box or split flag, or a replaced image, changes it;
- a rendered world (synthetic benchmark, coarse world) is its generator settings;
- a wrapper (a ``Subset``, saliency, box variants) is its dataset's fingerprint with its own settings;
- any other dataset: its length and the sample entries of :data:`FINGERPRINT_SAMPLES` evenly spaced samples.

A dataset says its own fingerprint with a ``fingerprint()`` method.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

FINGERPRINT_SAMPLES = 8
"""Samples (evenly spaced over the dataset) whose entries identify a dataset that has no ``fingerprint()``."""
EDGE_BYTES = 4096
"""Bytes read from each end of a file by :func:`file_digest`: a JPEG's head holds its size and tables, its tail
the last of its pixels, so another image of the same size differs in them."""

_digests: dict[tuple[str, int, int, int], str] = {}  # (path, size, mtime_ns, inode) -> digest, for this process


def file_digest(path: Path) -> str:
    """Hash of a file's size and its first and last :data:`EDGE_BYTES` bytes; remembered in this process while the
    file's size, modification time and inode stay the same, so a dataset loaded again is hashed from ``stat`` alone."""
    stat = os.stat(path)
    memo = (os.fspath(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if memo not in _digests:
        with open(path, "rb") as f:
            head = f.read(EDGE_BYTES)
            f.seek(max(stat.st_size - EDGE_BYTES, len(head)))
            tail = f.read()
        _digests[memo] = hashlib.blake2b(f"{stat.st_size}:".encode() + head + tail, digest_size=12).hexdigest()
    return _digests[memo]


def digest(*parts: Any) -> str:
    """A 16-hex-digit hash of ``parts`` written as JSON (anything else by ``str``)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def dataset_fingerprint(dataset: Dataset, keys: Sequence[str] = ("image",)) -> str:
    """The identity of ``dataset``'s content (see the module): its own ``fingerprint()``, a ``Subset``'s dataset and
    indices, else its type, length and the entries ``keys`` (those present) of evenly spaced samples."""
    own = getattr(dataset, "fingerprint", None)
    if callable(own):
        return own()
    if isinstance(dataset, Subset):
        indices = np.asarray(dataset.indices, dtype=np.int64).tobytes()
        return digest(dataset_fingerprint(dataset.dataset, keys), hashlib.sha256(indices).hexdigest())
    return sampled_fingerprint(dataset, keys)


def sampled_fingerprint(dataset: Dataset, keys: Sequence[str] = ("image",)) -> str:
    """Type, length and the sample entries ``keys`` (those present) of :data:`FINGERPRINT_SAMPLES` evenly spaced
    samples: the identity of a dataset that gives none of its own."""
    n = len(dataset)  # type: ignore[arg-type]
    hashed = hashlib.sha256(f"{type(dataset).__module__}.{type(dataset).__qualname__}:{n}".encode())
    for index in sorted({int(i) for i in np.linspace(0, n - 1, FINGERPRINT_SAMPLES)} if n else ()):
        sample = dataset[index]
        for key in (k for k in keys if k in sample):
            value = torch.as_tensor(sample[key]).contiguous()
            tag = "" if key == "image" else f"{key}:{value.dtype}:"
            hashed.update(f"{tag}{index}:{tuple(value.shape)}".encode())
            hashed.update(value.numpy().tobytes())
    return hashed.hexdigest()[:16]
