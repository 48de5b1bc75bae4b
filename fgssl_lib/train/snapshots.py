"""Saliency snapshots: the method's own map on a fixed batch of images, before training and after every epoch.

CVSA's map is the correspondence intensity of Eq. 4 (the CVSA theory page), LCR's the output of its localization
branch (the LCR theory page); a snapshot series shows how that map moves onto the object while the method trains.
:class:`SaliencySnapshots` is the Lightning callback that records the series (and keeps it in the run's checkpoint,
so a resumed run's series covers the whole run). The run store trains every run with it, on the first
:data:`SNAPSHOT_IMAGES` training images (:func:`run_snapshot_images`), and keeps the series at ``<run>/snapshots.pt``;
:func:`training_snapshots` returns the series a finished run recorded on the images asked for, or else its two ends
(the same-seed initialisation and the trained weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from fgssl_lib.methods import SSLMethod
from fgssl_lib.saliency.maps import evaluating
from fgssl_lib.train.config import STAGE1_PREFIX, TrainConfig
from fgssl_lib.train.fit import build_method, training_set
from fgssl_lib.views import eval_view

SNAPSHOTS = "snapshots.pt"
BEFORE_TRAINING = -1  # the epoch label of the snapshot of the initial weights
SNAPSHOT_IMAGES = 6  # a run's series is recorded on the first 6 images of its training set
MAX_SIDE = 64  # recorded maps are kept at most this many pixels wide (a paper run has 800 epochs of 224 px maps)


@dataclass
class Snapshots:
    """A series of saliency maps of one method on fixed images: ``maps[k]`` (``N x s x s`` in [0, 1]) after epoch
    ``epochs[k]`` (0-based; :data:`BEFORE_TRAINING` = the initial weights); ``images`` (``N x 3 x S x S``) are the
    images the maps are of, where known."""

    epochs: list[int]
    maps: list[Tensor]
    images: Tensor | None = None

    def __post_init__(self) -> None:
        if len(self.epochs) != len(self.maps):
            raise ValueError(f"{len(self.epochs)} epochs but {len(self.maps)} maps: give one map batch per epoch")

    def labels(self) -> list[str]:
        """``"init"`` for the initial weights, else ``"epoch <k>"`` counted from 1."""
        return ["init" if e == BEFORE_TRAINING else f"epoch {e + 1}" for e in self.epochs]

    def save(self, path: str | Path) -> None:
        """Write the series to ``path`` (``torch.save``; written to ``<path>.tmp`` first, then moved)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        images = None if self.images is None else self.images.cpu()
        torch.save({"epochs": list(self.epochs), "maps": [m.cpu() for m in self.maps], "images": images}, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> Snapshots:
        """Read a series written by :meth:`save`."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        return cls(list(state["epochs"]), list(state["maps"]), state.get("images"))

    def taken_on(self, images: Tensor) -> bool:
        """Whether the maps are of ``images`` (``N x 3 x S x S``, equal up to float rounding)."""
        return (self.images is not None and self.images.shape == images.shape
                and torch.allclose(self.images, images.cpu().float(), atol=1e-4))


class TrainedRun(Protocol):
    """What :func:`training_snapshots` reads of a finished run: its trained method and its directory."""

    method: SSLMethod
    path: Path


def saliency_snapshot(method: SSLMethod, images: Tensor) -> Tensor:
    """``method.saliency(images)`` (``N x 3 x S x S`` -> ``N x S x S`` float on the CPU) in eval mode without
    gradients; the method's train/eval mode is restored afterwards.

    Raises ``NotImplementedError`` for a method without a map of its own (the baselines: use Grad-CAM).
    """
    with evaluating(method):
        maps = method.saliency(images.to(method.device))
    return maps.detach().float().cpu()


class SaliencySnapshots(pl.Callback):
    """Records :func:`saliency_snapshot` of the trained method on ``images`` (``N x 3 x S x S``, eval view) at the
    start of training (weights as initialised) and at the end of every epoch, area-downsampled to at most
    ``max_side`` pixels; with ``path``, rank 0 also writes the series there (:meth:`Snapshots.save`) after every
    snapshot. A method without a map of its own (the baselines, BYOL+SS) records nothing.
    """

    def __init__(self, images: Tensor, path: str | Path | None = None, max_side: int = MAX_SIDE) -> None:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be N x 3 x S x S (an eval-view batch), got shape {tuple(images.shape)}")
        self.images = images
        self.path = Path(path) if path is not None else None
        self.max_side = max_side
        self.series = Snapshots([], [], images.cpu().float())

    def _record(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int) -> None:
        try:
            maps = saliency_snapshot(pl_module, self.images)  # N x S x S
        except NotImplementedError:  # no map of its own: nothing to follow
            return
        if max(maps.shape[-2:]) > self.max_side:
            maps = F.interpolate(maps[:, None], size=(self.max_side, self.max_side), mode="area")[:, 0]
        self.series.epochs.append(epoch)
        self.series.maps.append(maps)
        if self.path is not None and trainer.is_global_zero:
            self.series.save(self.path)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a resumed run already holds its initial snapshot (or, resumed from a checkpoint without the series, has
        # no initial weights left to take one of)
        if trainer.current_epoch == 0 and not self.series.epochs:
            self._record(trainer, pl_module, BEFORE_TRAINING)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._record(trainer, pl_module, trainer.current_epoch)

    def state_dict(self) -> dict[str, Any]:
        return {"epochs": list(self.series.epochs), "maps": [m.cpu() for m in self.series.maps]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.series = Snapshots(list(state_dict["epochs"]), list(state_dict["maps"]), self.series.images)


def snapshot_images(dataset: Dataset, indices: Sequence[int], image_size: int) -> tuple[Tensor, list[Tensor]]:
    """The fixed batch of a snapshot series: samples ``indices`` of ``dataset`` through
    :func:`fgssl_lib.views.eval_view`; returns ``(images N x 3 x S x S, boxes in the view frame)``."""
    if not indices:
        raise ValueError("indices is empty: pick at least one image index of the dataset")
    view = eval_view(image_size)
    samples = [view(dataset[int(i)]) for i in indices]
    return torch.stack([s["image"] for s in samples]), [s["box"] for s in samples]


def run_snapshot_images(config: TrainConfig, indices: Sequence[int] | None = None) -> tuple[Tensor, list[Tensor]]:
    """:func:`snapshot_images` of ``config``'s training set (as ``fit`` loads it): images ``indices``, by default the
    first :data:`SNAPSHOT_IMAGES`, the batch the run store records a run's series on."""
    dataset = training_set(config)
    if indices is None:
        indices = range(min(SNAPSHOT_IMAGES, len(dataset)))
    return snapshot_images(dataset, indices, config.image_size)


def training_snapshots(run: TrainedRun, config: TrainConfig, images: Tensor) -> Snapshots:
    """The snapshot series of ``run`` (trained from ``config``) on ``images``: the one it recorded
    (``<run.path>/snapshots.pt``, written by :class:`SaliencySnapshots`) when that was taken on ``images``, else its
    two ends: the initial weights of ``config``'s seed (built as ``fit`` builds them) and the trained ones.
    """
    recorded = Path(run.path) / SNAPSHOTS
    if recorded.is_file():
        series = Snapshots.load(recorded)
        if series.taken_on(images):
            return series
    if (config.pretrained or "").startswith(STAGE1_PREFIX):
        raise ValueError(f"run {Path(run.path).name} recorded no snapshots on these images, and its initial weights "
                         "are a stage-1 run's, not the seed's: pass the images it recorded "
                         "(run_snapshot_images(config)), or retrain it with train_or_load, which records them")
    pl.seed_everything(config.seed, verbose=False)
    initial = build_method(config).to(run.method.device)
    return Snapshots([BEFORE_TRAINING, config.epochs - 1],
                     [saliency_snapshot(initial, images), saliency_snapshot(run.method, images)], images.cpu().float())
