"""``python -m fgssl_lib.bench eval``: seconds of the evaluation protocols at CUB size on random data.

Features: 5994 train / 5794 test x 512 and x 2048, 200 classes. Times ``knn_accuracy``, ``retrieval_metrics`` and a
100-epoch linear probe at one label fraction on features already in memory (cached), then MaxBoxAcc (V1 and V2) on
5794 random smooth CAMs at 224 px. Targets on the 2-core CPU machine: kNN and retrieval < 5 s each at 2048-d, linear
probe < 60 s, MaxBoxAcc < 60 s.

The machine is shared, so each line gives wall and CPU seconds, and the run uses ``--threads`` threads (torch and
numpy's BLAS; default: the cores left idle by the 1-minute load average, at least one). On a loaded machine one
thread is faster than two: OpenMP threads that wait for a descheduled sibling burn CPU without progress. MaxBoxAcc
uses one worker thread per core (its images are independent, so no thread waits for another).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits

from fgssl_lib.config import resolve_device
from fgssl_lib.eval import knn_accuracy, linear_probe, max_box_acc, retrieval_metrics
from fgssl_lib.eval.linear import fit_linear

CUB_TRAIN, CUB_TEST, CUB_CLASSES = 5994, 5794, 200
PARTS = ("knn", "retrieval", "linear", "maxboxacc")


def _timed(fn: Callable[[], Any]) -> tuple[str, Any]:
    """Run ``fn``; return ``"<wall> s (<cpu> cpu-s)"`` and its output. CPU seconds (all threads) show the work done
    when the machine is shared: wall time then depends on the load, CPU time much less."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return f"{time.perf_counter() - wall:6.2f} s ({time.process_time() - cpu:6.2f} cpu-s)", out


def _features(n: int, dim: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random class-clustered features ``n x dim`` and labels ``n`` (so the numbers are not at chance)."""
    labels = torch.arange(n) % CUB_CLASSES
    centres = torch.randn(CUB_CLASSES, dim, generator=torch.Generator().manual_seed(0))
    return centres[labels] + 3 * torch.randn(n, dim, generator=generator), labels


def _cams(n: int, size: int, generator: torch.Generator) -> tuple[torch.Tensor, list[list[tuple[int, ...]]]]:
    """Smooth random CAMs (bilinear 7x7 -> size) and one random GT box each."""
    cams = F.interpolate(torch.rand(n, 1, 7, 7, generator=generator), size=size, mode="bilinear")[:, 0]
    corners = torch.randint(0, size // 2, (n, 2), generator=generator)
    sides = torch.randint(size // 4, size // 2, (n, 2), generator=generator)
    boxes = [[(int(x), int(y), int(x + w), int(y + h))] for (x, y), (w, h) in zip(corners, sides)]
    return cams, boxes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fgssl_lib.bench eval", description=__doc__)
    parser.add_argument("--dims", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--epochs", type=int, default=100, help="linear-probe epochs")
    parser.add_argument("--cams", type=int, default=CUB_TEST, help="number of CAMs for MaxBoxAcc")
    parser.add_argument("--cam-size", type=int, default=224)
    parser.add_argument("--skip", nargs="*", default=[], choices=PARTS)
    parser.add_argument("--only", nargs="+", default=None, choices=PARTS, help="run only these parts (e.g. maxboxacc)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: idle cores, at least 1)")
    args = parser.parse_args(argv)
    if args.only is not None:
        args.skip = [part for part in PARTS if part not in args.only]
    cores = os.cpu_count() or 1
    threads = args.threads or max(1, cores - round(os.getloadavg()[0]))
    torch.set_num_threads(threads)
    with threadpool_limits(threads):
        return _run(args, threads)


def _run(args: argparse.Namespace, threads: int) -> int:
    device = resolve_device(args.device)
    generator = torch.Generator().manual_seed(0)
    print(f"device {device}, {threads} of {os.cpu_count()} CPU threads, load average {os.getloadavg()[0]:.1f}")
    for dim in args.dims if set(PARTS[:3]) - set(args.skip) else ():
        train, train_labels = _features(CUB_TRAIN, dim, generator)
        test, test_labels = _features(CUB_TEST, dim, generator)
        if "knn" not in args.skip:
            seconds, out = _timed(lambda: knn_accuracy(train, train_labels, test, test_labels, device=device))
            print(f"[{dim}-d] knn_accuracy (k=20, T=0.07): {seconds}  top1 {out['top1']:.1f}")
        if "retrieval" not in args.skip:
            seconds, out = _timed(lambda: retrieval_metrics(test, test_labels, device=device))
            print(f"[{dim}-d] retrieval_metrics: {seconds}  rank1 {out['rank1']:.1f}  mAP {out['mAP']:.1f}")
        if "linear" not in args.skip:
            seconds, _ = _timed(
                lambda: fit_linear(train, train_labels, CUB_CLASSES, epochs=args.epochs, device=device)
            )
            print(f"[{dim}-d] one {args.epochs}-epoch probe fit: {seconds}")
            seconds, out = _timed(
                lambda: linear_probe(train, train_labels, test, test_labels, fractions=(1.0,), epochs=args.epochs,
                                     device=device)
            )
            print(f"[{dim}-d] linear_probe (fraction 1.0, 2x2 lr/wd sweep + final fit): {seconds}  "
                  f"top1 {out[1.0]['top1']:.1f}")
    if "maxboxacc" not in args.skip:
        cams, boxes = _cams(args.cams, args.cam_size, torch.Generator().manual_seed(1))  # same CAMs with --only
        for version in (1, 2):
            seconds, out = _timed(lambda: max_box_acc(cams, boxes, version=version, workers=os.cpu_count() or 1))
            print(f"MaxBoxAcc V{version}, {args.cams} CAMs at {args.cam_size} px: {seconds}  "
                  f"{out[0]:.1f} % at threshold {out[1]:.2f}")
    return 0
