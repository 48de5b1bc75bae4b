"""The study's bookkeeping: CSV header and resume, mean ± std, and the claims read off the numbers."""

import ctypes
import multiprocessing
import signal
import sys

import pandas as pd
import pytest
import torch

from fgssl_lib import study
from fgssl_lib.study import COLUMNS, STUDY_METHODS, read_study, run_study, write_csv
from fgssl_lib.verdicts import CLAIMS, calibration_table, claims, to_results
from fgssl_lib.scheduler import single_threaded
from fgssl_lib.viz import results_table
from fgssl_lib.viz.study import study_chart


def _row(method: str, seed: int, init: str = "scratch", **values: float) -> dict:
    row = {c: 0.0 for c in COLUMNS}
    row.update(method=method, init=init, localiser=study.committed_localiser(method), seed=seed, **values)
    return row


def test_csv_has_header_lines_and_round_trips(tmp_path):
    rows = pd.DataFrame([_row("byol", 0, knn_original=90.0), _row("byol", 1, knn_original=80.0)], dtype=object)
    path = tmp_path / "study.csv"
    write_csv(rows, path, command="python -m fgssl_lib.reproduce --only 07_cpu_study")
    lines = path.read_text().splitlines()
    assert lines[0] == "# command: python -m fgssl_lib.reproduce --only 07_cpu_study"
    assert lines[1].startswith("# date: ") and "torch==" in lines[2]
    back = read_study(path)
    assert list(back.columns) == list(COLUMNS)
    assert back["knn_original"].tolist() == [90.0, 80.0]
    assert lines[4].startswith("byol,scratch,none,0,90.00,")  # two decimals, also for object-typed columns


def test_csv_of_an_older_study_says_to_rerun(tmp_path):
    path = tmp_path / "old.csv"
    path.write_text("method,seed,knn_original\nbyol,0,90.0\n")
    with pytest.raises(ValueError, match="init.*rerun=True and fresh=True"):
        read_study(path)


def test_missing_csv_says_how_to_produce_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="rerun=True"):
        read_study(tmp_path / "none.csv")


def test_run_study_skips_finished_rows_and_rewrites_after_each_run(tmp_path, monkeypatch):
    calls = []

    def fake_run_one(method, init, localiser, seed, preset="cpu", **overrides):
        calls.append((method, init, seed) if localiser == study.committed_localiser(method) else
                     (method, init, localiser, seed))
        return {**_row(method, seed, init, knn_mixed_rand=10.0 + seed), "localiser": localiser}

    monkeypatch.setattr(study, "run_one", fake_run_one)
    monkeypatch.setattr(study, "train_stage1", lambda init, **_: calls.append(("stage1", init)) or "key")
    path = tmp_path / "s.csv"
    write_csv(pd.DataFrame([_row("byol", 0)]), path, command="x")
    arms = [("byol", "scratch"), ("cvsa", "scratch"), ("cvsa", "coarse_dual_stage")]
    rows = run_study(arms=arms, seeds=(0, 1), path=path, log=lambda _: None)
    assert calls == [("stage1", "coarse_dual_stage"), ("cvsa", "scratch", 0), ("cvsa", "coarse_dual_stage", 0),
                     ("byol", "scratch", 1), ("cvsa", "scratch", 1), ("cvsa", "coarse_dual_stage", 1)]
    assert len(rows) == 6 and len(read_study(path)) == 6
    assert rows["init"].tolist()[:3] == ["scratch", "scratch", "coarse_dual_stage"]
    assert rows["localiser"].tolist()[:3] == ["none", "annotation", "annotation"]  # as the first arms trained
    calls.clear()  # a label-free arm is another arm: only it trains, the rows of the others are kept
    rows = run_study(arms=[*arms, ("cvsa", "scratch", "self")], seeds=(0, 1), path=path, log=lambda _: None)
    assert calls == [("cvsa", "scratch", "self", 0), ("cvsa", "scratch", "self", 1)] and len(rows) == 8
    with pytest.raises(ValueError, match="valid localiser of byol"):
        run_study(arms=[("byol", "scratch", "self")], path=path)
    with pytest.raises(ValueError, match="valid study methods"):
        run_study(arms=[("nope", "scratch")], path=path)
    with pytest.raises(ValueError, match="valid initialisations"):
        run_study(arms=[("byol", "imagenet21k")], path=path)


def test_a_study_refuses_a_cached_run_trained_in_another_precision(monkeypatch, tmp_path):
    from fgssl_lib.runs import Run
    from fgssl_lib.train import TrainConfig

    here = TrainConfig.preset("smoke", method="byol").resolved_precision()
    other = "bf16-mixed" if here != "bf16-mixed" else "32-true"
    trained = {"precision": other}
    monkeypatch.setattr(study, "train_methods", lambda configs: {
        name: Run(torch.nn.Module(), pd.DataFrame(), 1.0, tmp_path, trained["precision"]) for name in configs})
    monkeypatch.setattr(study, "evaluate", lambda *a, **k: {"knn_mixed_rand": 10.0})
    for one in (lambda: study.run_one("byol", "scratch", "none", 0, "smoke"), lambda: study.calibration_one("byol", 0, "smoke")):
        with pytest.raises(ValueError, match=f"trained in {other}, but this machine trains byol .* in {here}"):
            one()
    for trained["precision"] in (here, None):  # the same precision, or a run finished before it was recorded
        assert study.run_one("byol", "scratch", "none", 0, "smoke")["knn_mixed_rand"] == 10.0


def test_arms_start_each_method_from_scratch_and_as_its_paper_does():
    arms = study.study_arms(("byol_dilo", "cvsa", "lcr", "supervised_oracle"))
    first = [("byol_dilo", "scratch", "annotation"), ("cvsa", "scratch", "annotation"), ("lcr", "scratch", "none"),
             ("supervised_oracle", "scratch", "none"), ("cvsa", "coarse_dual_stage", "annotation"),
             ("lcr", "coarse_supervised", "none")]
    label_free = [(m, i, loc) for loc in ("spectral_residual", "self")
                  for m, i in (("cvsa", "scratch"), ("byol_dilo", "scratch"), ("cvsa", "coarse_dual_stage"))]
    assert arms == first + label_free
    assert study.study_arms(("byol_dilo", "cvsa", "lcr", "supervised_oracle"), label_free=False) == first
    assert study.arm_label("lcr", "coarse_supervised") == "lcr [coarse_supervised]"
    assert study.arm_label("cvsa", "coarse_dual_stage", "self") == "cvsa [coarse_dual_stage] {self}"


def test_results_keep_every_seed_in_study_order():
    rows = pd.DataFrame([_row("cvsa", 0, bg_gap=10.0), _row("cvsa", 1, bg_gap=20.0), _row("byol", 0, bg_gap=50.0),
                         _row("byol", 0, "coarse_dual_stage", bg_gap=40.0)])
    results = to_results(rows)
    assert list(results) == ["byol", "cvsa {annotation}", "byol [coarse_dual_stage]"]
    assert results["cvsa {annotation}"]["bg_gap"] == [10.0, 20.0]
    assert results_table(results, ["bg_gap"]).loc["cvsa {annotation}", "bg_gap"] == "15.0 ± 7.1"


def test_claims_hold_only_beyond_the_seed_spread():
    rows = []
    for seed, jitter in enumerate((-1.0, 0.0, 1.0)):
        rows += [
            _row("byol", seed, bg_gap=60 + jitter, knn_mixed_rand=12 + jitter),
            _row("byol_ss", seed, bg_gap=30 + jitter, knn_mixed_rand=20 + jitter),
            _row("cvsa", seed, bg_gap=29 + 8 * jitter, knn_mixed_rand=21 + 8 * jitter),
            _row("mocov2", seed, bg_gap=5 + jitter, retrieval_rank1=17 + jitter),
            _row("lcr", seed, retrieval_rank1=25 + jitter),
            _row("lcr_dual_pooling", seed, retrieval_rank1=10 + jitter),
            _row("supervised", seed, knn_mixed_rand=20 + jitter),
            _row("supervised_oracle", seed, knn_mixed_rand=75 + jitter),
            _row("lcr", seed, "coarse_supervised", retrieval_rank1=25 + jitter, maxboxacc=60 + jitter),
            _row("mocov2", seed, "coarse_supervised", retrieval_rank1=25 + jitter),
        ]
    answers = claims(pd.DataFrame(rows))
    coarse = answers[answers["init"] == "coarse_supervised"].set_index("question")["holds"]
    assert not coarse["(iv) LCR raises retrieval rank-1 over MoCo v2?"]  # equal means from the coarse init
    assert answers.set_index("question").loc[
        "(vi) LCR's branch map finds the bird once LCR starts as its paper does (MaxBoxAcc)?", "holds"]
    table = answers[answers["init"] == "scratch"].set_index("question")["holds"]
    assert table["(vii) labels learn the habitat: supervised below its ceiling (kNN mixed_rand)?"]
    assert table["(i) byol background-biased (BG-Gap >= 10)?"]
    assert not table["(i) mocov2 background-biased (BG-Gap >= 10)?"]  # MoCo v2's BG-Gap of 5 < 10
    assert table["(ii) byol_ss shrinks the BG-Gap and raises mixed_rand kNN over byol?"]
    assert not table["(iii) SS+Align beats SS alone (kNN mixed_rand)?"]  # +1 point inside a spread of 8
    assert table["(iv) LCR raises retrieval rank-1 over MoCo v2?"]
    assert table["(v) DualPooling collapses (retrieval rank-1 near chance, below LCR)?"]
    for row in rows:  # LCR itself near chance: DualPooling retrieving as badly is no collapse of its own
        if row["method"] == "lcr":
            row["retrieval_rank1"] -= 14
    answers = claims(pd.DataFrame(rows))
    table = answers[answers["init"] == "scratch"].set_index("question")["holds"]
    assert not table["(v) DualPooling collapses (retrieval rank-1 near chance, below LCR)?"]


def test_the_label_free_claims_are_not_yet_measured_until_their_arms_have_rows():
    rows = [_row(m, s, bg_gap=gap + s, knn_mixed_rand=mixed + s) for s in range(3)
            for m, gap, mixed in (("byol", 80, 15), ("cvsa", 60, 30))]
    answers = claims(pd.DataFrame(rows)).set_index("question")
    waiting = answers.loc["(ix) cvsa: self-saliency matches or beats the detector (kNN mixed_rand)?"]
    assert waiting["holds"] is None and waiting["evidence"] == ("not yet measured: the study has no rows of "
                                                                "cvsa {self} and cvsa {spectral_residual}")
    for localiser, gap, mixed in (("spectral_residual", 70, 25), ("self", 71, 24)):
        rows += [{**_row("cvsa", s, bg_gap=gap + s, knn_mixed_rand=mixed + s), "localiser": localiser}
                 for s in range(3)]
    answers = claims(pd.DataFrame(rows)).set_index("question")["holds"]
    assert answers["(viii) with the label-free detector, cvsa shrinks the BG-Gap and raises mixed_rand kNN over byol?"]
    assert answers["(ix) cvsa: self-saliency matches or beats the detector (kNN mixed_rand)?"]  # 1 point below: within
    assert answers["(ii) cvsa shrinks the BG-Gap and raises mixed_rand kNN over byol?"]  # the annotation's, as before


def test_every_claim_names_study_methods_and_metrics():
    for claim in CLAIMS:
        assert {claim.method, claim.against} - {None} <= set(STUDY_METHODS), claim
        tested = set(claim.higher) | set(claim.lower) | set(claim.not_below) | {c for c, _ in claim.at_least}
        assert tested and tested <= set(COLUMNS), claim  # a claim that tests nothing always holds


def test_parallel_study_trains_in_processes_and_evaluates_dependents_after_their_run(tmp_path):
    logged = []
    arms = [("lcr_multitask", "scratch"), ("byol", "scratch"), ("lcr", "scratch")]
    rows = run_study("smoke", arms=arms, seeds=(0,), path=tmp_path / "p.csv", log=logged.append, jobs=2)
    assert rows["method"].tolist() == ["lcr_multitask", "byol", "lcr"]  # the requested order, whatever finished first
    assert [line.split()[0] for line in logged].index("lcr") < [line.split()[0] for line in logged].index(
        "lcr_multitask")
    back = read_study(tmp_path / "p.csv")
    assert back["train_seconds"].tolist()[0] == back["train_seconds"].tolist()[2]  # one LCR run, evaluated twice
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        run_study("smoke", arms=[("byol", "scratch")], path=tmp_path / "q.csv", jobs=0)


def _parent_death_signal() -> int:
    value = ctypes.c_int()
    ctypes.CDLL(None).prctl(2, ctypes.byref(value))  # PR_GET_PDEATHSIG
    return value.value


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_study_processes_end_when_the_study_is_killed():
    with multiprocessing.get_context("fork").Pool(1, initializer=single_threaded) as pool:
        assert pool.apply(_parent_death_signal) == signal.SIGTERM
    assert _parent_death_signal() == 0  # the study's own process is left alone


def test_calibration_runs_byol_and_the_ceiling_on_val_and_writes_the_record(tmp_path, monkeypatch):
    calls = []

    def fake_calibration_one(method, seed, preset="cpu", **overrides):
        calls.append((method, seed))
        mixed_rand = {"byol": 15.0 + seed, "supervised_oracle": 70.0 + 2 * seed}[method]
        return {"method": method, "seed": seed, "run": f"{method}-{seed}", "stream": "val",
                "knn_mixed_rand": mixed_rand, "bg_gap": 80.0 - seed}

    monkeypatch.setattr(study, "calibration_one", fake_calibration_one)
    record = study.calibrate("smoke", seeds=(0, 1, 2), path=tmp_path / "calibration.json", log=lambda _: None)
    assert calls == [("byol", 0), ("supervised_oracle", 0), ("byol", 1), ("supervised_oracle", 1), ("byol", 2),
                     ("supervised_oracle", 2)]
    assert record["learnable"]["value"] == 72.0 and record["learnable"]["met"]
    assert record["biased"]["value"] == 79.0 and record["stable"]["value"] == 1.0
    assert record["budget"]["epochs"] == 1 and len(record["runs"]) == 6
    assert record["budget"]["calibration_val_images"] is None  # smoke reads its usual val size
    assert study.read_calibration(tmp_path / "calibration.json") == record
    assert calibration_table(record).loc["stable", "seeds"] == "15.0, 16.0, 17.0"
    with pytest.raises(FileNotFoundError, match="rerun=True"):
        study.read_calibration(tmp_path / "none.json")


def test_the_cpu_calibration_reads_a_larger_val_stream_than_the_benchmark_default():
    from fgssl_lib.data.synthetic import DEFAULT_NUM_IMAGES

    assert study.CALIBRATION_VAL_IMAGES["cpu"] == 2500 > DEFAULT_NUM_IMAGES["val"]
    assert study.budget("cpu")["calibration_val_images"] == 2500


def test_the_budget_gives_the_batch_per_optimizer_step_on_a_gpu(monkeypatch) -> None:
    import torch

    from fgssl_lib.train import TrainConfig

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the micro-batch is "auto" there
    monkeypatch.setattr(TrainConfig, "resolved_precision", lambda self: "16-mixed")
    assert study.budget("cpu")["batch_size"] == 64


def test_the_ceiling_trains_on_uninformative_backgrounds_of_the_synthetic_benchmark_only():
    from fgssl_lib.train.recipes import method_configs

    configs = method_configs(["supervised", "supervised_oracle"], "cpu", dataset_options={"num_classes": 8})
    assert configs["supervised_oracle"].dataset_options["rho"] == 1 / 8
    assert "rho" not in configs["supervised"].dataset_options
    assert configs["supervised_oracle"].method_options == {} and configs["supervised_oracle"].lr == 0.2
    with pytest.raises(ValueError, match="use 'supervised' there"):
        method_configs(["supervised_oracle"], "cpu", dataset="cub", data_root="/nowhere")


def test_study_chart_shows_each_seed_chance_and_the_ceiling():
    rows = pd.DataFrame([_row("byol", s, knn_mixed_rand=12.0 + s, bg_gap=80.0) for s in range(3)]
                        + [_row("supervised_oracle", s, knn_mixed_rand=74.0 + s, bg_gap=2.0) for s in range(3)]
                        + [_row("byol", s, "coarse_dual_stage", knn_mixed_rand=20.0, bg_gap=70.0) for s in range(3)])
    figure = study_chart(to_results(rows))
    mixed_rand, gap = figure.axes
    assert [line.get_xdata()[0] for line in mixed_rand.lines if line.get_linestyle() != "None"] == [10.0, 75.0]
    dots = [line for line in mixed_rand.lines if line.get_marker() == "o"]
    assert len(dots) == 3 and all(len(line.get_xdata()) == 3 for line in dots)  # every seed of every arm
    assert gap.get_legend() is None  # one legend, inside the first panel, beside the short bars
    assert [t.get_text() for t in mixed_rand.get_legend().get_texts()] == ["scratch", "coarse_dual_stage"]


def test_the_reading_is_generated_from_the_rows_and_follows_them():
    from fgssl_lib.verdicts import reading, study_table

    rows = []
    for seed, jitter in enumerate((-1.0, 0.0, 1.0)):
        rows += [_row("byol", seed, bg_gap=60 + jitter, knn_mixed_rand=12 + jitter, train_seconds=600.0),
                 _row("cvsa", seed, bg_gap=30 + jitter, knn_mixed_rand=30 + jitter, train_seconds=660.0)]
    calibration = {"learnable": {"value": 78.75, "target": 70.0, "met": True},
                   "biased": {"value": 86.19, "target": 40.0, "met": True},
                   "stable": {"value": 3.5, "target": 3.0, "met": False},
                   "budget": {"preset": "cpu", "num_images": 9600, "epochs": 8, "image_size": 64,
                              "precision": "32-true", "calibration_val_images": 2500}}
    text = reading(pd.DataFrame(rows), calibration)
    assert "not met: stable" in text and "learnable 78.8%" in text and "2,500 images" in text
    assert "**(ii) cvsa shrinks the BG-Gap and raises mixed_rand kNN over byol: holds (scratch).**" in text
    assert "kNN mixed_rand cvsa {annotation} 30.0 ± 1.0 vs byol 12.0 ± 1.0" in text and "an upper bound" in text
    assert "**(ix) cvsa: self-saliency matches or beats the detector (kNN mixed_rand): not yet measured.**" in text and "1 h 3 min of training" in text
    rows[-1]["knn_mixed_rand"] = 0.0  # one seed of CVSA collapses: the spread now covers the gain, the verdict follows
    assert "over byol: does not hold (scratch)" in reading(pd.DataFrame(rows), calibration)
    table = study_table(pd.DataFrame(rows))
    assert table.loc[("byol", "scratch", "none"), "train (min)"] == "10 ± 0" and "BG-Gap (points)" in table.columns


def test_the_budget_reads_as_one_line():
    from fgssl_lib.verdicts import budget_line

    line = budget_line({"num_images": 9600, "epochs": 8, "image_size": 64, "batch_size": 64,
                        "backbone": "resnet_narrow", "precision": "32-true", "lr": {"byol": 0.05, "supervised": 0.2}})
    assert line == ("9,600 training images x 8 epochs at 64 px, batch 64, resnet_narrow, 32-true; learning rate "
                    "byol 0.05, supervised 0.2")
