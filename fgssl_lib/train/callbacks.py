"""Lightning callbacks and plugins of the training engine: history, collapse monitor, NaN guard, view epochs,
atomic checkpoints and when to write them."""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import Checkpoint

from fgssl_lib.caches import usable_directory, writing

RUN_FOLDER_SETTING = "TrainConfig.checkpoint_dir (train_or_load puts runs under its root=, else FGSSL_RUNS)"
"""What chooses a run folder, for the message about a run folder that cannot be written."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to ``<path>.tmp`` in the same directory, flushes it, then ``os.replace``-s it.

    Lightning's own writer stages the file in the system temporary directory and moves it, which is a copy (not
    atomic) when that directory is on another file system; here an interrupted save leaves the previous
    ``last.ckpt`` intact, and a failed one (a full disk) leaves no ``.tmp`` and names the run folder.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        path = Path(path)
        usable_directory(path.parent, RUN_FOLDER_SETTING)
        tmp = path.with_name(path.name + ".tmp")
        with writing(path.parent, RUN_FOLDER_SETTING, tmp), open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp, path)


class History(pl.Callback):
    """Records every step's logged losses (``loss*``) and wall time, the :class:`CollapseMonitor`'s
    ``embedding_std`` at the steps it measured, and per-epoch means.

    ``steps`` / ``epochs`` are DataFrames; the records are saved in checkpoints, so a resumed run's history covers
    the whole run. ``view_pipeline``: where the views were made (``batched`` or ``per_sample``). A step record is a
    micro-batch (``step`` is the optimizer step it belongs to); an epoch record holds its ``micro_batch`` and
    ``effective_batch`` (a run resumed on another card has another micro-batch from there on).
    """

    def __init__(self, view_pipeline: str | None = None, micro_batch: int | None = None,
                 effective_batch: int | None = None) -> None:
        self.view_pipeline = view_pipeline
        self.batches = {"micro_batch": micro_batch, "effective_batch": effective_batch}
        self.step_records: list[dict[str, float]] = []
        self.epoch_records: list[dict[str, float]] = []
        self._epoch_start = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        record = {"step": trainer.global_step, "epoch": trainer.current_epoch,
                  "time_s": time.perf_counter() - self._epoch_start}
        for name, value in trainer.callback_metrics.items():
            if name.startswith("loss"):
                record[name] = float(value)
        # embedding_std only at the steps it was measured: callback_metrics keeps the last value between
        # measurements, and a resumed run has lost the one from before the interruption
        for monitor in trainer.callbacks:
            if isinstance(monitor, CollapseMonitor) and monitor.values and monitor.values[-1][0] == record["step"]:
                record["embedding_std"] = monitor.values[-1][1]
        self.step_records.append(record)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        rows = [r for r in self.step_records if r["epoch"] == epoch]
        means = pd.DataFrame(rows).drop(columns=["step", "epoch", "time_s"]).mean().to_dict() if rows else {}
        self.epoch_records.append({"epoch": epoch, "steps": len(rows),
                                   "time_s": time.perf_counter() - self._epoch_start,
                                   **{k: v for k, v in self.batches.items() if v is not None}, **means})

    @property
    def steps(self) -> pd.DataFrame:
        return pd.DataFrame(self.step_records)

    @property
    def epochs(self) -> pd.DataFrame:
        return pd.DataFrame(self.epoch_records)

    def state_dict(self) -> dict[str, Any]:
        return {"step_records": self.step_records, "epoch_records": self.epoch_records}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.step_records = list(state_dict["step_records"])
        self.epoch_records = list(state_dict["epoch_records"])


def embedding_std(embeddings: torch.Tensor) -> float:
    """Mean over dimensions of the batch std of L2-normalised embeddings (``N x D``), times ``sqrt(D)``.

    About 1 for embeddings spread over the sphere, 0 for a collapsed (constant) representation (SimSiam Sec. 4.1).
    """
    z = F.normalize(embeddings.float(), dim=1)  # NxD
    return float(z.std(dim=0).mean()) * math.sqrt(z.shape[1])


class CollapseMonitor(pl.Callback):
    """Every ``every_n_steps`` optimizer steps, :func:`embedding_std` of ``embed(view1)`` of the micro-batch that
    completed the step; logged, and a warning with the value when it is below ``threshold``."""

    def __init__(self, every_n_steps: int = 25, threshold: float = 0.1) -> None:
        self.every_n_steps = every_n_steps
        self.threshold = threshold
        self.values: list[tuple[int, float]] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if step % self.every_n_steps or (batch_idx + 1) % trainer.accumulate_grad_batches:
            return
        value = embedding_std(pl_module.embed(batch["view1"]))
        self.values.append((step, value))
        pl_module.log("embedding_std", value, on_step=True, on_epoch=False)
        if value < self.threshold:
            warnings.warn(
                f"representation collapse: the std of the L2-normalised embeddings is {value:.4f} x 1/sqrt(D) "
                f"(threshold {self.threshold}) at step {step}; lower the learning rate or check the views",
                RuntimeWarning,
                stacklevel=2,
            )


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the run stopped before the update, keeping the last good checkpoint."""


class NonFiniteLossGuard(pl.Callback):
    """Stops the run before the backward pass of a non-finite loss, naming the step and the last checkpoint
    (``last_checkpoint``, which the run writes at epoch ends and the guard never touches)."""

    def __init__(self, last_checkpoint: Path) -> None:
        self.last_checkpoint = Path(last_checkpoint)

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        if torch.isfinite(loss).all():
            return
        last = self.last_checkpoint
        kept = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was written yet"
        raise NonFiniteLossError(
            f"loss is {float(loss.detach())} at global step {trainer.global_step} (epoch {trainer.current_epoch}); training "
            f"stopped before the update; {kept}. Lower the learning rate or use precision='32-true'."
        )


class ViewEpochs(pl.Callback):
    """Tells the two-view dataset the epoch at the start of each epoch (seeded views differ between epochs)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.dataset.set_epoch(trainer.current_epoch)


RUN_SETTINGS = "fgssl_run_settings"
"""Checkpoint entry holding the run's :meth:`~fgssl_lib.train.TrainConfig.identity` as JSON."""


class LastCheckpoint(Checkpoint):
    """Writes ``path`` (``last.ckpt``) at epoch ends: every ``every`` epochs, or, with ``minutes``, at the first epoch
    end ``minutes`` after the previous write (a ResNet-50 checkpoint is ~400 MB: slow on Google Drive); always at
    the run's last epoch. Checkpoints are written only at epoch ends, so a resumed run sees the same batches.

    Every checkpoint carries the run's settings (``settings``, JSON-able) under :data:`RUN_SETTINGS`, so a resume
    with other settings is refused (``fgssl_lib.train.fit``). As a ``Checkpoint`` it runs after the other callbacks'
    epoch-end hooks, so their state (history, snapshots) is in the file.
    """

    def __init__(self, path: Path, settings: dict[str, Any], every: int = 1, minutes: float | None = None) -> None:
        if every < 1 or (minutes is not None and minutes <= 0):
            raise ValueError(f"checkpoint every {every} epochs / {minutes} minutes: use every >= 1, minutes > 0")
        self.path, self.every, self.minutes = Path(path), every, minutes
        self.settings = json.dumps(settings, sort_keys=True, default=str)
        self._last_write = time.monotonic()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1  # epochs done
        last = (epoch >= (trainer.max_epochs or epoch) or trainer.should_stop
                or 0 < trainer.max_steps <= trainer.global_step)
        if self.minutes is None:
            due = epoch % self.every == 0
        else:
            due = time.monotonic() - self._last_write >= 60 * self.minutes
        if trainer.strategy.broadcast(last or due, src=0):  # every rank takes part in the write
            trainer.save_checkpoint(self.path)
            self._last_write = time.monotonic()

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint[RUN_SETTINGS] = self.settings
