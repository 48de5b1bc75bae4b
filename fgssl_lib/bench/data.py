"""``python -m fgssl_lib.bench data``: rendering speed of the synthetic benchmark and of the background pools.

Prints images/s for each synthetic variant (first pass renders; the second reads the in-memory chunks) and draws/s
for the ``grey`` and ``texture`` background pools (after the first draw), measured side by side in one run.
"""

from __future__ import annotations

import argparse
import time

import torch

from fgssl_lib.data.backgrounds import build_backgrounds
from fgssl_lib.data.synthetic import VARIANTS, SyntheticBirds


def _rate(count: int, fn) -> float:
    start = time.perf_counter()
    fn()
    return count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fgssl_lib.bench data", description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--num-images", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a DataLoader worker uses 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    n, size = args.num_images, args.image_size
    print(f"synthetic benchmark, {size} px, {n} images, {args.threads} thread(s)")
    for variant in VARIANTS:
        ds = SyntheticBirds(f"test_{variant}", num_images=n, image_size=size)
        first = _rate(n, lambda: [ds[i] for i in range(n)])
        again = _rate(n, lambda: [ds[i] for i in range(n)])
        print(f"  {variant:<11} render {first:8.0f} images/s   cached {again:8.0f} images/s")
    g = torch.Generator().manual_seed(0)
    for name in ("grey", "texture"):
        pool = build_backgrounds(name)
        pool.draw(size, size, g)  # the texture pool renders its bank on the first draw at a size
        print(f"  background {name:<8} {_rate(n, lambda: [pool.draw(size, size, g) for _ in range(n)]):8.0f} draws/s")
    return 0
