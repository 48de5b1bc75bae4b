"""``python -m fgssl_lib.bench views [--sizes 96 224] [--batched-sizes 64 224]``: two-view samples/s of each view
generator, side by side, and of the batched generators against the per-sample ones.

For each view size ``S`` the same in-memory samples (sizes between ``S`` and ``2 S``, an elliptic object with its mask
and box, like a fine-grained photo) go through the standard RRC views, SaliencySwap ``same`` and ``other`` and DiLo
copy-paste, each with its default parameters and the MoCo v2 photometric ops, on one thread (as in a ``DataLoader``
worker). Rounds are interleaved and the best round of each generator is kept, which makes the ratios robust to other
load on the machine. Prints ``views <name> <samples/s> ratio_vs_rrc=<x.xx> size=<S>`` per generator.

Then, for each size of ``--batched-sizes``, one batch of store rows (:func:`store_batch`: 64 x 64 images at 64 px like
the synthetic benchmark, about 500 x 350 at 224 px like CUB) goes through each batched generator of
:mod:`fgssl_lib.views.batched` and, sample by sample plus collation, through its per-sample twin: RRC with the BYOL and
the MoCo v2 photometric ops, SaliencySwap ``same`` and DiLo copy-paste (both MoCo v2, as ``fit`` builds them).
Two-view samples per CPU-second (process time, one torch and OpenCV thread), best of interleaved rounds:
``views <generator> <S> batched_per_s=<x> per_sample_per_s=<x> ratio=<x.xx>``.

Last, the operator calls per step of each batched generator (:func:`operator_calls`: every ``aten`` op that
``torch.profiler`` records while it makes one batch, on the CPU) at view size ``--ops-size``, for each batch of
``--ops-batches``, on the per-view path the CPU takes and on the grouped path other devices take (run here on the
CPU, ``grouped=True``): ``views <generator> ops batches=<B,..> ops_per_step=<n,..> grouped_ops_per_step=<n,..>
grouped_growth=<x.xx>``, the growth being the last batch's count over the first's (1.00: launches per step do not
grow with the batch).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import cv2
import torch
from torch.utils.data import default_collate

from fgssl_lib.data.sample import mask_to_box
from fgssl_lib.views import build_batched_views, build_views
from fgssl_lib.views.batched.generators import HOST_DRAWS, BatchedTwoView


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


def image_shape(size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Ranges ``(heights, widths)`` of the stored images for views of ``size``: the synthetic benchmark's square images
    at up to 64 px, CUB-like photos (about 500 x 350, landscape) above."""
    if size <= 64:
        return (size, size), (size, size)
    return (300, 375), (400, 500)


def store_batch(size: int, count: int, seed: int = 0) -> tuple[dict, list[dict]]:
    """A batch of ``count`` store rows (zero-padded uint8 images with an elliptic object, its mask, box, soft saliency
    ``round(255 S)`` and valid ``hw``) and the same samples as per-sample dicts (``saliency`` float in [0, 1])."""
    generator = torch.Generator().manual_seed(seed)
    (h_lo, h_hi), (w_lo, w_hi) = image_shape(size)
    shapes = [(int(torch.randint(h_lo, h_hi + 1, (), generator=generator)),
               int(torch.randint(w_lo, w_hi + 1, (), generator=generator))) for _ in range(count)]
    rows = dict(image=torch.zeros(count, 3, h_hi, w_hi, dtype=torch.uint8),
                mask=torch.zeros(count, h_hi, w_hi, dtype=torch.uint8),
                saliency=torch.zeros(count, h_hi, w_hi, dtype=torch.uint8), box=torch.zeros(count, 4),
                hw=torch.tensor(shapes), label=torch.arange(count) % 10, index=torch.arange(count))
    samples = []
    for index, (height, width) in enumerate(shapes):
        image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
        cy, cx, ry, rx = torch.rand(4, generator=generator).tolist()
        ys = (torch.arange(height)[:, None] - (0.3 + 0.4 * cy) * height) / ((0.2 + 0.2 * ry) * height)
        xs = (torch.arange(width)[None, :] - (0.3 + 0.4 * cx) * width) / ((0.2 + 0.2 * rx) * width)
        radius = ys**2 + xs**2
        mask, saliency = (radius <= 1).to(torch.uint8), (1.5 - radius).clamp(0, 1)
        box = mask_to_box(mask)
        rows["image"][index, :, :height, :width], rows["mask"][index, :height, :width] = image, mask
        rows["saliency"][index, :height, :width] = torch.round(255 * saliency).to(torch.uint8)
        rows["box"][index] = box
        samples.append(dict(image=image, label=index % 10, box=box, mask=mask, saliency=saliency, index=index))
    return rows, samples


BATCHED_CASES = {
    "rrc_byol": dict(name="rrc", photometric="byol"),
    "rrc_mocov2": dict(name="rrc", photometric="mocov2"),
    "saliency_swap": dict(name="saliency_swap", mode="same"),
    "copy_paste": dict(name="copy_paste"),
}
"""The generators of the batched comparison: name -> ``build_views`` / ``build_batched_views`` arguments."""


def measure_batched(size: int, count: int, rounds: int) -> dict[str, tuple[float, float]]:
    """Per generator of :data:`BATCHED_CASES`: ``(batched, per-sample)`` two-view samples per CPU-second at ``size``,
    best of ``rounds`` interleaved rounds over one batch of ``count`` samples."""
    rows, samples = store_batch(size, count)
    source = lambda indices: {key: value[indices] for key, value in rows.items()}  # noqa: E731 (store rows)
    pairs = {}
    for name, case in BATCHED_CASES.items():
        params = {key: value for key, value in case.items() if key != "name"}
        same = case["name"] == "saliency_swap"
        per_sample = build_views(case["name"], size, seed=0, **params, **({"dataset": samples} if same else {}))
        batched = build_batched_views(case["name"], size, seed=0, **params, **({"dataset_size": count} if same else {}))
        pairs[name] = (batched, per_sample)
    best = {name: [float("inf"), float("inf")] for name in pairs}
    for epoch in range(rounds):
        for name, (batched, per_sample) in pairs.items():
            start = time.process_time()
            batched(rows, epoch, source=source)
            middle = time.process_time()
            per_sample.set_epoch(epoch)
            default_collate([per_sample(sample) for sample in samples])
            end = time.process_time()
            best[name] = [min(best[name][0], middle - start), min(best[name][1], end - middle)]
    return {name: (count / batched, count / per_sample) for name, (batched, per_sample) in best.items()}


def operator_calls(views: BatchedTwoView, rows: dict, source: Callable) -> int:
    """The operator calls (``aten`` ops, nested ones included) that ``torch.profiler`` records while ``views`` makes
    the views of the store rows ``rows``, leaving out the draws from background pools (labelled
    :data:`~fgssl_lib.views.batched.generators.HOST_DRAWS`: per view on the host from the sample's own generator, no
    kernel on the training device)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        views(rows, 0, source=source)
    count = 0
    for event in profiler.events():
        parent = event.cpu_parent
        while parent is not None and parent.name != HOST_DRAWS:
            parent = parent.cpu_parent
        count += event.name.startswith("aten::") and parent is None
    return count


def measure_operator_calls(size: int, batches: list[int]) -> dict[str, tuple[list[int], list[int]]]:
    """Per generator of :data:`BATCHED_CASES`: its operator calls per step at view size ``size`` for each batch of
    ``batches``, on the per-view (CPU) path and on the grouped path."""
    counts: dict[str, tuple[list[int], list[int]]] = {name: ([], []) for name in BATCHED_CASES}
    for batch in batches:
        rows, _ = store_batch(size, batch)
        source = lambda indices: {key: value[indices] for key, value in rows.items()}  # noqa: E731 (store rows)
        for name, case in BATCHED_CASES.items():
            params = {key: value for key, value in case.items() if key != "name"}
            params |= {"dataset_size": batch} if case["name"] == "saliency_swap" else {}
            for path, grouped in zip(counts[name], (False, True)):
                views = build_batched_views(case["name"], size, seed=0, grouped=grouped, **params)
                path.append(operator_calls(views, rows, source))
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fgssl_lib.bench views", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[96, 224],
                        help="view sizes S (default 96 224; none to skip)")
    parser.add_argument("--images", type=int, default=64, help="samples per round (default 64)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the best is kept (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, like a DataLoader worker)")
    parser.add_argument("--batched-sizes", type=int, nargs="*", default=[64, 224],
                        help="view sizes of the batched vs per-sample comparison (default 64 224; none to skip)")
    parser.add_argument("--batch", type=int, default=64, help="batch of the batched comparison (default 64)")
    parser.add_argument("--batched-rounds", type=int, default=3, help="its interleaved rounds (default 3)")
    parser.add_argument("--ops-batches", type=int, nargs="*", default=[64, 256],
                        help="batches whose operator calls per step are counted (default 64 256; none to skip)")
    parser.add_argument("--ops-size", type=int, default=64, help="view size of the operator count (default 64)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2_threads = cv2.getNumThreads()
    cv2.setNumThreads(args.threads)
    torch.manual_seed(0)
    try:
        for size in args.sizes:
            rates = measure(size, args.images, args.rounds)
            for name, rate in rates.items():
                print(f"views {name} {rate:.1f} ratio_vs_rrc={rate / rates['rrc']:.2f} size={size}", flush=True)
        for size in args.batched_sizes:
            for name, (batched, per_sample) in measure_batched(size, args.batch, args.batched_rounds).items():
                print(f"views {name} {size} batched_per_s={batched:.1f} per_sample_per_s={per_sample:.1f} "
                      f"ratio={batched / per_sample:.2f}", flush=True)
        if args.ops_batches:
            for name, (per_view, grouped) in measure_operator_calls(args.ops_size, args.ops_batches).items():
                print(f"views {name} ops batches={','.join(map(str, args.ops_batches))} "
                      f"ops_per_step={','.join(map(str, per_view))} grouped_ops_per_step={','.join(map(str, grouped))} "
                      f"grouped_growth={grouped[-1] / grouped[0]:.2f}", flush=True)
    finally:
        cv2.setNumThreads(cv2_threads)
    return 0
