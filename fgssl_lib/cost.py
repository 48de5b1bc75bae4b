"""What each notebook costs, stated in its title cell: measured at ``smoke`` and ``cpu``, estimated at ``paper``.

The ``smoke`` and ``cpu`` times were measured on this project's 2-core CPU (``smoke``: ``pytest --durations`` of
the notebook tests, the runs shared as in ``make test``; ``cpu``: ``make book`` with no trained runs, the README's
figures). No GPU has measured a ``paper`` run yet (``python -m fgssl_lib.bench gpu`` will), so the ``paper`` figure
is a FLOP estimate on CUB-200-2011 (5,994 training images): a ResNet-50 forward pass at 224 px is
:data:`RESNET50_FORWARD_FLOPS`, a training pass (forward and backward) three times that, and each method makes
:data:`PASSES` per image; epochs are the ``paper`` preset's. Divided by an effective throughput per GPU
(:data:`GPU_FLOPS`: ResNet-50 mixed-precision training at about 250 images/s on a T4 and 2,500 on an A100).
``python -m fgssl_lib.cost`` writes the paragraph into every notebook's title cell; a test fails while one is stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

from fgssl_lib.train import TrainConfig
from fgssl_lib.train.config import method_family

ROOT = Path(__file__).resolve().parents[1]
RESNET50_FORWARD_FLOPS = 4.1e9
"""Multiply-adds x 2 of one ResNet-50 forward pass at 224 px (He et al. 2016, Table 1: 3.8e9 multiply-adds; 4.1e9
as torchvision counts them)."""
CUB_TRAIN_IMAGES = 5994
GPU_FLOPS = {"T4": 3e12, "A100": 3e13}
"""Effective FLOP/s of ResNet-50 mixed-precision training (about 250 and 2,500 images/s x 12.3 GFLOPs)."""
PASSES = {"supervised": (1, 0), "moco": (1, 1), "byol": (2, 2), "simclr": (2, 0)}
"""(online training passes, momentum forward passes) per image: MoCo v2 and LCR contrast one query with one key,
BYOL and CVSA run both views through both networks symmetrically, SimCLR both views through one."""
SMOKE_SECONDS = {"00_quickstart": 19, "01_background_bias": 26, "02_views": 22, "03_train_cvsa": 41,
                 "04_train_lcr": 30, "05_evaluate": 30, "06_reproduce_on_gpu": 18, "07_cpu_study": 101}
CPU_SECONDS = {"00_quickstart": 16, "01_background_bias": 49, "02_views": 22, "03_train_cvsa": 209,
               "04_train_lcr": 97, "05_evaluate": 166, "06_reproduce_on_gpu": 24, "07_cpu_study": 7}
TRAINED_AT_PAPER = {
    "01_background_bias": ("byol", "supervised"),
    "03_train_cvsa": ("byol", "byol_ss", "cvsa"),
    "04_train_lcr": ("mocov2", "lcr", "lcr_multitask", "lcr_dual_pooling"),
    "06_reproduce_on_gpu": ("mocov2", "lcr", "byol", "cvsa"),
}
"""The runs each notebook trains at ``paper`` with its default parameters (05 and 07 only evaluate and read)."""
MARKER = "**Cost.**"


def training_flops(method: str, images: int = CUB_TRAIN_IMAGES) -> float:
    """FLOPs of training ``method`` at the ``paper`` preset on ``images`` images."""
    online, momentum = PASSES["simclr" if method == "simclr" else method_family(method)]
    epochs = TrainConfig.preset("paper", method=method).epochs
    return images * epochs * RESNET50_FORWARD_FLOPS * (3 * online + momentum)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _hours(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours:.0f}" if hours >= 10 else f"{hours:.1f}"


def cost_paragraph(stem: str) -> str:
    """The title cell's cost paragraph of notebook ``stem``."""
    measured = (f"{MARKER} Measured on a 2-core CPU: {_duration(SMOKE_SECONDS[stem])} at `smoke`, "
                f"{_duration(CPU_SECONDS[stem])} at `cpu`.")
    methods = TRAINED_AT_PAPER.get(stem, ())
    if not methods:
        return measured + " At `paper` it trains nothing: minutes on any GPU."
    flops = sum(training_flops(m) for m in methods)
    hours = ", ".join(f"~{_hours(flops / rate)} GPU-hours on a{'n' if gpu[0] == 'A' else ''} {gpu}"
                      for gpu, rate in GPU_FLOPS.items())
    return (f"{measured} At `paper` on CUB it trains {', '.join(methods)}: {hours} (an estimate from FLOPs, "
            f"{flops:.1e} in all, not a measurement; see `fgssl_lib.cost`).")


def stale_cost_paragraphs(notebooks: list[Path], write: bool = False) -> list[Path]:
    """The notebooks whose title cell lacks :func:`cost_paragraph` (as its last paragraph); with ``write``, put it
    there (replacing an older one)."""
    stale = []
    for path in notebooks:
        notebook = nbformat.read(path, as_version=4)
        title = notebook.cells[0]
        if title.cell_type != "markdown" or not title.source.startswith("# "):
            raise ValueError(f"{path}: the first cell must be the markdown title cell")
        paragraphs = [p for p in title.source.split("\n\n") if not p.startswith(MARKER)]
        expected = "\n\n".join([*paragraphs, cost_paragraph(path.stem)])
        if title.source != expected:
            stale.append(path)
            if write:
                title.source = expected
                nbformat.write(notebook, path)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fgssl_lib.cost", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only list the notebooks whose cost paragraph is stale")
    args = parser.parse_args(argv)
    stale = stale_cost_paragraphs(sorted((ROOT / "notebooks").glob("*.ipynb")), write=not args.check)
    for path in stale:
        print(f"{'stale' if args.check else 'rewrote'}: {path.relative_to(ROOT)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
