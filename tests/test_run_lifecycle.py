"""A run's life on disk: resumes continue the same run or refuse, one writer per run directory, spaced checkpoint
writes, run keys that name the data by identity, workers sized to the CPUs."""

from __future__ import annotations

import dataclasses
import shutil
import threading
from pathlib import Path

import pytest
import torch

from fgssl_lib.runs import run_key
from fgssl_lib.train import TrainConfig, fit
from fgssl_lib.train import callbacks as train_callbacks
from fgssl_lib.train import config as train_config
import fixtures_real as fx
from test_train import TinySamples, config


def one_epoch_run(tmp_path: Path) -> TrainConfig:
    first = config(tmp_path, epochs=1)
    fit(first, dataset=TinySamples())
    return first


@pytest.mark.parametrize(("change", "named"), [({"epochs": 3}, "epochs: run 1, now 3"), ({"lr": 0.5}, "lr: run 0.05"),
                                               ({"seed": 1}, "seed: run 0, now 1"),
                                               ({"num_images": 16}, "num_images: run 128, now 16")])
def test_a_resume_with_other_settings_is_refused_naming_what_differs(tmp_path: Path, change: dict,
                                                                     named: str) -> None:
    first = one_epoch_run(tmp_path)
    with pytest.raises(ValueError, match=f"cannot resume .*{named}.*another checkpoint_dir"):
        fit(dataclasses.replace(first, resume=True, **change), dataset=TinySamples())


def test_a_resume_with_the_same_settings_on_other_hardware_continues(tmp_path: Path) -> None:
    first = one_epoch_run(tmp_path)
    same = dataclasses.replace(first, resume=True, num_workers=0, progress_bar=False, log_every=5)
    method, history = fit(same, dataset=TinySamples())
    assert method.trainer.global_step == 4 and list(history.epochs["epoch"]) == [0]


def test_two_fits_on_one_run_directory_take_turns(tmp_path: Path) -> None:
    outcomes: list[str] = []

    def train() -> None:
        try:
            fit(config(tmp_path, epochs=2), dataset=TinySamples())
            outcomes.append("trained")
        except FileExistsError as error:
            outcomes.append(f"refused: {error}")

    threads = [threading.Thread(target=train) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sorted(o.split(":")[0] for o in outcomes) == ["refused", "trained"], outcomes
    assert "pass resume=True" in next(o for o in outcomes if o.startswith("refused"))


@pytest.mark.parametrize(("every", "minutes", "epochs_written"), [(1, None, [1, 2, 3]), (2, None, [2, 3]),
                                                                  (1, 1e6, [3])])
def test_checkpoint_writes_can_be_spaced_and_the_last_epoch_is_always_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, every: int, minutes: float | None,
        epochs_written: list[int]) -> None:
    written: list[int] = []
    save = train_callbacks.AtomicCheckpointIO.save_checkpoint

    def counting(self, checkpoint, path, storage_options=None):  # noqa: ANN001
        written.append(checkpoint["epoch"] + 1)
        return save(self, checkpoint, path, storage_options)

    monkeypatch.setattr(train_callbacks.AtomicCheckpointIO, "save_checkpoint", counting)
    method, _ = fit(config(tmp_path, epochs=3, checkpoint_every=every, checkpoint_minutes=minutes),
                    dataset=TinySamples())
    assert written == epochs_written
    saved = torch.load(tmp_path / "run" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == method.trainer.global_step == 12


def test_run_keys_name_the_data_by_identity_not_by_path(tmp_path: Path) -> None:
    drive = fx.build_cub(tmp_path / "drive" / "CUB", segmentations=False)
    cub = TrainConfig.preset("smoke", dataset="cub", dataset_options={}, data_root=str(drive))
    local = shutil.copytree(drive, tmp_path / "content" / "CUB_200_2011")  # new modification times
    assert run_key(cub) == run_key(dataclasses.replace(cub, data_root=str(local)))
    assert run_key(cub) != run_key(dataclasses.replace(cub, num_images=64))
    assert run_key(cub) != run_key(dataclasses.replace(cub, split="test"))
    folder = dataclasses.replace(cub, dataset="folder", data_root=str(fx.build_folder(tmp_path / "mine")))
    other = fx.build_folder(tmp_path / "other")
    assert run_key(folder) == run_key(dataclasses.replace(folder, data_root=str(other)))  # the same images
    for name in ("d1.png", "d2.png", "d3.jpg"):  # one of them is in the training split
        fx.write_image(other / "duck" / name, value=9)
    assert run_key(folder) != run_key(dataclasses.replace(folder, data_root=str(other)))


def test_workers_are_sized_to_the_cpus_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(train_config.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert TrainConfig.preset("paper", method="byol").num_workers == 2  # Colab: 2 vCPUs
    monkeypatch.setattr(train_config.os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert TrainConfig.preset("paper", method="byol").num_workers == 8
