"""``python -m fgssl_lib.bench gpu``: the one command to run when a GPU is at hand.

Every method is trained as ``fit`` trains it at ``--preset`` (default ``paper``: ResNet-50, the papers' batch sizes,
heads and ``precision="auto"``), on the synthetic benchmark rendered at ``--size`` px (default 224), for ``--warmup``
untimed and ``--steps`` timed steps, each method in its own process (so one failure, or one method's memory, never
touches another). Initialisation is random (``pretrained=None``): it changes no timing, and nothing is downloaded.
Per method it prints the median step time (from the batch's arrival on the device to the end of the optimizer
step), images/s over the timed steps, the peak memory (CUDA: ``max_memory_allocated`` during training; CPU: growth of
the peak resident set size) and the fraction of the timed wall time spent waiting for data (from one step's end to
the next step's start: loading, views, transfer), with the loader's workers and where the views were made
(``batched``: on the training device, so the wait is mostly view making; ``per_sample``: in the workers). It exits
non-zero naming every method that failed.

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

from fgssl_lib.bench.methods import peak_rss_mib
from fgssl_lib.config import PRESETS, resolve_device
from fgssl_lib.train import TrainConfig, fit

METHODS = ("supervised", "byol", "mocov2", "byol_dilo", "cvsa", "lcr")
"""The methods measured by default: each baseline, DiLo's views, and the two methods of the book."""
TINY = {"preset": "smoke", "device": "cpu", "size": 32, "batch": 8, "steps": 3, "warmup": 1, "num_images": 32}


class StepTimer(pl.Callback):
    """Time of every training step and of the wait for its batch, after ``warmup`` steps; peak memory. ``clock``:
    seconds, default the wall clock (after a CUDA synchronisation)."""

    def __init__(self, warmup: int, clock: Callable[[], float] = time.perf_counter) -> None:
        self.warmup = warmup
        self.clock = clock
        self.steps: list[float] = []  # s, batch on the device -> optimizer step done
        self.waits: list[float] = []  # s, previous step done -> this batch on the device
        self._start = self._end = None
        self._memory_before = 0.0
        self.peak_mib = 0.0
        self.workers = 0

    def _now(self, module: pl.LightningModule) -> float:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)
        return self.clock()

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.workers = getattr(trainer.train_dataloader, "num_workers", 0)
        if module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(module.device)
            self._memory_before = torch.cuda.memory_allocated(module.device) / 2**20
        else:
            self._memory_before = peak_rss_mib()

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, *args: Any) -> None:
        self._start = self._now(module)
        if self._end is not None and trainer.global_step >= self.warmup:
            self.waits.append(self._start - self._end)

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: Any) -> None:
        self._end = self._now(module)
        if trainer.global_step > self.warmup:  # global_step counts this step already
            self.steps.append(self._end - self._start)

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if module.device.type == "cuda":
            self.peak_mib = torch.cuda.max_memory_allocated(module.device) / 2**20 - self._memory_before
        else:
            self.peak_mib = peak_rss_mib() - self._memory_before


def bench_config(name: str, args: argparse.Namespace, checkpoint_dir: str) -> TrainConfig:
    """Method ``name`` at the preset, on synthetic images at ``args.size`` px, for warm-up + timed steps."""
    config = TrainConfig.preset(args.preset, method=name)
    batch = args.batch or config.batch_size
    return TrainConfig.preset(
        args.preset, method=name, dataset="synthetic", image_size=args.size, pretrained=None, batch_size=batch,
        num_images=args.num_images or 4 * batch, epochs=1000, max_steps=args.warmup + args.steps,
        device=args.device, precision=args.precision, checkpoint_dir=checkpoint_dir, progress_bar=False,
        collapse_every=10**6,
    )


def measure(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train ``name`` for the benchmark's steps in this process; its figures as a dict."""
    with tempfile.TemporaryDirectory(prefix=f"fgssl-bench-{name}-") as directory:
        config = bench_config(name, args, directory)
        timer = StepTimer(args.warmup)
        _, history = fit(config, callbacks=[timer])
    if len(timer.steps) < args.steps:
        raise RuntimeError(f"{name} ran {len(timer.steps)} timed steps of {args.steps}")
    wall = sum(timer.steps) + sum(timer.waits)
    return {
        "method": name, "batch": config.batch_size, "size": config.image_size, "backbone": config.backbone,
        "precision": config.resolved_precision(), "workers": timer.workers, "views": history.view_pipeline,
        "step_ms": 1000 * statistics.median(timer.steps), "images_per_s": config.batch_size * len(timer.steps) / wall,
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
    parser.add_argument("--size", type=int, default=224, help="image size of the synthetic benchmark (px)")
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
        print(f"method {method} {r['backbone']} batch {r['batch']} {r['precision']}: step {r['step_ms']:.1f} ms, "
              f"{r['images_per_s']:.1f} images/s, peak {r['peak_mib']:.0f} MiB, "
              f"waiting for data {100 * r['data_wait']:.0f} % ({r['workers']} workers, {r['views']} views)")
    if failed:
        print(f"bench gpu: FAILED: {', '.join(failed)}", file=sys.stderr)
        for method, error in failed.items():
            print(f"--- {method}\n{error}", file=sys.stderr)
        return 1
    return 0
