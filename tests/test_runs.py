"""Runs: keyed by the weights' settings, trained once under a lock and loaded after, the dual-stage pair included;
one config and one run per notebook method name, variants evaluated from another name's run."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch

import fixtures_real as fx
from fgssl_lib import runs as runs_module
from fgssl_lib.runs import Run, run_key, train_methods, train_or_load
from fgssl_lib.train import TrainConfig
from fgssl_lib.train.recipes import method_configs, reproduction_configs
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


def test_configs_share_the_run_of_the_trained_variant_and_follow_the_parameters():
    configs = method_configs(["lcr", "lcr_multitask", "byol"], "smoke", seed=3, epochs=2)
    assert configs["lcr_multitask"] == configs["lcr"]  # MultiTask is the LCR run evaluated differently
    assert configs["byol"] == TrainConfig.preset("smoke", method="byol", seed=3, epochs=2)
    assert run_key(configs["byol"]) == run_key(TrainConfig.preset("smoke", method="byol", seed=3, epochs=2))
    assert method_configs(["byol"], "smoke")["byol"].epochs == TrainConfig.preset("smoke").epochs


def test_a_real_dataset_replaces_the_synthetic_options():
    config = method_configs(["cvsa"], "cpu", dataset="cub", data_root="/data/cub")["cvsa"]
    assert (config.dataset, config.data_root, config.dataset_options) == ("cub", "/data/cub", {})
    with pytest.raises(ValueError, match="methods is empty"):
        method_configs([], "cpu")


def test_the_synthetic_benchmark_at_the_paper_preset_is_synthetic_and_takes_its_options():
    from fgssl_lib.train.fit import training_set

    config = method_configs(["byol"], "paper", dataset="synthetic", num_images=4)["byol"]
    assert (config.dataset, config.dataset_options, config.num_images) == ("synthetic", {"image_size": 224}, 4)
    stage1 = dataclasses.replace(config, dataset_options={**config.dataset_options, "seed": 1})  # 03's dual stage
    assert len(training_set(dataclasses.replace(stage1, dataset_options={"image_size": 32, "seed": 1}))) == 4


def test_a_paper_run_can_be_sized_down_and_none_keeps_the_preset():
    config = method_configs(["cvsa"], "paper", dataset="cub", data_root="/data/cub", seed=1, batch_size=8,
                            num_images=16, epochs=1, precision="32-true", device=None)["cvsa"]
    assert (config.batch_size, config.num_images, config.epochs, config.precision, config.seed) == (
        8, 16, 1, "32-true", 1)
    assert config.device == TrainConfig.preset("paper", method="cvsa").device


def test_reproduction_configs_start_as_the_reported_runs_or_fall_back_to_smoke():
    from fgssl_lib.paper_numbers import INIT

    paper = reproduction_configs(["lcr", "byol_dilo"], "paper", "aircraft", data_root="/data/air", epochs=None)
    assert {c.split for c in paper.values()} == {"trainval"} and paper["lcr"].dataset == "aircraft"
    assert paper["byol_dilo"] == TrainConfig.preset("paper", method="byol_dilo", dataset="aircraft",
                                                    data_root="/data/air", split="trainval").with_init(INIT)
    smoke = reproduction_configs(["lcr"], "cpu", "cub", seed=2)
    assert smoke["lcr"] == TrainConfig.preset("smoke", method="lcr", seed=2)
    with pytest.raises(ValueError, match="valid initialisations: paper, reported"):
        reproduction_configs(["lcr"], "paper", "cub", init="imagenet")
    colab = reproduction_configs(["lcr", "byol", "byol_dilo"], "colab", "cub", init="paper")
    assert {m: c.epochs for m, c in colab.items()} == {"lcr": 50, "byol": 24, "byol_dilo": 24}
    assert colab["byol"].pretrained == "imagenet" and colab["byol"].method_options["freeze_early"]  # CVSA's dual stage
    assert TrainConfig.preset("colab", method="byol_dilo").pretrained == "imagenet"  # DiLo's scratch: not in 2 hours
    assert TrainConfig.preset("colab", method="cvsa").dataset == "cub" and colab["lcr"].image_size == 224


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


def test_the_short_dual_stage_recipe_starts_byol_from_scratch_on_another_draw():
    from fgssl_lib.train.recipes import dual_stage_configs

    cvsa = method_configs(["cvsa"], "smoke", seed=2, epochs=3)["cvsa"]
    stage1, stage2 = dual_stage_configs("smoke", cvsa, 2, seed=2, epochs=3)
    assert (stage1.method, stage1.epochs, stage1.dataset_options["seed"], stage1.pretrained) == ("byol", 2, 3, None)
    assert stage2 == dataclasses.replace(cvsa, epochs=2)
    assert dual_stage_configs("smoke", cvsa, 9, seed=2)[1].epochs == 3  # never longer than the single-stage run
