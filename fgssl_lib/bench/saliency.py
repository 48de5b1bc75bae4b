"""``python -m fgssl_lib.bench saliency``: speed of ``best_box`` and the OpenCV sources, and box quality per objective.

Prints one line per measurement:

- ``best_box size=<S> grid=<G> ... boxes/s``: one map at a time and batched (``best_boxes``) on random ``S x S`` maps;
- ``source <name> size=<S> ... ms/image`` for the OpenCV sources on random ``S x S`` images;

(rates per wall-clock second, and per CPU second of this process, which is robust to other jobs on shared cores);
- ``quality <source> objective=<o> iou=<mean IoU with the ground-truth box> area=<mean box area fraction>`` on the
  synthetic benchmark, for every best-box objective (skip with ``--quality-images 0``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from fgssl_lib.config import resolve_device
from fgssl_lib.saliency import OBJECTIVES, ModelSaliency, best_box, best_boxes, build_saliency


def per_second(fn: Callable[[], object], items: int, min_time: float) -> tuple[float, float]:
    """Items per second of ``fn`` (``items`` per call) after a warm-up call: per wall-clock and per CPU second.

    The CPU-time rate is what an idle machine would show when the benchmark shares its cores with other jobs.
    """
    fn()
    calls, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while (elapsed := time.perf_counter() - start) < min_time or calls < 2:
        fn()
        calls += 1
    return calls * items / elapsed, calls * items / (time.process_time() - cpu_start)


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def coarse_mask_map(sample: dict, cells: int = 8) -> torch.Tensor:
    """A CAM-like stand-in: the ground-truth mask average-pooled to ``cells x cells``, upsampled by ModelSaliency."""
    pooled = F.adaptive_avg_pool2d(sample["mask"][None, None].float(), cells)[:, 0]  # 1 x cells x cells
    return ModelSaliency(lambda images: pooled)(sample["image"])


def quality(num_images: int, grid: int) -> None:
    """Mean IoU with the ground-truth box of the best box of each source's map, per objective (synthetic benchmark)."""
    from fgssl_lib.data import load_dataset

    dataset = load_dataset("synthetic", split="train", num_images=num_images)
    samples = [dataset[i] for i in range(num_images)]
    sources = {name: build_saliency(name) for name in ("mask", "spectral_residual", "fine_grained", "centre")}
    for name, source in sources.items():
        maps = [source(s["image"], s) for s in samples]
        report_quality(name, maps, samples, grid)
    report_quality("coarse_mask_8x8", [coarse_mask_map(s) for s in samples], samples, grid)


def report_quality(name: str, maps: list[torch.Tensor], samples: list[dict], grid: int) -> None:
    for objective in OBJECTIVES:
        boxes = [best_box(m, grid, objective) for m in maps]
        iou = sum(box_iou(b, tuple(s["box"].tolist())) for b, s in zip(boxes, samples)) / len(samples)
        area = sum((b[2] - b[0]) * (b[3] - b[1]) / m.numel() for b, m in zip(boxes, maps)) / len(samples)
        print(f"quality {name} objective={objective} iou={iou:.3f} area={area:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fgssl_lib.bench saliency", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 64], help="map / image side in pixels")
    parser.add_argument("--grid", type=int, default=16, help="best_box grid steps per side")
    parser.add_argument("--batch", type=int, default=64, help="maps per best_boxes call")
    parser.add_argument("--device", default="cpu", help="device of the batched best_boxes maps ('auto' for CUDA)")
    parser.add_argument("--min-time", type=float, default=2.0, help="seconds per measurement")
    parser.add_argument("--quality-images", type=int, default=64, help="synthetic images for the quality lines")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    generator = torch.Generator().manual_seed(0)

    for size in args.sizes:
        one = torch.rand(size, size, generator=generator)
        batch = torch.rand(args.batch, size, size, generator=generator).to(device)
        for mode, fn, items in (
            ("single", lambda: best_box(one, args.grid), 1),
            (f"batched[{args.batch}, {device}]", lambda: best_boxes(batch, args.grid), args.batch),
        ):
            wall, cpu = per_second(fn, items, args.min_time)
            print(f"best_box size={size} grid={args.grid} {mode} {wall:.1f} boxes/s (per CPU second: {cpu:.1f})")
    for name in ("spectral_residual", "fine_grained"):
        source = build_saliency(name)
        for size in args.sizes:
            image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=generator)
            wall, cpu = per_second(lambda: source(image), 1, args.min_time)
            print(f"source {name} size={size} {1000 / wall:.2f} ms/image (CPU time: {1000 / cpu:.2f} ms/image)")
    if args.quality_images:
        quality(args.quality_images, args.grid)
    return 0
