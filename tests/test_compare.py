"""compare: configs shared with the other notebooks, test-time options of evaluated-only methods, every protocol in
one dict, bias reports as one table."""

import pandas as pd
import pytest
import torch

from fgssl_lib import compare
from fgssl_lib.compare import bias_table, compare_methods, load_run, method_config, method_metrics
from fgssl_lib.experiment import Run, run_key
from fgssl_lib.train import TrainConfig
from fgssl_lib.train.fit import build_method


def test_method_config_is_the_notebooks_config_so_runs_are_shared():
    config, options = method_config("byol", "smoke", seed=1)
    assert run_key(config) == run_key(TrainConfig.preset("smoke", method="byol", seed=1))
    assert options == {}
    assert method_config("byol", "cpu", epochs=3)[0].epochs == 3
    assert method_config("byol", "cpu", epochs=None)[0].epochs == TrainConfig.preset("cpu").epochs


def test_lcr_multitask_is_the_lcr_run_without_weighted_pooling():
    config, options = method_config("lcr_multitask", "smoke")
    assert config.method == "lcr" and options == {"test_pooling": False}
    assert run_key(config) == run_key(method_config("lcr", "smoke")[0])


def test_a_real_dataset_replaces_the_benchmark():
    config, _ = method_config("byol", "cpu", dataset="cub", data_root="/data/CUB_200_2011")
    assert (config.dataset, config.data_root) == ("cub", "/data/CUB_200_2011")


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid methods:.*lcr_multitask"):
        method_config("byl", "smoke")
    with pytest.raises(ValueError, match="at least one method"):
        compare_methods([], "smoke")


def _fake_run(config: TrainConfig) -> Run:
    return Run(build_method(config), pd.DataFrame(), 1.5, config.checkpoint_dir or ".")


def test_load_run_sets_the_test_options(monkeypatch):
    config, options = method_config("lcr_multitask", "smoke")
    monkeypatch.setattr(compare, "train_or_load", lambda c, root=None, retrain=False: _fake_run(c))
    assert load_run("lcr_multitask", config, options).method.test_pooling is False
    with pytest.raises(ValueError, match="no attribute 'no_such_option'"):
        load_run("lcr_multitask", config, {"no_such_option": 1})


def test_bias_table_has_a_row_per_method_and_protocol():
    synthetic = {"knn": {"original": 90.0, "mixed_same": 80.0, "mixed_rand": 20.0},
                 "linear": {"original": 95.0, "mixed_same": 85.0, "mixed_rand": 35.0},
                 "bg_gap": {"knn": 60.0, "linear": 50.0}}
    table = bias_table({"byol": synthetic, "supervised": synthetic})
    assert list(table.index) == [("byol", "knn"), ("byol", "linear"), ("supervised", "knn"), ("supervised", "linear")]
    assert table.loc[("byol", "linear"), "BG-Gap"] == 50.0 and table.loc[("byol", "knn"), "mixed_rand"] == 20.0
    real = bias_table({"byol": {"knn": {"original": 40.0, "foreground": 30.0, "blackout": 10.0}}})
    assert list(real.columns) == ["original", "foreground", "blackout"]
    with pytest.raises(ValueError, match="no reports"):
        bias_table({})


@pytest.fixture(scope="module")
def untrained_metrics(tmp_path_factory):
    """Every protocol on two untrained smoke models that share weights but embed differently (LCR / MultiTask)."""
    torch.manual_seed(0)
    config, _ = method_config("lcr", "smoke", device="cpu")
    method = build_method(config)
    cache = tmp_path_factory.mktemp("features")
    lcr = method_metrics(method, config, "smoke", fractions=(1.0, 0.5), cache_dir=cache / "lcr")
    method.test_pooling = False
    multitask = method_metrics(method, config, "smoke", fractions=(1.0, 0.5), cache_dir=cache / "lcr_multitask")
    return lcr, multitask


def test_method_metrics_has_every_protocol_as_percentages(untrained_metrics):
    metrics, _ = untrained_metrics
    expected = {"linear_100", "linear_50", "retrieval_rank1", "retrieval_mAP", "maxboxacc", "bg_gap", "linear_bg_gap"}
    expected |= {f"{p}_{v}" for p in ("knn", "linear") for v in compare.SYNTHETIC_VARIANTS}
    assert expected <= set(metrics)
    assert all(0.0 <= metrics[k] <= 100.0 for k in expected - {"bg_gap", "linear_bg_gap"})
    assert metrics["bg_gap"] == pytest.approx(metrics["knn_mixed_same"] - metrics["knn_mixed_rand"])
    assert metrics["linear_bg_gap"] == pytest.approx(metrics["linear_mixed_same"] - metrics["linear_mixed_rand"])
    assert metrics["maxboxacc_source"] == "saliency"  # the LCR branch map


def test_shared_weights_in_separate_cache_folders_are_not_mixed_up(untrained_metrics):
    lcr, multitask = untrained_metrics
    assert lcr["retrieval_mAP"] != multitask["retrieval_mAP"]  # GAP features differ from weighted pooling
