"""``python -m fgssl_lib.bench fidelity``: fgssl's defaults beside the authors' settings, on the validation stream.

Where a default departs from the authors' code (the table of the theory pages), the reason is measured here, on the
synthetic benchmark's ``val`` stream (never ``test``) at the ``cpu`` preset: each setting of :data:`SETTINGS` is
trained for every seed and scored by kNN top-1 on ``val_original`` and ``val_mixed_rand`` (the bird on a habitat
that carries no label), the BG-Gap and the MaxBoxAcc (V1) of the method's own map on ``val_original``. Rows go to
``fgssl_lib/results/fidelity_val.csv`` after every run (a killed run resumes; finished runs are kept under
``<runs>/fidelity``), then one line per setting prints the mean and std over seeds::

    fidelity <method> <setting> knn_mixed_rand=<m>+-<s> bg_gap=<m>+-<s> maxboxacc=<m>+-<s> seeds=<n>
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from fgssl_lib.reports import evaluate
from fgssl_lib.results import RESULTS
from fgssl_lib.runs import runs_root, train_or_load
from fgssl_lib.scheduler import single_threaded
from fgssl_lib.train import TrainConfig

SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "lcr": {
        "fgssl": {},
        "authors": {"method_options": {"fitting": "authors"}},
    },
    "byol_dilo": {  # pasted with the drawn mask (the annotation localiser), so only the paste's form differs
        "soft_map_blurred": {"localiser": "annotation"},  # the authors' paste, and fgssl's default
        "binary_mask": {"localiser": "annotation", "view_params": {"paste_map": "mask", "blending": "none"}},
    },
}
"""``method -> setting -> TrainConfig overrides``; each method's first setting is fgssl's default (DiLo's with the
``annotation`` localiser, the one its committed rows were measured with)."""
METRICS = ("knn_original", "knn_mixed_same", "knn_mixed_rand", "bg_gap", "maxboxacc")
CSV_PATH = RESULTS / "fidelity_val.csv"


def run_setting(method: str, setting: str, seed: int, preset: str) -> dict[str, Any]:
    """Train (or load) one setting for one seed and score it on the ``val`` stream: one row."""
    config = TrainConfig.preset(preset, method=method, seed=seed, **SETTINGS[method][setting])
    start = time.perf_counter()
    run = train_or_load(config, root=runs_root() / "fidelity")
    metrics = evaluate(run, config, preset, protocols=("knn", "maxboxacc"), stream="val")
    return {"method": method, "setting": setting, "seed": seed, **{m: metrics[m] for m in METRICS},
            "train_seconds": metrics["train_seconds"], "seconds": time.perf_counter() - start}


def summary(rows: pd.DataFrame) -> list[str]:
    """One ``fidelity ...`` line per ``(method, setting)``: mean +- std over seeds."""
    lines = []
    for (method, setting), group in rows.groupby(["method", "setting"], sort=False):
        values = " ".join(f"{m}={group[m].mean():.1f}+-{group[m].std(ddof=1) if len(group) > 1 else 0.0:.1f}"
                          for m in ("knn_mixed_rand", "bg_gap", "maxboxacc"))
        lines.append(f"fidelity {method} {setting} {values} seeds={len(group)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fgssl_lib.bench fidelity", description=__doc__.split("\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--preset", default="cpu", choices=("smoke", "cpu"))
    parser.add_argument("--jobs", type=int, default=2, help="runs at once, each single-threaded")
    parser.add_argument("--csv", type=Path, default=CSV_PATH)
    args = parser.parse_args(argv)
    rows = pd.read_csv(args.csv) if args.csv.exists() else pd.DataFrame()
    done = set() if rows.empty else set(zip(rows["method"], rows["setting"], rows["seed"]))
    todo = [(m, s, seed) for seed in args.seeds for m in args.methods for s in SETTINGS[m] if (m, s, seed) not in done]
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=single_threaded) as pool:
        futures = [pool.submit(run_setting, *task, args.preset) for task in todo]
        for task, future in zip(todo, futures):
            row = future.result()
            rows = pd.concat([rows, pd.DataFrame([row])], ignore_index=True)
            args.csv.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.csv.with_suffix(".tmp")
            rows.to_csv(tmp, index=False, float_format="%.2f")
            tmp.replace(args.csv)
            print(f"{' '.join(map(str, task))}: knn_mixed_rand {row['knn_mixed_rand']:.1f}, "
                  f"maxboxacc {row['maxboxacc']:.1f} ({row['seconds']:.0f} s)", flush=True)
    print("\n".join(summary(rows[rows["method"].isin(args.methods)])))
    return 0
