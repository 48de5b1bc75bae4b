"""``python -m fgssl_lib.bench pipeline``: what making the views costs a training step, per view pipeline.

Each method (default BYOL, CVSA with SaliencySwap, BYOL+DiLo) is trained as ``fit`` trains it at ``--preset``
(default ``cpu``), for ``--warmup`` untimed and ``--steps`` timed steps, three times:

- ``per_sample``: views made one sample at a time in the ``DataLoader``'s workers (the preset's, one at ``cpu``);
- ``batched``: views made in batches on the training device from the training store
  (:class:`~fgssl_lib.train.data.BatchedViewData`);
- ``premade``: the batched run's batches, their views made before the run starts and served from memory
  (:class:`PremadeViews`): the limit, a step with no view to make.

A step's time runs from the end of the previous step to the end of its optimizer step (loading, views and transfer
included: :class:`~fgssl_lib.bench.gpu.StepTimer`); the median over the timed steps is kept, and with ``--rounds``
the best round of each pipeline (the machine is shared: rounds are interleaved). Prints per method
``pipeline <method> per_sample_ms=<x> batched_ms=<x> premade_ms=<x> views_share=<x.xx>`` with
``views_share = (batched - premade) / batched``, the share of a batched step spent on views (target <= 0.10).

``--tiny`` runs the same path in seconds (smoke preset, 3 steps): what CI runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from typing import Any

import pytorch_lightning as pl
import torch

from fgssl_lib.bench.gpu import StepTimer
from fgssl_lib.config import PRESETS, resolve_device
from fgssl_lib.train import TrainConfig, fit
from fgssl_lib.train.data import BatchedViewData

METHODS = ("byol", "cvsa", "byol_dilo")
"""BYOL (RandomResizedCrop views), CVSA (SaliencySwap ``same``) and BYOL+DiLo (copy-paste)."""
PIPELINES = ("per_sample", "batched", "premade")
TINY = {"preset": "smoke", "steps": 3, "warmup": 1, "rounds": 1}


class PremadeViews(pl.Callback):
    """Makes the two views of the run's first ``count`` batches before it starts, with the run's own generator, and
    then serves them from memory (keyed by epoch and indices) instead of making them."""

    def __init__(self, count: int) -> None:
        self.count = count

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        data = trainer.datamodule
        if not isinstance(data, BatchedViewData):
            raise TypeError("premade views replace the batched pipeline's views: train with view_pipeline='batched'")
        made: dict[tuple[int, tuple[int, ...]], dict[str, Any]] = {}
        loader, epoch = data.train_dataloader(), 0
        while len(made) < self.count:
            loader.sampler.set_epoch(epoch)
            for batch in loader:
                rows = data.store.batch(batch) if data.resident else batch  # positions, or the loader's rows
                made[(epoch, tuple(rows["index"].tolist()))] = data.views(rows, epoch, source=data.store.batch)
                if len(made) == self.count:
                    break
            epoch += 1
        data.views = lambda batch, epoch, source=None: made[(epoch, tuple(batch["index"].tolist()))]


def step_ms(method: str, pipeline: str, args: argparse.Namespace) -> float:
    """Median ms per timed training step of ``method`` with ``pipeline``."""
    timer = StepTimer(args.warmup)
    callbacks: list[pl.Callback] = [timer]
    if pipeline == "premade":
        callbacks.append(PremadeViews(args.warmup + args.steps))
    with tempfile.TemporaryDirectory(prefix=f"fgssl-pipeline-{method}-") as directory:
        config = TrainConfig.preset(
            args.preset, method=method, view_pipeline="per_sample" if pipeline == "per_sample" else "batched",
            epochs=1000, max_steps=args.warmup + args.steps, device=args.device, checkpoint_dir=directory,
            progress_bar=False, collapse_every=10**6)
        fit(config, callbacks=callbacks)
    if len(timer.steps) < args.steps:
        raise RuntimeError(f"{method} ({pipeline}) ran {len(timer.steps)} timed steps of {args.steps}")
    return 1000 * statistics.median(wait + step for wait, step in zip(timer.waits, timer.steps))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fgssl_lib.bench pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="seconds: " + ", ".join(f"{k}={v}" for k, v in TINY.items()))
    parser.add_argument("--preset", default="cpu", choices=PRESETS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run (default 20)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before them (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the best is kept (default 2)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    if args.tiny:
        for key, value in TINY.items():
            setattr(args, key, value)
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"# bench pipeline: {name}; preset={args.preset}, {args.warmup} + {args.steps} steps, best of {args.rounds} "
          "rounds", flush=True)
    for method in args.methods:
        best = {pipeline: float("inf") for pipeline in PIPELINES}
        for _ in range(args.rounds):
            for pipeline in PIPELINES:
                best[pipeline] = min(best[pipeline], step_ms(method, pipeline, args))
        share = (best["batched"] - best["premade"]) / best["batched"]
        print(f"pipeline {method} per_sample_ms={best['per_sample']:.1f} batched_ms={best['batched']:.1f} "
              f"premade_ms={best['premade']:.1f} views_share={share:.2f}", flush=True)
    return 0
