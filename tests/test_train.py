"""Training engine: smoke runs, resume equality, collapse monitor, NaN stop, checkpoint checks, names."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from fgssl_lib.methods import build
from fgssl_lib.methods.byol import BYOL
from fgssl_lib.precision import cpu_bf16
from fgssl_lib.train import NonFiniteLossError, TrainConfig, embedding_std, fit, fit_dual_stage, load_method

SIZE = 16


class TinySamples(Dataset):
    """A stand-in dataset of the sample contract: random 16 px images, a centred box, 4 classes."""

    classes = ["a", "b", "c", "d"]
    num_classes = 4

    def __init__(self, n: int = 32) -> None:
        self.images = torch.randint(0, 256, (n, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(0),
                                    dtype=torch.uint8)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        mask = torch.zeros(SIZE, SIZE, dtype=torch.uint8)
        mask[4:12, 4:12] = 1
        return {"image": self.images[index], "label": index % 4, "box": torch.tensor([4.0, 4.0, 12.0, 12.0]),
                "mask": mask, "index": index}


def config(tmp_path: Path, method: str = "byol", **overrides: object) -> TrainConfig:
    settings = {"image_size": SIZE, "batch_size": 8, "epochs": 2, "checkpoint_dir": str(tmp_path / "run"),
                "collapse_every": 1, "log_every": 1, **overrides}
    return TrainConfig.preset("smoke", method=method, **settings)


@pytest.mark.parametrize("method", ["byol", "mocov2", "simclr", "supervised"])
def test_smoke_run_of_every_core_method(tmp_path: Path, method: str) -> None:
    trained, history = fit(config(tmp_path, method, epochs=1), dataset=TinySamples())
    assert len(history.steps) == 4 and list(history.epochs["epoch"]) == [0]
    assert history.steps["loss"].notna().all() and "embedding_std" in history.epochs
    run = tmp_path / "run"
    assert (run / "last.ckpt").is_file() and not (run / "last.ckpt.tmp").exists()
    metrics = (run / "logs" / "version_0" / "metrics.csv").read_text()
    assert "loss" in metrics.splitlines()[0]
    reloaded = load_method(run / "last.ckpt")
    assert type(reloaded) is type(trained) and reloaded.method_name == method
    images = torch.rand(3, 3, SIZE, SIZE)
    torch.testing.assert_close(reloaded.embed(images), trained.embed(images))


class Interrupted(BYOL):
    """BYOL that crashes at the first step of its second epoch (after the first epoch's checkpoint)."""

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        if self.current_epoch == 1:
            raise KeyError("simulated crash")


def test_resumed_run_ends_with_the_same_weights(tmp_path: Path) -> None:
    def method(cls: type = BYOL) -> BYOL:
        torch.manual_seed(0)
        m = cls(**config(tmp_path).backbone_options(), hidden_dim=64, proj_dim=32)
        m.method_name = "byol"
        return m

    straight, _ = fit(config(tmp_path / "a"), method=method(), dataset=TinySamples())
    with pytest.raises(KeyError, match="simulated crash"):
        fit(config(tmp_path / "b"), method=method(Interrupted), dataset=TinySamples())
    saved = torch.load(tmp_path / "b" / "run" / "last.ckpt", weights_only=True)
    assert (saved["epoch"], saved["global_step"]) == (0, 4)
    resumed, history = fit(config(tmp_path / "b", resume=True), dataset=TinySamples())
    assert resumed.trainer.global_step == straight.trainer.global_step == 8
    assert list(history.epochs["epoch"]) == [0, 1]  # the history of the first run came back with the checkpoint
    assert (tmp_path / "b" / "run" / "logs" / "version_1" / "metrics.csv").is_file()  # version_0 is kept
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)


class Constant(BYOL):
    """A collapsed encoder: every image gets the same embedding."""

    def embed_features(self, images: torch.Tensor) -> torch.Tensor:
        return torch.ones(images.shape[0], 8, device=images.device)


def test_collapse_monitor_warns_with_the_value(tmp_path: Path) -> None:
    assert embedding_std(torch.ones(10, 8)) == 0.0
    assert embedding_std(torch.randn(4096, 8)) == pytest.approx(1.0, abs=0.1)
    collapsed = Constant(**config(tmp_path).backbone_options(), hidden_dim=64, proj_dim=32)
    with pytest.warns(RuntimeWarning, match=r"collapse: the std of the L2-normalised embeddings is 0.0000"):
        _, history = fit(config(tmp_path, epochs=1), method=collapsed, dataset=TinySamples())
    assert (history.steps["embedding_std"] == 0).all()


class Diverging(BYOL):
    """BYOL whose loss becomes NaN at global step 6 (second epoch)."""

    def losses(self, batch: dict) -> dict:
        losses = super().losses(batch)
        if self.trainer.global_step == 6:
            losses["loss"] = losses["loss"] * float("nan")
        return losses


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    diverging = Diverging(**config(tmp_path).backbone_options(), hidden_dim=64, proj_dim=32)
    diverging.method_name = "byol"
    with pytest.raises(NonFiniteLossError, match=r"global step 6 \(epoch 1\).*last good checkpoint is .*last.ckpt"):
        fit(config(tmp_path, epochs=3), method=diverging, dataset=TinySamples())
    checkpoint = torch.load(tmp_path / "run" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 0 and checkpoint["global_step"] == 4
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point())


def test_checkpoints_of_another_method_or_shape_are_refused(tmp_path: Path) -> None:
    fit(config(tmp_path, epochs=1), dataset=TinySamples())
    with pytest.raises(ValueError, match="written by method 'byol', not 'mocov2'"):
        fit(config(tmp_path, "mocov2", resume=True), dataset=TinySamples())
    with pytest.raises(ValueError, match="shape mismatches"):
        fit(config(tmp_path, resume=True, method_options={"proj_dim": 24}), dataset=TinySamples())
    with pytest.raises(FileExistsError, match="resume=True"):
        fit(config(tmp_path), dataset=TinySamples())


def test_dual_stage_freezes_the_early_stages_of_stage_one(tmp_path: Path) -> None:
    stage1 = config(tmp_path / "s1", epochs=1)
    stage2 = config(tmp_path / "s2", epochs=1)
    second, (h1, h2) = fit_dual_stage(stage1, stage2, datasets=(TinySamples(), TinySamples(24)))
    stage1_weights = torch.load(tmp_path / "s1" / "run" / "last.ckpt", weights_only=True)["state_dict"]
    assert second.hparams.freeze_early
    torch.testing.assert_close(second.backbone.layer2[0].conv1.weight, stage1_weights["backbone.layer2.0.conv1.weight"])
    assert not torch.equal(second.backbone.layer4[0].conv1.weight, stage1_weights["backbone.layer4.0.conv1.weight"])
    assert len(h1.steps) == 4 and len(h2.steps) == 3


def test_names_and_presets(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="valid presets: colab, cpu, paper, smoke"):
        TrainConfig.preset("fast")
    with pytest.raises(ValueError, match="valid backbones: resnet18, resnet50, resnet_narrow"):
        TrainConfig(backbone="resnet34")
    with pytest.raises(TypeError, match="unknown TrainConfig fields \\['lr_rate'\\]"):
        TrainConfig.preset("cpu", lr_rate=0.1)
    with pytest.raises(ValueError, match="valid methods"):
        fit(config(tmp_path, "mocov3"), dataset=TinySamples())
    cpu = TrainConfig.preset("cpu", method="mocov2", method_options={"temperature": 0.1})
    assert cpu.method_options["queue_size"] == 4096 and cpu.method_options["temperature"] == 0.1
    assert cpu.backbone_options()["stem_stride"] == 2 and cpu.resolved_precision() == ("bf16-mixed" if cpu_bf16() else "32-true")
    paper = TrainConfig.preset("paper", method="lcr")
    assert (paper.backbone, paper.image_size, paper.batch_size, paper.lr) == ("resnet50", 224, 128, 0.03)
    assert build("byol", **TrainConfig.preset("smoke").backbone_options()).backbone.name == "resnet_narrow"


def test_a_resumed_history_equals_the_uninterrupted_one(tmp_path: Path) -> None:
    def method(cls: type = BYOL) -> BYOL:
        torch.manual_seed(0)
        m = cls(**config(tmp_path).backbone_options(), hidden_dim=64, proj_dim=32)
        m.method_name = "byol"
        return m

    settings = {"collapse_every": 3}  # measured at steps 3 and 6 of 8: the resumed epoch starts between two
    _, straight = fit(config(tmp_path / "a", **settings), method=method(), dataset=TinySamples())
    with pytest.raises(KeyError, match="simulated crash"):
        fit(config(tmp_path / "b", **settings), method=method(Interrupted), dataset=TinySamples())
    _, resumed = fit(config(tmp_path / "b", resume=True, **settings), dataset=TinySamples())
    columns = ["epoch", "steps", "loss", "embedding_std"]
    assert straight.steps["embedding_std"].notna().sum() == 2  # only the steps it was measured at
    torch.testing.assert_close(torch.tensor(resumed.epochs[columns].to_numpy()),
                               torch.tensor(straight.epochs[columns].to_numpy()), rtol=0, atol=1e-6)
