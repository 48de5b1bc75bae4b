"""train_or_load shares finished runs by configuration; evaluate returns the study's metrics."""

import dataclasses

import pytest

from fgssl_lib import experiment
from fgssl_lib.experiment import evaluate, paper_metrics, run_key, train_or_load
from fgssl_lib.train import TrainConfig


def test_run_key_follows_the_weights_not_the_hardware():
    config = TrainConfig.preset("smoke", method="byol")
    assert run_key(config) == run_key(dataclasses.replace(config, device="cpu", num_workers=2, progress_bar=True))
    assert run_key(config) != run_key(dataclasses.replace(config, epochs=2))
    assert run_key(config) != run_key(dataclasses.replace(config, seed=1))
    assert run_key(config).startswith("byol-seed0-")


def test_run_key_changes_when_the_synthetic_benchmark_is_redrawn(monkeypatch):
    from fgssl_lib import experiment

    config = TrainConfig.preset("smoke", method="byol")
    before = run_key(config)
    monkeypatch.setattr(experiment, "RENDER_VERSION", experiment.RENDER_VERSION + 1)
    assert run_key(config) != before
    real = dataclasses.replace(config, dataset="cub", dataset_options={})
    redrawn = run_key(real)
    monkeypatch.undo()
    assert run_key(real) == redrawn  # a real dataset's key does not depend on the synthetic drawing code
    monkeypatch.setattr(experiment, "TRAINING_VERSION", experiment.TRAINING_VERSION + 1)
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
    monkeypatch.setattr(experiment, "fit", lambda *a, **k: pytest.fail("a finished run was retrained"))
    again = train_or_load(config, root=root)
    assert again.path == run.path and again.train_seconds == pytest.approx(run.train_seconds)
    first, second = run.method.state_dict(), again.method.state_dict()
    assert all((first[k] == second[k]).all() for k in first)


def test_evaluate_returns_every_study_metric_as_a_percentage(smoke_run):
    config, _, run = smoke_run
    metrics = evaluate(run.method, config, "smoke")
    for key in ("knn_original", "knn_only_fg", "knn_only_bg", "knn_mixed_same", "knn_mixed_rand",
                "linear_mixed_rand", "retrieval_rank1", "retrieval_mAP", "maxboxacc"):
        assert 0.0 <= metrics[key] <= 100.0, key
    assert metrics["bg_gap"] == pytest.approx(metrics["knn_mixed_same"] - metrics["knn_mixed_rand"])
    assert metrics["maxboxacc_source"] == "gradcam"  # BYOL has no saliency map of its own


def test_paper_metrics_are_named_like_the_reported_table(smoke_run):
    from fgssl_lib.reported import REPORTED

    config, _, run = smoke_run
    metrics = paper_metrics(run.method, config, fractions=(1.0, 0.5), linear_epochs=2, test_images=48)
    reported_names = set(REPORTED["metric"])
    assert {"linear_top1", "linear_top5", "linear_top1_50", "retrieval_rank1", "retrieval_rank5",
            "retrieval_mAP"} <= set(metrics) & reported_names
    assert all(0.0 <= v <= 100.0 for k, v in metrics.items() if k != "maxboxacc_source")


def test_a_run_directory_is_held_by_one_process_at_a_time(tmp_path):
    import threading
    import time

    from fgssl_lib.train.run_lock import run_lock

    order = []

    def second():
        with run_lock(tmp_path):
            order.append("second")

    with run_lock(tmp_path):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.2)
        order.append("first done")
    thread.join(5)
    assert order == ["first done", "second"]
