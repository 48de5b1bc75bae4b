"""Saliency snapshots during training (callback, resume, the fallback for runs without it) and the training figures."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from fgssl_lib.data import load_dataset
from fgssl_lib.runs import Run, run_key, train_or_load
from fgssl_lib.train import TrainConfig, build_method
from fgssl_lib.train.fit import training_set
from fgssl_lib.train.snapshots import (
    BEFORE_TRAINING,
    SNAPSHOTS,
    SaliencySnapshots,
    Snapshots,
    run_snapshot_images,
    saliency_snapshot,
    snapshot_images,
    training_snapshots,
)
from fgssl_lib.viz.training import snapshot_grid, training_curves


class TinySaliency(pl.LightningModule):
    """A 1x1 conv whose sigmoid is the map; trained to raise it everywhere, so each epoch's map differs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)

    def saliency(self, images: Tensor) -> Tensor:
        assert not self.training and not torch.is_grad_enabled()
        return torch.sigmoid(self.conv(images))[:, 0]

    def training_step(self, batch: list[Tensor], batch_idx: int) -> Tensor:
        return -torch.sigmoid(self.conv(batch[0])).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=5.0)


class NoSaliency(TinySaliency):
    """A baseline: trains, but has no map of its own."""

    def saliency(self, images: Tensor) -> Tensor:
        raise NotImplementedError("no map")


def _trainer(tmp_path, callback: pl.Callback, epochs: int) -> pl.Trainer:
    return pl.Trainer(max_epochs=epochs, callbacks=[callback, ModelCheckpoint(tmp_path, save_last=True, save_top_k=0)],
                      logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")


def _loader() -> DataLoader:
    return DataLoader(TensorDataset(torch.rand(8, 3, 6, 6)), batch_size=4)


def test_the_callback_records_the_initial_map_and_one_per_epoch_and_saves_them(tmp_path):
    images = torch.rand(2, 3, 6, 6)
    callback = SaliencySnapshots(images, tmp_path / SNAPSHOTS)
    model = TinySaliency()
    with torch.no_grad():
        initial = torch.sigmoid(model.conv(images))[:, 0]
    _trainer(tmp_path, callback, epochs=2).fit(model, _loader())
    series = callback.series
    assert series.epochs == [BEFORE_TRAINING, 0, 1] and series.labels() == ["init", "epoch 1", "epoch 2"]
    assert all(m.shape == (2, 6, 6) for m in series.maps)
    torch.testing.assert_close(series.maps[0], initial)
    assert series.maps[2].mean() > series.maps[1].mean() > series.maps[0].mean()  # the map moved while training
    saved = Snapshots.load(tmp_path / SNAPSHOTS)
    assert saved.epochs == series.epochs
    assert all(torch.equal(a, b) for a, b in zip(saved.maps, series.maps))
    assert model.training  # the trained module's mode is restored after each snapshot


def test_a_resumed_run_keeps_its_series_and_does_not_snapshot_the_resumed_weights_as_init(tmp_path):
    images = torch.rand(2, 3, 6, 6)
    first = SaliencySnapshots(images)
    _trainer(tmp_path, first, epochs=1).fit(TinySaliency(), _loader())
    resumed = SaliencySnapshots(images)
    _trainer(tmp_path, resumed, epochs=2).fit(TinySaliency(), _loader(), ckpt_path=str(tmp_path / "last.ckpt"))
    assert resumed.series.epochs == [BEFORE_TRAINING, 0, 1]
    torch.testing.assert_close(resumed.series.maps[0], first.series.maps[0])
    torch.testing.assert_close(resumed.series.maps[1], first.series.maps[1])


def test_a_run_resumed_from_a_checkpoint_without_a_series_does_not_call_its_weights_init(tmp_path):
    _trainer(tmp_path, pl.Callback(), epochs=1).fit(TinySaliency(), _loader())
    resumed = SaliencySnapshots(torch.rand(2, 3, 6, 6))
    _trainer(tmp_path, resumed, epochs=2).fit(TinySaliency(), _loader(), ckpt_path=str(tmp_path / "last.ckpt"))
    assert resumed.series.epochs == [1]


def test_maps_are_kept_at_most_max_side_wide_and_a_method_without_a_map_records_nothing(tmp_path):
    small = SaliencySnapshots(torch.rand(2, 3, 6, 6), max_side=3)
    _trainer(tmp_path / "small", small, epochs=1).fit(TinySaliency(), _loader())
    assert [m.shape for m in small.series.maps] == [(2, 3, 3)] * 2
    none = SaliencySnapshots(torch.rand(2, 3, 6, 6), tmp_path / SNAPSHOTS)
    _trainer(tmp_path / "none", none, epochs=1).fit(NoSaliency(), _loader())
    assert none.series.epochs == [] and not (tmp_path / SNAPSHOTS).exists()


def test_bad_inputs_say_what_to_pass():
    with pytest.raises(ValueError, match="N x 3 x S x S"):
        SaliencySnapshots(torch.rand(3, 6, 6))
    with pytest.raises(ValueError, match="one map batch per epoch"):
        Snapshots([BEFORE_TRAINING, 0], [torch.rand(1, 4, 4)])
    with pytest.raises(ValueError, match="at least one"):
        snapshot_images(load_dataset("synthetic", num_images=4, image_size=32), [], 32)


@pytest.fixture(scope="module")
def cvsa_smoke():
    config = TrainConfig.preset("smoke", method="cvsa")
    images, boxes = snapshot_images(load_dataset("synthetic", num_images=8, image_size=32), [0, 3, 5], 32)
    return config, images, boxes


def test_snapshot_images_are_eval_views_with_their_boxes(cvsa_smoke):
    _, images, boxes = cvsa_smoke
    assert images.shape == (3, 3, 32, 32) and images.dtype == torch.float32
    assert len(boxes) == 3 and all(0 <= b[0] < b[2] <= 32 and 0 <= b[1] < b[3] <= 32 for b in boxes)


def test_saliency_snapshot_of_cvsa_is_a_map_in_unit_range_and_keeps_the_mode(cvsa_smoke):
    config, images, _ = cvsa_smoke
    method = build_method(config).train()
    maps = saliency_snapshot(method, images)
    assert maps.shape == (3, 32, 32) and maps.device.type == "cpu"
    assert 0.0 <= maps.min() and maps.max() <= 1.0
    assert method.training
    with pytest.raises(NotImplementedError):
        saliency_snapshot(build_method(TrainConfig.preset("smoke", method="byol")), images)


def test_a_run_without_recorded_snapshots_gets_its_seeded_initialisation_and_its_trained_map(cvsa_smoke, tmp_path):
    config, images, _ = cvsa_smoke
    pl.seed_everything(config.seed, verbose=False)  # the order fit builds a method in: seed, data, model
    training_set(config)
    fit_initial = build_method(config)
    trained = build_method(config)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.1 * torch.randn_like(p))
    run = Run(trained, pd.DataFrame({"epoch": [0]}), 1.0, tmp_path)
    series = training_snapshots(run, config, images)
    assert series.epochs == [BEFORE_TRAINING, config.epochs - 1]
    torch.testing.assert_close(series.maps[0], saliency_snapshot(fit_initial, images))
    torch.testing.assert_close(series.maps[1], saliency_snapshot(trained, images))
    recorded = Snapshots([BEFORE_TRAINING, 0, 1], [torch.zeros(3, 32, 32)] * 3, images)
    recorded.save(tmp_path / SNAPSHOTS)
    assert training_snapshots(run, config, images).epochs == [BEFORE_TRAINING, 0, 1]
    # a series recorded on other images is not these images' series
    assert training_snapshots(run, config, images.flip(0)).epochs == [BEFORE_TRAINING, config.epochs - 1]


class Kill(pl.Callback):
    """Stops training with an error when epoch ``epoch`` starts (after the previous epoch's checkpoint)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise RuntimeError("killed")


def test_train_or_load_records_the_series_of_a_killed_and_resumed_run_and_loads_it(tmp_path):
    config = TrainConfig.preset("smoke", method="cvsa", epochs=2)
    with pytest.raises(RuntimeError, match="killed"):
        train_or_load(config, root=tmp_path, callbacks=[Kill(1)])
    path = tmp_path / run_key(config)
    killed = Snapshots.load(path / SNAPSHOTS)
    assert killed.epochs == [BEFORE_TRAINING, 0]
    run = train_or_load(config, root=tmp_path)  # resumes from last.ckpt
    images = run_snapshot_images(config)[0]
    series = training_snapshots(run, config, images)
    assert series.labels() == ["init", "epoch 1", "epoch 2"] and series.taken_on(images)
    torch.testing.assert_close(series.maps[0], killed.maps[0])
    torch.testing.assert_close(series.maps[-1], saliency_snapshot(run.method, images))
    loaded = training_snapshots(train_or_load(config, root=tmp_path), config, images)
    assert loaded.epochs == series.epochs and all(torch.equal(a, b) for a, b in zip(loaded.maps, series.maps))


def test_training_curves_draw_one_line_per_run_that_has_the_column():
    histories = {"byol": pd.DataFrame({"epoch": [0, 1], "loss": [1.0, 0.5]}),
                 "cvsa": pd.DataFrame({"epoch": [0, 1], "loss": [2.0, 1.0], "loss_align": [0.7, 0.6]})}
    fig = training_curves(histories, columns=("loss", "loss_align"))
    loss_ax, align_ax = fig.axes
    assert len(loss_ax.lines) == 2 and len(align_ax.lines) == 1
    assert list(align_ax.lines[0].get_xdata()) == [1, 2]  # epochs counted from 1
    plt.close(fig)
    fig = training_curves(histories)  # every known curve some run has
    assert [ax.get_title() for ax in fig.axes] == ["loss", "loss_align"]
    plt.close(fig)
    with pytest.raises(ValueError, match="no run has column 'loss_kl'"):
        training_curves(histories, columns=("loss_kl",))
    with pytest.raises(ValueError, match="histories is empty"):
        training_curves({})


def test_snapshot_grid_has_the_images_then_one_row_per_snapshot(cvsa_smoke):
    _, images, boxes = cvsa_smoke
    series = Snapshots([BEFORE_TRAINING, 0], [torch.rand(3, 32, 32), torch.rand(3, 32, 32)])
    fig = snapshot_grid(images, series, boxes)
    assert len(fig.axes) == 3 * 3
    assert [fig.axes[i].get_ylabel() for i in (0, 3, 6)] == ["image", "init", "epoch 1"]
    plt.close(fig)
    long = Snapshots([BEFORE_TRAINING, *range(19)], [torch.rand(3, 16, 16) for _ in range(20)])  # maps below size
    fig = snapshot_grid(images, long, boxes, max_rows=5)
    assert [fig.axes[i].get_ylabel() for i in range(0, 18, 3)] == ["image", "init", "epoch 5", "epoch 10",
                                                                   "epoch 14", "epoch 19"]
    plt.close(fig)
    with pytest.raises(ValueError, match="snapshots is empty"):
        snapshot_grid(images, Snapshots([], []))
