"""The run plan: the notebooks' runs known from their parameters, trained once each in dependency order, a failure
named with the notebooks that need it, and a killed plan that resumes without retraining finished runs."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fgssl_lib import plan
from fgssl_lib.plan import PlanFailed, PlannedRun, notebook_runs, train_plan
from fgssl_lib.reproduce import parameter_values, toc_notebooks
from fgssl_lib.runs import DONE, PLANNED_ENV, train_or_load
from fgssl_lib.train.recipes import method_configs

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = {nb.stem: nb for nb in toc_notebooks(ROOT / "_toc.yml")}


def _parameters(name: str, **overrides: object) -> dict:
    return {**parameter_values(NOTEBOOKS[name]), "preset": "smoke", **overrides}


def test_the_plan_lists_each_run_once_with_the_notebooks_that_need_it():
    runs = notebook_runs({name: _parameters(name) for name in ("01_background_bias", "03_train_cvsa", "05_evaluate")})
    byol = method_configs(["byol"], "smoke", seed=0)["byol"]
    (first, needed), = [entry for entry in runs.values() if entry[0].config == byol]
    assert needed == ["01_background_bias", "03_train_cvsa", "05_evaluate"]
    assert len(runs) == len({run.name for run, _ in runs.values()})
    dual = [run for run, _ in runs.values() if run.stage1 is not None]
    assert len(dual) == 1 and dual[0].name.startswith("dual_stage-")  # 03's dual-stage recipe, one run folder
    assert "lcr_multitask" not in {run.config.method for run, _ in runs.values()}  # 05 evaluates it from lcr's run
    retrained = notebook_runs({"01_background_bias": _parameters("01_background_bias"),
                               "05_evaluate": _parameters("05_evaluate", retrain=True)})
    assert retrained[first.name][0].retrain  # asked once with retrain: retrained once


def test_notebooks_without_training_or_that_only_read_plan_nothing():
    assert notebook_runs({name: _parameters(name) for name in ("00_quickstart", "02_views")}) == {}
    assert notebook_runs({"07_cpu_study": _parameters("07_cpu_study", preset="cpu")}) == {}  # reads the CSV
    assert notebook_runs({"05_evaluate": _parameters("05_evaluate", preset="paper")}) == {}  # loads only
    assert notebook_runs({"05_evaluate": _parameters("05_evaluate", preset="colab")}) == {}


def test_the_study_plans_its_stage1_runs_and_the_runs_that_start_from_them():
    runs = [run for run, _ in notebook_runs({"07_cpu_study": _parameters("07_cpu_study")}).values()]
    names = {run.name for run in runs}
    started = [run for run in runs if run.starts_from]
    assert started and all(run.starts_from in names for run in started)


def test_stage1_runs_train_first_and_a_failure_names_the_run_and_its_notebooks(monkeypatch, tmp_path):
    stage1 = PlannedRun(method_configs(["byol"], "smoke")["byol"], root=str(tmp_path))
    stage2 = PlannedRun(method_configs(["cvsa"], "smoke")["cvsa"].with_init("coarse_dual_stage", stage1=stage1.name),
                        root=str(tmp_path))
    order = []
    monkeypatch.setattr(plan, "_train", lambda run: order.append(run.name) or 1.0)
    lines = []
    trained = train_plan({stage2.name: (stage2, ["07_cpu_study"]), stage1.name: (stage1, ["07_cpu_study"])}, jobs=1,
                         log=lines.append)
    assert order == trained == [stage1.name, stage2.name]
    assert lines[0].startswith("run plan: 2 runs for 1 notebooks, 0 finished, 2 to train")
    assert lines[-2].startswith(f"[2/2] {stage2.name} (") and "elapsed" in lines[-2] and "left" in lines[-2]
    assert lines[-1].startswith("run plan: 2 runs trained in ")

    def fail(run: PlannedRun) -> float:
        raise ValueError("out of memory")

    monkeypatch.setattr(plan, "_train", fail)
    with pytest.raises(PlanFailed, match=rf"{stage1.name} failed \(ValueError: out of memory\); the notebooks that "
                                         r"need it: 01_background_bias, 05_evaluate"):
        train_plan({stage1.name: (stage1, ["01_background_bias", "05_evaluate"])}, jobs=1, log=lambda _: None)


def test_the_longest_runs_start_first(monkeypatch, tmp_path):
    configs = method_configs(["supervised", "mocov2", "byol"], "smoke")
    runs = {name: PlannedRun(config, root=str(tmp_path)) for name, config in configs.items()}
    longer = PlannedRun(dataclasses.replace(configs["supervised"], epochs=configs["byol"].epochs * 4), root=str(tmp_path))
    order = []
    monkeypatch.setattr(plan, "_train", lambda run: order.append(run) or 1.0)
    train_plan({run.name: (run, ["05_evaluate"]) for run in [*runs.values(), longer]}, jobs=1, log=lambda _: None)
    assert order == [longer, runs["byol"], runs["mocov2"], runs["supervised"]]  # training passes x epochs x images


def test_after_the_plan_a_notebook_loads_its_runs_and_refuses_to_train_one(monkeypatch, tmp_path):
    config = method_configs(["byol"], "smoke")["byol"]
    monkeypatch.setenv(PLANNED_ENV, "1")
    with pytest.raises(RuntimeError, match="NOTEBOOK_RUNS misses a run .* --no-plan"):
        train_or_load(config, root=tmp_path)


def _reproduce(runs: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "FGSSL_RUNS": str(runs), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "fgssl_lib.reproduce", "--preset", "smoke", "--only",
                             "01_background_bias", "--out", str(out), "--jobs", "1"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _results(out: Path) -> dict:
    results = json.loads((out / "01_background_bias" / "results.json").read_text())
    for metrics in (v for k, v in results.items() if k.startswith("bias_")):
        metrics.pop("train_seconds")  # wall time
    return results


@pytest.mark.notebooks
def test_a_killed_plan_resumes_without_retraining_finished_runs_and_equals_an_uninterrupted_build(tmp_path):
    killed = _reproduce(tmp_path / "runs", tmp_path / "out")
    deadline = time.monotonic() + 900
    while not list((tmp_path / "runs").glob(f"*/{DONE}")):
        assert killed.poll() is None and time.monotonic() < deadline, killed.communicate()[0]
        time.sleep(0.2)
    killed.send_signal(signal.SIGKILL)  # during the plan: one of 01's two runs finished, the other not
    killed.wait()
    (first,) = [path.parent for path in (tmp_path / "runs").glob(f"*/{DONE}")]
    finished = {path: path.stat().st_mtime_ns for path in (first / DONE, first / "last.ckpt")}

    again = _reproduce(tmp_path / "runs", tmp_path / "out")
    log = again.communicate()[0]
    assert again.returncode == 0, log
    assert "1 finished, 1 to train" in log
    assert {path: path.stat().st_mtime_ns for path in finished} == finished  # not trained again

    whole = _reproduce(tmp_path / "whole_runs", tmp_path / "whole_out")
    assert whole.wait() == 0, whole.communicate()[0]
    assert _results(tmp_path / "out") == _results(tmp_path / "whole_out")
