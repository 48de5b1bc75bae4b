"""Feature extraction over a dataset split, with an on-disk cache, and the checks every feature protocol shares.

``extract_features`` runs a model's ``embed(images) -> N x D`` (or any such function) over a dataset of sample dicts
mapped to single views by ``transform`` (default :func:`fgssl_lib.views.eval_view`), batched, in eval mode and without
gradients. Whatever ``embed`` computes is what gets cached: GAP features for the baselines, LCR's weighted pooling
(Eq. 8) for LCR. The cache file is keyed by the model (``key``, else a hash of its parameters), the dataset's content
(:func:`fgssl_lib.data.identity.dataset_fingerprint`: a fixed label changes it) and the transform (its ``repr``),
written atomically with its format and read with ``weights_only=True`` (:func:`fgssl_lib.caches.load_file`: a
damaged or old file is rebuilt).
"""

from __future__ import annotations

import hashlib
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fgssl_lib.caches import load_file, save_file
from fgssl_lib.config import resolve_device
from fgssl_lib.data.identity import dataset_fingerprint
from fgssl_lib.saliency.maps import evaluating
from fgssl_lib.views import eval_view

EmbedFn = Callable[[torch.Tensor], torch.Tensor]
FEATURES_FORMAT = 1
"""The format of a cache file (:func:`fgssl_lib.caches.save_file`); a file of another format is rebuilt."""


class Features(NamedTuple):
    """Extracted features ``N x D``, labels ``N`` and boxes ``N x 4`` (exclusive, at view size)."""

    feats: torch.Tensor
    labels: torch.Tensor
    boxes: torch.Tensor


def check_features(feats: torch.Tensor, labels: torch.Tensor, name: str) -> None:
    """Raise a ValueError naming ``name`` unless ``feats`` is ``N x D`` and ``labels`` is ``N`` (the input of kNN,
    retrieval and the linear probe)."""
    if feats.ndim != 2 or labels.ndim != 1 or len(feats) != len(labels):
        raise ValueError(
            f"{name}: expected features N x D and labels N; got {tuple(feats.shape)} and {tuple(labels.shape)}"
        )


def encoder_of(model: nn.Module) -> nn.Module:
    """The image encoder ``images -> N x D`` of a method (its ``backbone``) or the module itself."""
    return getattr(model, "backbone", model)


class Pooled(nn.Module):
    """An encoder whose output is pooled to ``N x D`` when it returns ``N x D x h x w`` maps."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.encoder(images)
        return out.mean(dim=(2, 3)) if out.ndim == 4 else out


class Mapped(Dataset):
    """``dataset`` with ``transform`` applied to each sample (e.g. :func:`fgssl_lib.views.eval_view`)."""

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
    """SHA-1 of a module's parameters and buffers (names, shapes, values) and, for a method, its hyper-parameters (a
    variant evaluated from another's run, e.g. LCR's MultiTask, embeds differently with the same weights): the cache
    key of an unnamed checkpoint."""
    digest = hashlib.sha1(repr(sorted(dict(getattr(model, "hparams", {})).items())).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def describe_dataset(dataset: Dataset) -> str:
    """``split 'test' of AnnotatedImageList at <root>``: a dataset as a user knows it, for messages."""
    inner = getattr(dataset, "dataset", None)
    if inner is not None:
        return describe_dataset(inner)
    split, root = getattr(dataset, "split", None), getattr(dataset, "root", None)
    return (f"{'split ' + repr(split) + ' of ' if split else ''}{type(dataset).__name__}"
            f"{' at ' + str(root) if root else ''}")


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


def cache_path(cache_dir: str | os.PathLike, key: str, dataset: Dataset, transform: Any,
               kind: str = "features") -> Path:
    """The cache file of ``kind`` (``features``, or ``maps``: :func:`~fgssl_lib.eval.cams.localization_maps`) of
    (model ``key``, the dataset's content: :func:`~fgssl_lib.data.identity.dataset_fingerprint`, transform
    parameters)."""
    identity = f"{key}|{dataset_fingerprint(dataset)}|{describe_transform(transform)}"
    return Path(cache_dir) / f"{kind}-{hashlib.sha1(identity.encode()).hexdigest()[:20]}.pt"


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
    transform = transform if transform is not None else eval_view(image_size)
    embed = _embed_fn(model_or_fn)
    if len(dataset) == 0:
        raise ValueError(f"the {describe_dataset(dataset)} holds no images, so there is nothing to evaluate: give "
                         "that split images (its split file, or test_fraction of a folder dataset), or evaluate on "
                         "another split")
    path = None
    if cache_dir is not None:
        if key is None:
            if not isinstance(model_or_fn, nn.Module):
                raise ValueError("caching the features of a plain function needs key=... naming the checkpoint")
            key = model_fingerprint(model_or_fn)
        path = cache_path(cache_dir, key, dataset, transform)
        cached = load_file(path, FEATURES_FORMAT, "feature cache")
        if cached is not None:
            return Features(**cached)
    device = resolve_device(device)
    module = model_or_fn.to(device) if isinstance(model_or_fn, nn.Module) else None
    loader = DataLoader(Mapped(dataset, transform), batch_size=batch_size, shuffle=False, num_workers=num_workers)
    feats, labels, boxes = [], [], []
    with evaluating(module):
        for batch in loader:
            out = embed(batch["image"].to(device))  # NxD
            if out.ndim != 2:
                raise ValueError(f"embed must return N x D features; got shape {tuple(out.shape)}")
            feats.append(out.float().cpu())
            labels.append(torch.as_tensor(batch["label"]).long())
            boxes.append(torch.as_tensor(batch["box"]).float().reshape(-1, 4))
    result = Features(torch.cat(feats), torch.cat(labels), torch.cat(boxes))
    if path is not None:
        save_file(result._asdict(), path, FEATURES_FORMAT, f"the parameter cache_dir ({cache_dir})")
    return result
