"""The CPU evidence study: does each method fix background bias on the synthetic benchmark?

Every arm of :func:`study_arms` is trained with the ``cpu`` preset for each seed, after the calibration on ``val``
(:func:`calibrate`), evaluated with :func:`fgssl_lib.reports.evaluate` and written as one row of
``fgssl_lib/results/cpu_study.csv`` (:mod:`fgssl_lib.results`; percentages), with the command, date and package
versions in ``#`` header lines. The CSV is rewritten after every run, so a killed study resumes where it stopped
(finished runs are also kept as checkpoints). :mod:`fgssl_lib.verdicts` reads the claims off the rows.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from fgssl_lib.config import check_choice, check_preset
from fgssl_lib.data.calibration import calibration_record, write_calibration
from fgssl_lib.methods import METHODS, evaluated_from, variant
from fgssl_lib.reports import evaluate, splits
from fgssl_lib.results import RESULTS
from fgssl_lib.runs import Run, load_run, run_key, runs_root, started_from, train_methods, train_or_load
from fgssl_lib.scheduler import default_jobs, run_tasks
from fgssl_lib.train import TrainConfig
from fgssl_lib.train.config import COARSE_INIT, INITS, PAPER_INIT
from fgssl_lib.train.localiser import ANNOTATION, DEFAULT_LOCALISER, LOCALISERS, NO_LOCALISER, SELF, uses_localiser
from fgssl_lib.train.recipes import method_configs, stage1_config
from fgssl_lib.viz.study import MAP_ARMS, PROBLEM_AND_FIX, SCRATCH, Arm, StudyArm, arm_label, study_figures

STUDY_METHODS = ("byol", "byol_ss", "cvsa", "cvsa_sigmoid_max", "byol_dilo", "mocov2", "mocov2_dilo", "lcr",
                 "lcr_multitask", "lcr_dual_pooling", "supervised", "supervised_oracle")
SEEDS = (0, 1, 2)
STAGE1_SEED = 0
"""Seed of the two coarse-world stage-1 runs: one of each, shared by every seed of the study, as the papers share one
set of ImageNet weights."""
COLUMNS = ("method", "init", "localiser", "seed", "knn_original", "knn_only_fg", "knn_mixed_same", "knn_mixed_rand", "bg_gap",
           "linear_mixed_rand", "retrieval_rank1", "retrieval_map", "maxboxacc", "train_seconds")
CSV_PATH = RESULTS / "cpu_study.csv"
CALIBRATION_PATH = RESULTS / "calibration.json"
SMOKE_METHODS = ("byol", "cvsa", "lcr", "lcr_multitask", "supervised_oracle")
"""The study at ``smoke``: the whole pipeline in seconds, two seeds, a run evaluated twice (LCR and MultiTask), LCR
and CVSA also from their coarse inits (every figure), and the ceiling the calibration needs."""
CALIBRATION_VAL_IMAGES = {"smoke": None, "cpu": 2500, "colab": None, "paper": None}
"""Images per variant of the ``val`` stream the calibration reads (``None``: the preset's evaluation size). At
``cpu``, 2,500 rather than the benchmark's 500: on 500 images a biased BYOL's ``mixed_rand`` (about 15 %) carries a
sampling std of 1.6 points, half the *stable* target of 3, which would measure the evaluation rather than the
seeds (at 2,500: 0.7). Chosen after the first calibration missed *stable* (see the benchmark page)."""
LOCALISED_METHODS = ("byol_ss", "cvsa", "byol_dilo")
"""The view-based methods the study also trains with a label-free localiser (claims (viii) and (ix)): from scratch,
and CVSA also from its dual stage."""
LABEL_FREE = (DEFAULT_LOCALISER, SELF)
"""The label-free localisers of those arms: the detector chosen on ``val`` and self-saliency
(:mod:`fgssl_lib.train.localiser`)."""
SMOKE_LABEL_FREE: tuple[tuple[str, str, str], ...] = (("cvsa", "scratch", SELF),)
"""The label-free arm of the study at ``smoke``: self-saliency's whole path in seconds."""
Task = tuple[str, str, str, int]
"""``(method, init, localiser, seed)``: one row of the study."""
_VERSIONED = ("fgssl_lib", "torch", "torchvision", "lightly", "pytorch-lightning", "numpy", "scikit-learn")


def paper_start(method: str) -> str:
    """How the study starts ``method`` as its paper does: the coarse world's stand-in
    (:data:`~fgssl_lib.train.config.COARSE_INIT`) of its paper's initialisation (``PAPER_INIT``)."""
    return COARSE_INIT[PAPER_INIT[method]]


def committed_localiser(method: str) -> str:
    """The localiser of the study's first arms: ``annotation`` (the drawn box and mask, an upper bound) for a method
    whose views read one, ``none`` for the others."""
    return ANNOTATION if uses_localiser(variant(method).views) else NO_LOCALISER


def full_arm(arm: Arm | StudyArm) -> StudyArm:
    """``(method, init[, localiser])`` with the localiser checked, or :func:`committed_localiser` when absent."""
    method, init, *rest = arm
    check_choice("study method", method, METHODS)
    check_choice("initialisation", init, INITS)
    localiser = rest[0] if rest else committed_localiser(method)
    localised = uses_localiser(variant(method).views)
    check_choice(f"localiser of {method}", localiser, LOCALISERS if localised else (NO_LOCALISER,))
    return method, init, localiser


def study_arms(methods: Sequence[str] = STUDY_METHODS, label_free: bool = True) -> list[StudyArm]:
    """Every method from scratch, then every method whose paper starts from pre-trained weights from the coarse-world
    init that stands in for them (:func:`paper_start`), each with its :func:`committed_localiser`; then, with
    ``label_free``, :data:`LOCALISED_METHODS` from scratch (and CVSA from its dual stage) with each of
    :data:`LABEL_FREE`."""
    arms = [(m, SCRATCH) for m in methods] + [(m, paper_start(m)) for m in methods if paper_start(m) != SCRATCH]
    extra = [(m, SCRATCH) for m in LOCALISED_METHODS if m in methods]
    extra += [("cvsa", paper_start("cvsa"))] if "cvsa" in methods else []
    return [full_arm(arm) for arm in arms] + [(m, i, loc) for loc in LABEL_FREE for m, i in extra if label_free]


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
        numeric = [c for c in COLUMNS if c not in ("method", "init", "localiser", "seed")]
        table[numeric] = table[numeric].astype(float)
        table["seed"] = table["seed"].astype(int)
        table.to_csv(f, index=False, float_format="%.2f")
    os.replace(tmp, path)


def read_study(path: str | os.PathLike = CSV_PATH) -> pd.DataFrame:
    """The study's rows (``#`` lines skipped); a clear error if the CSV has not been produced yet, or by a study
    before one of its columns (``init``, ``localiser``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no study results at {path}; produce them with "
                                "`python -m fgssl_lib.reproduce --preset cpu --only 07_cpu_study -p rerun=True`")
    rows = pd.read_csv(path, comment="#")
    missing = [c for c in COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"{path} lacks the columns {missing} (written by an older study): run the study again with "
                         "rerun=True and fresh=True")
    return rows


def run_one(method: str, init: str, localiser: str, seed: int, preset: str = "cpu",
            **overrides: object) -> dict[str, Any]:
    """Train (or load) ``method`` for ``seed``, started as ``init`` says (``scratch``, or from the coarse-world
    stage-1 run of :data:`STAGE1_SEED`), its views localised by ``localiser``, and evaluate it on the test variants:
    one row of the study."""
    config = _config(method, init, seed, preset, localiser, **overrides)
    run = _study_run(method, config)
    return {"method": method, "init": init, "localiser": localiser, "seed": seed, **evaluate(run, config, preset)}


def _study_run(method: str, config: TrainConfig) -> Run:
    """Train (or load) the run of ``method``; a cached run trained in another precision than this machine trains
    ``config`` in is refused, so that one study (and its :func:`budget`) has one precision."""
    run = train_methods({method: config})[method]
    here = config.resolved_precision()
    if run.precision is not None and run.precision != here:
        raise ValueError(f"the run in {run.path} was trained in {run.precision}, but this machine trains {method} at "
                         f"this preset in {here}: the study would mix precisions. Delete that run folder to train it "
                         f"again here, or run the study on a machine that trains in {run.precision}")
    return run


def _config(method: str, init: str, seed: int, preset: str, localiser: str = NO_LOCALISER,
            **overrides: object) -> TrainConfig:
    """The config of arm ``(method, init, localiser)`` for ``seed``; a coarse init's stage-1 run is trained first if
    needed."""
    config, stage1 = _start(method, init, seed, preset, localiser, **overrides)
    if stage1 is not None:
        train_or_load(stage1)
    return config


def _start(method: str, init: str, seed: int, preset: str, localiser: str = NO_LOCALISER,
           **overrides: object) -> tuple[TrainConfig, TrainConfig | None]:
    """The config of arm ``(method, init, localiser)`` for ``seed`` and the stage-1 run it starts from (``None``
    from scratch), nothing trained."""
    config = method_configs([method], preset, seed=seed, **overrides)[method]
    if localiser != NO_LOCALISER:
        config = replace(config, localiser=localiser)
    return (config, None) if init == SCRATCH else started_from(config, init, preset,
                                                               **{**overrides, "seed": STAGE1_SEED})


def study_scope(preset: str, methods: Sequence[str] | None = None,
                seeds: Sequence[int] = SEEDS) -> tuple[list[StudyArm], tuple[int, ...]]:
    """The arms (:func:`study_arms` of ``methods``, default :data:`STUDY_METHODS`) and seeds a study at ``preset``
    runs: at ``smoke``, :data:`SMOKE_METHODS` with :data:`SMOKE_LABEL_FREE` and seeds 0 and 1 whatever is asked."""
    if check_preset(preset) == "smoke":
        return study_arms(SMOKE_METHODS, label_free=False) + list(SMOKE_LABEL_FREE), (0, 1)
    return study_arms(methods or STUDY_METHODS), tuple(seeds)


def _calibration_path(csv: Path) -> Path:
    """The calibration written beside the study's CSV ``csv``."""
    return csv.with_name("calibration.json" if csv == CSV_PATH else f"{csv.stem}_calibration.json")


def _done_arms(csv: Path, fresh: bool) -> set[StudyArm]:
    """The arms with rows in the CSV ``csv`` (none with ``fresh``): a rerun leaves them as they are."""
    return set() if fresh or not csv.exists() else set(zip(*(read_study(csv)[c] for c in COLUMNS[:3])))


def study_configs(preset: str, methods: Sequence[str] | None = None, seeds: Sequence[int] = SEEDS,
                  path: str | os.PathLike | None = None, fresh: bool = False,
                  **overrides: object) -> list[TrainConfig]:
    """Every run :func:`run_or_read` with ``rerun=True`` trains, nothing trained: the calibration's runs when it
    calibrates, the stage-1 runs of the coarse inits, then every arm x seed (:func:`study_scope`) the CSV at ``path``
    lacks (a name evaluated from another's run lists that run). At ``smoke``, whose CSV is written where the notebook
    runs, every arm."""
    arms, seeds = study_scope(preset, methods, seeds)
    csv = Path(path) if path else CSV_PATH
    calibrates = preset == "smoke" or fresh or not _calibration_path(csv).exists()
    calibration = [(m, SCRATCH, committed_localiser(m), s) for s in seeds for m in ("byol", "supervised_oracle")]
    done = set() if preset == "smoke" else _done_arms(csv, fresh)
    tasks = [*(calibration if calibrates else []), *(t for t in study_tasks(arms, seeds) if t[:3] not in done)]
    started = [_start(m, i, s, preset, loc, **overrides) for m, i, loc, s in tasks]
    return [stage1 for _, stage1 in started if stage1 is not None] + [config for config, _ in started]


def train_stage1(init: str, preset: str = "cpu", **overrides: object) -> str:
    """Train (or load) the coarse-world stage-1 run of ``init`` at :data:`STAGE1_SEED`; its run key."""
    config = stage1_config(init, preset, **{**overrides, "seed": STAGE1_SEED})
    train_or_load(config)
    return run_key(config)


def study_tasks(arms: Sequence[StudyArm], seeds: Sequence[int]) -> list[Task]:
    """Every ``(method, init, localiser, seed)`` of ``arms x seeds``, seed by seed."""
    return [(m, i, loc, s) for s in seeds for m, i, loc in arms]


def run_study(preset: str = "cpu", arms: Sequence[Arm | StudyArm] | None = None, seeds: Sequence[int] = SEEDS,
              path: str | os.PathLike = CSV_PATH, command: str = "", rerun: bool = False,
              log: Callable[[str], None] = print, jobs: int = 1, **overrides: object) -> pd.DataFrame:
    """Run every ``arm x seed`` (default :func:`study_arms`; an arm without a localiser takes its
    :func:`committed_localiser`) not yet in the CSV at ``path`` (all of them with ``rerun=True``), rewriting the CSV
    after each run; returns all rows in ``seed, arm`` order.

    ``jobs > 1`` trains that many runs at once (:func:`~fgssl_lib.scheduler.run_tasks`); the coarse-world stage-1
    runs are trained first, and a row :func:`~fgssl_lib.methods.evaluated_from` another's run starts once that run
    has finished.
    """
    arms = [full_arm(arm) for arm in (arms if arms is not None else study_arms())]
    path = Path(path)
    rows = read_study(path) if path.exists() and not rerun else pd.DataFrame(columns=list(COLUMNS))
    finished = set(zip(rows["method"], rows["init"], rows["localiser"], rows["seed"].astype(int)))
    tasks = study_tasks(arms, seeds)
    order = {task: k for k, task in enumerate(tasks)}
    todo = [t for t in tasks if t not in finished]
    stage1 = sorted({(init,) for _, init, _, _ in todo if init != SCRATCH})
    run_tasks(partial(train_stage1, preset=preset, **overrides), stage1, jobs,
              lambda task, key, seconds: log(f"stage-1 run {key} ({seconds:.0f} s)"))

    def finish(task: tuple, row: dict[str, Any], seconds: float) -> None:
        nonlocal rows
        rows = pd.concat([rows, pd.DataFrame([{c: row[c] for c in COLUMNS}])], ignore_index=True)
        key = [order.get((m, i, loc, int(s)), len(order))
               for m, i, loc, s in zip(rows["method"], rows["init"], rows["localiser"], rows["seed"])]
        rows = rows.iloc[sorted(range(len(rows)), key=key.__getitem__)].reset_index(drop=True)
        write_csv(rows, path, command)
        log(f"{arm_label(row['method'], row['init'], row['localiser'])} seed {row['seed']}: knn mixed_rand "
            f"{row['knn_mixed_rand']:.1f}, BG-Gap {row['bg_gap']:.1f} ({seconds:.0f} s)")

    def source(task: tuple) -> tuple | None:
        trained = evaluated_from(task[0])
        return (trained, *task[1:]) if trained != task[0] else None

    run_tasks(partial(run_one, preset=preset, **overrides), todo, jobs, finish, after=source)
    return rows


def calibration_one(method: str, seed: int, preset: str = "cpu", **overrides: object) -> dict[str, Any]:
    """Train (or load) ``method`` from scratch for ``seed`` and return its kNN numbers on the ``val`` stream
    (:data:`CALIBRATION_VAL_IMAGES` images per variant), with its run key: one calibration run."""
    config = _config(method, SCRATCH, seed, preset, committed_localiser(method), **overrides)
    run = _study_run(method, config)
    metrics = evaluate(run, config, preset, protocols=("knn",), stream="val",
                       num_images=CALIBRATION_VAL_IMAGES[preset])
    return {"method": method, "seed": seed, "run": run_key(config), "stream": "val",
            **{k: round(float(v), 2) for k, v in metrics.items() if k.startswith("knn_") or k in ("bg_gap",
                                                                                                "train_seconds")}}


def budget(preset: str, **overrides: object) -> dict[str, Any]:
    """The study's schedule at ``preset``: what every run trains on and for how long."""
    config = method_configs(["byol"], preset, **overrides)["byol"]
    return {"preset": preset, "epochs": config.epochs, "num_images": config.num_images,
            "image_size": config.image_size, "batch_size": config.effective_batch(), "backbone": config.backbone,
            "calibration_val_images": CALIBRATION_VAL_IMAGES[preset],
            "precision": config.resolved_precision(),
            "lr": {m: method_configs([m], preset, **overrides)[m].lr for m in ("byol", "mocov2", "supervised")}}


def calibrate(preset: str = "cpu", seeds: Sequence[int] = SEEDS, path: str | os.PathLike = CALIBRATION_PATH,
              jobs: int = 1, log: Callable[[str], None] = print, **overrides: object) -> dict[str, Any]:
    """The study's calibration on ``val`` (before any test number): BYOL and ``supervised_oracle`` from scratch for
    every seed (runs the study then reuses), checked against
    :data:`~fgssl_lib.data.calibration.TARGETS` (learnable: the oracle's mean ``mixed_rand``; biased: BYOL's mean
    BG-Gap; stable: the std of BYOL's ``mixed_rand``) and written to ``path`` with the :func:`budget`."""
    results: dict[tuple, dict[str, Any]] = {}

    def done(task: tuple, result: dict[str, Any], seconds: float) -> None:
        results[task] = result
        log(f"calibration {task[0]} seed {task[1]} (val): mixed_rand {result['knn_mixed_rand']:.1f}, "
            f"BG-Gap {result['bg_gap']:.1f} ({seconds:.0f} s)")

    tasks = [(m, s) for s in seeds for m in ("byol", "supervised_oracle")]
    run_tasks(partial(calibration_one, preset=preset, **overrides), tasks, jobs, done)
    byol = [results[("byol", s)] for s in seeds]
    oracle = [results[("supervised_oracle", s)]["knn_mixed_rand"] for s in seeds]
    record = calibration_record(oracle, [r["bg_gap"] for r in byol], [r["knn_mixed_rand"] for r in byol],
                                budget(preset, **overrides), [results[t] for t in tasks])
    write_calibration(record, path)
    return record


def read_calibration(path: str | os.PathLike = CALIBRATION_PATH) -> dict[str, Any]:
    """The calibration :func:`calibrate` wrote at ``path``; a clear error if there is none."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no calibration at {path}; produce it with the study (rerun=True)")
    return json.loads(path.read_text())


def run_or_read(preset: str = "cpu", rerun: bool = False, methods: Sequence[str] | None = None,
                seeds: Sequence[int] = SEEDS, path: str | os.PathLike | None = None, jobs: int | None = None,
                scratch: str | os.PathLike = ".", fresh: bool = False
                ) -> tuple[pd.DataFrame, dict[str, Any], Path, float | None]:
    """The study as ``07_cpu_study`` shows it: the rows of the CSV at ``path`` (default :data:`CSV_PATH`) and the
    calibration beside it, after, with ``rerun=True``, running every arm of ``methods`` (:func:`study_arms`) x
    ``seeds`` that the CSV lacks (``jobs`` at once, default :func:`~fgssl_lib.scheduler.default_jobs`) and drawing
    the figures of the first seed whose arms it trained beside the CSV (:func:`draw_figures`). The calibration on
    ``val`` (:func:`calibrate`) runs first when there is none yet; ``fresh=True`` (with ``rerun``) calibrates and runs
    every arm again. At ``smoke`` the whole pipeline runs on :func:`study_scope` into ``<scratch>``. Returns
    ``(rows, calibration, the CSV, seconds spent running or None when only read)``."""
    csv = Path(path) if path else CSV_PATH
    command = f"python -m fgssl_lib.reproduce --preset {preset} --only 07_cpu_study -p rerun=True" + (
        " -p fresh=True" if fresh else "") + (f" -p 'seeds={list(seeds)}'" if list(seeds) != list(SEEDS) else "")
    arms, seeds = study_scope(preset, methods, seeds)
    if preset == "smoke":
        csv = Path(scratch) / "cpu_study_smoke.csv"
    calibration = _calibration_path(csv)
    seconds = None
    if rerun or preset == "smoke":
        start = time.perf_counter()
        jobs = jobs or default_jobs()
        if fresh or not calibration.exists():
            calibrate(preset, seeds, calibration, jobs)
        done = _done_arms(csv, fresh)
        trained = [arm for arm in arms if arm not in done]
        run_study(preset, arms, seeds, path=csv, command=command, rerun=fresh, jobs=jobs)
        draw_figures(preset, trained, seeds[0], csv.parent)
        seconds = time.perf_counter() - start
    return read_study(csv), read_calibration(calibration), csv, seconds


def _finished_run(arm: StudyArm, seed: int, preset: str, **overrides: object) -> tuple[Run, TrainConfig]:
    """The finished study run of ``arm`` for ``seed`` and its config; a clear error if it is not there."""
    config = _config(arm[0], arm[1], seed, preset, arm[2], **overrides)
    run = load_run(config)
    if run is None:
        raise FileNotFoundError(f"no finished study run of {arm_label(*arm)} seed {seed} under {runs_root()}: "
                                "run the study first (rerun=True)")
    return run, config


def draw_figures(preset: str, arms: Sequence[StudyArm], seed: int, directory: str | os.PathLike,
                 **overrides: object) -> list[Path]:
    """:func:`~fgssl_lib.viz.study.study_figures` of the study's finished runs of ``seed`` (those of ``arms`` that
    the figures show) in ``directory``, on the ``original`` test variant."""
    shown = [arm for arm in arms if arm in (*MAP_ARMS, *PROBLEM_AND_FIX)]
    runs = {arm: _finished_run(arm, seed, preset, **overrides) for arm in shown}
    test = splits(next(iter(runs.values()))[1], preset)["original"] if runs else []
    return study_figures(runs, test, seed, directory)
