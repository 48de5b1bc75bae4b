"""The batched view pipeline in ``fit``: views made from the training store on the training device, seeded and
resumable, chosen automatically with a per-sample fallback, and refused on a resume with the other pipeline."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import Dataset

from fgssl_lib.train import TrainConfig, fit
from fgssl_lib.train.store import TrainingStore


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FGSSL_CACHE", str(tmp_path / "cache"))


def smoke(tmp_path: Path, method: str = "byol", **overrides: object) -> TrainConfig:
    settings = {"num_images": 64, "epochs": 2, "checkpoint_dir": str(tmp_path / "run"), **overrides}
    return TrainConfig.preset("smoke", method=method, **settings)


class Batches(pl.Callback):
    """Keeps what ``training_step`` receives: key, dtype and shape of every entry, and the indices."""

    def __init__(self) -> None:
        self.shapes: dict[str, tuple] = {}
        self.indices: list[list[int]] = []

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: dict, *args: object) -> None:
        self.shapes = {key: (value.dtype, tuple(value.shape)) for key, value in batch.items()}
        self.indices.append(batch["index"].tolist())


@pytest.mark.parametrize("method", ["byol", "cvsa", "byol_dilo"])
def test_auto_makes_batched_views_of_every_generator_for_the_training_step(tmp_path: Path, method: str) -> None:
    batches = Batches()
    trained, history = fit(smoke(tmp_path, method, epochs=1), callbacks=[batches])
    assert history.view_pipeline == "batched" and history.steps["loss"].notna().all()
    assert batches.shapes == {"view1": (torch.float32, (32, 3, 32, 32)), "view2": (torch.float32, (32, 3, 32, 32)),
                              "mask1": (torch.float32, (32, 32, 32)), "mask2": (torch.float32, (32, 32, 32)),
                              "label": (torch.int64, (32,)), "index": (torch.int64, (32,))}
    saved = torch.load(tmp_path / "run" / "last.ckpt", weights_only=True)
    assert '"view_pipeline": "batched"' in saved["fgssl_run_settings"]


class Crash(pl.Callback):
    """Crashes the run at the first step of its second epoch (after the first epoch's checkpoint)."""

    def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.current_epoch == 1:
            raise KeyError("simulated crash")


def test_a_killed_and_resumed_batched_run_ends_with_bitwise_equal_weights(tmp_path: Path) -> None:
    straight, _ = fit(smoke(tmp_path / "a"))
    with pytest.raises(KeyError, match="simulated crash"):
        fit(smoke(tmp_path / "b"), callbacks=[Crash()])
    batches = Batches()
    resumed, history = fit(smoke(tmp_path / "b", resume=True), callbacks=[batches])
    assert history.view_pipeline == "batched" and resumed.trainer.global_step == straight.trainer.global_step == 4
    assert len(batches.indices) == 2  # only the second epoch ran again
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="view_pipeline: run 'batched', now 'per_sample'"):
        fit(smoke(tmp_path / "b", resume=True, view_pipeline="per_sample"))


def test_a_store_kept_on_the_host_gives_the_same_run_as_one_on_the_device(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    resident, _ = fit(smoke(tmp_path / "a", epochs=1))
    monkeypatch.setattr(TrainingStore, "fits", lambda self, device, fraction: False)
    with caplog.at_level(logging.WARNING, logger="fgssl_lib.train.data"):
        streamed, _ = fit(smoke(tmp_path / "b", epochs=1, num_workers=1))  # a worker gathers the rows
    assert "stays on the host and 1 loader workers gather its batches" in caplog.text
    for (name, a), b in zip(resident.state_dict().items(), streamed.state_dict().values()):
        assert torch.equal(a, b), name


def test_bf16_autocast_on_a_cpu(tmp_path: Path) -> None:
    _, history = fit(smoke(tmp_path, "byol_dilo", epochs=1, precision="bf16-mixed"))
    assert history.view_pipeline == "batched" and history.steps["loss"].notna().all()


class Unstorable(Dataset):
    """Samples whose saliency map only some carry: the store refuses them."""

    def __len__(self) -> int:
        return 16

    def __getitem__(self, index: int) -> dict:
        mask = torch.zeros(16, 16, dtype=torch.uint8)
        mask[4:12, 4:12] = 1
        image = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(index))
        sample = {"image": image, "label": index % 2,
                  "box": torch.tensor([4.0, 4.0, 12.0, 12.0]), "mask": mask, "index": index}
        if index % 2:
            sample["saliency"] = mask.float()
        return sample


def test_data_that_cannot_be_stored_falls_back_to_per_sample_views_under_auto_only(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = {"image_size": 16, "batch_size": 8, "epochs": 1}
    with caplog.at_level(logging.WARNING, logger="fgssl_lib.train.fit"):
        _, history = fit(smoke(tmp_path / "a", **settings), dataset=Unstorable())
    assert history.view_pipeline == "per_sample"
    assert "per-sample views (view_pipeline='auto'): " in caplog.text and "saliency map, or none" in caplog.text
    with pytest.raises(ValueError, match="view_pipeline='batched' cannot make these views: .* or 'per_sample'"):
        fit(smoke(tmp_path / "b", view_pipeline="batched", **settings), dataset=Unstorable())


def test_the_pipeline_is_part_of_the_run_identity_and_the_store_side_only_where_it_is_read() -> None:
    auto, per_sample = TrainConfig.preset("smoke"), TrainConfig.preset("smoke", view_pipeline="per_sample")
    assert auto.identity()["view_pipeline"] == "auto" and auto.identity()["store_side"] is None
    assert "store_side" not in per_sample.identity()
    assert TrainConfig.preset("paper", method="byol").store_side == 256
    with pytest.raises(ValueError, match="view pipeline"):
        TrainConfig.preset("smoke", view_pipeline="gpu")
    with pytest.raises(ValueError, match="store_side"):
        TrainConfig.preset("smoke", store_side=0)
