"""Comparing methods in the training notebooks: configs, shared runs, printed differences, the collapse table."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from fgssl_lib import comparison
from fgssl_lib.comparison import collapse_table, difference_lines, method_configs, train_methods
from fgssl_lib.experiment import Run, run_key
from fgssl_lib.train import TrainConfig
from fgssl_lib.train.snapshots import SNAPSHOTS, run_snapshot_images, training_snapshots


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
    import dataclasses

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


def test_loading_only_finished_runs_names_the_missing_ones(monkeypatch, tmp_path):
    configs = method_configs(["byol", "cvsa"], "smoke")
    with pytest.raises(FileNotFoundError, match=r"no finished run for byol \(.*\), cvsa .*03_train_cvsa"):
        train_methods(configs, root=tmp_path, train=False)
    finished = Run(torch.nn.Module(), pd.DataFrame(), 1.0, tmp_path)
    monkeypatch.setattr(comparison, "load_run", lambda c, root=None: finished if c.method == "byol" else None)
    monkeypatch.setattr(comparison, "train_or_load", lambda *a, **k: pytest.fail("must not train"))
    with pytest.warns(RuntimeWarning, match="no finished run for cvsa"):
        runs = train_methods(configs, root=tmp_path, train=False)
    assert list(runs) == ["byol"]


def test_the_multitask_variant_gets_its_own_copy_with_gap_at_test(monkeypatch, tmp_path):
    calls = []

    def fake_train_or_load(config, root=None, retrain=False):
        calls.append((config.method, retrain))
        method = torch.nn.Module()
        method.test_pooling = True
        return Run(method, pd.DataFrame(), 1.0, tmp_path)

    monkeypatch.setattr(comparison, "train_or_load", fake_train_or_load)
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


def test_difference_lines_print_signed_differences_of_the_shared_metrics():
    results = {"a": {"knn": 20.0, "bg_gap": 10.0}, "b": {"knn": 27.5, "bg_gap": 4.0, "only_b": 1.0}}
    lines = difference_lines(results, "a", "b", ["knn", "bg_gap", "only_b"])
    assert lines == ["knn: b 27.5 vs a 20.0 (+7.5)", "bg_gap: b 4.0 vs a 10.0 (-6.0)"]
    with pytest.raises(KeyError, match="no results for 'c'"):
        difference_lines(results, "a", "c", ["knn"])


def test_collapse_table_flags_a_run_whose_embedding_std_falls_below_the_threshold(tmp_path):
    def run(stds: list[float] | None) -> Run:
        history = pd.DataFrame({"epoch": [0, 1, 2], "loss": [3.0, 2.0, 1.0]})
        if stds is not None:
            history["embedding_std"] = stds
        return Run(torch.nn.Module(), history, 1.0, tmp_path)

    table = collapse_table({"healthy": run([0.9, 0.8, 0.85]), "collapsed": run([0.7, 0.05, 0.02]),
                            "unmeasured": run(None)}, threshold=0.1)
    assert table["collapsed"].tolist() == [False, True, None]
    assert table.loc["collapsed", "embedding_std_min"] == pytest.approx(0.02)
    assert table.loc["collapsed", "embedding_std_last"] == pytest.approx(0.02)
    assert table.loc["healthy", "embedding_std_first"] == pytest.approx(0.9)
    assert math.isnan(table.loc["unmeasured", "embedding_std_min"])
    assert table.loc["healthy", "loss_last"] == pytest.approx(1.0)


def test_the_dual_stage_pair_is_kept_as_one_locked_run_and_loaded_when_finished(monkeypatch, tmp_path):
    import dataclasses

    from fgssl_lib.comparison import train_or_load_dual_stage

    stage1 = dataclasses.replace(TrainConfig.preset("smoke", method="byol"), max_steps=1)
    stage2 = dataclasses.replace(TrainConfig.preset("smoke", method="cvsa"), max_steps=1)
    run = train_or_load_dual_stage(stage1, stage2, root=tmp_path)
    assert (run.path / "done.json").is_file() and not (run.path / "done.tmp").exists()
    assert list(run.history["stage"]) == [1, 2] and not (run.path / ".lock").stat().st_size
    monkeypatch.setattr(comparison, "fit_dual_stage", lambda *a, **k: pytest.fail("a finished pair must be loaded"))
    again = train_or_load_dual_stage(stage1, stage2, root=tmp_path)
    assert again.path == run.path and type(again.method).__name__ == "CVSA"
