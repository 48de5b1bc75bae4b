"""``python -m fgssl_lib.bench layout``: a training step with the backbone in ``channels_last`` against NCHW.

Each method is built as the trainer builds it for ``--preset`` (default ``cpu``), twice: once as built (weights and
stage maps ``channels_last``, :class:`~fgssl_lib.models.backbones.Backbone`'s default) and once switched to
``torch.contiguous_format``. Both take the same step as ``bench methods`` (its :class:`StepRunner`: EMA update,
losses, backward, SGD step) on the same random batch, interleaved step by step so that a shared machine's load weighs
on both alike; median over ``--steps`` steps. Prints per method
``layout <method> contiguous_ms=<x> channels_last_ms=<x> speedup=<x.xx> first_loss_gap=<x>``: the speedup is
contiguous / channels_last, the gap the difference of the two layouts' losses before any step (float rounding only).

``--tiny`` runs the same path in seconds (smoke preset, 2 steps): what CI runs.
"""

from __future__ import annotations

import argparse

import torch

from fgssl_lib.bench.methods import StepRunner, bench_config, step_parser, step_times
from fgssl_lib.config import resolve_device
from fgssl_lib.models.backbones import Backbone

METHODS = ("byol", "cvsa", "mocov2", "lcr")
TINY = {"preset": "smoke", "steps": 2, "warmup": 1, "batch": 8}


def runners(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, StepRunner]:
    """The method ``name`` twice, same initial weights and batch: ``channels_last`` (as built) and NCHW."""
    config = bench_config(name, args)
    pair = {"contiguous": StepRunner(config, device), "channels_last": StepRunner(config, device)}
    for module in pair["contiguous"].method.modules():  # the online and the momentum backbone
        if isinstance(module, Backbone):
            module.use_memory_format(torch.contiguous_format)
    return pair


def first_loss_gap(pair: dict[str, StepRunner]) -> float:
    """Absolute difference of the two layouts' losses on their shared batch, before any step (with autograd on:
    LCR's loss differentiates through its Grad-CAM)."""
    losses = [runner.method.losses(runner.data)["loss"].item() for runner in pair.values()]
    return abs(losses[0] - losses[1])


def main(argv: list[str] | None = None) -> int:
    parser = step_parser("layout", __doc__, steps=10)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--tiny", action="store_true", help="smoke preset, 2 steps: the path in seconds (CI)")
    args = parser.parse_args(argv)
    if args.tiny:
        for key, value in TINY.items():
            setattr(args, key, value)
    device = resolve_device(args.device)
    print(f"# preset={args.preset} batch={args.batch} device={device} steps={args.steps} threads="
          f"{torch.get_num_threads()}")
    for name in args.methods:
        pair = runners(name, args, device)
        gap = first_loss_gap(pair)
        ms = step_times(pair, args.steps, args.warmup)
        print(f"layout {name} contiguous_ms={ms['contiguous']:.1f} channels_last_ms={ms['channels_last']:.1f} "
              f"speedup={ms['contiguous'] / ms['channels_last']:.2f} first_loss_gap={gap:.2e}")
    return 0
