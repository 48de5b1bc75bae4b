"""``python -m fgssl_lib.bench memory``: per method, the activation memory a training step saves per image and the
micro-batch ``batch_size="auto"`` picks on 16, 24, 40 and 80 GiB cards, with its predicted peak.

Each method is built as the trainer builds it at each ``--presets`` preset (default ``colab`` and ``paper``: ResNet-50
at 224 px), in ``--precision`` (default ``16-mixed``, a T4's), and measured on this CPU by
:func:`fgssl_lib.train.memory.measure` (saved tensors at 96 px, scaled to 224; a method measured once where the
presets build it alike). The fixed part counts a CUB-sized training store on the card (5,994 images at the preset's
``store_side``), as the batched view pipeline keeps it there. Prints a table: per method and preset, ``MiB/image``
(with the model's margin), ``fixed GiB``, and per card ``<micro-batch> x <accumulation>: <peak GiB>``; then whether
every method at ``colab`` stays within ``--limit`` GiB (14.5) on a 16 GiB card (exit status 1 when not).
``--tiny``: the ``smoke`` preset's narrow network at 32 px, seconds (the path the tests run).
"""

from __future__ import annotations

import argparse
from typing import Any

import pandas as pd

from fgssl_lib.config import PRESETS
from fgssl_lib.cost import CUB_TRAIN_IMAGES
from fgssl_lib.methods import evaluated_from
from fgssl_lib.precision import PRECISIONS
from fgssl_lib.train import TrainConfig
from fgssl_lib.train.memory import GIB, measure, micro_batch, store_bytes

METHODS = ("supervised", "simclr", "byol", "byol_ss", "cvsa", "cvsa_sigmoid_max", "byol_dilo", "mocov2", "mocov2_dilo",
           "lcr", "lcr_dual_pooling")
"""The methods the notebooks train on a real dataset (LCR's MultiTask is LCR's run)."""
CARDS = (16, 24, 40, 80)


def config_of(method: str, preset: str, precision: str) -> TrainConfig:
    """``method`` at ``preset`` as it trains on a GPU in ``precision`` (its effective batch as a whole batch)."""
    return TrainConfig.preset(preset, method=evaluated_from(method), device="cpu", precision=precision)


def memory_table(methods: tuple[str, ...], presets: tuple[str, ...], precision: str,
                 cards: tuple[int, ...] = CARDS) -> pd.DataFrame:
    """One row per method and preset: measured per-image memory, fixed memory, and per card the chosen micro-batch,
    accumulation and predicted peak (GiB)."""
    rows: list[dict[str, Any]] = []
    for method in methods:
        for preset in presets:
            config = config_of(method, preset, precision)
            store = store_bytes(CUB_TRAIN_IMAGES, config.store_side or config.image_size) if preset != "smoke" else 0
            step = measure(config, store)  # measured once where the presets build the method alike
            effective = config.effective_batch()
            row: dict[str, Any] = {"method": method, "preset": preset, "batch": effective,
                                   "MiB/image": round(step.per_image / 2**20, 1),
                                   "fixed GiB": round(step.fixed / GIB, 2)}
            for card in cards:
                micro = micro_batch(effective, step, card * GIB)
                row[f"{card} GiB"] = f"{micro} x {effective // micro}: {step.peak(micro) / GIB:.1f}"
                row[f"peak {card}"] = step.peak(micro) / GIB
            rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fgssl_lib.bench memory", description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--presets", nargs="+", default=["colab", "paper"], choices=PRESETS)
    parser.add_argument("--precision", default="16-mixed", choices=PRECISIONS)
    parser.add_argument("--limit", type=float, default=14.5, help="GiB a 16 GiB card may hold at colab")
    parser.add_argument("--tiny", action="store_true", help="the smoke preset (narrow network, 32 px): seconds")
    args = parser.parse_args(argv)
    presets = ("smoke",) if args.tiny else tuple(args.presets)
    table = memory_table(tuple(args.methods), presets, args.precision)
    shown = [c for c in table.columns if not c.startswith("peak ")]
    print(f"# precision={args.precision}; peak = fixed + micro-batch x MiB/image, micro-batch x accumulation = batch")
    print(table[shown].to_string(index=False))
    checked = table[table["preset"] == "colab"]
    if checked.empty:
        return 0
    worst = checked.loc[checked["peak 16"].idxmax()]
    fits = bool((checked["peak 16"] <= args.limit).all())
    print(f"colab on a 16 GiB card: highest predicted peak {worst['peak 16']:.1f} GiB ({worst['method']}); "
          + (f"every method within {args.limit} GiB" if fits else f"above {args.limit} GiB"))
    return 0 if fits else 1
