"""``python -m fgssl_lib.bench pipeline``: what making the views costs a training step, per view pipeline.

Each method (default BYOL, CVSA with SaliencySwap, BYOL+DiLo) is trained as ``fit`` trains it at ``--preset``
(default ``cpu``), with ``--warmup`` untimed steps first, and timed per step:

- ``per_sample``: views made one sample at a time in the ``DataLoader``'s workers (the preset's, one at ``cpu``),
  ``--steps`` steps;
- ``batched``: views made in batches on the training device from the training store
  (:class:`~fgssl_lib.train.data.BatchedViewData`);
- ``premade``: the same batches with their views made before the run started, served from memory
  (:class:`PremadeViews`): the limit, a step with no view to make.

``batched`` and ``premade`` steps alternate within one batched run (``2 x --steps`` steps; both see the same views),
so that the load of a shared machine weighs on both alike. A step's time runs from the end of the previous step to
the end of its optimizer step (loading, views and transfer included: :class:`~fgssl_lib.bench.gpu.StepTimer`),
median over the timed steps, on ``--clock``: ``cpu`` (the default on a CPU) counts the CPU seconds of the process
and of its loader workers (:func:`cpu_seconds`), which other load hardly changes and which bounds how many runs a
CPU trains at once; ``wall`` (the default on a GPU) the wall clock. With ``--rounds`` the best round is kept. Prints
per method ``pipeline <method> per_sample_ms=<x> batched_ms=<x> premade_ms=<x> views_share=<x.xx>`` with
``views_share = (batched - premade) / batched``, the share of a batched step spent on views (target <= 0.10).

``--tiny`` runs the same path in seconds (smoke preset, 3 steps): what CI runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from fgssl_lib.bench.gpu import StepTimer
from fgssl_lib.config import PRESETS, resolve_device
from fgssl_lib.train import TrainConfig, fit
from fgssl_lib.train.data import BatchedViewData

METHODS = ("byol", "cvsa", "byol_dilo")
"""BYOL (RandomResizedCrop views), CVSA (SaliencySwap ``same``) and BYOL+DiLo (copy-paste)."""
TINY = {"preset": "smoke", "steps": 3, "warmup": 1, "rounds": 1}
CLOCKS = ("auto", "cpu", "wall")


def cpu_seconds() -> float:
    """CPU seconds used so far by this process and by its live children (the loader's workers; read from Linux's
    ``/proc``, whose clock ticks are coarse)."""
    total, tick = time.process_time(), os.sysconf("SC_CLK_TCK")
    for children in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        for child in children.read_text().split():
            try:
                fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # it has just exited
                continue
            total += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return total


class PremadeViews(pl.Callback):
    """Makes the two views of the run's first ``count`` batches before it starts, with the run's own generator, and
    serves them from memory (keyed by epoch and indices) instead of making them; with ``alternate``, the steps of
    even global step make theirs as the batched pipeline does (the same views), the others are served."""

    def __init__(self, count: int, alternate: bool = False) -> None:
        self.count, self.alternate = count, alternate

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        data = trainer.datamodule
        if not isinstance(data, BatchedViewData):
            raise TypeError("premade views replace the batched pipeline's views: train with view_pipeline='batched'")
        views, made = data.views, {}
        loader, epoch = data.train_dataloader(), 0
        while len(made) < self.count:
            loader.sampler.set_epoch(epoch)
            for batch in loader:
                rows = data.store.batch(batch) if data.resident else batch  # positions, or the loader's rows
                made[(epoch, tuple(rows["index"].tolist()))] = views(rows, epoch, source=data.store.batch)
                if len(made) == self.count:
                    break
            epoch += 1

        def serve(batch: dict[str, torch.Tensor], epoch: int, source: Any = None) -> dict[str, Any]:
            if self.alternate and trainer.global_step % 2 == 0:
                return views(batch, epoch, source=source)
            return made[(epoch, tuple(batch["index"].tolist()))]

        data.views = serve


def step_ms(method: str, batched: bool, args: argparse.Namespace) -> list[float]:
    """ms of each timed training step of ``method``: per-sample views, or batched and premade steps alternating."""
    timer = StepTimer(args.warmup, cpu_seconds if args.clock == "cpu" else time.perf_counter)
    steps = args.warmup + (2 if batched else 1) * args.steps
    with tempfile.TemporaryDirectory(prefix=f"fgssl-pipeline-{method}-") as directory:
        config = TrainConfig.preset(
            args.preset, method=method, view_pipeline="batched" if batched else "per_sample", epochs=1000,
            max_steps=steps, device=args.device, checkpoint_dir=directory, progress_bar=False, collapse_every=10**6)
        fit(config, callbacks=[timer, *([PremadeViews(steps, alternate=True)] if batched else [])])
    if len(timer.steps) < steps - args.warmup:
        raise RuntimeError(f"{method} ran {len(timer.steps)} timed steps of {steps - args.warmup}")
    return [1000 * (wait + step) for wait, step in zip(timer.waits, timer.steps)]


def measure(method: str, args: argparse.Namespace) -> dict[str, float]:
    """Median ms per step of each pipeline (best of ``args.rounds`` rounds)."""
    best = {"per_sample": float("inf"), "batched": float("inf"), "premade": float("inf")}
    for _ in range(args.rounds):
        best["per_sample"] = min(best["per_sample"], statistics.median(step_ms(method, False, args)))
        both = step_ms(method, True, args)  # timed steps start at global step `warmup`
        made = [ms for step, ms in enumerate(both, start=args.warmup) if step % 2 == 0]
        served = [ms for step, ms in enumerate(both, start=args.warmup) if step % 2]
        best["batched"] = min(best["batched"], statistics.median(made))
        best["premade"] = min(best["premade"], statistics.median(served))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fgssl_lib.bench pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="seconds: " + ", ".join(f"{k}={v}" for k, v in TINY.items()))
    parser.add_argument("--preset", default="cpu", choices=PRESETS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--steps", type=int, default=20, help="timed steps per pipeline (default 20)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before them (default 5)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds; the best is kept (default 1)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--clock", default="auto", choices=CLOCKS, help="cpu seconds or wall time (default: cpu "
                        "on a CPU, wall on a GPU)")
    args = parser.parse_args(argv)
    if args.tiny:
        for key, value in TINY.items():
            setattr(args, key, value)
    device = resolve_device(args.device)
    if args.clock == "auto":
        args.clock = "wall" if device.type == "cuda" else "cpu"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"# bench pipeline: {name}; preset={args.preset}, {args.warmup} + {args.steps} steps, {args.clock} clock, "
          f"best of {args.rounds} rounds", flush=True)
    for method in args.methods:
        ms = measure(method, args)
        share = (ms["batched"] - ms["premade"]) / ms["batched"]
        print(f"pipeline {method} per_sample_ms={ms['per_sample']:.1f} batched_ms={ms['batched']:.1f} "
              f"premade_ms={ms['premade']:.1f} views_share={share:.2f}", flush=True)
    return 0
