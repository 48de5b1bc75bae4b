"""Calibration checks of the synthetic benchmark (the book's benchmark page): is the habitat an easy cue, are the
species learnable?

- :func:`background_only_probe`: a linear classifier on colour / gradient-orientation histograms, trained on
  background-only renderings of the *train* distribution (``train_only_bg``). Background bias is visible when it is far
  above chance on ``original`` (the habitat predicts the class) and near chance on ``mixed_rand``.
- :func:`foreground_supervised_check`: a small supervised CNN trained on ``train`` with the SSL augmentations
  (RandomResizedCrop scale 0.2-1, flip, colour jitter); high ``only_fg`` accuracy means the species parts are learnable
  from the object alone and survive those augmentations.

Both evaluate on the variants of one stream: ``val`` while tuning the design, ``test`` for the reported numbers
(Xiao et al. 2020: original, only_fg, only_bg, mixed_same, mixed_rand; BG-Gap = mixed_same - mixed_rand).

- :func:`calibration_record` / :func:`write_calibration`: the study's calibration on ``val`` (the benchmark page's
  "Calibration") from measured values, against :data:`TARGETS`, as ``fgssl_lib/results/calibration.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2

from fgssl_lib.config import resolve_device
from fgssl_lib.data.synthetic import VARIANTS, SyntheticBirds


def _stack(dataset: SyntheticBirds) -> tuple[torch.Tensor, torch.Tensor]:
    """All images (N x 3 x H x W uint8) and labels (N) of a split."""
    samples = [dataset[i] for i in range(len(dataset))]
    return torch.stack([s["image"] for s in samples]), torch.tensor([s["label"] for s in samples])


def histogram_features(images: torch.Tensor, colour_bins: int = 4, orientation_bins: int = 8) -> torch.Tensor:
    """``N x (colour_bins^3 + orientation_bins)`` features of ``N x 3 x H x W`` uint8 images: the joint RGB histogram
    and the gradient-magnitude-weighted histogram of gradient orientations (mod 180°), each normalised to sum 1."""
    n = images.shape[0]
    q = (images.long() * colour_bins) // 256  # N x 3 x H x W in [0, colour_bins)
    code = (q[:, 0] * colour_bins + q[:, 1]) * colour_bins + q[:, 2]  # N x H x W
    colour = F.one_hot(code.flatten(1), colour_bins**3).float().mean(1)  # N x B^3
    grey = images.float().mean(1)  # N x H x W
    gx, gy = grey[:, 1:-1, 2:] - grey[:, 1:-1, :-2], grey[:, 2:, 1:-1] - grey[:, :-2, 1:-1]
    magnitude = torch.sqrt(gx**2 + gy**2).flatten(1)  # N x P
    angle = torch.atan2(gy, gx).flatten(1) % math.pi
    bins = (angle / math.pi * orientation_bins).long().clamp_(max=orientation_bins - 1)
    orient = torch.zeros(n, orientation_bins).scatter_add_(1, bins, magnitude)
    orient = orient / orient.sum(1, keepdim=True).clamp_min(1e-6)
    return torch.cat([colour, orient], 1)


def background_only_probe(eval_stream: str = "test", num_train: int = 3000, num_eval: int = 1000,
                          **options: Any) -> dict[str, float]:
    """Top-1 accuracy (%) per variant of a logistic regression on :func:`histogram_features`, trained on
    ``train_only_bg`` (``num_train`` images) and evaluated on the ``num_eval`` images of each ``eval_stream`` variant.
    ``options`` are the benchmark's (``image_size``, ``num_classes``, ``rho``, ``seed``, ``cache_dir``)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    images, labels = _stack(SyntheticBirds("train_only_bg", num_images=num_train, **options))
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    probe.fit(histogram_features(images).numpy(), labels.numpy())
    result = {}
    for variant in VARIANTS:
        images, labels = _stack(SyntheticBirds(f"{eval_stream}_{variant}", num_images=num_eval, **options))
        result[variant] = 100.0 * float((probe.predict(histogram_features(images).numpy()) == labels.numpy()).mean())
    result["bg_gap"] = result["mixed_same"] - result["mixed_rand"]
    return result


class SmallCNN(nn.Sequential):
    """Four 3x3 conv-BN-ReLU blocks (``width``, 2w, 4w, 4w channels; max-pool after the first three), global average
    pooling and a linear classifier: ``N x 3 x H x W`` float -> ``N x num_classes`` logits."""

    def __init__(self, num_classes: int, width: int = 16) -> None:
        chans = (3, width, 2 * width, 4 * width, 4 * width)
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False), nn.BatchNorm2d(chans[i + 1]),
                       nn.ReLU(inplace=True)]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
        super().__init__(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(chans[-1], num_classes))


def _ssl_augment(size: int) -> v2.Compose:
    """The augmentations the species parts must survive: RRC (scale 0.2-1), flip, colour jitter (p = 0.8)."""
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=(0.2, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        v2.ToDtype(torch.float32, scale=True),
    ])


@torch.no_grad()
def _accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(images), 256):
        x = images[start:start + 256].to(device).float() / 255
        correct += int((model(x).argmax(1).cpu() == labels[start:start + 256]).sum())
    return 100.0 * correct / len(images)


def foreground_supervised_check(eval_stream: str = "test", num_train: int = 3000, num_eval: int = 1000,
                                epochs: int = 15, batch_size: int = 128, lr: float = 3e-3, width: int = 16,
                                augment: bool = True, device: str = "auto", **options: Any) -> dict[str, float]:
    """Train :class:`SmallCNN` on ``train`` (``num_train`` images, AdamW + cosine schedule, with the SSL augmentations
    when ``augment``) and return top-1 accuracy (%) on each ``eval_stream`` variant plus ``bg_gap`` and
    ``train_seconds``. ``options`` are the benchmark's (``image_size``, ``num_classes``, ``rho``, ``seed``, ...)."""
    dev = resolve_device(device)
    train = SyntheticBirds("train", num_images=num_train, **options)
    images, labels = _stack(train)
    torch.manual_seed(train.config.seed)
    model = SmallCNN(train.num_classes, width).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    steps = epochs * math.ceil(len(images) / batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    augmentation = _ssl_augment(train.config.image_size)
    start_time = time.perf_counter()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(images))
        for start in range(0, len(images), batch_size):
            idx = order[start:start + batch_size]
            if augment:
                x = torch.stack([augmentation(images[i]) for i in idx.tolist()])
            else:
                x = images[idx].float() / 255
            loss = F.cross_entropy(model(x.to(dev)), labels[idx].to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    result = {"train_seconds": time.perf_counter() - start_time}
    for variant in VARIANTS:
        ev_images, ev_labels = _stack(SyntheticBirds(f"{eval_stream}_{variant}", num_images=num_eval, **options))
        result[variant] = _accuracy(model, ev_images, ev_labels, dev)
    result["bg_gap"] = result["mixed_same"] - result["mixed_rand"]
    return result


TARGETS = {"learnable": 70.0, "biased": 40.0, "stable": 3.0}
"""The study's calibration targets on ``val`` (the benchmark page), in points: *learnable*, a supervised model trained
with uninformative backgrounds (``rho = 1 / num_classes``) reaches at least this top-1 on ``mixed_rand``; *biased*, BYOL's
BG-Gap (mean over seeds) is at least this; *stable*, the std over seeds of BYOL's ``mixed_rand`` is at most this."""


def calibration_record(supervised_mixed_rand: Sequence[float], byol_bg_gap: Sequence[float],
                       byol_mixed_rand: Sequence[float], budget: dict[str, Any],
                       runs: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The calibration as ``calibration.json`` holds it: ``learnable`` (the mean of the ceiling's per-seed
    ``supervised_mixed_rand``) / ``biased`` / ``stable`` each with the measured ``value``, its :data:`TARGETS`
    ``target``, whether it is ``met`` (``stable`` the sample std, ddof 1, of ``byol_mixed_rand``: one value per seed,
    at least two) and the per-seed values it comes from, the ``budget`` chosen (e.g. ``epochs``, ``num_images``,
    ``image_size``) and the calibration ``runs`` (their keys and numbers)."""
    if len(byol_bg_gap) != len(byol_mixed_rand) or len(byol_mixed_rand) < 2 or not supervised_mixed_rand:
        raise ValueError(f"give BYOL's val BG-Gap and mixed_rand for the same seeds, at least two (the std needs "
                         f"them), and the ceiling's for at least one, got {len(byol_bg_gap)}, {len(byol_mixed_rand)} "
                         f"and {len(supervised_mixed_rand)} values")
    values = {"learnable": statistics.fmean(supervised_mixed_rand), "biased": statistics.fmean(byol_bg_gap),
              "stable": statistics.stdev(byol_mixed_rand)}
    record: dict[str, Any] = {
        name: {"value": round(value, 2), "target": TARGETS[name],
               "met": value <= TARGETS[name] if name == "stable" else value >= TARGETS[name]}
        for name, value in values.items()}
    record["learnable"]["seeds"] = [float(v) for v in supervised_mixed_rand]
    record["biased"]["seeds"] = [float(v) for v in byol_bg_gap]
    record["stable"]["seeds"] = [float(v) for v in byol_mixed_rand]
    return {**record, "budget": dict(budget), "runs": [dict(run) for run in runs]}


def write_calibration(record: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``record`` (:func:`calibration_record`) as JSON to ``path`` (the book's
    ``fgssl_lib/results/calibration.json``), atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> None:
    """``python -m fgssl_lib.data.calibration [--stream val|test] [--check probe|cnn|both]``: print both checks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stream", default="val", choices=("val", "test"), help="val while tuning, test to report")
    parser.add_argument("--check", default="both", choices=("probe", "cnn", "both"))
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--rho", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=3000)
    parser.add_argument("--num-eval", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    options = dict(image_size=args.image_size, num_classes=args.num_classes, rho=args.rho, seed=args.seed,
                   cache_dir=args.cache_dir, num_train=args.num_train, num_eval=args.num_eval)
    if args.check in ("probe", "both"):
        print("background_only_probe", json.dumps(background_only_probe(args.stream, **options)))
    if args.check in ("cnn", "both"):
        result = foreground_supervised_check(args.stream, epochs=args.epochs, **options)
        print("foreground_supervised_check", json.dumps(result))


if __name__ == "__main__":
    main()
