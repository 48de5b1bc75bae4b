"""``python -m fgssl_lib.bench gpu --tiny``: every default method trains through ``fit`` on a CPU and is measured
(micro-batch, accumulation, images/s, peak memory, data wait) on images of mixed shapes drawn at the stored size,
with no checkpoint written while it is timed and cuDNN's kernel choice on; a failing method makes the command exit
non-zero and is named, the others are still measured."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest
import torch

from fgssl_lib.bench import gpu
from fgssl_lib.bench.__main__ import main as bench_main
from fgssl_lib.train.callbacks import AtomicCheckpointIO
from fgssl_lib.train.store import TrainingStore

LINE = re.compile(r"method (\S+) \S+ micro-batch 8 x 1 32-true: batch [\d.]+ ms, [\d.]+ images/s, peak -?\d+ MiB, "
                  r"waiting for data (\d+) % \(\d+ workers, (batched|per_sample) views, ([2-6]) image shapes\)")


@pytest.mark.slow
def test_tiny_measures_every_method_through_fit(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main(["gpu", "--tiny"]) == 0
    printed = capsys.readouterr().out
    lines = [LINE.fullmatch(line) for line in printed.splitlines() if line.startswith("method ")]
    assert all(lines), printed
    assert [m.group(1) for m in lines] == list(gpu.METHODS)
    assert all(0 <= int(m.group(2)) <= 100 for m in lines)


def test_a_method_that_fails_in_its_process_is_named_and_the_exit_is_non_zero(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu.main(["--tiny", "--methods", "byol", "--precision", "fp8"]) == 1
    printed = capsys.readouterr()
    assert "method byol FAILED" in printed.out
    assert "FAILED: byol" in printed.err and "precision" in printed.err


def test_the_other_methods_are_still_measured_after_a_failure(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def fake(name: str, args: object) -> dict[str, object]:
        if name == "cvsa":
            raise RuntimeError("exit 1: RuntimeError: CUDA out of memory")
        return {"backbone": "resnet50", "micro_batch": 8, "accumulation": 2, "precision": "bf16-mixed", "step_ms": 1.0,
                "images_per_s": 2.0, "peak_mib": 3.0, "data_wait": 0.5, "workers": 2, "views": "batched", "shapes": 6}

    monkeypatch.setattr(gpu, "run_method", fake)
    assert gpu.main(["--tiny", "--methods", "byol", "cvsa", "lcr"]) == 1
    printed = capsys.readouterr()
    assert [line.split()[1] for line in printed.out.splitlines() if line.startswith("method")] == ["byol", "cvsa",
                                                                                                    "lcr"]
    assert "method cvsa FAILED: exit 1: RuntimeError: CUDA out of memory" in printed.out
    assert "bench gpu: FAILED: cvsa" in printed.err


def test_the_drawn_images_have_mixed_shapes_at_the_stored_side_so_the_store_takes_its_per_row_path(
        tmp_path: Path) -> None:
    images = gpu.DrawnShapes(side=24, num_images=12)
    shapes = [tuple(images[i]["image"].shape[-2:]) for i in range(len(images))]
    assert shapes == [images.shape(i) for i in range(len(images))] and len(set(shapes)) >= 3
    assert all(min(shape) == 24 and max(shape) in (24, 32, 36) for shape in shapes), "drawn as stored, not resized"
    for i in range(len(images)):
        sample = images[i]
        assert sample["mask"].shape == sample["image"].shape[-2:] and sample["mask"].any(), "the crop keeps the bird"
        x0, y0, x1, y1 = sample["box"].tolist()
        assert sample["mask"][int(y0):int(y1), int(x0):int(x1)].sum() == sample["mask"].sum()
    store = TrainingStore.load(images, None, root=tmp_path)
    assert store.row_shape is None, "rows of one shape would take the one-gather path no real dataset takes"


@pytest.mark.slow
def test_nothing_is_written_while_timed_and_micro_batch_accumulation_and_cudnn_benchmark_are_reported(
        monkeypatch: pytest.MonkeyPatch) -> None:
    writes = []
    save = AtomicCheckpointIO.save_checkpoint

    def counted(self: AtomicCheckpointIO, checkpoint: dict, path: str, storage_options: object = None) -> None:
        writes.append(path)
        save(self, checkpoint, path, storage_options)

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", counted)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    args = argparse.Namespace(**{**gpu.TINY, "num_images": 8, "precision": "auto"})  # one batch per epoch
    result = gpu.measure("byol", args)
    assert len(writes) == 1, f"{len(writes)} checkpoint writes: only the one after the timed batches may happen"
    assert result["micro_batch"] == 8 and result["accumulation"] == 1 and result["cudnn_benchmark"] is True
    assert result["images_per_s"] > 0 and 0 <= result["data_wait"] < 1 and result["shapes"] >= 2
