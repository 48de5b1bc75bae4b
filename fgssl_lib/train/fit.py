"""``fit(config)``: train a method on ``pl.Trainer``; checkpoints, resume, ``load_method``, dual-stage.

The run directory (``config.checkpoint_dir``) holds ``last.ckpt`` (written atomically at epoch ends, every
``checkpoint_every`` epochs or ``checkpoint_minutes`` minutes, and at the last) and
``logs/version_<n>/metrics.csv`` (every logged loss, per step; one version per run or resumed run). ``resume=True`` continues from ``last.ckpt`` with the same global
step, optimizer and schedule state, and the same batches as an uninterrupted run. The views come from
:func:`view_data`: made in batches on the training device from the training store, or one sample at a time in the
loader's workers (``TrainConfig.view_pipeline``), with the box and map of the run's localiser
(:mod:`fgssl_lib.train.localiser`).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import pickle
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import Dataset

from fgssl_lib.config import resolve_device
from fgssl_lib.data import load_dataset
from fgssl_lib.methods import SSLMethod, build, method_class
from fgssl_lib.models.backbones import regroup_batchnorm_statistics
from fgssl_lib.train.callbacks import (
    RUN_SETTINGS,
    AtomicCheckpointIO,
    CollapseMonitor,
    History,
    LastCheckpoint,
    NonFiniteLossGuard,
    ViewEpochs,
)
from fgssl_lib.train.config import STAGE1_PREFIX, TrainConfig
from fgssl_lib.train.localiser import ANNOTATION, SELF, SelfLocalised, SelfLocaliser, localised
from fgssl_lib.train.data import BatchedViewData, TwoViewDataset, random_subset, train_loader
from fgssl_lib.train.memory import resolve_batch
from fgssl_lib.train.run_lock import run_lock
from fgssl_lib.train.store import StoreError, TrainingStore
from fgssl_lib.views import VIEWS, build_batched_views, build_views

LAST = "last.ckpt"
log = logging.getLogger(__name__)


def run_dir(config: TrainConfig) -> Path:
    """The run directory: ``config.checkpoint_dir`` or ``runs/<method>``."""
    return Path(config.checkpoint_dir) if config.checkpoint_dir is not None else Path("runs") / config.method


def build_method(config: TrainConfig, dataset: Any | None = None) -> SSLMethod:
    """The method of ``config``: registry defaults < the config's backbone/optimizer < ``method_options``; the
    dataset attributes the class asks for (``dataset_options``, e.g. ``num_classes``) come from ``dataset``.

    MoCo's ``bn_splits`` counts BatchNorm groups of the effective batch; a smaller micro-batch keeps the groups'
    size and has fewer of them (:func:`micro_bn_splits`). ``batch_size="auto"`` is resolved first
    (:func:`fgssl_lib.train.memory.resolve_batch`)."""
    if (config.pretrained or "").startswith(STAGE1_PREFIX):
        raise ValueError(f"pretrained={config.pretrained!r} names a stage-1 run, whose backbone only "
                         "fgssl_lib.runs.train_or_load loads: train this config with it, or build the method from "
                         "the stage-1 weights yourself and pass it as fit(config, method=...)")
    options = {**config.backbone_options(), **config.method_options}
    if options.get("bn_splits"):
        options["bn_splits"] = micro_bn_splits(options["bn_splits"], resolve_batch(config, dataset).batch_size,
                                               config.effective_batch())
    for key in method_class(config.method).dataset_options:
        if key not in options:
            if dataset is None or not hasattr(dataset, key):
                raise ValueError(f"method {config.method!r} needs {key!r}: pass it in method_options")
            options[key] = getattr(dataset, key)
    return build(config.method, **options)


def micro_bn_splits(bn_splits: int, micro: int, effective: int) -> int:
    """BatchNorm groups of a micro-batch of ``micro`` images when ``bn_splits`` groups split the effective batch of
    ``effective``: groups of the same size, as many as the micro-batch holds; 0 (the micro-batch is one group) when
    fewer than two whole ones do."""
    if micro == effective:
        return bn_splits
    size = effective // bn_splits
    groups = micro // size if micro % size == 0 else 0
    return groups if groups >= 2 else 0


def view_data(config: TrainConfig, method: SSLMethod, train_set: Dataset,
              localiser: SelfLocaliser | None = None) -> tuple[str, Any]:
    """The two-view data of ``config.view_pipeline`` and the pipeline it resolved to; ``localiser`` (self-saliency)
    puts the model's maps into the samples or the batches' rows once it has them.

    ``batched``: a :class:`~fgssl_lib.train.data.BatchedViewData` over the training store at ``store_side``, where
    the samples can be stored; else ``per_sample``: a :class:`~fgssl_lib.train.data.TwoViewDataset`. Under ``auto``
    data that cannot be stored falls back to per-sample views with a logged reason; ``batched`` raises it instead.
    A generator that draws other training images (one that takes ``dataset``: SaliencySwap ``same``) is given the
    training set; batched, it reads their rows from the store.
    """
    options = {"seed": config.seed, **method.view_params, **config.view_params}
    samples = SelfLocalised(train_set, localiser) if localiser is not None else train_set
    generator = VIEWS.get(method.views)
    if generator is not None and "dataset" in inspect.signature(generator).parameters:
        options.setdefault("dataset", samples)
    if config.view_pipeline != "per_sample":
        try:
            store = TrainingStore.load(train_set, config.store_side, progress=config.progress_bar)
        except StoreError as error:
            if config.view_pipeline == "batched":
                raise ValueError(f"view_pipeline='batched' cannot make these views: {error}. Use "
                                 "view_pipeline='auto' (per-sample views where batched ones cannot be made) or "
                                 "'per_sample'") from error
            log.warning("per-sample views (view_pipeline='auto'): %s", error)
        else:
            views = build_batched_views(method.views, size=config.image_size, **options)
            return "batched", BatchedViewData(store, views, config.batch_size, config.num_workers, config.seed,
                                              effective_batch=config.effective_batch(),
                                              localise=localiser.rows if localiser is not None else None)
    return "per_sample", TwoViewDataset(samples, build_views(method.views, size=config.image_size, **options))


def training_set(config: TrainConfig) -> Dataset:
    """The training split of ``config`` as ``fit`` trains on it (synthetic: its first ``num_images``)."""
    options = dict(config.dataset_options)
    if config.dataset == "synthetic" and config.num_images is not None:
        options["num_images"] = config.num_images  # its first images, the kNN gallery of the evaluation
    return load_dataset(config.dataset, root=config.data_root, split=config.split, **options)


class DamagedCheckpointError(ValueError):
    """A checkpoint file is empty, truncated, not a checkpoint, or holds objects other than tensors."""


def read_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)``; a file it cannot read raises :class:`DamagedCheckpointError`, which
    says how to recover (loading it with ``weights_only=False`` is never the fix: it could run code from the file).
    A file that is not the zip archive ``torch.save`` writes (empty, cut short, other bytes) is refused before any
    unpickling, whose errors on arbitrary bytes are arbitrary (``IndexError``, ``KeyError``, ...)."""
    size = path.stat().st_size  # a missing file stays a FileNotFoundError
    error: BaseException | None = None
    if not zipfile.is_zipfile(path):
        reason = "not the zip archive torch.save writes"
    else:
        try:
            return _checkpoint_dict(path, torch.load(path, map_location=map_location, weights_only=True))
        except (EOFError, RuntimeError, pickle.UnpicklingError) as caught:
            if isinstance(caught, RuntimeError) and "PytorchStreamReader" not in str(caught):
                raise  # not the file's fault (e.g. map_location names a missing GPU)
            error, reason = caught, f"{type(caught).__name__}: {str(caught).split('. ')[0] or 'the file ends early'}"
    raise DamagedCheckpointError(
        f"checkpoint {path} is damaged ({size} bytes; {reason}), e.g. by an interrupted copy: delete it and train "
        "again (train_or_load(..., retrain=True) does both), or restore it from a backup"
    ) from error


def _checkpoint_dict(path: Path, checkpoint: object) -> dict[str, Any]:
    """``checkpoint`` if it is a dict (a Lightning checkpoint), else :class:`DamagedCheckpointError`."""
    if not isinstance(checkpoint, dict):
        raise DamagedCheckpointError(f"{path} holds a {type(checkpoint).__name__}, not a checkpoint: delete it and "
                                     "train again (train_or_load(..., retrain=True))")
    return checkpoint


def check_checkpoint(checkpoint: dict[str, Any], method: SSLMethod, path: Path | str = "checkpoint") -> None:
    """Refuse a checkpoint of another method or with tensors of other shapes, saying which and how to fix it."""
    saved = checkpoint.get("fgssl_method")
    if saved != method.method_name:
        raise ValueError(f"{path} was written by method {saved!r}, not {method.method_name!r}; use another "
                         "checkpoint_dir, or set method to the checkpoint's")
    regroup_batchnorm_statistics(checkpoint["state_dict"], method)  # a resume at another micro-batch (bn_splits)
    state, expected = checkpoint["state_dict"], method.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
                  for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"{path} does not fit this {method.method_name!r} model (different backbone or options?): "
            f"{len(missing)} missing keys {missing[:3]}, {len(unexpected)} unexpected keys {unexpected[:3]}, "
            f"{len(mismatched)} shape mismatches {mismatched[:3]}; build the model with the checkpoint's "
            f"hyper-parameters {checkpoint.get('hyper_parameters')} or start a new run"
        )


def check_run_settings(checkpoint: dict[str, Any], config: TrainConfig, path: Path | str = "checkpoint") -> None:
    """Refuse to resume ``checkpoint`` with settings other than its run's (:meth:`TrainConfig.identity`): another
    ``lr``, ``epochs`` (its cosine schedule was laid out for the old length), ``seed`` or data would silently
    continue the old run, or splice two runs into one."""
    saved = checkpoint.get(RUN_SETTINGS)
    if saved is None:
        raise ValueError(f"{path} records no run settings (written by an older fgssl), so a resume cannot be "
                         "checked; start a new run: another checkpoint_dir, or retrain=True with train_or_load")
    before, now = json.loads(saved), json.loads(json.dumps(config.identity(), sort_keys=True, default=str))
    differ = [f"{key}: run {before.get(key)!r}, now {now.get(key)!r}" for key in sorted(set(before) | set(now))
              if before.get(key) != now.get(key)]
    if differ:
        raise ValueError(
            f"cannot resume {path} with other settings ({'; '.join(differ)}): resuming continues that run exactly. "
            "Resume with the run's settings, or start a new run in another checkpoint_dir (train_or_load keys runs "
            "by their settings, so it starts one by itself; retrain=True trains a run again from scratch)"
        )


def load_method(path: str | Path, map_location: str | torch.device = "cpu") -> SSLMethod:
    """Rebuild the method recorded in a checkpoint (registry name + hyper-parameters), load its weights, eval mode.

    The file is read with ``weights_only=True``; ImageNet initialisation is not re-downloaded (the weights are in
    the checkpoint).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train with fgssl_lib.train.fit (it writes "
                                f"<checkpoint_dir>/{LAST})")
    checkpoint = read_checkpoint(path, map_location)
    if "fgssl_method" not in checkpoint:
        raise ValueError(f"{path} is not an fgssl checkpoint (no 'fgssl_method' entry)")
    try:
        method = build(checkpoint["fgssl_method"], **{**checkpoint["hyper_parameters"], "pretrained": None})
    except TypeError as error:
        raise ValueError(f"{path} was written by another version of fgssl: its hyper-parameters do not build "
                         f"{checkpoint['fgssl_method']!r} here ({error}); train the run again (train_or_load(..., "
                         "retrain=True))") from error
    check_checkpoint(checkpoint, method, path)
    method.load_state_dict(checkpoint["state_dict"])
    method.on_load_checkpoint(checkpoint)
    return method.eval()


def _resume_epoch(checkpoint: dict[str, Any]) -> int:
    """The epoch a run resumed from ``checkpoint`` starts with (checkpoints are written at epoch ends)."""
    return int(checkpoint["epoch"]) + 1


def _trainer_devices(config: TrainConfig) -> Any:
    """``devices`` for ``pl.Trainer``: ``cuda:<i>`` selects GPU ``i``."""
    device = resolve_device(config.device)
    if device.type == "cuda" and device.index is not None:
        return [device.index]
    return config.devices


def check_bn_splits(method: SSLMethod, config: TrainConfig) -> None:
    """A method with split BatchNorm (MoCo's ``bn_splits``) needs batches that split evenly and no SyncBatchNorm."""
    splits = getattr(method, "bn_splits", 0)
    if splits and config.batch_size % splits:
        raise ValueError(f"batch_size {config.batch_size} does not split into bn_splits={splits} equal BatchNorm groups: "
                         f"use a multiple of {splits}, or set method_options['bn_splits'] to a divisor of it (0: off)")
    if splits and config.sync_batchnorm:
        raise ValueError("sync_batchnorm=True would merge the BatchNorm groups of bn_splits across GPUs: under DDP each "
                         "GPU's batch is already a group, so set method_options['bn_splits']=0 or sync_batchnorm=False")


def fit(
    config: TrainConfig, method: SSLMethod | None = None, dataset: Dataset | None = None,
    callbacks: Sequence[pl.Callback] = (),
) -> tuple[SSLMethod, History]:
    """Train ``method`` (default: built from ``config``) on ``dataset`` (default: ``config``'s dataset, via
    ``fgssl_lib.data.load_dataset``); returns the method and its history. ``callbacks`` are added to the trainer's
    (e.g. a snapshot of the method's saliency maps every epoch).

    The history (:class:`~fgssl_lib.train.callbacks.History`) has ``steps`` and ``epochs`` DataFrames of the losses
    and wall time. Raises :class:`~fgssl_lib.train.callbacks.NonFiniteLossError` on a NaN loss.
    Holds the run directory's lock (:mod:`fgssl_lib.train.run_lock`) while it trains; a resume must have the
    settings of the run it continues (:func:`check_run_settings`).
    """
    with run_lock(run_dir(config)):
        return _fit(config, method, dataset, callbacks)


def _fit(config: TrainConfig, method: SSLMethod | None, dataset: Dataset | None,
         callbacks: Sequence[pl.Callback]) -> tuple[SSLMethod, History]:
    """:func:`fit` under the run directory's lock."""
    pl.seed_everything(config.seed, workers=True, verbose=False)
    full = dataset if dataset is not None else training_set(config)
    config = resolve_batch(config, full)  # the micro-batch; the effective batch is the run's
    pl.seed_everything(config.seed, workers=True, verbose=False)  # a measured probe drew random numbers
    method = method if method is not None else build_method(config, full)
    check_bn_splits(method, config)
    subset = random_subset(full, config.num_images, config.seed)
    localiser = config.localiser if config.localised() else ANNOTATION  # views without a box read none
    train_set = localised(subset, localiser, progress=config.progress_bar)
    self_maps = SelfLocaliser(subset, config.image_size, method) if localiser == SELF else None
    pipeline, data = view_data(config, method, train_set, self_maps)
    config = replace(config, view_pipeline=pipeline)  # the run's settings record the pipeline its views came from
    per_sample = isinstance(data, TwoViewDataset)
    loader = (train_loader(data, config.batch_size, config.num_workers, config.seed,
                           effective_batch=config.effective_batch()) if per_sample else None)

    directory = run_dir(config)
    last = directory / LAST
    ckpt_path = None
    if config.resume and last.is_file():
        checkpoint = read_checkpoint(last)
        check_checkpoint(checkpoint, method, last)
        check_run_settings(checkpoint, config, last)
        if loader is not None:
            epoch = _resume_epoch(checkpoint)
            data.set_epoch(epoch)  # Lightning builds the first resumed iterator before its epoch hooks run
            loader.sampler.set_epoch(epoch)
        ckpt_path = str(last)
    elif last.is_file():
        raise FileExistsError(f"{last} exists; pass resume=True to continue that run, or use another checkpoint_dir")

    history = History(pipeline, config.batch_size, config.effective_batch())
    callbacks = [
        *([ViewEpochs(data)] if per_sample else []),
        *([self_maps] if self_maps is not None else []),
        NonFiniteLossGuard(last),
        CollapseMonitor(config.collapse_every, config.collapse_threshold),
        history,  # after the monitor, so a step's record holds its embedding_std
        LastCheckpoint(last, config.identity(), config.checkpoint_every, config.checkpoint_minutes),
        *callbacks,
    ]
    with _quiet_lightning():
        trainer = pl.Trainer(
            accelerator=config.accelerator(),
            devices=_trainer_devices(config),
            num_nodes=config.num_nodes,
            strategy=config.strategy,
            sync_batchnorm=config.sync_batchnorm,
            precision=config.resolved_precision(),
            benchmark=True,  # the views are S x S and the batches equal (drop_last): cuDNN chooses its kernels once
            max_epochs=config.epochs,
            max_steps=config.max_steps,
            accumulate_grad_batches=config.effective_batch() // config.batch_size,
            callbacks=callbacks,
            logger=CSVLogger(directory, name="logs"),  # logs/version_<n>/metrics.csv, a new version per (resumed) run
            log_every_n_steps=config.log_every,
            plugins=[AtomicCheckpointIO()],
            enable_progress_bar=config.progress_bar,
            enable_model_summary=False,
            default_root_dir=directory,
            num_sanity_val_steps=0,
        )
        trainer.fit(method, train_dataloaders=loader, datamodule=None if per_sample else data, ckpt_path=ckpt_path,
                    weights_only=True)
    return method, history


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Silence Lightning's start-up INFO lines (accelerator listing, tips), its internal ``LeafSpec`` deprecation
    notice (Lightning 2.6 with torch 2.14) and its note that the run directory is not empty, which would clutter
    notebook pages; other warnings and the progress bar still show."""
    loggers = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning.pytorch")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
            # the run directory always exists (train_or_load / resume keep logs there); that is intended
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def fit_dual_stage(
    stage1: TrainConfig, stage2: TrainConfig, datasets: tuple[Dataset | None, Dataset | None] = (None, None)
) -> tuple[SSLMethod, tuple[History, History]]:
    """CVSA's dual-stage recipe: ``stage1`` (BYOL on a coarse dataset), then ``stage2`` (CVSA on the target
    dataset) initialised from stage 1 with the stem + layer1 + layer2 frozen (CVSA Sec. 4; the CVSA theory page).

    Every stage-2 tensor whose name and shape match stage 1's (backbone, heads, momentum encoder) is copied; the
    others (CVSA's conv projector/predictor) start fresh. ``datasets`` replaces the configs' datasets.
    """
    if stage1.method_options.get("freeze_early"):
        raise ValueError("stage 1 of the dual-stage recipe trains the whole network, but its config freezes the early "
                         "stages: build it with freeze_early=False, e.g. config.with_init('scratch')")
    first, history1 = fit(stage1, dataset=datasets[0])
    stage2 = replace(stage2, method_options={**stage2.method_options, "freeze_early": True})
    target_data = datasets[1] if datasets[1] is not None else training_set(stage2)
    second = build_method(stage2, target_data)
    source = first.state_dict()
    target = second.state_dict()
    copied = {k: v for k, v in source.items() if k in target and target[k].shape == v.shape}
    if not any(k.startswith("backbone.") for k in copied):
        raise ValueError("stage 2's backbone does not match stage 1's: use the same backbone and image size")
    second.load_state_dict(copied, strict=False)
    second, history2 = fit(stage2, method=second, dataset=target_data)
    return second, (history1, history2)
