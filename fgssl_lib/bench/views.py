"""``python -m fgssl_lib.bench views [--sizes 96 224]``: two-view samples/s of each view generator, side by side.

For each view size ``S`` the same in-memory samples (sizes between ``S`` and ``2 S``, an elliptic object with its mask
and box, like a fine-grained photo) go through the standard RRC views, SaliencySwap ``same`` and ``other`` and DiLo
copy-paste, each with its default parameters and the MoCo v2 photometric ops, on one thread (as in a ``DataLoader``
worker). Rounds are interleaved and the best round of each generator is kept, which makes the ratios robust to other
load on the machine. Prints ``views <name> <samples/s> ratio_vs_rrc=<x.xx> size=<S>`` per generator.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from fgssl_lib.data.sample import mask_to_box
from fgssl_lib.views import build_views


def make_samples(size: int, count: int, seed: int = 0) -> list[dict]:
    """``count`` random samples with ``H, W`` in ``[size, 2 size]`` and an elliptic object covering ~10-50% of it."""
    generator = torch.Generator().manual_seed(seed)
    samples = []
    for index in range(count):
        height, width = (int(v) for v in torch.randint(size, 2 * size + 1, (2,), generator=generator))
        image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
        cy, cx, ry, rx = torch.rand(4, generator=generator).tolist()
        ys = (torch.arange(height)[:, None] - (0.3 + 0.4 * cy) * height) / ((0.2 + 0.2 * ry) * height)
        xs = (torch.arange(width)[None, :] - (0.3 + 0.4 * cx) * width) / ((0.2 + 0.2 * rx) * width)
        mask = (ys**2 + xs**2 <= 1).to(torch.uint8)
        samples.append(dict(image=image, label=index % 10, box=mask_to_box(mask), mask=mask, index=index))
    return samples


def generators(size: int, samples: list[dict]) -> dict[str, Callable]:
    """The four generators of the benchmark, at their defaults."""
    return {
        "rrc": build_views("rrc", size),
        "saliency_swap_same": build_views("saliency_swap", size, mode="same", dataset=samples),
        "saliency_swap_other": build_views("saliency_swap", size, mode="other"),
        "copy_paste": build_views("copy_paste", size),
    }


def measure(size: int, count: int, rounds: int) -> dict[str, float]:
    """Best-round two-view samples/s of each generator at view size ``size``."""
    samples = make_samples(size, count)
    views = generators(size, samples)
    best = {name: float("inf") for name in views}
    for _ in range(rounds):
        for name, transform in views.items():
            start = time.perf_counter()
            for sample in samples:
                transform(sample)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: count / seconds for name, seconds in best.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fgssl_lib.bench views", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 224], help="view sizes S (default 96 224)")
    parser.add_argument("--images", type=int, default=64, help="samples per round (default 64)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the best is kept (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, like a DataLoader worker)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for size in args.sizes:
        rates = measure(size, args.images, args.rounds)
        for name, rate in rates.items():
            print(f"views {name} {rate:.1f} ratio_vs_rrc={rate / rates['rrc']:.2f} size={size}", flush=True)
    return 0
