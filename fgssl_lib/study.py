"""The CPU evidence study: does each method fix background bias on the synthetic benchmark?

Every method of :data:`STUDY_METHODS` is trained with the ``cpu`` preset for each seed, evaluated with
:func:`fgssl_lib.reports.evaluate` and written as one row of ``book/results/cpu_study.csv`` (percentages), with
the command, date and package versions in ``#`` header lines. The CSV is rewritten after every run, so a killed
study resumes where it stopped (finished runs are also kept as checkpoints). :func:`claims` turns the table into the
five questions of the book's results page, each answered from the numbers.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

import pandas as pd

from fgssl_lib.config import check_choice, check_preset
from fgssl_lib.methods import METHODS, evaluated_from
from fgssl_lib.reports import evaluate
from fgssl_lib.runs import method_configs, train_methods

STUDY_METHODS = ("byol", "byol_ss", "cvsa", "cvsa_sigmoid_max", "byol_dilo", "mocov2", "mocov2_dilo", "lcr",
                 "lcr_multitask", "lcr_dual_pooling", "supervised")
SEEDS = (0, 1, 2)
COLUMNS = ("method", "seed", "knn_original", "knn_only_fg", "knn_mixed_same", "knn_mixed_rand", "bg_gap",
           "linear_mixed_rand", "retrieval_rank1", "retrieval_map", "maxboxacc", "train_seconds")
CSV_PATH = Path(__file__).resolve().parent.parent / "book" / "results" / "cpu_study.csv"
SMOKE_METHODS = ("byol", "lcr", "lcr_multitask")
"""The study at ``smoke``: the whole pipeline in seconds, one seed, a run evaluated twice (LCR and MultiTask)."""
_VERSIONED = ("fgssl_lib", "torch", "torchvision", "lightly", "pytorch-lightning", "numpy", "scikit-learn")


def _header(command: str) -> list[str]:
    versions = []
    for name in _VERSIONED:
        try:
            versions.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return [f"# command: {command}", f"# date: {datetime.date.today().isoformat()}",
            f"# python: {sys.version.split()[0]}; {' '.join(versions)}"]


def write_csv(rows: pd.DataFrame, path: str | os.PathLike, command: str) -> None:
    """Write ``rows`` with the ``#`` header lines, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.write("\n".join(_header(command)) + "\n")
        table = rows.loc[:, list(COLUMNS)].copy()
        numeric = [c for c in COLUMNS if c not in ("method", "seed")]
        table[numeric] = table[numeric].astype(float)
        table["seed"] = table["seed"].astype(int)
        table.to_csv(f, index=False, float_format="%.2f")
    os.replace(tmp, path)


def read_study(path: str | os.PathLike = CSV_PATH) -> pd.DataFrame:
    """The study's rows (``#`` lines skipped); a clear error if the CSV has not been produced yet."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no study results at {path}; produce them with "
                                "`python -m fgssl_lib.reproduce --preset cpu --only 07_cpu_study -p rerun=True`")
    return pd.read_csv(path, comment="#")


def run_one(method: str, seed: int, preset: str = "cpu", **overrides: object) -> dict[str, float | str | int]:
    """Train (or load) ``method`` for ``seed`` and evaluate it: one row of the study."""
    configs = method_configs([method], preset, seed=seed, **overrides)
    return {"method": method, "seed": seed, **evaluate(train_methods(configs)[method], configs[method], preset)}


def default_jobs() -> int:
    """Parallel study processes: one per CPU core on a CPU-only machine (each single-threaded, which keeps a small
    network's step faster than two threads on one process), one where CUDA trains."""
    import torch

    return 1 if torch.cuda.is_available() else max(1, os.cpu_count() or 1)


def single_threaded() -> None:
    """Initializer of a study process: one intra-op thread, so ``jobs`` processes share the cores without contention;
    on Linux the process also ends when the study that started it is killed (its run resumes from ``last.ckpt``)."""
    import torch

    torch.set_num_threads(1)
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def run_study(preset: str = "cpu", methods: Sequence[str] = STUDY_METHODS, seeds: Sequence[int] = SEEDS,
              path: str | os.PathLike = CSV_PATH, command: str = "", rerun: bool = False,
              log: Callable[[str], None] = print, jobs: int = 1, **overrides: object) -> pd.DataFrame:
    """Run every ``method x seed`` not yet in the CSV at ``path`` (all of them with ``rerun=True``), rewriting the
    CSV after each run; returns all rows in ``seed, method`` order.

    ``jobs > 1`` trains that many runs at once in single-threaded processes (:func:`default_jobs`); a row of
    :func:`~fgssl_lib.methods.evaluated_from` another's run starts only once the run it is evaluated from has finished.
    """
    for method in methods:
        check_choice("study method", method, METHODS)
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    path = Path(path)
    rows = read_study(path) if path.exists() and not rerun else pd.DataFrame(columns=list(COLUMNS))
    done = set(zip(rows["method"], rows["seed"].astype(int)))
    todo = [(m, s) for s in seeds for m in methods if (m, s) not in done]
    order = {(m, s): k for k, (m, s) in enumerate((m, s) for s in seeds for m in methods)}

    def source(task: tuple[str, int]) -> tuple[str, int] | None:
        trained = evaluated_from(task[0])
        return (trained, task[1]) if trained != task[0] and (trained, task[1]) in todo else None

    def finish(row: dict[str, float | str | int], seconds: float) -> None:
        nonlocal rows
        rows = pd.concat([rows, pd.DataFrame([{c: row[c] for c in COLUMNS}])], ignore_index=True)
        key = [order.get((m, int(s)), len(order)) for m, s in zip(rows["method"], rows["seed"])]
        rows = rows.iloc[sorted(range(len(rows)), key=key.__getitem__)].reset_index(drop=True)
        write_csv(rows, path, command)
        log(f"{row['method']} seed {row['seed']}: knn mixed_rand {row['knn_mixed_rand']:.1f}, "
            f"BG-Gap {row['bg_gap']:.1f} ({seconds:.0f} s)")

    if jobs == 1:
        for method, seed in todo:
            start = time.perf_counter()
            finish(run_one(method, seed, preset, **overrides), time.perf_counter() - start)
        return rows
    waiting = [t for t in todo if source(t) is not None]
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=single_threaded) as pool:
        started: dict[Future, tuple[tuple[str, int], float]] = {}

        def submit(task: tuple[str, int]) -> None:
            started[pool.submit(run_one, task[0], task[1], preset, **overrides)] = (task, time.perf_counter())

        for task in todo:
            if task not in waiting:
                submit(task)
        while started:
            finished, _ = wait(started, return_when=FIRST_COMPLETED)
            for future in finished:
                task, start = started.pop(future)
                try:
                    row = future.result()
                except Exception as error:
                    pool.shutdown(cancel_futures=True)
                    raise RuntimeError(f"study run {task[0]} seed {task[1]} failed: {error}") from error
                finish(row, time.perf_counter() - start)
                for dependent in [t for t in waiting if source(t) == task]:
                    waiting.remove(dependent)
                    submit(dependent)
    return rows


def run_or_read(preset: str = "cpu", rerun: bool = False, methods: Sequence[str] | None = None,
                seeds: Sequence[int] = SEEDS, path: str | os.PathLike | None = None, jobs: int | None = None,
                scratch: str | os.PathLike = ".") -> tuple[pd.DataFrame, Path, float | None]:
    """The study as ``07_cpu_study`` shows it: the rows of the CSV at ``path`` (default :data:`CSV_PATH`), after
    running every ``methods x seeds`` again with ``rerun=True`` (``jobs`` at once, default :func:`default_jobs`).
    At ``smoke`` the whole pipeline runs on :data:`SMOKE_METHODS` and seed 0 into ``<scratch>/cpu_study_smoke.csv``.
    Returns ``(rows, the CSV, seconds spent running or None when only read)``."""
    csv = Path(path) if path else CSV_PATH
    command = f"python -m fgssl_lib.reproduce --preset {preset} --only 07_cpu_study -p rerun=True" + (
        f" -p 'seeds={list(seeds)}'" if list(seeds) != list(SEEDS) else "")
    if check_preset(preset) == "smoke":
        csv, methods, seeds = Path(scratch) / "cpu_study_smoke.csv", SMOKE_METHODS, (0,)
    seconds = None
    if rerun or preset == "smoke":
        start = time.perf_counter()
        run_study(preset, methods or STUDY_METHODS, seeds, path=csv, command=command, rerun=rerun,
                  jobs=jobs or default_jobs())
        seconds = time.perf_counter() - start
    return read_study(csv), csv, seconds


def to_results(rows: pd.DataFrame) -> dict[str, dict[str, list[float]]]:
    """``{method: {metric: [value per seed]}}`` in :data:`STUDY_METHODS` order, the input of
    :func:`fgssl_lib.viz.results_table` and :func:`fgssl_lib.viz.comparison_bar_chart` (mean ± std over seeds)."""
    metrics = [c for c in COLUMNS if c not in ("method", "seed")]
    order = [m for m in STUDY_METHODS if m in set(rows["method"])] + sorted(set(rows["method"]) - set(STUDY_METHODS))
    return {m: {c: rows.loc[rows["method"] == m, c].astype(float).tolist() for c in metrics} for m in order}


def claims(rows: pd.DataFrame, min_gap: float = 10.0, num_classes: int = 10) -> pd.DataFrame:
    """The five questions of issue 8 answered from the rows: ``question, evidence, holds``.

    A claim "holds" when the means differ in the stated direction by more than the larger of the two standard
    deviations (so one lucky seed does not make a claim).
    """
    mean = rows.groupby("method").mean(numeric_only=True)
    std = rows.groupby("method").std(numeric_only=True).fillna(0.0)

    def fmt(method: str, col: str) -> str:
        return f"{method} {mean.loc[method, col]:.1f} ± {std.loc[method, col]:.1f}"

    def better(a: str, b: str, col: str, lower: bool = False) -> bool:
        diff = (mean.loc[b, col] - mean.loc[a, col]) if lower else (mean.loc[a, col] - mean.loc[b, col])
        return bool(diff > max(std.loc[a, col], std.loc[b, col]))

    out = []
    have = set(mean.index)
    base = [m for m in ("byol", "mocov2") if m in have]
    if base:
        out.append(("(i) baselines background-biased (BG-Gap >= %g)?" % min_gap,
                    "; ".join(fmt(m, "bg_gap") for m in base),
                    all(mean.loc[m, "bg_gap"] >= min_gap for m in base)))
    for fix, ref in (("byol_dilo", "byol"), ("byol_ss", "byol"), ("cvsa", "byol"), ("mocov2_dilo", "mocov2")):
        if {fix, ref} <= have:
            out.append((f"(ii) {fix} shrinks the BG-Gap and raises mixed_rand kNN over {ref}?",
                        f"BG-Gap {fmt(fix, 'bg_gap')} vs {fmt(ref, 'bg_gap')}; kNN mixed_rand "
                        f"{fmt(fix, 'knn_mixed_rand')} vs {fmt(ref, 'knn_mixed_rand')}",
                        better(fix, ref, "bg_gap", lower=True) and better(fix, ref, "knn_mixed_rand")))
    if {"cvsa", "byol_ss"} <= have:
        out.append(("(iii) SS+Align beats SS alone (kNN mixed_rand)?",
                    f"{fmt('cvsa', 'knn_mixed_rand')} vs {fmt('byol_ss', 'knn_mixed_rand')}",
                    better("cvsa", "byol_ss", "knn_mixed_rand")))
    if {"lcr", "mocov2"} <= have:
        out.append(("(iv) LCR raises retrieval rank-1 over MoCo v2?",
                    f"{fmt('lcr', 'retrieval_rank1')} vs {fmt('mocov2', 'retrieval_rank1')}",
                    better("lcr", "mocov2", "retrieval_rank1")))
    if {"lcr_dual_pooling", "lcr"} <= have:
        chance = 100.0 / num_classes
        near_chance = mean.loc["lcr_dual_pooling", "retrieval_rank1"] < chance + 2 * max(
            5.0, std.loc["lcr_dual_pooling", "retrieval_rank1"])
        out.append(("(v) DualPooling collapses (retrieval rank-1 near chance, below LCR)?",
                    f"{fmt('lcr_dual_pooling', 'retrieval_rank1')} vs {fmt('lcr', 'retrieval_rank1')}; "
                    f"chance {chance:.0f}",
                    bool(near_chance) and better("lcr", "lcr_dual_pooling", "retrieval_rank1")))
    return pd.DataFrame(out, columns=["question", "evidence", "holds"])
