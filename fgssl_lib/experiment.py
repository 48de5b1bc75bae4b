"""Train-or-load and evaluate one method: the unit the notebooks and the CPU study share.

A run is keyed by its :class:`~fgssl_lib.train.TrainConfig` (method, seed and a hash of every setting that changes
the weights), so notebooks that train the same configuration share one checkpoint: ``03_train_cvsa`` reuses the BYOL
run of ``01_background_bias``, and ``05_evaluate`` loads every run without retraining. Runs live under
``$FGSSL_RUNS`` (default ``<data home>/runs``). A run that was killed resumes from its ``last.ckpt``. A method with a
saliency map of its own (CVSA, LCR) also keeps the map's series during training at ``<run>/snapshots.pt``
(:mod:`fgssl_lib.train.snapshots`).

:func:`evaluate` computes the study's metrics with the protocols of :mod:`fgssl_lib.eval`: kNN top-1 on every test
variant of the synthetic benchmark (or the test split of a real dataset), the BG-Gap, linear top-1, retrieval rank-1 /
mAP and MaxBoxAcc of the method's own saliency map (LCR branch, CVSA intensity) or of its Grad-CAM.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from fgssl_lib.config import check_choice, check_preset, resolve_device
from fgssl_lib.data import data_home, load_dataset
from fgssl_lib.data.synthetic import RENDER_VERSION
from fgssl_lib.methods import TRAINING_VERSION
from fgssl_lib.eval import (
    extract_features,
    gradcam_maps,
    knn_accuracy,
    linear_probe,
    max_box_acc,
    retrieval_metrics,
    saliency_maps,
)
from fgssl_lib.eval.background_bias import SYNTHETIC_VARIANTS
from fgssl_lib.methods import SSLMethod
from fgssl_lib.train import TrainConfig, fit, load_method
from fgssl_lib.train.run_lock import launched_rank, run_lock
from fgssl_lib.train.snapshots import SNAPSHOTS, SaliencySnapshots, run_snapshot_images
from fgssl_lib.views import eval_view

# Test-set sizes of the synthetic benchmark per preset (``cpu`` = the benchmark's own default).
SYNTHETIC_TEST_IMAGES = {"smoke": 64, "cpu": None, "paper": None}


def runs_root() -> Path:
    """Where runs are kept: ``$FGSSL_RUNS``, else ``<data home>/runs``."""
    return Path(os.environ.get("FGSSL_RUNS") or data_home() / "runs")


def run_key(config: TrainConfig) -> str:
    """``<method>-seed<seed>-<hash>``: the hash covers every setting that changes the trained weights
    (:meth:`TrainConfig.identity`: the data by name, split and image count, not by path, so data moved from Drive to
    local disk keeps its runs), and for the synthetic benchmark the version of its drawing code (a redrawn benchmark
    must not load runs of the old one), and the methods' :data:`~fgssl_lib.methods.TRAINING_VERSION`."""
    settings = {**config.identity(), "training_version": TRAINING_VERSION}
    if config.dataset == "synthetic":
        settings["synthetic_render_version"] = RENDER_VERSION
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{config.method}-seed{config.seed}-{digest}"


@dataclass
class Run:
    """A trained method with its per-epoch history, training wall time (s) and run directory."""

    method: SSLMethod
    history: pd.DataFrame
    train_seconds: float
    path: Path


def train_or_load(config: TrainConfig, root: str | os.PathLike | None = None, retrain: bool = False,
                  callbacks: Sequence[pl.Callback] = ()) -> Run:
    """Load the finished run of ``config`` if there is one, else train it (resuming a killed run from ``last.ckpt``).

    ``retrain=True`` discards a finished run and trains again from scratch; ``callbacks`` go to the trainer when
    it trains, after a :class:`~fgssl_lib.train.snapshots.SaliencySnapshots` that records the method's own map (if
    it has one) on :func:`~fgssl_lib.train.snapshots.run_snapshot_images` into ``<run>/snapshots.pt``.
    """
    path = Path(root or runs_root()) / run_key(config)
    path.mkdir(parents=True, exist_ok=True)
    with run_lock(path):  # a notebook and the study may ask for the same run at the same time
        return _train_or_load(config, path, retrain, callbacks)


def load_run(config: TrainConfig, root: str | os.PathLike | None = None) -> Run | None:
    """The finished run of ``config`` under ``root`` (default :func:`runs_root`), or ``None`` if there is none."""
    path = Path(root or runs_root()) / run_key(config)
    return _finished(path) if (path / "done.json").exists() else None


def read_done(path: Path) -> dict[str, Any]:
    """The ``done.json`` of the finished run in ``path``, checked: it parses, has ``train_seconds``, and the run's
    ``last.ckpt`` is beside it; otherwise a ``ValueError`` / ``FileNotFoundError`` that says ``retrain=True``."""
    done = path / "done.json"
    try:
        info = json.loads(done.read_text())
        float(info["train_seconds"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{done} is damaged ({type(error).__name__}: {error}): train the run again with "
                         "train_or_load(..., retrain=True)") from error
    if not (path / "last.ckpt").is_file():
        raise FileNotFoundError(f"the finished run {path} has no last.ckpt (deleted or not copied?): train it again "
                                "with train_or_load(..., retrain=True), or put its last.ckpt back")
    return info


def _finished(path: Path) -> Run:
    """The finished run in ``path`` (it has ``done.json``)."""
    info = read_done(path)
    history = pd.read_csv(path / "history.csv") if (path / "history.csv").exists() else pd.DataFrame()
    return Run(load_method(path / "last.ckpt"), history, float(info["train_seconds"]), path)


def _train_or_load(config: TrainConfig, path: Path, retrain: bool, callbacks: Sequence[pl.Callback]) -> Run:
    """:func:`train_or_load` in run directory ``path``, under its lock."""
    done = path / "done.json"
    if done.exists() and not retrain:
        return _finished(path)
    first = launched_rank() == 0  # DDP ranks > 0 train beside rank 0; only rank 0 cleans up and writes the run
    if retrain and first:
        for stale in (done, path / "last.ckpt", path / SNAPSHOTS):
            stale.unlink(missing_ok=True)
    resume = (path / "last.ckpt").exists()
    snapshots = SaliencySnapshots(run_snapshot_images(config)[0], path / SNAPSHOTS)  # its state resumes with the run
    method, history = fit(dataclasses.replace(config, checkpoint_dir=str(path), resume=resume),
                          callbacks=[snapshots, *callbacks])
    epochs = history.epochs  # covers the whole run, also when it resumed
    seconds = float(epochs["time_s"].sum()) if "time_s" in epochs else 0.0
    if not first:
        return Run(method.eval(), epochs, seconds, path)
    epochs.to_csv(path / "history.csv", index=False)
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps({"train_seconds": seconds, "config": dataclasses.asdict(config)}, default=str))
    os.replace(tmp, done)
    return Run(method.eval(), epochs, seconds, path)


def synthetic_splits(config: TrainConfig, preset: str, stream: str = "test") -> dict[str, Dataset]:
    """The training split (as trained on) and the five variants of the synthetic benchmark's ``stream`` (``test``,
    or ``val`` to choose settings on) for ``config``."""
    check_preset(preset)
    check_choice("evaluation stream", stream, ("val", "test"))
    options = dict(config.dataset_options)
    train = load_dataset("synthetic", split="train", num_images=config.num_images, **options)
    tests = {v: load_dataset("synthetic", split=f"{stream}_{v}", num_images=SYNTHETIC_TEST_IMAGES[preset], **options)
             for v in SYNTHETIC_VARIANTS}
    return {"train": train, **tests}


def localization_maps(method: SSLMethod, dataset: Dataset, image_size: int, batch_size: int = 64,
                      device: str = "auto") -> tuple[torch.Tensor, list[torch.Tensor], str]:
    """Maps for MaxBoxAcc over ``dataset``: the method's own ``saliency`` where it has one, else Grad-CAM of its
    embedding; returns ``(maps N x S x S, gt boxes in the view frame, source name)``."""
    dev = resolve_device(device)
    method = method.to(dev).eval()
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=lambda s: [eval_view(image_size)(x) for x in s])
    maps, boxes, source = [], [], "saliency"
    for samples in loader:
        images = torch.stack([s["image"] for s in samples]).to(dev)
        try:
            batch_maps = saliency_maps(method, images)
        except NotImplementedError:
            source = "gradcam"
            batch_maps = gradcam_maps(method, images)
        maps.append(batch_maps.detach().float().cpu())
        boxes += [s["box"] for s in samples]
    return torch.cat(maps), boxes, source


def evaluate(method: SSLMethod, config: TrainConfig, preset: str,
             metrics: Sequence[str] = ("knn", "linear", "retrieval", "maxboxacc"),
             cache_dir: str | os.PathLike | None = None, stream: str = "test") -> dict[str, float]:
    """The study's metrics (percentages) of ``method`` on the synthetic benchmark of ``config``, on its ``test``
    stream or, to choose a setting without reading test, its ``val`` stream.

    ``knn_<variant>`` (DINO kNN, train as gallery) for every test variant and ``bg_gap`` = mixed_same - mixed_rand;
    ``linear_mixed_rand`` (linear probe fit on train, 100 % labels); ``retrieval_rank1`` / ``retrieval_mAP`` on
    mixed_rand (leave-one-out, LCR protocol); ``maxboxacc`` (V1) on original, with ``maxboxacc_source`` telling
    which map was used.
    """
    splits = synthetic_splits(config, preset, stream)
    options = dict(image_size=config.image_size, device=config.device, cache_dir=cache_dir)
    feats = {name: extract_features(method, ds, **options) for name, ds in splits.items()}
    train = feats["train"]
    out: dict[str, Any] = {}
    if "knn" in metrics:
        for v in SYNTHETIC_VARIANTS:
            out[f"knn_{v}"] = knn_accuracy(train.feats, train.labels, feats[v].feats, feats[v].labels)["top1"]
        out["bg_gap"] = out["knn_mixed_same"] - out["knn_mixed_rand"]
    if "linear" in metrics:
        epochs = 100 if preset != "smoke" else 5
        probe = linear_probe(train.feats, train.labels, feats["mixed_rand"].feats, feats["mixed_rand"].labels,
                             fractions=(1.0,), epochs=epochs, device=config.device)
        out["linear_mixed_rand"] = probe[1.0]["top1"]
    if "retrieval" in metrics:
        r = retrieval_metrics(feats["mixed_rand"].feats, feats["mixed_rand"].labels)
        out["retrieval_rank1"], out["retrieval_mAP"] = r["rank1"], r["mAP"]
    if "maxboxacc" in metrics:
        maps, boxes, source = localization_maps(method, splits["original"], config.image_size, device=config.device)
        out["maxboxacc"] = max_box_acc(maps, boxes, version=1)[0]
        out["maxboxacc_source"] = source
    return out


def paper_metrics(method: SSLMethod, config: TrainConfig, test_split: str = "test",
                  fractions: Sequence[float] = (1.0, 0.5, 0.2), linear_epochs: int = 100,
                  test_images: int | None = None, cache_dir: str | os.PathLike | None = None) -> dict[str, float]:
    """The papers' protocols on ``config``'s dataset, named like :data:`fgssl_lib.reported.REPORTED`'s metrics.

    Linear probe top-1 / top-5 at each label fraction (``linear_top1``, ``linear_top1_50``, ...), retrieval rank-1 /
    rank-5 / mAP on the test split (LCR), DINO kNN top-1 (``knn_top1``) and MaxBoxAcc (V1) against the test boxes.
    ``test_images`` limits the synthetic benchmark's test split (smoke runs).
    """
    options = dict(num_images=config.num_images, **config.dataset_options) if config.dataset == "synthetic" else {}
    train_set = load_dataset(config.dataset, root=config.data_root, split=config.split, **options)
    if config.dataset == "synthetic":
        options["num_images"] = test_images
    test_set = load_dataset(config.dataset, root=config.data_root, split=test_split, **options)
    extract = dict(image_size=config.image_size, device=config.device, cache_dir=cache_dir)
    train, test = extract_features(method, train_set, **extract), extract_features(method, test_set, **extract)
    out: dict[str, Any] = {}
    probe = linear_probe(train.feats, train.labels, test.feats, test.labels, fractions=fractions,
                         epochs=linear_epochs, device=config.device)
    for fraction, result in probe.items():
        suffix = "" if fraction == 1.0 else f"_{round(100 * fraction)}"
        out[f"linear_top1{suffix}"], out[f"linear_top5{suffix}"] = result["top1"], result["top5"]
    retrieval = retrieval_metrics(test.feats, test.labels)
    out.update(retrieval_rank1=retrieval["rank1"], retrieval_rank5=retrieval["rank5"], retrieval_mAP=retrieval["mAP"])
    out["knn_top1"] = knn_accuracy(train.feats, train.labels, test.feats, test.labels)["top1"]
    maps, boxes, source = localization_maps(method, test_set, config.image_size, device=config.device)
    out["maxboxacc"], out["maxboxacc_source"] = max_box_acc(maps, boxes, version=1)[0], source
    return out
