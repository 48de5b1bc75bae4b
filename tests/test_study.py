"""The study's bookkeeping: CSV header and resume, mean ± std, and the claims read off the numbers."""

import ctypes
import multiprocessing
import signal
import sys

import pandas as pd
import pytest

from fgssl_lib import study
from fgssl_lib.study import COLUMNS, claims, read_study, run_study, to_results, write_csv
from fgssl_lib.viz import results_table


def _row(method: str, seed: int, **values: float) -> dict:
    row = {c: 0.0 for c in COLUMNS}
    row.update(method=method, seed=seed, **values)
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
    assert lines[4].startswith("byol,0,90.00,")  # two decimals, also for object-typed columns


def test_missing_csv_says_how_to_produce_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="rerun=True"):
        read_study(tmp_path / "none.csv")


def test_run_study_skips_finished_rows_and_rewrites_after_each_run(tmp_path, monkeypatch):
    calls = []

    def fake_run_one(method, seed, preset="cpu", **overrides):
        calls.append((method, seed))
        return _row(method, seed, knn_mixed_rand=10.0 + seed)

    monkeypatch.setattr(study, "run_one", fake_run_one)
    path = tmp_path / "s.csv"
    write_csv(pd.DataFrame([_row("byol", 0)]), path, command="x")
    rows = run_study(methods=("byol", "cvsa"), seeds=(0, 1), path=path, log=lambda _: None)
    assert calls == [("cvsa", 0), ("byol", 1), ("cvsa", 1)]
    assert len(rows) == 4 and len(read_study(path)) == 4
    with pytest.raises(ValueError, match="valid study methods"):
        run_study(methods=("nope",), path=path)


def test_results_keep_every_seed_in_study_order():
    rows = pd.DataFrame([_row("cvsa", 0, bg_gap=10.0), _row("cvsa", 1, bg_gap=20.0), _row("byol", 0, bg_gap=50.0)])
    results = to_results(rows)
    assert list(results) == ["byol", "cvsa"]
    assert results["cvsa"]["bg_gap"] == [10.0, 20.0]
    assert results_table(results, ["bg_gap"]).loc["cvsa", "bg_gap"] == "15.0 ± 7.1"


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
        ]
    table = claims(pd.DataFrame(rows)).set_index("question")["holds"]
    assert not table.iloc[0]  # MoCo v2's BG-Gap of 5 < 10: the baselines are not both biased
    assert table["(ii) byol_ss shrinks the BG-Gap and raises mixed_rand kNN over byol?"]
    assert not table["(iii) SS+Align beats SS alone (kNN mixed_rand)?"]  # +1 point inside a spread of 8
    assert table["(iv) LCR raises retrieval rank-1 over MoCo v2?"]
    assert table["(v) DualPooling collapses (retrieval rank-1 near chance, below LCR)?"]
    for row in rows:  # LCR itself near chance: DualPooling retrieving as badly is no collapse of its own
        if row["method"] == "lcr":
            row["retrieval_rank1"] -= 14
    table = claims(pd.DataFrame(rows)).set_index("question")["holds"]
    assert not table["(v) DualPooling collapses (retrieval rank-1 near chance, below LCR)?"]


def test_parallel_study_trains_in_processes_and_evaluates_dependents_after_their_run(tmp_path):
    logged = []
    rows = run_study("smoke", methods=("lcr_multitask", "byol", "lcr"), seeds=(0,), path=tmp_path / "p.csv",
                     log=logged.append, jobs=2)
    assert rows["method"].tolist() == ["lcr_multitask", "byol", "lcr"]  # the requested order, whatever finished first
    assert [line.split()[0] for line in logged].index("lcr") < [line.split()[0] for line in logged].index(
        "lcr_multitask")
    back = read_study(tmp_path / "p.csv")
    assert back["train_seconds"].tolist()[0] == back["train_seconds"].tolist()[2]  # one LCR run, evaluated twice
    with pytest.raises(ValueError, match="jobs must be >= 1"):
        run_study("smoke", methods=("byol",), path=tmp_path / "q.csv", jobs=0)


def _parent_death_signal() -> int:
    value = ctypes.c_int()
    ctypes.CDLL(None).prctl(2, ctypes.byref(value))  # PR_GET_PDEATHSIG
    return value.value


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_study_processes_end_when_the_study_is_killed():
    with multiprocessing.get_context("fork").Pool(1, initializer=study.single_threaded) as pool:
        assert pool.apply(_parent_death_signal) == signal.SIGTERM
    assert _parent_death_signal() == 0  # the study's own process is left alone
