"""``python -m fgssl_lib.bench gpu``: the one command to run when a GPU is at hand.

Every method is trained as ``fit`` trains it at ``--preset`` (default ``paper``: ResNet-50, the papers' batch sizes,
heads and ``precision="auto"``), on images of the synthetic benchmark drawn at the size they are stored and of mixed
shapes, as a real dataset's (:class:`DrawnShapes`: the training store takes its per-row path), with views of
``--size`` px (default 224), for ``--warmup`` untimed and ``--steps`` timed optimizer steps, each method in its own
process (so one failure, or one method's memory, never touches another). No checkpoint is written while it is timed, and
``fit`` lets cuDNN choose its kernels once for the fixed view shape (``cudnn.benchmark``). Initialisation is random
(``pretrained=None``): it changes no timing, and nothing is downloaded. Per method it prints the micro-batch and the
gradient accumulation of the optimizer step (their product is the effective batch), the median batch time (from the
batch's arrival on the device to the end of its backward pass, or of the optimizer step), images/s over the timed
batches, the peak memory (CUDA: ``max_memory_allocated`` during training; CPU: growth of the peak resident set size)
and the fraction of the timed wall time spent waiting for data (from one batch's end to the next one's start:
loading, views, transfer), with the loader's workers and where the views were made (``batched``: on the training
device, so the wait is mostly view making; ``per_sample``: in the workers). It exits non-zero naming every method
that failed.

``--tiny`` runs the same path on a CPU in seconds (smoke preset, 32 px, batch 8, 3 steps): what CI runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import Dataset

from fgssl_lib.bench.methods import peak_rss_mib
from fgssl_lib.config import PRESETS, resolve_device
from fgssl_lib.data import load_dataset
from fgssl_lib.data.rendered import index_generator
from fgssl_lib.data.sample import mask_to_box
from fgssl_lib.train import TrainConfig, fit

METHODS = ("supervised", "byol", "mocov2", "byol_dilo", "cvsa", "lcr")
"""The methods measured by default: each baseline, DiLo's views, and the two methods of the book."""
TINY = {"preset": "smoke", "device": "cpu", "size": 32, "batch": 8, "steps": 3, "warmup": 1, "num_images": 32}
ASPECTS = (1.0, 4 / 3, 3 / 2)
"""Longer side over shorter side of the drawn images, each landscape or portrait: the shapes of photographs (square,
4:3 and 3:2), as in CUB, Cars or Aircraft, whose images differ in shape."""


class DrawnShapes(Dataset):
    """The synthetic benchmark's ``train`` images drawn square at ``side * max(ASPECTS)`` px and cropped around the
    bird to ``side x round(side * a)`` or its transpose (``a`` of :data:`ASPECTS` and the orientation drawn per
    index): images at the size the store keeps (shorter side ``side``, so nothing is resampled) and of mixed shapes,
    so the store takes its per-row path as on a real dataset. Mask and box follow the crop; ``label``, ``index`` and
    the classes are the benchmark's."""

    def __init__(self, side: int, num_images: int, seed: int = 0) -> None:
        self.side = side
        self.birds = load_dataset("synthetic", split="train", image_size=round(side * max(ASPECTS)),
                                  num_images=num_images, seed=seed)
        self.classes, self.num_classes = self.birds.classes, self.birds.num_classes

    def __len__(self) -> int:
        return len(self.birds)

    def shape(self, index: int) -> tuple[int, int]:
        """``(h, w)`` of image ``index``."""
        generator = index_generator("bench-shape", index)
        longer = round(self.side * ASPECTS[int(torch.randint(len(ASPECTS), (1,), generator=generator))])
        return (self.side, longer) if torch.rand(1, generator=generator).item() < 0.5 else (longer, self.side)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.birds[index]
        (h, w), full = self.shape(index), sample["image"].shape[-1]
        x0, y0, x1, y1 = sample["box"].tolist()
        top = min(max(round((y0 + y1 - h) / 2), 0), full - h)  # the crop centred on the bird, inside the image
        left = min(max(round((x0 + x1 - w) / 2), 0), full - w)
        mask = sample["mask"][top:top + h, left:left + w].clone()
        image = sample["image"][:, top:top + h, left:left + w].clone()
        return {**sample, "image": image, "mask": mask, "box": mask_to_box(mask)}


class StepTimer(pl.Callback):
    """Time of every training batch and of the wait for it, after ``warmup`` optimizer steps; the micro-batch (images
    per batch), the gradient accumulation (batches per optimizer step) and peak memory. ``clock``: seconds, default
    the wall clock (after a CUDA synchronisation)."""

    def __init__(self, warmup: int, clock: Callable[[], float] = time.perf_counter) -> None:
        self.warmup = warmup
        self.clock = clock
        self.steps: list[float] = []  # s, batch on the device -> its backward (or optimizer step) done
        self.waits: list[float] = []  # s, previous batch done -> this batch on the device
        self.images = 0  # in the timed batches
        self.micro_batch = 0
        self._start = self._end = None
        self._timed = False
        self._memory_before = 0.0
        self.peak_mib = 0.0
        self.workers = 0
        self.accumulation = 1
        self.cudnn_benchmark = False

    def _now(self, module: pl.LightningModule) -> float:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)
        return self.clock()

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.workers = getattr(trainer.train_dataloader, "num_workers", 0)
        self.accumulation = trainer.accumulate_grad_batches
        self.cudnn_benchmark = torch.backends.cudnn.benchmark
        if module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(module.device)
            self._memory_before = torch.cuda.memory_allocated(module.device) / 2**20
        else:
            self._memory_before = peak_rss_mib()

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: dict[str, Any],
                             *args: Any) -> None:
        self._start = self._now(module)
        self.micro_batch = len(batch["index"])
        self._timed = trainer.global_step >= self.warmup
        if self._end is not None and self._timed:
            self.waits.append(self._start - self._end)

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: Any) -> None:
        self._end = self._now(module)
        if self._timed:
            self.steps.append(self._end - self._start)
            self.images += self.micro_batch

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if module.device.type == "cuda":
            self.peak_mib = torch.cuda.max_memory_allocated(module.device) / 2**20 - self._memory_before
        else:
            self.peak_mib = peak_rss_mib() - self._memory_before


def bench_config(name: str, args: argparse.Namespace, checkpoint_dir: str) -> TrainConfig:
    """Method ``name`` at the preset, with views of ``args.size`` px, for warm-up + timed batches; ``last.ckpt`` is
    written once, after them."""
    config = TrainConfig.preset(args.preset, method=name)
    batch = args.batch or config.batch_size
    return TrainConfig.preset(
        args.preset, method=name, dataset="synthetic", image_size=args.size, pretrained=None, batch_size=batch,
        num_images=args.num_images or 4 * config.effective_batch(), epochs=1000, max_steps=args.warmup + args.steps,
        device=args.device, precision=args.precision, checkpoint_dir=checkpoint_dir, progress_bar=False,
        collapse_every=10**6, checkpoint_every=10**6,
    )


def measure(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train ``name`` for the benchmark's batches in this process, on :class:`DrawnShapes` at the stored side (the
    preset's ``store_side``, else the view size); its figures as a dict."""
    with tempfile.TemporaryDirectory(prefix=f"fgssl-bench-{name}-") as directory:
        config = bench_config(name, args, directory)
        images = DrawnShapes(config.store_side or config.image_size, config.num_images, config.seed)
        timer = StepTimer(args.warmup)
        _, history = fit(config, dataset=images, callbacks=[timer])
    if len(timer.steps) < args.steps:
        raise RuntimeError(f"{name} ran {len(timer.steps)} timed batches of {args.steps}")
    wall = sum(timer.steps) + sum(timer.waits)
    return {
        "method": name, "micro_batch": timer.micro_batch, "accumulation": timer.accumulation,
        "size": config.image_size, "backbone": config.backbone, "precision": config.resolved_precision(),
        "workers": timer.workers, "views": history.view_pipeline, "cudnn_benchmark": timer.cudnn_benchmark,
        "shapes": len({images.shape(i) for i in range(len(images))}),
        "step_ms": 1000 * statistics.median(timer.steps), "images_per_s": timer.images / wall,
        "peak_mib": timer.peak_mib, "data_wait": sum(timer.waits) / wall,
    }


def run_method(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """:func:`measure` in a fresh process; raises ``RuntimeError`` with the end of its output if it fails."""
    command = [sys.executable, "-m", "fgssl_lib.bench", "gpu", "--one", name, "--preset", args.preset,
               "--device", args.device, "--size", str(args.size), "--steps", str(args.steps), "--warmup",
               str(args.warmup), "--precision", args.precision]
    for option, value in (("--batch", args.batch), ("--num-images", args.num_images)):
        if value:
            command += [option, str(value)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"no result after {args.timeout} s (--timeout)") from None
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {(done.stderr or done.stdout)[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fgssl_lib.bench gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="seconds on a CPU: " + ", ".join(
        f"{k}={v}" for k, v in TINY.items()))
    parser.add_argument("--preset", default="paper", choices=PRESETS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--size", type=int, default=224,
                        help="view size (px); images are drawn at the preset's store_side, else at this size")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: the preset's)")
    parser.add_argument("--num-images", type=int, default=None, help="training images (default 4 batches)")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per method")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before them")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--timeout", type=int, default=240, help="seconds one method may take")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: one method, as JSON
    args = parser.parse_args(argv)
    if args.tiny:
        for key, value in TINY.items():
            setattr(args, key, value)
    device = resolve_device(args.device)
    args.device = str(device)
    if args.one is not None:
        print(json.dumps(measure(args.one, args)))
        return 0

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# bench gpu: {name}; preset={args.preset}, synthetic {args.size} px, {args.warmup} + {args.steps} steps, "
          f"precision={args.precision}")
    failed = {}
    for method in args.methods:
        try:
            r = run_method(method, args)
        except Exception as error:  # one method's failure is reported, the others still run
            failed[method] = str(error)
            print(f"method {method} FAILED: {str(error).strip().splitlines()[-1] if str(error).strip() else error}")
            continue
        print(f"method {method} {r['backbone']} micro-batch {r['micro_batch']} x {r['accumulation']} {r['precision']}: "
              f"batch {r['step_ms']:.1f} ms, {r['images_per_s']:.1f} images/s, peak {r['peak_mib']:.0f} MiB, "
              f"waiting for data {100 * r['data_wait']:.0f} % ({r['workers']} workers, {r['views']} views, "
              f"{r['shapes']} image shapes)")
    if failed:
        print(f"bench gpu: FAILED: {', '.join(failed)}", file=sys.stderr)
        for method, error in failed.items():
            print(f"--- {method}\n{error}", file=sys.stderr)
        return 1
    return 0
