"""Background-bias report (Xiao et al. 2020, "Noise or Signal").

Synthetic benchmark: a kNN classifier (train features as gallery) and a linear probe (trained on the ``train``
features) are evaluated on the test variants ``original``, ``only_fg``, ``only_bg``, ``mixed_same``, ``mixed_rand``;
**BG-Gap = Acc(mixed_same) - Acc(mixed_rand)** (how much accuracy a model owes to a class-correlated background).

Real dataset with boxes: the same classifiers on the test images, on their foreground crops (the box only) and with
the box blacked out (background only), through the :class:`BoxVariant` dataset wrapper.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from fgssl_lib.config import check_choice
from fgssl_lib.data.identity import dataset_fingerprint, digest
from fgssl_lib.data.sample import box_to_mask, clip_box
from fgssl_lib.eval.features import EmbedFn, Features, extract_features
from fgssl_lib.eval.knn import knn_accuracy
from fgssl_lib.eval.linear import select_linear

SYNTHETIC_VARIANTS = ("original", "only_fg", "only_bg", "mixed_same", "mixed_rand")
BOX_VARIANTS = ("original", "foreground", "blackout")


class BoxVariant(Dataset):
    """A dataset of samples with the image changed from its ``box``: ``foreground`` (cropped to the box) or
    ``blackout`` (box pixels set to 0); ``original`` passes samples through. Box and mask follow the image."""

    def __init__(self, dataset: Dataset, mode: str) -> None:
        self.dataset, self.mode = dataset, check_choice("box variant", mode, BOX_VARIANTS)
        self.split = f"{getattr(dataset, 'split', '')}:{mode}"
        self.root, self.config = getattr(dataset, "root", ""), getattr(dataset, "config", "")

    def __len__(self) -> int:
        return len(self.dataset)

    def fingerprint(self) -> str:
        """Its dataset's identity and the variant (:mod:`fgssl_lib.data.identity`)."""
        return digest(dataset_fingerprint(self.dataset), self.mode)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = dict(self.dataset[index])
        image = sample["image"]  # 3xHxW uint8
        height, width = image.shape[-2:]
        x0, y0, x1, y1 = (int(round(float(v))) for v in clip_box(sample["box"], width, height))
        if self.mode == "foreground" and x1 > x0 and y1 > y0:
            sample["image"] = image[:, y0:y1, x0:x1].clone()
            sample["mask"] = sample["mask"][y0:y1, x0:x1].clone()
            sample["box"] = torch.tensor([0.0, 0.0, float(x1 - x0), float(y1 - y0)])
        elif self.mode == "blackout":
            sample["image"] = image * (1 - box_to_mask(sample["box"], height, width))[None]
        return sample


def _accuracies(
    train: Features, tests: dict[str, Features], protocols: Sequence[str], linear_options: dict[str, Any]
) -> dict[str, dict[str, float]]:
    """Top-1 of each protocol (``knn``, ``linear``) on each named test set: ``{protocol: {name: top1}}``."""
    report: dict[str, dict[str, float]] = {}
    if "knn" in protocols:
        report["knn"] = {
            name: knn_accuracy(train.feats, train.labels, test.feats, test.labels)["top1"]
            for name, test in tests.items()
        }
    if "linear" in protocols:
        num_classes = int(max([train.labels.max()] + [t.labels.max() for t in tests.values()])) + 1
        probe, _ = select_linear(train.feats, train.labels, num_classes, **linear_options)
        report["linear"] = {name: probe.accuracy(test.feats, test.labels)["top1"] for name, test in tests.items()}
    return report


def background_bias_report(
    model_or_fn: torch.nn.Module | EmbedFn,
    load_split: Callable[[str], Dataset] | None = None,
    variants: Sequence[str] = SYNTHETIC_VARIANTS,
    protocols: Sequence[str] = ("knn", "linear"),
    linear_options: dict[str, Any] | None = None,
    **extract_options: Any,
) -> dict[str, dict[str, float]]:
    """Accuracy on the synthetic test variants and the BG-Gap: ``{"knn": {...}, "linear": {...}, "bg_gap": {...}}``.

    Args:
        model_or_fn: a method or an ``embed`` function.
        load_split: split name -> dataset; default ``load_dataset("synthetic", split=...)``.
        variants: test variants (``test_<variant>`` splits); the BG-Gap needs ``mixed_same`` and ``mixed_rand``.
        protocols: ``knn`` and / or ``linear``.
        linear_options: passed to :func:`fgssl_lib.eval.linear.select_linear` (``epochs``, ``lrs``, ...).
        extract_options: passed to :func:`extract_features` (``transform``, ``cache_dir``, ``key``, ...).
    """
    for variant in variants:
        check_choice("synthetic test variant", variant, SYNTHETIC_VARIANTS)
    for protocol in protocols:
        check_choice("protocol", protocol, ("knn", "linear"))
    if load_split is None:
        from fgssl_lib.data import load_dataset

        def load_split(split: str) -> Dataset:
            return load_dataset("synthetic", split=split)

    train = extract_features(model_or_fn, load_split("train"), **extract_options)
    tests = {v: extract_features(model_or_fn, load_split(f"test_{v}"), **extract_options) for v in variants}
    report = _accuracies(train, tests, protocols, linear_options or {})
    if "mixed_same" in variants and "mixed_rand" in variants:
        report["bg_gap"] = {p: acc["mixed_same"] - acc["mixed_rand"] for p, acc in report.items()}
    return report


def box_background_report(
    model_or_fn: torch.nn.Module | EmbedFn,
    train_set: Dataset,
    test_set: Dataset,
    protocols: Sequence[str] = ("knn", "linear"),
    linear_options: dict[str, Any] | None = None,
    **extract_options: Any,
) -> dict[str, dict[str, float]]:
    """On a real dataset with boxes: accuracy on ``original`` test images, their ``foreground`` crops and with the
    box blacked out (``blackout``); classifiers fit on the original training images. ``{protocol: {variant: top1}}``.
    """
    for protocol in protocols:
        check_choice("protocol", protocol, ("knn", "linear"))
    train = extract_features(model_or_fn, train_set, **extract_options)
    tests = {m: extract_features(model_or_fn, BoxVariant(test_set, m), **extract_options) for m in BOX_VARIANTS}
    return _accuracies(train, tests, protocols, linear_options or {})
