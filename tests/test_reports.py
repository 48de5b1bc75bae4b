"""Reports: one vocabulary of metrics over the synthetic benchmark or a real dataset's box variants, and the tables
built from it."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from fgssl_lib import reports
from fgssl_lib.reports import (
    bias_lines,
    bias_table,
    collapse_table,
    difference_lines,
    evaluate,
    evaluate_runs,
    mass_on_object,
    splits,
    table_metrics,
    training_table,
)
from fgssl_lib.methods import evaluated_as
from fgssl_lib.runs import Run
from fgssl_lib.train.recipes import method_configs
from fgssl_lib.train import TrainConfig
from fgssl_lib.train.fit import build_method

VARIANTS = ("original", "only_fg", "only_bg", "mixed_same", "mixed_rand")


@pytest.fixture(scope="module")
def untrained(tmp_path_factory):
    """Two untrained smoke models that share weights but embed differently (LCR / MultiTask)."""
    torch.manual_seed(0)
    configs = method_configs(["lcr", "lcr_multitask"], "smoke", device="cpu")
    lcr = build_method(configs["lcr"])
    multitask = evaluated_as(lcr, "lcr_multitask")  # the same weights, GAP features at test time
    path = tmp_path_factory.mktemp("run")
    runs = {"lcr": Run(lcr, pd.DataFrame(), 2.0, path), "lcr_multitask": Run(multitask, pd.DataFrame(), 2.0, path)}
    return runs, configs, path


@pytest.fixture(scope="module")
def results(untrained):
    runs, configs, path = untrained
    return evaluate_runs(runs, configs, "smoke", fractions=(1.0, 0.5), log=lambda line: None)


def test_every_protocol_is_named_in_one_vocabulary_as_percentages(results):
    metrics = results["lcr"]
    expected = {f"{p}_{v}" for p in ("knn", "linear") for v in VARIANTS}
    expected |= {"linear_mixed_rand_50", "linear_mixed_rand_top5", "retrieval_rank1", "retrieval_rank5",
                 "retrieval_map", "maxboxacc"}
    assert expected <= set(metrics)
    assert all(0.0 <= metrics[k] <= 100.0 for k in expected)
    assert metrics["bg_gap"] == pytest.approx(metrics["knn_mixed_same"] - metrics["knn_mixed_rand"])
    assert metrics["linear_bg_gap"] == pytest.approx(metrics["linear_mixed_same"] - metrics["linear_mixed_rand"])
    assert metrics["maxboxacc_source"] == "saliency"  # the LCR branch map
    assert metrics["train_seconds"] == 2.0
    assert set(table_metrics(TrainConfig.preset("smoke"), (1.0, 0.5))) <= set(metrics)


def test_names_evaluated_from_one_run_keep_their_own_features(untrained, results):
    path = untrained[2]
    assert len(list((path / "features").glob("features-*.pt"))) == 2 * (1 + len(VARIANTS))  # each name, each split
    # GAP features (MultiTask) differ from the branch's weighted pooling: a shared cache would make them equal
    assert results["lcr"]["retrieval_map"] != results["lcr_multitask"]["retrieval_map"]


def test_the_probe_variant_moves_linear_fractions_and_retrieval(untrained, results):
    runs, configs, _ = untrained
    original = evaluate(runs["lcr"], configs["lcr"], "smoke", ("linear", "retrieval"), (1.0, 0.5), probe="original")
    assert "linear_original_50" in original and "linear_mixed_rand_50" not in original and "knn_original" not in original
    assert original["linear_original"] == pytest.approx(results["lcr"]["linear_original"])  # one probe per fraction
    with pytest.raises(ValueError, match="valid probe variants"):
        evaluate(runs["lcr"], configs["lcr"], "smoke", ("retrieval",), probe="blackout")
    with pytest.raises(ValueError, match="valid protocols"):
        evaluate(runs["lcr"], configs["lcr"], "smoke", ("knn_top1",))


def test_evaluate_runs_needs_runs_and_their_configs():
    with pytest.raises(ValueError, match="no runs"):
        evaluate_runs({}, {}, "smoke")
    config = method_configs(["byol"], "smoke")["byol"]
    with pytest.raises(KeyError, match="no config for \\['byol'\\]"):
        evaluate_runs({"byol": Run(build_method(config), pd.DataFrame(), 1.0, ".")}, {}, "smoke")


def test_val_and_test_streams_are_different_images():
    config = TrainConfig.preset("smoke", method="byol")
    val, test = splits(config, "smoke", "val"), splits(config, "smoke", "test")
    assert set(test) == {"train", *VARIANTS} and len(test["mixed_rand"]) == reports.SYNTHETIC_TEST_IMAGES["smoke"]
    assert not (val["mixed_rand"][0]["image"] == test["mixed_rand"][0]["image"]).all()
    with pytest.raises(ValueError, match="valid evaluation streams: test, val"):
        splits(config, "smoke", "train")


def test_a_larger_synthetic_val_stream_extends_the_default_one():
    config = TrainConfig.preset("smoke", method="byol")
    default, larger = splits(config, "smoke", "val"), splits(config, "smoke", "val", num_images=100)
    assert len(larger["mixed_rand"]) == 100 and len(default["mixed_rand"]) == reports.SYNTHETIC_TEST_IMAGES["smoke"]
    assert (larger["mixed_rand"][3]["image"] == default["mixed_rand"][3]["image"]).all()  # the same first images
    real = TrainConfig.preset("smoke", method="byol", dataset="cub", data_root="/nowhere")
    with pytest.raises(ValueError, match="is used whole: pass num_images=None"):
        splits(real, "smoke", "val", num_images=100)


def test_a_real_dataset_is_read_through_its_box_variants():
    config = TrainConfig.preset("smoke", dataset="cub", dataset_options={})
    assert reports.variants(config).names == ("original", "foreground", "blackout")
    assert table_metrics(config, headline=True) == ["linear_original", "knn_original", "fg_gap", "retrieval_rank1",
                                                    "maxboxacc"]


def test_bias_table_has_a_row_per_method_and_protocol():
    synthetic = {"knn_original": 90.0, "knn_mixed_same": 80.0, "knn_mixed_rand": 20.0, "bg_gap": 60.0,
                 "linear_original": 95.0, "linear_mixed_same": 85.0, "linear_mixed_rand": 35.0, "linear_bg_gap": 50.0,
                 "retrieval_rank1": 10.0}
    table = bias_table({"byol": synthetic, "supervised": synthetic})
    assert list(table.index) == [("byol", "knn"), ("byol", "linear"), ("supervised", "knn"), ("supervised", "linear")]
    assert table.loc[("byol", "linear"), "BG-Gap"] == 50.0 and table.loc[("byol", "knn"), "mixed_rand"] == 20.0
    real = bias_table({"byol": {"knn_original": 40.0, "knn_foreground": 30.0, "knn_blackout": 10.0, "fg_gap": 20.0}})
    assert list(real.columns) == ["original", "foreground", "blackout", "FG-Gap"]
    with pytest.raises(ValueError, match="no kNN or linear results"):
        bias_table({"byol": {"retrieval_rank1": 1.0}})


def test_bias_lines_read_the_gap_or_the_blackout_drop():
    row = {"knn_original": 90.0, "knn_only_fg": 12.0, "knn_only_bg": 60.0, "knn_mixed_same": 99.0,
           "knn_mixed_rand": 13.0, "bg_gap": 86.0, "linear_bg_gap": 70.0}
    lines, numbers = bias_lines({"byol": row, "supervised": {**row, "bg_gap": 80.0}}, "byol", "supervised", 10)
    assert numbers == {"bg_gap_byol": 86.0, "bg_gap_supervised": 80.0}
    assert "leans on the background" in lines[0] and "chance 10 %" in lines[0]
    assert lines[-1] == "the byol BG-Gap is larger than the supervised reference's (86.0 vs 80.0 points)"
    _, real = bias_lines({"byol": {"knn_original": 40.0, "knn_blackout": 15.0}}, "byol", "byol", 200)
    assert real == {"blackout_drop_byol": 25.0}


def test_mass_on_object_is_the_share_of_the_map_inside_the_mask():
    masks = torch.zeros(2, 4, 4)
    masks[:, :2] = 1
    maps = torch.stack([masks[0], torch.ones(4, 4)])
    assert mass_on_object(maps, masks) == pytest.approx((1.0 + 0.5) / 2)


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


def test_training_table_shows_whole_seconds_not_raw_floats(tmp_path):
    run = Run(torch.nn.Module(), pd.DataFrame({"epoch": [0, 1], "loss": [2.0, 1.0]}), 145.58241930699978,
              tmp_path / "byol-seed0-0123456789")
    table = training_table({"byol": run})
    assert table.loc["byol"].tolist() == [2, 146, "byol-seed0-0123456789"]
    assert list(table.columns) == ["epochs", "training (s)", "run"]


def test_our_numbers_sit_beside_the_papers_and_a_dataset_without_them_gets_empty_cells():
    ours = {"lcr": {"linear_original": 50.0, "retrieval_rank1": 30.0}}
    table = reports.beside_reported(ours, "cub", ["linear_original", "retrieval_rank1"])
    assert table.loc["lcr", ("linear_original", "paper")] == 71.31
    assert table.loc["lcr", ("retrieval_rank1", "ours")] == 30.0
    assert reports.beside_reported(ours, "nabirds", ["linear_original"])[("linear_original", "paper")].isna().all()


def test_view_set_draws_the_benchmark_at_the_asked_size():
    images = reports.view_set("synthetic", image_size=32, num_images=5, seed=1)
    assert len(images) == 5 and tuple(images[0]["image"].shape) == (3, 32, 32)


def test_a_real_dataset_is_evaluated_on_its_box_variants(tmp_path):
    from fixtures_real import build_cub

    root = build_cub(tmp_path / "cub")
    config = method_configs(["byol"], "smoke", dataset="cub", data_root=str(root), device="cpu")["byol"]
    run = Run(build_method(config), pd.DataFrame(), 1.0, tmp_path)
    metrics = evaluate(run, config, "smoke", ("knn", "retrieval", "maxboxacc"))  # one image a class: no probe split
    assert {"knn_original", "knn_foreground", "knn_blackout", "retrieval_map", "maxboxacc"} <= set(metrics)
    assert "knn_mixed_rand" not in metrics
    assert metrics["fg_gap"] == pytest.approx(metrics["knn_foreground"] - metrics["knn_blackout"])
    assert list(bias_table({"byol": metrics}).columns) == ["original", "foreground", "blackout", "FG-Gap"]
