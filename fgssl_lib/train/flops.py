"""What training a config costs in floating-point operations: a ResNet-50 forward pass at 224 px
(:data:`RESNET50_FORWARD_FLOPS`), a training pass three times that, :data:`PASSES` per image by method family,
times images and epochs. :mod:`fgssl_lib.cost` turns it into GPU-hours; the run plan starts the costliest runs
first."""

from __future__ import annotations

from fgssl_lib.data.synthetic import DEFAULT_NUM_IMAGES as SYNTHETIC_TRAIN_IMAGES
from fgssl_lib.train.config import TrainConfig, method_family

RESNET50_FORWARD_FLOPS = 4.1e9
"""Multiply-adds x 2 of one ResNet-50 forward pass at 224 px (He et al. 2016, Table 1: 3.8e9 multiply-adds; 4.1e9
as torchvision counts them)."""
CUB_TRAIN_IMAGES = 5994
PASSES = {"supervised": (1, 0), "moco": (1, 1), "byol": (2, 2), "simclr": (2, 0)}
"""(online training passes, momentum forward passes) per image: MoCo v2 and LCR contrast one query with one key,
BYOL and CVSA run both views through both networks symmetrically, SimCLR both views through one."""


def training_flops(method: str, images: int = CUB_TRAIN_IMAGES, preset: str = "paper",
                   epochs: int | None = None) -> float:
    """FLOPs of training ``method`` for ``epochs`` (``None``: ``preset``'s) on ``images`` images."""
    online, momentum = PASSES["simclr" if method == "simclr" else method_family(method)]
    epochs = epochs if epochs is not None else TrainConfig.preset(preset, method=method).epochs
    return images * epochs * RESNET50_FORWARD_FLOPS * (3 * online + momentum)


def training_images(config: TrainConfig) -> int:
    """The images ``config`` trains on per epoch: CUB-200-2011's training split on CUB (whatever ``num_images``), else
    ``num_images`` or the synthetic benchmark's training split."""
    return CUB_TRAIN_IMAGES if config.dataset == "cub" else config.num_images or SYNTHETIC_TRAIN_IMAGES["train"]


def run_flops(config: TrainConfig, stage1: TrainConfig | None = None) -> float:
    """FLOPs of training ``config`` (after its first stage ``stage1``, if any) by :func:`training_flops`."""
    return sum(training_flops(c.method, training_images(c), epochs=c.epochs) for c in (stage1, config) if c is not None)
