"""Train (or load) several methods with one set of notebook parameters and compare them on one set of metrics.

The training notebooks (``03_train_cvsa``, ``04_train_lcr``) compare methods that differ only in ``method``: the
configs come from one preset, seed and dataset, so each run is the one every other notebook and the CPU study share
(:func:`fgssl_lib.experiment.train_or_load`). Variants that are the same training evaluated differently (LCR
MultiTask, :data:`fgssl_lib.study.EVALUATED_FROM`) load the run they come from. On the synthetic benchmark the
metrics are :func:`fgssl_lib.experiment.evaluate`'s; on a real dataset with boxes, kNN top-1 on the test images as
they are, their box crops and with the box blacked out (:func:`fgssl_lib.eval.box_background_report`), and
retrieval rank-1 / mAP on the test split (LCR protocol).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fgssl_lib.data import load_dataset
from fgssl_lib.eval import box_background_report, extract_features, retrieval_metrics
from fgssl_lib.experiment import Run, evaluate, load_run, run_key, runs_root, train_or_load
from fgssl_lib.study import EVALUATED_FROM
from fgssl_lib.train import TrainConfig, fit_dual_stage, load_method
from fgssl_lib.train.run_lock import run_lock


def method_configs(methods: Sequence[str], preset: str, dataset: str = "synthetic", data_root: str | None = None,
                   **settings: Any) -> dict[str, TrainConfig]:
    """One :class:`TrainConfig` per name of ``methods``: ``preset`` on ``dataset`` with the notebook's ``settings``
    (any :class:`TrainConfig` field, e.g. ``seed``, ``device``, ``epochs``, ``batch_size``, ``num_images``,
    ``precision``, ``checkpoint_minutes``; a value of ``None`` keeps the preset's). A name of
    :data:`~fgssl_lib.study.EVALUATED_FROM` gets the config of the run it is evaluated from.

    ``dataset`` always wins over the preset's (``paper`` names CUB): a real dataset drops the synthetic benchmark's
    options, and the synthetic benchmark asked for at a real-data preset is rendered at the preset's image size.
    """
    if not methods:
        raise ValueError("methods is empty: name at least one method, e.g. ['byol', 'cvsa']")
    overrides = {key: value for key, value in settings.items() if value is not None}
    configs = {}
    for name in methods:
        trained = EVALUATED_FROM.get(name, (name, {}))[0]
        config = TrainConfig.preset(preset, method=trained, **overrides)
        if dataset != config.dataset or dataset != "synthetic":
            options = {"image_size": config.image_size} if dataset == "synthetic" else {}
            config = dataclasses.replace(config, dataset=dataset, data_root=data_root,
                                         dataset_options={**options, **overrides.get("dataset_options", {})})
        configs[name] = config
    return configs


def train_methods(configs: dict[str, TrainConfig], root: str | os.PathLike | None = None,
                  retrain: bool = False, train: bool = True) -> dict[str, Run]:
    """:func:`~fgssl_lib.experiment.train_or_load` of every config; a name of
    :data:`~fgssl_lib.study.EVALUATED_FROM` gets its own copy of the run with the test-time options set.

    ``train=False`` only loads finished runs (a ``paper`` run takes GPU-hours: the training notebooks, or the user,
    train them); the names without one are left out of the result, with a warning that names them and their run
    folders. Raises when none is finished.
    """
    runs, missing = {}, []
    for name, config in configs.items():
        if train:
            run = train_or_load(config, root=root, retrain=retrain and name not in EVALUATED_FROM)
        else:
            run = load_run(config, root=root)
            if run is None:
                missing.append(f"{name} ({Path(root or runs_root()) / run_key(config)})")
                continue
        for option, value in EVALUATED_FROM.get(name, (name, {}))[1].items():
            setattr(run.method, option, value)
        runs[name] = run
    if missing:
        message = (f"no finished run for {', '.join(missing)}: train them first (notebooks 03_train_cvsa / "
                   "04_train_lcr with the same parameters, or fgssl_lib.experiment.train_or_load), or pass "
                   "train=True to train them here")
        if not runs:
            raise FileNotFoundError(message)
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    return runs


def real_dataset_metrics(run: Run, config: TrainConfig, test_split: str = "test") -> dict[str, float]:
    """On a real dataset with boxes: ``knn_original`` / ``knn_foreground`` / ``knn_blackout`` (kNN top-1, training
    split as the gallery), ``fg_gap`` = foreground - blackout, and ``retrieval_rank1`` / ``retrieval_mAP`` on
    ``test_split`` (percentages)."""
    train_set = load_dataset(config.dataset, root=config.data_root, split=config.split)
    test_set = load_dataset(config.dataset, root=config.data_root, split=test_split)
    options: dict[str, Any] = dict(image_size=config.image_size, device=config.device)
    report = box_background_report(run.method, train_set, test_set, protocols=("knn",), **options)["knn"]
    out = {f"knn_{variant}": value for variant, value in report.items()}
    out["fg_gap"] = out["knn_foreground"] - out["knn_blackout"]
    test = extract_features(run.method, test_set, **options)
    retrieval = retrieval_metrics(test.feats, test.labels, device=config.device)
    out.update(retrieval_rank1=retrieval["rank1"], retrieval_mAP=retrieval["mAP"])
    return out


def compare_methods(runs: dict[str, Run], configs: dict[str, TrainConfig], preset: str,
                    metrics: Sequence[str] = ("knn", "retrieval", "maxboxacc")) -> dict[str, dict[str, Any]]:
    """``{method: {metric: value}}``: :func:`~fgssl_lib.experiment.evaluate` with ``metrics`` on the synthetic
    benchmark, :func:`real_dataset_metrics` on a real dataset; plus every run's ``train_seconds``."""
    results = {}
    for name, run in runs.items():
        config = configs[name]
        values = (evaluate(run.method, config, preset, metrics=metrics) if config.dataset == "synthetic"
                  else real_dataset_metrics(run, config))
        results[name] = {**values, "train_seconds": run.train_seconds}
    return results


def train_or_load_dual_stage(stage1: TrainConfig, stage2: TrainConfig, root: str | os.PathLike | None = None,
                             retrain: bool = False) -> Run:
    """CVSA's dual-stage recipe (:func:`fgssl_lib.train.fit_dual_stage`: ``stage1`` BYOL, then ``stage2`` CVSA from its
    weights with the early stages frozen), kept under ``<root>/dual_stage-<key of stage 1>-<key of stage 2>``: a
    finished pair is loaded from stage 2's ``last.ckpt``, a killed one resumes from each stage's ``last.ckpt``,
    ``retrain=True`` starts both stages again. The history has both stages' epochs with a ``stage`` column.
    """
    path = Path(root or runs_root()) / f"dual_stage-{run_key(stage1)}-{run_key(stage2)}"
    with run_lock(path):  # one writer per run, as train_or_load
        return _train_or_load_dual_stage(stage1, stage2, path, retrain)


def _train_or_load_dual_stage(stage1: TrainConfig, stage2: TrainConfig, path: Path, retrain: bool) -> Run:
    """:func:`train_or_load_dual_stage` in ``path``, under its lock."""
    done, history_csv = path / "done.json", path / "history.csv"
    if retrain:
        done.unlink(missing_ok=True)
        for stage in ("stage1", "stage2"):
            shutil.rmtree(path / stage, ignore_errors=True)
    if done.exists():
        history = pd.read_csv(history_csv)
        return Run(load_method(path / "stage2" / "last.ckpt"), history, float(history["time_s"].sum()), path)
    stages = [dataclasses.replace(config, checkpoint_dir=str(path / f"stage{i}"), resume=True)
              for i, config in enumerate((stage1, stage2), start=1)]
    method, histories = fit_dual_stage(*stages)
    history = pd.concat([h.epochs.assign(stage=i) for i, h in enumerate(histories, start=1)], ignore_index=True)
    history.to_csv(history_csv, index=False)
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps({"stage1": run_key(stage1), "stage2": run_key(stage2)}))
    os.replace(tmp, done)
    return Run(method.eval(), history, float(history["time_s"].sum()), path)


def difference_lines(results: dict[str, dict[str, Any]], baseline: str, method: str,
                     metrics: Sequence[str]) -> list[str]:
    """``"<metric>: <method> <value> vs <baseline> <value> (<signed difference>)"`` for each of ``metrics`` both
    have: the comparison a notebook prints under its table, so that its reading follows the numbers."""
    for name in (baseline, method):
        if name not in results:
            raise KeyError(f"no results for {name!r}; the results have {sorted(results)}")
    return [f"{m}: {method} {results[method][m]:.1f} vs {baseline} {results[baseline][m]:.1f} "
            f"({results[method][m] - results[baseline][m]:+.1f})"
            for m in metrics if m in results[method] and m in results[baseline]]


def collapse_table(runs: dict[str, Run], threshold: float) -> pd.DataFrame:
    """Per run, the collapse monitor's ``embedding_std`` (per-epoch means of the history; about 1 for embeddings
    spread over the sphere, 0 for a constant one) in the first and last epoch and its minimum, the last loss, and
    ``collapsed`` (minimum below ``threshold``; ``None`` where the monitor measured nothing)."""
    rows = {}
    for name, run in runs.items():
        history = run.history
        std = history["embedding_std"].dropna() if "embedding_std" in history else pd.Series(dtype=float)
        first, last, low = (float(std.iloc[0]), float(std.iloc[-1]), float(std.min())) if len(std) else (math.nan,) * 3
        rows[name] = {"embedding_std_first": first, "embedding_std_last": last, "embedding_std_min": low,
                      "loss_last": float(history["loss"].iloc[-1]) if "loss" in history else math.nan,
                      "collapsed": None if math.isnan(low) else low < threshold}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("method")
