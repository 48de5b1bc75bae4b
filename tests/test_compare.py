"""compare: every protocol of each method in one dict (names evaluated from one run kept apart), bias reports as one
table."""

import copy

import pandas as pd
import pytest
import torch

from fgssl_lib import compare
from fgssl_lib.compare import bias_table, evaluate_methods
from fgssl_lib.comparison import method_configs
from fgssl_lib.experiment import Run
from fgssl_lib.train.fit import build_method


def test_evaluate_methods_needs_runs_and_their_configs():
    with pytest.raises(ValueError, match="no runs"):
        evaluate_methods({}, {}, "smoke")
    config = method_configs(["byol"], "smoke")["byol"]
    with pytest.raises(KeyError, match="no config for \\['byol'\\]"):
        evaluate_methods({"byol": Run(build_method(config), pd.DataFrame(), 1.0, ".")}, {}, "smoke")


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
def untrained_results(tmp_path_factory):
    """Every protocol on two untrained smoke models that share weights but embed differently (LCR / MultiTask)."""
    torch.manual_seed(0)
    configs = method_configs(["lcr", "lcr_multitask"], "smoke", device="cpu")
    lcr = build_method(configs["lcr"])
    multitask = copy.deepcopy(lcr)
    multitask.test_pooling = False
    path = tmp_path_factory.mktemp("run")
    runs = {"lcr": Run(lcr, pd.DataFrame(), 2.0, path), "lcr_multitask": Run(multitask, pd.DataFrame(), 2.0, path)}
    return evaluate_methods(runs, configs, "smoke", fractions=(1.0, 0.5), log=lambda line: None), path


def test_method_metrics_has_every_protocol_as_percentages(untrained_results):
    metrics = untrained_results[0]["lcr"]
    expected = {"linear_100", "linear_50", "retrieval_rank1", "retrieval_mAP", "maxboxacc", "bg_gap", "linear_bg_gap"}
    expected |= {f"{p}_{v}" for p in ("knn", "linear") for v in compare.SYNTHETIC_VARIANTS}
    assert expected <= set(metrics)
    assert all(0.0 <= metrics[k] <= 100.0 for k in expected - {"bg_gap", "linear_bg_gap"})
    assert metrics["bg_gap"] == pytest.approx(metrics["knn_mixed_same"] - metrics["knn_mixed_rand"])
    assert metrics["linear_bg_gap"] == pytest.approx(metrics["linear_mixed_same"] - metrics["linear_mixed_rand"])
    assert metrics["maxboxacc_source"] == "saliency"  # the LCR branch map
    assert metrics["train_seconds"] == 2.0


def test_names_evaluated_from_one_run_keep_their_own_features(untrained_results):
    results, path = untrained_results
    assert (path / "features" / "lcr").is_dir() and (path / "features" / "lcr_multitask").is_dir()
    # GAP features (MultiTask) differ from the branch's weighted pooling: a shared cache would make them equal
    assert results["lcr"]["retrieval_mAP"] != results["lcr_multitask"]["retrieval_mAP"]
