"""Batches that fit the device: ``batch_size="auto"`` picks the micro-batch a (simulated) card holds and accumulates
gradients up to the effective batch; the effective batch is the run's identity, the micro-batch is not (a run resumes
at another micro-batch); the momentum encoder moves once per optimizer step; MoCo's BatchNorm groups follow the
micro-batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from fgssl_lib.methods.base import MomentumMethod
from fgssl_lib.runs import run_key, train_or_load
from fgssl_lib.train import CollapseMonitor, TrainConfig, build_method, fit
from fgssl_lib.train import memory
from fgssl_lib.train.data import train_loader
from fgssl_lib.train.memory import GIB, MEMORY_FRACTION, StepMemory, micro_batch

NUM_IMAGES = 64


def smoke(tmp_path: Path, method: str = "byol", **overrides: object) -> TrainConfig:
    settings = {"num_images": NUM_IMAGES, "view_pipeline": "per_sample", "checkpoint_dir": str(tmp_path / "run"),
                **overrides}
    return TrainConfig.preset("smoke", method=method, **settings)


def simulate_card(monkeypatch: pytest.MonkeyPatch, config: TrainConfig, micro: int) -> None:
    """A device whose memory holds a step of ``config`` at ``micro`` images, not at the next divisor up."""
    step = memory.measure(config)
    monkeypatch.setattr(memory, "device_bytes", lambda device: int(step.peak(micro) / MEMORY_FRACTION) + 1)


class Counts(pl.Callback):
    """Micro-batch sizes seen by ``training_step`` and momentum-encoder updates."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.updates = 0

    def on_train_start(self, trainer: pl.Trainer, method: pl.LightningModule) -> None:
        if isinstance(method, MomentumMethod):
            update = method.update_momentum

            def counted() -> None:
                self.updates += 1
                update()

            method.update_momentum = counted

    def on_train_batch_start(self, trainer: pl.Trainer, method: pl.LightningModule, batch, batch_idx: int) -> None:
        self.sizes.append(batch["view1"].shape[0])


def test_the_micro_batch_is_the_largest_divisor_of_the_effective_batch_that_fits() -> None:
    step = StepMemory(per_image=1.0 * GIB, fixed=2.0 * GIB)
    assert micro_batch(256, step, 16 * GIB) == 8  # 2 + 12 x 1 <= 14.4 GiB, and 8 is the largest divisor <= 12
    assert micro_batch(256, step, None) == 256  # a CPU: the whole batch
    assert micro_batch(96, step, 80 * GIB) == 48
    assert micro_batch(256, StepMemory(per_image=20.0 * GIB, fixed=2.0 * GIB), 16 * GIB) == 2


def test_auto_batch_accumulates_up_to_the_effective_batch_and_moves_the_encoder_once_per_step(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = smoke(tmp_path, batch_size="auto")
    assert config.effective_batch() == 32  # the smoke preset's batch
    simulate_card(monkeypatch, config, micro=8)
    counts = Counts()
    method, history = fit(config, callbacks=[counts])
    assert set(counts.sizes) == {8} and len(counts.sizes) == NUM_IMAGES // 8
    assert method.trainer.global_step == NUM_IMAGES // 32  # optimizer steps of the effective batch
    assert counts.updates == NUM_IMAGES // 32
    assert history.epochs[["micro_batch", "effective_batch"]].values.tolist() == [[8, 32]]
    monitor = next(c for c in method.trainer.callbacks if isinstance(c, CollapseMonitor))
    assert [step for step, _ in monitor.values] == [2]  # every collapse_every=2 optimizer steps, once each


def test_an_accumulated_epoch_steps_on_the_images_of_the_unaccumulated_batches() -> None:
    images = range(120)  # 3 whole batches of 32; the rest of the epoch is dropped, as without accumulation
    whole = [batch.tolist() for batch in train_loader(images, 32, 0, seed=3)]
    micro = [batch.tolist() for batch in train_loader(images, 8, 0, seed=3, effective_batch=32)]
    assert len(micro) == 4 * len(whole) == 12
    assert [sum(micro[i:i + 4], []) for i in range(0, 12, 4)] == whole


def test_the_effective_batch_is_the_runs_identity_and_the_micro_batch_is_not(tmp_path: Path) -> None:
    whole = smoke(tmp_path, method="mocov2", method_options={"bn_splits": 4})
    accumulated = smoke(tmp_path, method="mocov2", method_options={"bn_splits": 4}, batch_size=8,
                        effective_batch_size=32)
    assert run_key(whole) == run_key(accumulated) and whole.identity() == accumulated.identity()
    assert run_key(smoke(tmp_path, method="mocov2", batch_size=16)) != run_key(whole)  # a smaller whole batch
    # BatchNorm groups keep their size (8 images): 4 groups of the batch of 32, 2 of a micro-batch of 16, 1 of 8
    assert build_method(whole).bn_splits == 4
    assert build_method(smoke(tmp_path, method="mocov2", method_options={"bn_splits": 4}, batch_size=16,
                              effective_batch_size=32)).bn_splits == 2
    assert build_method(accumulated).bn_splits == 0


def test_a_run_resumes_and_finishes_at_another_micro_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trained for an epoch at the whole batch (a large card), then resumed at micro-batches of 8 (a small one): the
    same run, its split BatchNorm statistics regrouped; done.json and the history record both batches."""

    class StopAfterFirstEpoch(pl.Callback):
        def on_train_epoch_end(self, trainer: pl.Trainer, method: pl.LightningModule) -> None:
            trainer.should_stop = True

    config = smoke(tmp_path, method="mocov2", batch_size="auto", epochs=2, method_options={"bn_splits": 2})
    simulate_card(monkeypatch, config, micro=32)
    with pytest.raises(RuntimeError, match="stopped"):
        train_or_load(config, root=tmp_path / "runs", callbacks=[StopAfterFirstEpoch(), Raise()])
    simulate_card(monkeypatch, config, micro=8)
    run = train_or_load(config, root=tmp_path / "runs")
    assert run.history[["micro_batch", "effective_batch"]].values.tolist() == [[32, 32], [8, 32]]
    done = (run.path / "done.json").read_text()
    assert '"effective_batch_size": 32' in done and '"micro_batch_size": 8' in done
    assert run.method.bn_splits == 0  # one group of 8 images per micro-batch; its statistics came from 2 groups
    assert torch.isfinite(run.method.embed(torch.rand(2, 3, 32, 32))).all()


class Raise(pl.Callback):
    """Kills the run after its checkpoint at the end of the first epoch (as a closed Colab session would)."""

    def on_train_end(self, trainer: pl.Trainer, method: pl.LightningModule) -> None:
        raise RuntimeError("stopped")


def test_batch_settings_that_cannot_work_are_refused_and_cuda_defaults_to_auto(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="effective_batch_size"):
        TrainConfig(batch_size="auto")
    with pytest.raises(ValueError, match="multiple of batch_size"):
        TrainConfig(batch_size=24, effective_batch_size=64)
    with pytest.raises(ValueError, match="'auto'"):
        TrainConfig(batch_size="large")
    assert TrainConfig.preset("paper", method="mocov2").batch_size == 256  # no GPU here
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for preset, effective in (("paper", 256), ("colab", 256), ("smoke", 32)):
        config = TrainConfig.preset(preset, method="mocov2")
        assert (config.batch_size, config.effective_batch_size) == ("auto", effective)
    assert TrainConfig.preset("colab", method="lcr", device="cpu").batch_size == 128
    assert TrainConfig.preset("colab", method="lcr", batch_size=64).effective_batch() == 64  # a number: the batch


def test_the_benches_size_their_data_by_the_effective_batch_on_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from fgssl_lib.bench import gpu, methods

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    args = argparse.Namespace(preset="paper", batch=None, size=64, num_images=None, warmup=1, steps=2, device="auto",
                              precision="auto", backbone=None)
    timed = gpu.bench_config("mocov2", args, "unused")
    assert (timed.batch_size, timed.effective_batch_size, timed.num_images) == ("auto", 256, 1024)
    assert methods.bench_config("mocov2", args).batch_size == 256  # one step of the whole batch
