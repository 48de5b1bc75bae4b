"""Several trained methods side by side: every evaluation protocol of the book on each run, collected in one table.

The runs come from :func:`fgssl_lib.comparison.method_configs` and :func:`fgssl_lib.comparison.train_methods` (the
configs every notebook shares; ``lcr_multitask`` is the LCR run evaluated without weighted pooling). Here:

- :func:`bias_report`: the background-bias report of one method: the five test variants and the BG-Gap on the
  synthetic benchmark (:func:`fgssl_lib.eval.background_bias_report`), original / foreground / blackout test images on
  a real dataset with boxes (:func:`fgssl_lib.eval.box_background_report`);
- :func:`method_metrics`: every protocol on one method (linear at 100 / 50 / 20 % labels, kNN, retrieval, MaxBoxAcc,
  the bias report); :func:`evaluate_methods` runs it on several runs and returns ``{method: {metric: value}}`` for
  :func:`fgssl_lib.viz.results_table` and :func:`fgssl_lib.viz.comparison_bar_chart`;
- :func:`bias_table`: several bias reports laid out as one DataFrame.

All accuracies are percentages.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pandas as pd
from torch.utils.data import Dataset

from fgssl_lib.config import check_choice, check_preset
from fgssl_lib.data import load_dataset
from fgssl_lib.eval import (
    background_bias_report,
    box_background_report,
    extract_features,
    knn_accuracy,
    linear_probe,
    max_box_acc,
    retrieval_metrics,
)
from fgssl_lib.eval.background_bias import SYNTHETIC_VARIANTS
from fgssl_lib.experiment import Run, evaluate, localization_maps, synthetic_splits
from fgssl_lib.methods import SSLMethod
from fgssl_lib.train import TrainConfig

LABEL_FRACTIONS = (1.0, 0.5, 0.2)
Metrics = dict[str, float | str]


def linear_epochs(preset: str) -> int:
    """Epochs of the linear probes: 100 (the papers' protocol), 5 at ``smoke``."""
    return 5 if check_preset(preset) == "smoke" else 100


def real_splits(config: TrainConfig) -> tuple[Dataset, Dataset]:
    """The training split of a real dataset (as trained on) and its ``test`` split."""
    load = dict(root=config.data_root, **config.dataset_options)
    return load_dataset(config.dataset, split=config.split, **load), load_dataset(config.dataset, split="test", **load)


def bias_report(method: SSLMethod, config: TrainConfig, preset: str, protocols: Sequence[str] = ("knn", "linear"),
                cache_dir: str | os.PathLike | None = None) -> dict[str, dict[str, float]]:
    """``{protocol: {variant: top1}}`` (plus ``bg_gap`` on the synthetic benchmark) of ``method`` on ``config``'s data.

    Synthetic: the five test variants of the benchmark (sizes as in :func:`fgssl_lib.experiment.evaluate`); real:
    the test images as they are, their box crops (``foreground``) and with the box blacked out (``blackout``).
    """
    extract = dict(image_size=config.image_size, device=config.device, cache_dir=cache_dir)
    options = {"linear_options": {"epochs": linear_epochs(preset), "device": config.device}, **extract}
    if config.dataset == "synthetic":
        splits = synthetic_splits(config, preset)
        return background_bias_report(method, load_split=lambda split: splits[split.removeprefix("test_")],
                                      protocols=protocols, **options)
    train, test = real_splits(config)
    return box_background_report(method, train, test, protocols=protocols, **options)


def method_metrics(method: SSLMethod, config: TrainConfig, preset: str, test_variant: str = "mixed_rand",
                   fractions: Sequence[float] = LABEL_FRACTIONS,
                   cache_dir: str | os.PathLike | None = None) -> Metrics:
    """Every protocol on one trained method.

    - ``linear_<pct>``: linear probe top-1 with ``pct`` % of the training labels, on the test split
      (synthetic: ``test_<test_variant>``; real: ``test``);
    - ``knn_<variant>`` / ``linear_<variant>`` and, on the synthetic benchmark, ``bg_gap`` (kNN) and
      ``linear_bg_gap``: the background-bias report (:func:`bias_report`);
    - ``retrieval_rank1`` / ``retrieval_mAP`` on the same test split; ``maxboxacc`` (V1) on the original test images
      of the method's own map or of Grad-CAM (``maxboxacc_source``).

    ``cache_dir`` keeps the features, keyed by the weights: give each evaluated name its own folder when two names
    share weights (``lcr`` and ``lcr_multitask`` embed differently).
    """
    extract = dict(image_size=config.image_size, device=config.device, cache_dir=cache_dir)
    out: Metrics = {}
    if config.dataset == "synthetic":
        check_choice("test variant", test_variant, SYNTHETIC_VARIANTS)
        out.update(evaluate(method, config, preset, metrics=("knn", "retrieval", "maxboxacc"), cache_dir=cache_dir))
        splits = synthetic_splits(config, preset)
        train_set, test_set = splits["train"], splits[test_variant]
    else:
        train_set, test_set = real_splits(config)
    train, test = extract_features(method, train_set, **extract), extract_features(method, test_set, **extract)
    if config.dataset != "synthetic":
        out["knn_test"] = knn_accuracy(train.feats, train.labels, test.feats, test.labels)["top1"]
        retrieval = retrieval_metrics(test.feats, test.labels)
        out.update(retrieval_rank1=retrieval["rank1"], retrieval_mAP=retrieval["mAP"])
        maps, boxes, source = localization_maps(method, test_set, config.image_size, device=config.device)
        out.update(maxboxacc=max_box_acc(maps, boxes, version=1)[0], maxboxacc_source=source)
    probe = linear_probe(train.feats, train.labels, test.feats, test.labels, fractions=fractions,
                         epochs=linear_epochs(preset), seed=config.seed, device=config.device)
    out.update({f"linear_{round(100 * f)}": result["top1"] for f, result in probe.items()})
    report = bias_report(method, config, preset, cache_dir=cache_dir)
    for protocol in ("knn", "linear"):
        out.update({f"{protocol}_{variant}": acc for variant, acc in report[protocol].items()})
    if "bg_gap" in report:
        out["bg_gap"], out["linear_bg_gap"] = report["bg_gap"]["knn"], report["bg_gap"]["linear"]
    return out


def evaluate_methods(runs: Mapping[str, Run], configs: Mapping[str, TrainConfig], preset: str,
                     test_variant: str = "mixed_rand", fractions: Sequence[float] = LABEL_FRACTIONS,
                     log: Callable[[str], None] = print) -> dict[str, Metrics]:
    """:func:`method_metrics` of every run (``runs`` and ``configs`` keyed by method name, as from
    :func:`fgssl_lib.comparison.train_methods`), each with its ``train_seconds``: ``{method: metrics}``.

    Features are cached in ``<run>/features/<method>``: one folder per evaluated name, because names evaluated from
    one run share its weights (and so its cache key) but not its features.
    """
    if not runs:
        raise ValueError("evaluate_methods got no runs; pass train_methods(method_configs([...], preset))")
    missing = sorted(set(runs) - set(configs))
    if missing:
        raise KeyError(f"no config for {missing}; pass the configs the runs were trained with (method_configs)")
    results: dict[str, Metrics] = {}
    for name, run in runs.items():
        metrics = method_metrics(run.method, configs[name], preset, test_variant, fractions,
                                 cache_dir=Path(run.path) / "features" / name)
        results[name] = {**metrics, "train_seconds": run.train_seconds}
        log(f"{name}: {', '.join(f'{k} {v:.1f}' for k, v in results[name].items() if isinstance(v, float))}")
    return results


def bias_table(reports: Mapping[str, Mapping[str, Mapping[str, float]]], decimals: int = 1) -> pd.DataFrame:
    """Background-bias reports of several methods (``{method: bias_report(...)}``) as one DataFrame: one row per
    ``(method, protocol)``, one column per test variant, plus ``BG-Gap`` when the reports have it."""
    rows = {}
    for method, report in reports.items():
        for protocol, accuracies in report.items():
            if protocol == "bg_gap":
                continue
            row = dict(accuracies)
            if "bg_gap" in report:
                row["BG-Gap"] = report["bg_gap"][protocol]
            rows[(method, protocol)] = row
    if not rows:
        raise ValueError("bias_table got no reports; pass {method: bias_report(...)} with at least one method")
    table = pd.DataFrame.from_dict(rows, orient="index").round(decimals)
    table.index = pd.MultiIndex.from_tuples(table.index, names=["method", "protocol"])
    return table
