"""Runs: the trained methods every notebook and the CPU study share, keyed by their configuration.

A run is kept under ``<runs_root()>/<run_key(config)>``: ``last.ckpt`` (resumed when a run was killed), the
per-epoch ``history.csv``, ``done.json`` once it has finished (written atomically, last; it records the identity of
the data the run trained on, :func:`data_identity`, and a finished run is never returned for other data), and for
a method with a saliency map of its own the map's series at ``snapshots.pt`` (:mod:`fgssl_lib.train.snapshots`).
One process at a time works in a run directory (:func:`fgssl_lib.train.run_lock.run_lock`), so a notebook and the
study asking for the same run share one training. A folder of runs that is a file, read-only or full is named
with what chose it (``root=``, ``FGSSL_RUNS``, ``FGSSL_DATA``).

- :func:`train_or_load`: the one way to get a run, single-stage or CVSA's dual-stage recipe (``stage1=``);
- :func:`train_methods`: one run per config of :func:`fgssl_lib.train.recipes.method_configs`;
- a registry name evaluated from another name's run (LCR Table 1's MultiTask,
  :func:`fgssl_lib.methods.evaluated_from`) shares that run and is rebuilt as itself at test time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytorch_lightning as pl

from fgssl_lib.caches import usable_directory, writing
from fgssl_lib.data import coarse, data_home
from fgssl_lib.data.identity import dataset_fingerprint
from fgssl_lib.data.synthetic import RENDER_VERSION
from fgssl_lib.methods import TRAINING_VERSION, SSLMethod, evaluated_as, evaluated_from
from fgssl_lib.config import check_choice
from fgssl_lib.models import Backbone
from fgssl_lib.train import TrainConfig, build_method, fit, fit_dual_stage, load_method
from fgssl_lib.train.config import INITS, STAGE1_PREFIX
from fgssl_lib.train.fit import training_set
from fgssl_lib.train.recipes import stage1_config
from fgssl_lib.train.run_lock import launched_rank, run_lock
from fgssl_lib.train.snapshots import SNAPSHOTS, SaliencySnapshots, run_snapshot_images

DONE = "done.json"
RENDERED = ("synthetic", "coarse")
"""The rendered worlds: their settings are their data."""
PLANNED_ENV = "FGSSL_PLANNED"
"""Set by ``python -m fgssl_lib.reproduce`` once its run plan (:mod:`fgssl_lib.plan`) has trained every run the
notebooks ask for: :func:`train_or_load` then loads finished runs and refuses to train one."""


def runs_root() -> Path:
    """Where runs are kept: ``$FGSSL_RUNS``, else ``<data home>/runs``."""
    return Path(os.environ.get("FGSSL_RUNS") or data_home() / "runs")


def runs_setting(root: str | os.PathLike | None) -> str:
    """What chose the folder of runs: ``root``, else ``FGSSL_RUNS``, else ``FGSSL_DATA``."""
    if root is not None:
        return "the parameter root of train_or_load"
    return "FGSSL_RUNS" if os.environ.get("FGSSL_RUNS") else "FGSSL_RUNS (unset: runs go under FGSSL_DATA)"


def data_identity(config: TrainConfig) -> str | None:
    """The content of ``config``'s real training data: :func:`~fgssl_lib.data.identity.dataset_fingerprint` of its
    training split (its annotations and image files, not its folder); ``None`` for a rendered world, which is its
    settings (:meth:`TrainConfig.identity`) and the version of its drawing code, both in the run key."""
    return None if config.dataset in RENDERED else dataset_fingerprint(training_set(config))


def run_key(config: TrainConfig) -> str:
    """``<method>-seed<seed>-<hash>``: the hash covers every setting that changes the trained weights
    (:meth:`TrainConfig.identity`), the methods' :data:`~fgssl_lib.methods.TRAINING_VERSION` and the data: a
    rendered world by its settings (in the identity) and the version of its drawing code (a redrawn benchmark must
    not load runs of the old one), a real dataset by its content (:func:`data_identity`: a fixed label or a replaced
    image is another run; the same data moved from Drive to local disk keeps its runs). A run started from a
    stage-1 run names it in ``pretrained`` (``"run:<its key>"``), so its key covers the stage-1 run's."""
    settings = {**config.identity(), "training_version": TRAINING_VERSION}
    if config.dataset in RENDERED:
        render_versions = {"synthetic": RENDER_VERSION, "coarse": coarse.RENDER_VERSION}
        settings[f"{config.dataset}_render_version"] = render_versions[config.dataset]
    else:
        settings["data"] = data_identity(config)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{config.method}-seed{config.seed}-{digest}"


def run_path(config: TrainConfig, root: str | os.PathLike | None = None, stage1: TrainConfig | None = None) -> Path:
    """The directory of the run of ``config`` under ``root`` (default :func:`runs_root`); with ``stage1``, of the
    dual-stage pair ``dual_stage-<key of stage 1>-<key of stage 2>``."""
    name = run_key(config) if stage1 is None else f"dual_stage-{run_key(stage1)}-{run_key(config)}"
    return Path(root or runs_root()) / name


@dataclass
class Run:
    """A trained method with its per-epoch history, training wall time (s), run directory and the precision it was
    trained in (``"32-true"``, ``"bf16-mixed"``, ...; ``None`` for a run finished before fgssl recorded it). The
    precision is not part of the run key (:meth:`TrainConfig.identity`), yet it changes the numbers a little: a study
    checks it (:func:`fgssl_lib.study.run_one`)."""

    method: SSLMethod
    history: pd.DataFrame
    train_seconds: float
    path: Path
    precision: str | None = None


def train_or_load(config: TrainConfig, root: str | os.PathLike | None = None, retrain: bool = False,
                  callbacks: Sequence[pl.Callback] = (), stage1: TrainConfig | None = None) -> Run:
    """Load the finished run of ``config`` if there is one, else train it (resuming a killed run from its
    ``last.ckpt``), under the run's lock; ``done.json`` is written atomically once the run has finished.

    ``retrain=True`` discards a finished run and trains again from scratch. ``callbacks`` go to the trainer, after a
    :class:`~fgssl_lib.train.snapshots.SaliencySnapshots` that records the method's own map (if it has one) on
    :func:`~fgssl_lib.train.snapshots.run_snapshot_images` into ``<run>/snapshots.pt``.

    With ``stage1``: CVSA's dual-stage recipe (:func:`fgssl_lib.train.fit_dual_stage`: ``stage1`` BYOL, then
    ``config`` CVSA from its weights with the early stages frozen), each stage in ``<run>/stage<i>``; the history has
    both stages' epochs with a ``stage`` column.
    """
    path, data, setting = run_path(config, root, stage1), data_identity(config), runs_setting(root)
    usable_directory(path.parent, setting)
    with run_lock(path):  # a notebook and the study may ask for the same run at the same time
        if (path / DONE).exists() and not retrain:
            return _finished(path, data)
        if os.environ.get(PLANNED_ENV):
            raise RuntimeError(f"the run {path.name} ({config.method}) has not finished, but reproduce trained every "
                               "run of its plan before the notebooks: fgssl_lib.plan.NOTEBOOK_RUNS misses a run this "
                               "notebook asks for. Run reproduce with --no-plan to let the notebooks train their runs")
        first = launched_rank() == 0  # DDP ranks > 0 train beside rank 0; only rank 0 cleans up and writes the run
        if first:  # leftovers of a killed write (a checkpoint, done.json): nothing else writes here now
            for leftover in (*path.glob("*.tmp"), *path.glob("stage*/*.tmp")):
                leftover.unlink(missing_ok=True)
        if retrain and first:
            for stale in (DONE, "last.ckpt", SNAPSHOTS):
                (path / stale).unlink(missing_ok=True)
            for stage in ("stage1", "stage2"):
                shutil.rmtree(path / stage, ignore_errors=True)
        method, history = (_fit_one(config, path, callbacks, root) if stage1 is None
                           else _fit_dual_stage(stage1, config, path))
        seconds = float(history["time_s"].sum()) if "time_s" in history else 0.0
        precision = config.resolved_precision()
        if first:
            done = {"train_seconds": seconds, "precision": precision, "data": data, **batch_sizes(history, config),
                    "config": dataclasses.asdict(config)}
            if stage1 is not None:
                done["stage1"] = dataclasses.asdict(stage1)
            tmp = (path / DONE).with_suffix(".tmp")
            with writing(path, setting, tmp, path / "history.csv"):
                history.to_csv(path / "history.csv", index=False)
                tmp.write_text(json.dumps(done, default=str))
                os.replace(tmp, path / DONE)
        return Run(method.eval(), history, seconds, path, precision)


def batch_sizes(history: pd.DataFrame, config: TrainConfig) -> dict[str, Any]:
    """The run's ``effective_batch_size`` (part of its identity) and the ``micro_batch_size`` of its last epoch
    (what the last card fitted; ``batch_size="auto"`` resolved, :mod:`fgssl_lib.train.memory`)."""
    micro = int(history["micro_batch"].iloc[-1]) if "micro_batch" in history and len(history) else config.batch_size
    return {"effective_batch_size": config.effective_batch(), "micro_batch_size": micro}


def _fit_one(config: TrainConfig, path: Path, callbacks: Sequence[pl.Callback],
             root: str | os.PathLike | None) -> tuple[SSLMethod, pd.DataFrame]:
    """Train (or resume) one run in ``path``, started from its stage-1 run under ``root`` if it names one; its
    whole history."""
    snapshots = SaliencySnapshots(run_snapshot_images(config)[0], path / SNAPSHOTS)  # its state resumes with the run
    method, history = fit(dataclasses.replace(config, checkpoint_dir=str(path), resume=(path / "last.ckpt").exists()),
                          method=_from_stage1(config, root), callbacks=[snapshots, *callbacks])
    return method, history.epochs  # covers the whole run, also when it resumed


def _from_stage1(config: TrainConfig, root: str | os.PathLike | None) -> SSLMethod | None:
    """The method of ``config`` built as :func:`~fgssl_lib.train.fit` builds it (same seed), every backbone of it
    (online and momentum) holding the final backbone weights of the stage-1 run that ``config.pretrained`` names;
    ``None`` when it names none. Only the backbone carries over, as from ImageNet weights: the heads start fresh."""
    if not (config.pretrained or "").startswith(STAGE1_PREFIX):
        return None
    path = Path(root or runs_root()) / config.pretrained.removeprefix(STAGE1_PREFIX)
    if not (path / DONE).exists():
        raise FileNotFoundError(f"{config.method} starts from the stage-1 run {path.name}, which has not finished "
                                f"under {path.parent}: train it first (fgssl_lib.runs.start_from trains it and "
                                "names it)")
    weights = load_method(_checkpoint(path)).backbone.state_dict()
    pl.seed_everything(config.seed, workers=True, verbose=False)
    method = build_method(dataclasses.replace(config, pretrained=None), training_set(config))
    for backbone in (module for module in method.modules() if isinstance(module, Backbone)):
        target = backbone.state_dict()
        if set(target) != set(weights) or any(
                target[k].shape != v.shape and (v.dim() != 1 or target[k].numel() % v.numel())
                for k, v in weights.items()):
            raise ValueError(f"the stage-1 run {path.name} has another backbone than {config.method}'s "
                             f"({config.backbone}): train the stage-1 run with the same backbone and image size")
        # MoCo's split BatchNorm keeps one copy of the running statistics per group: repeat them per group
        backbone.load_state_dict({k: v.repeat(target[k].numel() // max(v.numel(), 1)) if v.dim() == 1 else v
                                  for k, v in weights.items()})
    return method


def _fit_dual_stage(stage1: TrainConfig, stage2: TrainConfig, path: Path) -> tuple[SSLMethod, pd.DataFrame]:
    """Train (or resume) both stages in ``path/stage1`` and ``path/stage2``; both histories with a ``stage``."""
    stages = [dataclasses.replace(config, checkpoint_dir=str(path / f"stage{i}"), resume=True)
              for i, config in enumerate((stage1, stage2), start=1)]
    method, histories = fit_dual_stage(*stages)
    return method, pd.concat([h.epochs.assign(stage=i) for i, h in enumerate(histories, start=1)], ignore_index=True)


def load_run(config: TrainConfig, root: str | os.PathLike | None = None) -> Run | None:
    """The finished run of ``config`` under ``root`` (default :func:`runs_root`), or ``None`` if there is none."""
    path = run_path(config, root)
    return _finished(path, data_identity(config)) if (path / DONE).exists() else None


def read_done(path: Path) -> dict[str, Any]:
    """The ``done.json`` of the finished run in ``path``, checked: it parses, has ``train_seconds``, and the run's
    ``last.ckpt`` is there; otherwise a ``ValueError`` / ``FileNotFoundError`` that says ``retrain=True``."""
    done = path / DONE
    try:
        info = json.loads(done.read_text())
        if isinstance(info, dict) and "train_seconds" not in info and "stage2" in info:
            # a dual-stage pair finished by fgssl <= 0.3 kept its time in its history only
            info["train_seconds"] = float(pd.read_csv(path / "history.csv")["time_s"].sum())
        float(info["train_seconds"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{done} is damaged ({type(error).__name__}: {error}): train the run again with "
                         "train_or_load(..., retrain=True)") from error
    if not _checkpoint(path).is_file():
        raise FileNotFoundError(f"the finished run {path} has no {_checkpoint(path).relative_to(path)} (deleted or "
                                "not copied?): train it again with train_or_load(..., retrain=True), or put it back")
    return info


def _checkpoint(path: Path) -> Path:
    """The final ``last.ckpt`` of the run in ``path``: its own, or its second stage's."""
    return path / "stage2" / "last.ckpt" if (path / "stage2").is_dir() else path / "last.ckpt"


def _finished(path: Path, data: str | None) -> Run:
    """The finished run in ``path`` (it has ``done.json``), trained on the data whose identity is ``data``
    (:func:`data_identity`; ``None``: a rendered world, and a run that recorded none predates the record)."""
    info = read_done(path)
    if data is not None and info.get("data", data) != data:
        config = info.get("config", {})
        raise ValueError(f"the finished run {path} was trained on other data than {config.get('dataset')!r} "
                         f"holds now (data identity {info['data']}, now {data}): its labels, boxes or images "
                         "changed. Train it again on the data as it is with train_or_load(..., retrain=True)")
    history = pd.read_csv(path / "history.csv") if (path / "history.csv").exists() else pd.DataFrame()
    return Run(load_method(_checkpoint(path)), history, float(info["train_seconds"]), path, info.get("precision"))


def train_methods(configs: dict[str, TrainConfig], root: str | os.PathLike | None = None,
                  retrain: bool = False, train: bool = True) -> dict[str, Run]:
    """:func:`train_or_load` of every config; a name evaluated from another's run gets its own copy of the run,
    rebuilt as itself (:func:`fgssl_lib.methods.evaluated_as`; it never retrains the run: the name it comes from
    does).

    ``train=False`` only loads finished runs (a ``paper`` run takes GPU-hours: the training notebooks, or the user,
    train them); the names without one are left out of the result, with a warning that names them and their run
    folders. Raises when none is finished.
    """
    runs, missing = {}, []
    for name, config in configs.items():
        if train:
            run = train_or_load(config, root=root, retrain=retrain and evaluated_from(name) == name)
        else:
            run = load_run(config, root=root)
            if run is None:
                missing.append(f"{name} ({run_path(config, root)})")
                continue
        runs[name] = dataclasses.replace(run, method=evaluated_as(run.method, name))
    if missing:
        message = (f"no finished run for {', '.join(missing)}: train them first (notebooks 03_train_cvsa / "
                   "04_train_lcr with the same parameters, or fgssl_lib.runs.train_or_load), or pass "
                   "train=True to train them here")
        if not runs:
            raise FileNotFoundError(message)
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    return runs


def start_from(config: TrainConfig, init: str, preset: str, root: str | os.PathLike | None = None,
               **settings: Any) -> TrainConfig:
    """``config`` started as ``init`` says (:meth:`~fgssl_lib.train.TrainConfig.with_init`). A coarse-world init
    first trains its stage-1 run (:func:`stage1_config` of ``preset`` and ``settings``) under ``root``, or loads it:
    a keyed, cached run, trained once for every run that starts from it; the config then names it by its key."""
    config, stage1 = started_from(config, init, preset, **settings)
    if stage1 is not None:
        train_or_load(stage1, root=root)
    return config


def started_from(config: TrainConfig, init: str, preset: str,
                 **settings: Any) -> tuple[TrainConfig, TrainConfig | None]:
    """What :func:`start_from` returns, and the config of the stage-1 run it starts from (``None`` for an init
    without one), without training anything: a run plan lists both."""
    if "stage1" not in INITS[check_choice("initialisation", init, INITS)]:
        return config.with_init(init), None
    stage1 = stage1_config(init, preset, **settings)
    return config.with_init(init, stage1=run_key(stage1)), stage1
