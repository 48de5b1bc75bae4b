"""The localiser of the training views: label-free detectors and self-saliency feed both view pipelines, training
with them reads no annotation, a self-saliency run resumes bitwise equal, and the default is the one chosen on val."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import Dataset

from fgssl_lib.bench.localiser import RESULT
from fgssl_lib.data import load_dataset
from fgssl_lib.data.sample import box_to_mask
from fgssl_lib.methods import build
from fgssl_lib.saliency import best_box, build_saliency
from fgssl_lib.saliency.maps import MapSource
from fgssl_lib.train import TrainConfig, fit
from fgssl_lib.train.fit import view_data
from fgssl_lib.train.localiser import (DEFAULT_LOCALISER, DETECTORS, SelfLocaliser, Unannotated, box_masks,
                                       localised)
from fgssl_lib.train.store import TrainingStore

SIZE = 32


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FGSSL_CACHE", str(tmp_path / "cache"))


class GuardedSample(Mapping):
    """A sample whose ``box`` and ``mask`` are listed but raise when read."""

    def __init__(self, sample: dict[str, Any]) -> None:
        self.sample = sample

    def __getitem__(self, key: str) -> Any:
        if key in ("box", "mask"):
            raise AssertionError(f"training read the annotation {key!r}")
        return self.sample[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.sample)

    def __len__(self) -> int:
        return len(self.sample)


class NoAnnotation(Dataset):
    """The synthetic benchmark's first 64 images at 32 px, with :class:`GuardedSample` s."""

    num_classes = 10

    def __init__(self) -> None:
        self.dataset = load_dataset("synthetic", split="train", image_size=SIZE, num_images=64)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> GuardedSample:
        return GuardedSample(self.dataset[index])


def smoke(tmp_path: Path, method: str, **overrides: object) -> TrainConfig:
    settings = {"num_images": 64, "epochs": 2, "checkpoint_dir": str(tmp_path / "run"), **overrides}
    return TrainConfig.preset("smoke", method=method, **settings)


class Refreshes(pl.Callback):
    """Records, at each epoch start, whether the self localiser of the run has maps."""

    def __init__(self) -> None:
        self.had_maps: list[bool] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        found = [c for c in trainer.callbacks if isinstance(c, SelfLocaliser)]
        self.had_maps.append(bool(found) and found[0].maps is not None)


@pytest.mark.parametrize(("method", "localiser", "pipeline"), [
    ("cvsa", "self", "per_sample"), ("cvsa", "self", "batched"), ("byol_dilo", "self", "batched"),
    ("byol_dilo", "spectral_residual", "per_sample"), ("byol_ss", "spectral_residual", "batched")])
def test_training_with_a_label_free_localiser_reads_no_annotation(tmp_path: Path, method: str, localiser: str,
                                                                   pipeline: str) -> None:
    refreshes = Refreshes()
    _, history = fit(smoke(tmp_path, method, localiser=localiser, view_pipeline=pipeline), dataset=NoAnnotation(),
                     callbacks=[refreshes])
    assert history.view_pipeline == pipeline and history.steps["loss"].notna().all()
    assert refreshes.had_maps == [False, localiser == "self"]  # self: its maps from the second epoch on
    with pytest.raises(AssertionError, match="read the annotation"):  # the guard does fire
        fit(smoke(tmp_path / "b", method, localiser="annotation", view_pipeline=pipeline), dataset=NoAnnotation())


def test_a_detector_localises_with_its_own_best_box_not_the_drawn_one() -> None:
    data = load_dataset("synthetic", split="train", image_size=SIZE, num_images=8)
    found = localised(data, "spectral_residual")
    source = build_saliency("spectral_residual")
    for i in range(8):
        sample, drawn = found[i], data[i]
        expected = best_box(source(drawn["image"]))
        assert tuple(int(v) for v in sample["box"].tolist()) == expected
        assert torch.equal(sample["mask"], box_to_mask(sample["box"], SIZE, SIZE))
        assert "gt_box" not in sample and "gt_mask" not in sample  # the annotation was not carried along
    assert any(not torch.equal(found[i]["box"], data[i]["box"]) for i in range(8))
    rows = TrainingStore.load(found, None).batch(torch.arange(8))  # the batched views' rows: the same boxes and maps
    assert torch.equal(rows["box"], torch.stack([found[i]["box"] for i in range(8)]))
    assert torch.equal(rows["saliency"], torch.stack([(found[i]["saliency"] * 255).round().byte() for i in range(8)]))
    assert localised(data, "annotation") is data


class Brightness(torch.nn.Module):
    """A model whose own map is each image's brightness, average-pooled to 8 x 8: one map per image."""

    def localisation_map(self) -> Any:
        from fgssl_lib.saliency.maps import MapSource

        class Pooled(MapSource):
            def compute(self, images: torch.Tensor) -> torch.Tensor:
                return torch.nn.functional.adaptive_avg_pool2d(images.mean(1, keepdim=True), 8)[:, 0]  # N x 8 x 8

        return Pooled()


def test_self_maps_feed_the_per_sample_and_the_batched_views_alike(tmp_path: Path) -> None:
    data = Unannotated(load_dataset("synthetic", split="train", image_size=SIZE, num_images=64))
    start = localised(data, "self")
    maps = SelfLocaliser(data, SIZE, Brightness())
    maps.refresh(Brightness())
    assert maps.maps.shape == (64, 8, 8)
    config = smoke(tmp_path, "byol_dilo", view_params={"p": 1.0, "scale": (1.0, 1.0), "ratio": (1.0, 1.0),
                                                         "flip_p": 0.0, "photometric": "none"})
    method = build("byol_dilo", **config.backbone_options())
    _, per_sample = view_data(replace(config, view_pipeline="per_sample"), method, start, maps)
    _, batched = view_data(replace(config, view_pipeline="batched"), method, start, maps)
    store = TrainingStore.load(start, None)
    positions = torch.arange(64)
    rows = batched.localised(store.batch(positions))
    views = batched.views(rows, 0, source=None)
    source = Brightness().localisation_map()
    for k in range(64):
        image = data[k]["image"][None].float() / 255
        expected_map = source(image)[0]  # the model's map at image size
        expected = torch.tensor(best_box(expected_map), dtype=torch.float32)
        sample = per_sample.dataset[k]
        assert torch.equal(sample["box"], expected) and torch.equal(rows["box"][k], expected)
        assert torch.equal(sample["mask"], box_to_mask(expected, SIZE, SIZE)) and torch.equal(rows["mask"][k],
                                                                                             sample["mask"])
        torch.testing.assert_close(sample["saliency"], expected_map, rtol=0, atol=1 / 255)  # DiLo's paste map
        torch.testing.assert_close(rows["saliency"][k].float() / 255, expected_map, rtol=0, atol=1 / 255)
        one = per_sample[k]  # the views' masks follow the box (the crop is the whole image at its own size)
        assert torch.equal(one["mask1"], sample["mask"].float()) and torch.equal(views["mask1"][k], one["mask1"])
    assert len({tuple(b) for b in rows["box"].tolist()}) > 4  # one box per image, not one for all


def test_the_self_map_of_a_baseline_is_the_grad_cam_of_its_embedding_in_closed_form() -> None:
    from fgssl_lib.eval.cams import GradCAMMap
    from fgssl_lib.methods.base import EmbeddingMap

    torch.manual_seed(0)
    byol = build("byol", **smoke(Path("."), "byol").backbone_options(), hidden_dim=32, proj_dim=16)
    assert isinstance(byol.localisation_map(), EmbeddingMap)  # BYOL has no map of its own
    images = torch.rand(4, 3, SIZE, SIZE)
    # the momentum encoder starts as a copy of the online one, whose Grad-CAM the evaluation reads
    torch.testing.assert_close(byol.localisation_map()(images), GradCAMMap(byol)(images), rtol=0, atol=1e-4)
    cvsa = build("cvsa", **smoke(Path("."), "cvsa").backbone_options(), hidden_dim=32, proj_dim=16)
    assert type(cvsa.localisation_map()).__name__ == "IntensityMap"


def test_box_masks_match_box_to_mask() -> None:
    boxes = torch.tensor([[0.0, 0.0, 32.0, 32.0], [3.4, 5.6, 20.5, 11.5], [7.0, 7.0, 7.0, 9.0]])
    masks = box_masks(boxes, 24, 32)
    for box, mask in zip(boxes, masks):
        assert torch.equal(mask, box_to_mask(box, 24, 32))


class Crash(pl.Callback):
    """Crashes the run at the first step of its third epoch (after the second epoch's checkpoint)."""

    def on_train_batch_start(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.current_epoch == 2:
            raise KeyError("simulated crash")


@pytest.mark.parametrize("pipeline", ["batched", "per_sample"])
def test_a_killed_and_resumed_self_saliency_run_ends_with_bitwise_equal_weights(tmp_path: Path,
                                                                                 pipeline: str) -> None:
    def config(where: Path, **overrides: object) -> TrainConfig:
        return smoke(where, "cvsa", localiser="self", epochs=3, view_pipeline=pipeline, **overrides)

    straight, _ = fit(config(tmp_path / "a"), dataset=NoAnnotation())
    with pytest.raises(KeyError, match="simulated crash"):
        fit(config(tmp_path / "b"), dataset=NoAnnotation(), callbacks=[Crash()])
    saved = torch.load(tmp_path / "b" / "run" / "last.ckpt", weights_only=True)
    state = next(v for k, v in saved["callbacks"].items() if "SelfLocaliser" in k)
    assert state["after_epoch"] == 1 and state["maps"].shape[0] == 64  # the maps epoch 2 trains with
    resumed, _ = fit(config(tmp_path / "b", resume=True), dataset=NoAnnotation())
    assert resumed.trainer.global_step == straight.trainer.global_step == 6
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_the_localiser_is_part_of_the_identity_only_where_the_views_read_a_box() -> None:
    for method in ("cvsa", "byol_ss", "byol_dilo", "mocov2_dilo"):
        config = TrainConfig.preset("smoke", method=method)
        assert config.identity()["localiser"] == DEFAULT_LOCALISER
    for method in ("byol", "mocov2", "lcr", "supervised"):
        plain = TrainConfig.preset("smoke", method=method)
        assert "localiser" not in plain.identity()
        assert TrainConfig.preset("smoke", method=method, localiser="annotation").identity() == plain.identity()
    with pytest.raises(ValueError, match="localiser"):
        TrainConfig.preset("smoke", method="cvsa", localiser="ground_truth")


def test_the_default_localiser_is_the_one_chosen_on_val() -> None:
    record = json.loads(RESULT.read_text())
    assert record["stream"] == "val" and set(record["scores"]) == set(DETECTORS)
    best = max(record["scores"], key=lambda name: record["scores"][name]["box_acc"])
    assert record["chosen"] == best == DEFAULT_LOCALISER


def test_the_selection_bench_scores_every_detector_on_val(capsys: pytest.CaptureFixture) -> None:
    from fgssl_lib.bench.localiser import box_scores, main

    assert main(["--images", "8"]) == 0
    printed = capsys.readouterr().out
    assert all(f"localiser {name}: box_acc" in printed for name in DETECTORS) and "chosen: " in printed
    drawn = [torch.tensor([4.0, 6.0, 20.0, 30.0]), torch.tensor([10.0, 0.0, 32.0, 12.0])]
    exact = torch.stack([box_to_mask(box, 32, 32) for box in drawn]).float()
    assert box_scores(exact, drawn) == {"box_acc": 100.0, "map_maxboxacc": 100.0}  # a map that is the box


class EpochMasks(pl.Callback):
    """Keeps the view masks and indices of every batch of the second epoch."""

    def __init__(self) -> None:
        self.masks: list[torch.Tensor] = []
        self.indices: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: dict, *args: object) -> None:
        if trainer.current_epoch == 1:
            self.masks.append(batch["mask1"].cpu())
            self.indices.append(batch["index"].cpu())


@pytest.mark.parametrize("pipeline", ["per_sample", "batched"])
def test_the_second_epoch_trains_on_the_maps_refreshed_after_the_first(tmp_path: Path, pipeline: str) -> None:
    seen = EpochMasks()
    whole = {"p": 0.0, "scale": (1.0, 1.0), "ratio": (1.0, 1.0), "flip_p": 0.0}  # mask1 = the sample's mask
    config = smoke(tmp_path, "byol_dilo", localiser="self", view_pipeline=pipeline, num_workers=1, view_params=whole)
    fit(config, dataset=NoAnnotation(), callbacks=[seen])
    saved = torch.load(tmp_path / "run" / "last.ckpt", weights_only=True)
    state = next(v for k, v in saved["callbacks"].items() if "SelfLocaliser" in k)
    maps = SelfLocaliser(NoAnnotation(), SIZE, build("byol_dilo", **config.backbone_options()))
    maps.load_state_dict(state)  # the maps epoch 1 trained with (taken after epoch 0)
    index = torch.cat(seen.indices)
    expected = maps.localise(index, torch.tensor([[SIZE, SIZE]] * len(index)), SIZE, SIZE)["mask"].float()
    assert torch.equal(torch.cat(seen.masks), expected)  # through the loader's worker, or the batched rows


def test_self_maps_reach_frames_of_many_shapes_in_one_call_as_the_map_source_finishes_them():
    """The batched frames (one ``grid_sample``) equal each map upsampled into its own frame by the map source's
    ``finish`` and zero-padded, within one grey level."""
    localiser = object.__new__(SelfLocaliser)
    localiser.finisher = object.__new__(MapSource)
    generator = torch.Generator().manual_seed(0)
    localiser.maps = torch.rand(4, 7, 7, generator=generator)
    localiser.boxes = torch.tensor([[0.0, 0.0, 32.0, 32.0]]).repeat(4, 1)
    localiser.position, localiser.image_size = {10 + k: k for k in range(4)}, 32
    hw = torch.tensor([[30, 40], [40, 30], [17, 23], [40, 40]])
    out = localiser.localise(torch.tensor([13, 10, 12, 11]), hw, 40, 40)
    for row, (position, (h, w)) in enumerate(zip([3, 0, 2, 1], hw.tolist())):
        expected = localiser.finisher.finish(localiser.maps[position:position + 1], (h, w))[0]
        expected = expected.clamp(0, 1).mul(255).round()
        got = out["saliency"][row].float()
        assert (got[:h, :w] - expected).abs().max() <= 1
        assert got[h:].eq(0).all() and got[:, w:].eq(0).all()
