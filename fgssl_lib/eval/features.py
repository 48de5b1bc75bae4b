"""Feature extraction over a dataset split, with an on-disk cache.

``extract_features`` runs a model's ``embed(images) -> N x D`` (or any such function) over a dataset of sample dicts
mapped to single views by ``transform`` (default :func:`fgssl_lib.views.eval_view`), batched, in eval mode and without
gradients. Whatever ``embed`` computes is what gets cached: GAP features for the baselines, LCR's weighted pooling
(Eq. 8) for LCR. The cache file is keyed by the model (``key``, else a hash of its parameters), the dataset (class,
split, length) and the transform (its ``repr``), and written atomically.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fgssl_lib.config import resolve_device

EmbedFn = Callable[[torch.Tensor], torch.Tensor]


class Features(NamedTuple):
    """Extracted features ``N x D``, labels ``N`` and boxes ``N x 4`` (exclusive, at view size)."""

    feats: torch.Tensor
    labels: torch.Tensor
    boxes: torch.Tensor


class _Mapped(Dataset):
    """``dataset`` with ``transform`` applied to each sample."""

    def __init__(self, dataset: Dataset, transform: Callable[[dict], dict]) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return self.transform(self.dataset[index])


def _embed_fn(model_or_fn: nn.Module | EmbedFn) -> EmbedFn:
    embed = getattr(model_or_fn, "embed", model_or_fn)
    if not callable(embed):
        raise TypeError(f"expected a model with embed(images) or a function images -> N x D; got {type(model_or_fn)}")
    return embed


def model_fingerprint(model: nn.Module) -> str:
    """SHA-1 of a module's parameters and buffers (names, shapes, values): the cache key of an unnamed checkpoint."""
    digest = hashlib.sha1()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def describe_transform(transform: Any) -> str:
    """A stable text of a transform's parameters (its ``repr``, else its class and attributes) for the cache key."""
    text = repr(transform)
    if " at 0x" in text and hasattr(transform, "__dict__") and not inspect.isroutine(transform):
        fields = ", ".join(f"{name}={describe_transform(value)}" for name, value in sorted(vars(transform).items()))
        text = f"{type(transform).__qualname__}({fields})"
    if " at 0x" in text:
        raise ValueError(
            f"the transform {transform!r} does not describe its parameters, so cached features could not be told "
            "apart; cache with a transform object whose repr or attributes list its parameters (e.g. "
            "fgssl_lib.views.eval_view(224)), or pass cache_dir=None"
        )
    return text


def cache_path(cache_dir: str | os.PathLike, key: str, dataset: Dataset, transform: Any) -> Path:
    """The cache file of (model ``key``, dataset class / split / root / config / length, transform parameters)."""
    options = "|".join(repr(getattr(dataset, name, "")) for name in ("split", "root", "config"))
    identity = f"{key}|{type(dataset).__name__}|{options}|{len(dataset)}|{describe_transform(transform)}"
    return Path(cache_dir) / f"features-{hashlib.sha1(identity.encode()).hexdigest()[:20]}.pt"


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(handle)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def extract_features(
    model_or_fn: nn.Module | EmbedFn,
    dataset: Dataset,
    transform: Callable[[dict], dict] | None = None,
    batch_size: int = 64,
    device: str | torch.device = "auto",
    cache_dir: str | os.PathLike | None = None,
    key: str | None = None,
    num_workers: int = 0,
    image_size: int = 224,
) -> Features:
    """Embed every sample of ``dataset``: ``Features(feats N x D, labels N, boxes N x 4)``, on the CPU.

    Args:
        model_or_fn: a method (its ``embed`` is used), or a function / module ``images float [0,1] Nx3xSxS -> N x D``.
        dataset: a dataset of sample dicts (DEVELOPERS.md).
        transform: sample -> ``dict(image 3xSxS float [0,1], label, box, ...)``; default ``eval_view(image_size)``.
        cache_dir: where to cache; ``None`` disables the cache.
        key: names the checkpoint in the cache key; default a hash of the module's weights (required for a plain
            function when caching).
    """
    if transform is None:
        from fgssl_lib.views import eval_view

        transform = eval_view(image_size)
    embed = _embed_fn(model_or_fn)
    path = None
    if cache_dir is not None:
        if key is None:
            if not isinstance(model_or_fn, nn.Module):
                raise ValueError("caching the features of a plain function needs key=... naming the checkpoint")
            key = model_fingerprint(model_or_fn)
        path = cache_path(cache_dir, key, dataset, transform)
        if path.exists():
            return Features(**torch.load(path, map_location="cpu"))
    device = resolve_device(device)
    module = model_or_fn if isinstance(model_or_fn, nn.Module) else None
    was_training = module.training if module is not None else False
    if module is not None:
        module.to(device).eval()
    loader = DataLoader(_Mapped(dataset, transform), batch_size=batch_size, shuffle=False, num_workers=num_workers)
    feats, labels, boxes = [], [], []
    try:
        with torch.no_grad():
            for batch in loader:
                out = embed(batch["image"].to(device))  # NxD
                if out.ndim != 2:
                    raise ValueError(f"embed must return N x D features; got shape {tuple(out.shape)}")
                feats.append(out.float().cpu())
                labels.append(torch.as_tensor(batch["label"]).long())
                boxes.append(torch.as_tensor(batch["box"]).float().reshape(-1, 4))
    finally:
        if module is not None:
            module.train(was_training)
    result = Features(torch.cat(feats), torch.cat(labels), torch.cat(boxes))
    if path is not None:
        _atomic_save(result._asdict(), path)
    return result
