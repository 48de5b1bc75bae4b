"""Runs: keyed by the weights' settings, trained once under a lock and loaded after, the dual-stage pair included;
variants evaluated from another name's run (the recipes that make the configs: test_recipes.py)."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch

import fixtures_real as fx
from fgssl_lib import runs as runs_module
from fgssl_lib.runs import Run, run_key, train_methods, train_or_load
from fgssl_lib.train import TrainConfig
from fgssl_lib.train.recipes import method_configs
from fgssl_lib.train.snapshots import SNAPSHOTS, run_snapshot_images, training_snapshots


def test_run_key_follows_the_weights_not_the_hardware():
    config = TrainConfig.preset("smoke", method="byol")
    assert run_key(config) == run_key(dataclasses.replace(config, device="cpu", num_workers=2, progress_bar=True))
    assert run_key(config) != run_key(dataclasses.replace(config, epochs=2))
    assert run_key(config) != run_key(dataclasses.replace(config, seed=1))
    assert run_key(config).startswith("byol-seed0-")


def test_run_key_changes_when_the_synthetic_benchmark_is_redrawn(monkeypatch, tmp_path):
    config = TrainConfig.preset("smoke", method="byol")
    before = run_key(config)
    monkeypatch.setattr(runs_module, "RENDER_VERSION", runs_module.RENDER_VERSION + 1)
    assert run_key(config) != before
    real = dataclasses.replace(config, dataset="cub", dataset_options={},
                               data_root=str(fx.build_cub(tmp_path / "cub", segmentations=False)))
    redrawn = run_key(real)
    monkeypatch.undo()
    assert run_key(real) == redrawn  # a real dataset's key does not depend on the synthetic drawing code
    monkeypatch.setattr(runs_module, "TRAINING_VERSION", runs_module.TRAINING_VERSION + 1)
    assert run_key(real) != redrawn  # newer method code never loads an older code's run


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    config = TrainConfig.preset("smoke", method="byol", max_steps=2)
    root = tmp_path_factory.mktemp("runs")
    return config, root, train_or_load(config, root=root)


def test_a_finished_run_is_loaded_not_retrained(smoke_run, monkeypatch):
    config, root, run = smoke_run
    assert (run.path / "done.json").exists() and (run.path / "last.ckpt").exists()
    assert run.train_seconds > 0 and len(run.history) == 1
    monkeypatch.setattr(runs_module, "fit", lambda *a, **k: pytest.fail("a finished run was retrained"))
    again = train_or_load(config, root=root)
    assert again.path == run.path and again.train_seconds == pytest.approx(run.train_seconds)
    assert again.precision == run.precision == config.resolved_precision()  # recorded: not part of the key
    first, second = run.method.state_dict(), again.method.state_dict()
    assert all((first[k] == second[k]).all() for k in first)


def test_a_run_directory_is_held_by_one_process_at_a_time(tmp_path, monkeypatch):
    import fcntl
    import threading

    from fgssl_lib.train.run_lock import run_lock

    entered, acquired = threading.Event(), threading.Event()
    real_flock = fcntl.flock

    def flock(fd, operation):
        if threading.current_thread() is thread and operation == fcntl.LOCK_EX:
            entered.set()  # the second thread is inside flock, asking for the lock
        real_flock(fd, operation)

    def second():
        with run_lock(tmp_path):
            acquired.set()

    monkeypatch.setattr(fcntl, "flock", flock)
    thread = threading.Thread(target=second)
    with run_lock(tmp_path):
        thread.start()
        assert entered.wait(5), "the second thread never asked for the lock"
        assert not acquired.wait(0.5), "the second thread got the run while the first held it"
    assert acquired.wait(5), "the second thread did not get the run once the first released it"
    thread.join(5)


def test_the_dual_stage_pair_is_kept_as_one_locked_run_and_loaded_when_finished(monkeypatch, tmp_path):
    stage1 = dataclasses.replace(TrainConfig.preset("smoke", method="byol"), max_steps=1)
    stage2 = dataclasses.replace(TrainConfig.preset("smoke", method="cvsa"), max_steps=1)
    run = train_or_load(stage2, root=tmp_path, stage1=stage1)
    assert run.path.name == f"dual_stage-{run_key(stage1)}-{run_key(stage2)}"
    assert (run.path / "done.json").is_file() and not (run.path / "done.tmp").exists()
    assert list(run.history["stage"]) == [1, 2] and not (run.path / ".lock").stat().st_size
    monkeypatch.setattr(runs_module, "fit_dual_stage", lambda *a, **k: pytest.fail("a finished pair must be loaded"))
    again = train_or_load(stage2, root=tmp_path, stage1=stage1)
    assert again.path == run.path and type(again.method).__name__ == "CVSA"
    assert run.train_seconds > 0 and again.train_seconds == pytest.approx(run.train_seconds)
    (run.path / "done.json").write_text('{"stage1": "a", "stage2": "b"}')  # as fgssl 0.3 wrote it: time in history
    assert train_or_load(stage2, root=tmp_path, stage1=stage1).train_seconds == pytest.approx(run.train_seconds)
    (run.path / "stage2" / "last.ckpt").unlink()
    with pytest.raises(FileNotFoundError, match=r"has no stage2/last.ckpt .*retrain=True"):
        train_or_load(stage2, root=tmp_path, stage1=stage1)


def test_loading_only_finished_runs_names_the_missing_ones(monkeypatch, tmp_path):
    configs = method_configs(["byol", "cvsa"], "smoke")
    with pytest.raises(FileNotFoundError, match=r"no finished run for byol \(.*\), cvsa .*03_train_cvsa"):
        train_methods(configs, root=tmp_path, train=False)
    finished = Run(torch.nn.Module(), pd.DataFrame(), 1.0, tmp_path)
    finished.method.method_name = "byol"
    monkeypatch.setattr(runs_module, "load_run", lambda c, root=None: finished if c.method == "byol" else None)
    monkeypatch.setattr(runs_module, "train_or_load", lambda *a, **k: pytest.fail("must not train"))
    with pytest.warns(RuntimeWarning, match="no finished run for cvsa"):
        runs = train_methods(configs, root=tmp_path, train=False)
    assert list(runs) == ["byol"]


def test_the_multitask_variant_gets_its_own_copy_with_gap_at_test(monkeypatch, tmp_path):
    from fgssl_lib.train.fit import build_method

    calls = []

    def fake_train_or_load(config, root=None, retrain=False):
        calls.append((config.method, retrain))
        return Run(build_method(config), pd.DataFrame(), 1.0, tmp_path)

    monkeypatch.setattr(runs_module, "train_or_load", fake_train_or_load)
    runs = train_methods(method_configs(["lcr", "lcr_multitask"], "smoke"), retrain=True)
    assert runs["lcr"].method.test_pooling and not runs["lcr_multitask"].method.test_pooling
    assert calls == [("lcr", True), ("lcr", False)]  # the variant loads the run LCR just retrained


def test_trained_runs_keep_the_saliency_series_of_every_epoch_and_load_it_again(tmp_path):
    configs = method_configs(["cvsa", "byol"], "smoke", epochs=2)
    runs = train_methods(configs, root=tmp_path)
    images = run_snapshot_images(configs["cvsa"])[0]
    series = training_snapshots(runs["cvsa"], configs["cvsa"], images)
    assert series.labels() == ["init", "epoch 1", "epoch 2"]
    assert (runs["cvsa"].path / SNAPSHOTS).is_file() and runs["cvsa"].path.name == run_key(configs["cvsa"])
    again = train_methods({"cvsa": configs["cvsa"]}, root=tmp_path)["cvsa"]  # the finished run, loaded
    loaded = training_snapshots(again, configs["cvsa"], images)
    assert loaded.labels() == series.labels() and all(torch.equal(a, b) for a, b in zip(loaded.maps, series.maps))
    assert not (runs["byol"].path / SNAPSHOTS).exists()  # BYOL has no map of its own
    with pytest.raises(NotImplementedError):
        training_snapshots(runs["byol"], configs["byol"], images)


