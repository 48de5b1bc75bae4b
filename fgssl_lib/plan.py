"""The run plan: every training run the book's notebooks ask for, known before any notebook runs, trained in parallel.

Each notebook that trains has an entry in :data:`NOTEBOOK_RUNS`: a function of its parameters (the literals of its
``parameters`` cell with the overrides) that makes the library calls the notebook makes to build its configs
(:func:`~fgssl_lib.train.recipes.method_configs`, :func:`~fgssl_lib.train.recipes.dual_stage_configs`,
:func:`~fgssl_lib.train.recipes.reproduction_configs`, :func:`~fgssl_lib.study.study_configs`) and returns its runs.
:func:`train_plan` trains the union of the notebooks' runs, one single-threaded process per CPU core (one run at a
time where CUDA trains) through :func:`~fgssl_lib.scheduler.run_tasks`, a run that starts from a stage-1 run after
it, with a line per finished run (runs done and to do, time elapsed, an estimate of what is left). Runs are kept by
:func:`~fgssl_lib.runs.train_or_load`: a finished run is loaded, a killed one resumes from its ``last.ckpt``.
``python -m fgssl_lib.reproduce`` trains the plan, then runs the notebooks with :data:`PLANNED_ENV` set, under
which :func:`~fgssl_lib.runs.train_or_load` refuses to train: a notebook finds its runs finished or says which run
the plan missed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from fgssl_lib.config import GPU_PRESETS
from fgssl_lib.runs import DONE, PLANNED_ENV, run_path, runs_root, train_or_load
from fgssl_lib.scheduler import TaskFailed, default_jobs, run_tasks
from fgssl_lib.study import study_configs
from fgssl_lib.train import TrainConfig
from fgssl_lib.train.config import STAGE1_PREFIX
from fgssl_lib.train.flops import run_flops
from fgssl_lib.train.recipes import dual_stage_configs, method_configs, reproduction_configs

__all__ = ["NOTEBOOK_RUNS", "PLANNED_ENV", "PlanFailed", "PlannedRun", "notebook_runs", "train_plan"]


@dataclass(frozen=True)
class PlannedRun:
    """One run of the plan: ``config`` trained by :func:`~fgssl_lib.runs.train_or_load` under ``root`` (``None``:
    :func:`~fgssl_lib.runs.runs_root`), after its first stage ``stage1`` in the same run folder for CVSA's
    dual-stage recipe; ``retrain`` discards a finished run first."""

    config: TrainConfig
    stage1: TrainConfig | None = None
    root: str | None = None
    retrain: bool = False

    @cached_property
    def name(self) -> str:
        """The run's folder name (its key; ``dual_stage-<stage 1>-<stage 2>`` for a dual-stage pair), computed once
        (a real dataset's key reads its files)."""
        return run_path(self.config, self.root, self.stage1).name

    @property
    def starts_from(self) -> str | None:
        """The name of the stage-1 run whose weights this run starts from, if it starts from one."""
        pretrained = self.config.pretrained or ""
        return pretrained.removeprefix(STAGE1_PREFIX) if pretrained.startswith(STAGE1_PREFIX) else None

    def finished(self) -> bool:
        return not self.retrain and (Path(self.root or runs_root()) / self.name / DONE).exists()


def _settings(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The notebook parameters that are :class:`TrainConfig` settings (``seed``, ``device``, ``epochs``, ...), as the
    notebooks pass them to the config functions (``dataset`` and ``data_root`` go by position)."""
    fields = {field.name for field in dataclasses.fields(TrainConfig)} - {"method", "dataset", "data_root"}
    return {key: value for key, value in parameters.items() if key in fields}


def _planned(configs: Sequence[TrainConfig], parameters: Mapping[str, Any]) -> list[PlannedRun]:
    return [PlannedRun(c, root=parameters.get("runs_dir"), retrain=bool(parameters.get("retrain"))) for c in configs]


def _methods(parameters: Mapping[str, Any], methods: Sequence[str]) -> dict[str, TrainConfig]:
    p = parameters
    return method_configs(methods, p["preset"], p["dataset"], p["data_root"], **_settings(p))


def _background_bias(p: Mapping[str, Any]) -> list[PlannedRun]:
    return _planned(list(_methods(p, [p["baseline"], p["reference"]]).values()), p)


def _train_cvsa(p: Mapping[str, Any]) -> list[PlannedRun]:
    configs = _methods(p, [*p["methods"], *(["cvsa_sigmoid_max"] if p["ablate_intensity"] else [])])
    runs = _planned(list(configs.values()), p)
    if p["dual_stage"]:
        stage1, stage2 = dual_stage_configs(p["preset"], configs["cvsa"], p["dual_stage_epochs"], **_settings(p))
        runs.append(dataclasses.replace(runs[0], config=stage2, stage1=stage1))
    return runs


def _train_lcr(p: Mapping[str, Any]) -> list[PlannedRun]:
    return _planned(list(_methods(p, p["methods"]).values()), p)


def _evaluate(p: Mapping[str, Any]) -> list[PlannedRun]:
    train = p["train_missing"] if p["train_missing"] is not None else p["preset"] not in GPU_PRESETS
    return _planned(list(_methods(p, p["methods"]).values()), p) if train else []


def _reproduce_on_gpu(p: Mapping[str, Any]) -> list[PlannedRun]:
    configs = reproduction_configs(p["methods"], p["preset"], p["dataset"], p["init"], p["data_root"], **_settings(p))
    return _planned(list(configs.values()), p)


def _cpu_study(p: Mapping[str, Any]) -> list[PlannedRun]:
    if not (p["rerun"] or p["preset"] == "smoke"):
        return []  # the notebook reads the committed results
    return [PlannedRun(c) for c in study_configs(p["preset"], p["methods"], p["seeds"], p["results_csv"], p["fresh"])]


NOTEBOOK_RUNS: dict[str, Callable[[Mapping[str, Any]], list[PlannedRun]]] = {
    "01_background_bias": _background_bias,
    "03_train_cvsa": _train_cvsa,
    "04_train_lcr": _train_lcr,
    "05_evaluate": _evaluate,
    "06_reproduce_on_gpu": _reproduce_on_gpu,
    "07_cpu_study": _cpu_study,
}
"""The notebooks that train, each with the function of its parameters that lists its runs (a notebook without an
entry trains nothing)."""


def notebook_runs(parameters: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[PlannedRun, list[str]]]:
    """The union of the runs of the notebooks ``{name: parameters}``: ``{run name: (run, the notebooks that need
    it)}``, in the order the notebooks ask for them; a run asked for with ``retrain`` by one notebook is retrained
    once."""
    union: dict[str, tuple[PlannedRun, list[str]]] = {}
    for notebook, values in parameters.items():
        for run in NOTEBOOK_RUNS.get(notebook, lambda _: [])(values):
            known, needed_by = union.get(run.name, (run, []))
            union[run.name] = (dataclasses.replace(known, retrain=known.retrain or run.retrain),
                               [*needed_by, *([notebook] if notebook not in needed_by else [])])
    return union


class PlanFailed(RuntimeError):
    """A run of the plan failed; the message names it and the notebooks that need it."""


def _train(run: PlannedRun) -> float:
    """Train (or load) ``run``; its training seconds."""
    return train_or_load(run.config, root=run.root, retrain=run.retrain, stage1=run.stage1).train_seconds


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def train_plan(plan: Mapping[str, tuple[PlannedRun, list[str]]], jobs: int | None = None,
               log: Callable[[str], None] = print) -> list[str]:
    """Train every unfinished run of ``plan`` (from :func:`notebook_runs`), ``jobs`` at once (default
    :func:`~fgssl_lib.scheduler.default_jobs`), the longest first (by :func:`~fgssl_lib.train.flops.run_flops`, so the
    last to finish are short), each after the stage-1 run it starts from; one line per finished run, and the plan's
    wall time. Returns the names trained. A failed run stops the plan with :class:`PlanFailed`; the runs that
    finished are kept, and the interrupted ones resume from their last checkpoint when the plan runs again."""
    todo = sorted((run for run, _ in plan.values() if not run.finished()),
                  key=lambda run: run_flops(run.config, run.stage1), reverse=True)
    jobs = min(jobs or default_jobs(), max(1, len(todo)))
    log(f"run plan: {len(plan)} runs for {len({n for _, needed in plan.values() for n in needed})} notebooks, "
        f"{len(plan) - len(todo)} finished, {len(todo)} to train, {jobs} at a time")
    if not todo:
        return []
    by_name = {run.name: (run,) for run in todo}
    start, trained = time.perf_counter(), []

    def done(task: tuple, seconds: float, wall: float) -> None:
        trained.append(task[0].name)
        elapsed = time.perf_counter() - start
        left = elapsed / len(trained) * (len(todo) - len(trained))
        log(f"[{len(trained)}/{len(todo)}] {task[0].name} ({_duration(wall)}); elapsed {_duration(elapsed)}, about "
            f"{_duration(left)} left")

    try:
        run_tasks(_train, list(by_name.values()), jobs, done, after=lambda task: by_name.get(task[0].starts_from))
    except TaskFailed as failed:
        run = failed.task[0]
        raise PlanFailed(f"the run {run.name} failed ({type(failed.error).__name__}: {failed.error}); the notebooks "
                         f"that need it: {', '.join(plan[run.name][1])}. The {len(trained)} runs that finished are "
                         "kept; fix the cause and run again (the others resume)") from failed.error
    log(f"run plan: {len(trained)} runs trained in {_duration(time.perf_counter() - start)}")
    return trained
