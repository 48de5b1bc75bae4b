"""Every notebook's title cell states its cost: measured at smoke and cpu, a FLOP estimate at colab and paper; every
training notebook fits a Colab T4 session at colab, every run it trains by default counted."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from fgssl_lib.cost import (
    CPU_SECONDS,
    CPU_TRAINING,
    MARKER,
    SMOKE_SECONDS,
    COLAB_HOURS,
    Training,
    cost_paragraph,
    cost_table,
    gpu_hours,
    main,
    stale_cost_paragraphs,
    trained_runs,
    training_notebooks,
)
from fgssl_lib.train import TrainConfig
from fgssl_lib.train.flops import training_flops

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_every_title_cell_ends_with_its_cost() -> None:
    assert {p.stem for p in NOTEBOOKS} == set(SMOKE_SECONDS) == set(CPU_SECONDS) | set(CPU_TRAINING)
    assert not set(CPU_SECONDS) & set(CPU_TRAINING)
    assert stale_cost_paragraphs(NOTEBOOKS) == [], "run `python -m fgssl_lib.cost`"
    assert main(["--check"]) == 0
    for path in NOTEBOOKS:
        title = nbformat.read(path, as_version=4).cells[0].source
        assert title.count(MARKER) == 1 and "`smoke`" in title and "`cpu`" in title and "`paper`" in title
    assert "estimates from FLOPs" in cost_paragraph("04_train_lcr") and "A100" in cost_paragraph("04_train_lcr")
    assert "`colab`: ~1.8 T4-hours" in cost_paragraph("03_train_cvsa") and "24 instead of 800" in cost_paragraph(
        "03_train_cvsa")


def test_the_flop_estimate_follows_the_passes_and_the_presets_epochs() -> None:
    # BYOL: 2 training passes (3 forwards each) + 2 momentum forwards per image, 800 epochs; MoCo v2: 3 + 1, 200
    assert training_flops("byol", images=1) == pytest.approx(800 * 4.1e9 * 8)
    assert training_flops("mocov2", images=1) == pytest.approx(200 * 4.1e9 * 4)
    assert training_flops("lcr", images=1) == pytest.approx(100 * 4.1e9 * 4)
    # the supervised references train one pass on labels, the uninformative-background ceiling included
    assert training_flops("supervised_oracle", images=1) == training_flops("supervised", images=1)
    assert training_flops("simclr", images=1) == pytest.approx(TrainConfig.preset("paper", method="simclr").epochs
                                                                * 4.1e9 * 6)
    assert training_flops("byol", images=1, preset="colab") == pytest.approx(24 * 4.1e9 * 8)


def test_every_run_a_notebook_trains_by_default_counts_and_each_fits_two_t4_hours_at_colab() -> None:
    # 03 trains the intensity ablation and the dual stage by default; 04's lcr_multitask is lcr's run evaluated
    assert trained_runs("03_train_cvsa") == (
        Training("byol", 24), *(Training(m, 24, localiser="spectral_residual") for m in ("byol_ss", "cvsa",
                                                                                          "cvsa_sigmoid_max")),
        Training("byol", 2, 3000, stage=1), Training("cvsa", 2, stage=2, localiser="spectral_residual"))
    assert [r.epochs for r in trained_runs("03_train_cvsa", "paper")] == [800, 800, 800, 800, 2, 2]
    assert [r.method for r in trained_runs("04_train_lcr")] == ["mocov2", "lcr", "lcr_dual_pooling"]
    assert trained_runs("05_evaluate") == ()
    table = cost_table()
    assert list(table.index) == list(training_notebooks()) == [
        "01_background_bias", "03_train_cvsa", "04_train_lcr", "06_reproduce_on_gpu"]
    assert (table["colab T4-h"] <= COLAB_HOURS).all() and (table["paper T4-h"] > COLAB_HOURS).any()
    assert gpu_hours("03_train_cvsa", "paper") == pytest.approx(
        (3 * 800 + 800 + 2) * 5994 * 8 * 4.1e9 / 3e12 / 3600 + 2 * 3000 * 8 * 4.1e9 / 3e12 / 3600)


def test_a_stale_paragraph_is_found_and_replaced_not_repeated(tmp_path: Path) -> None:
    copy = tmp_path / NOTEBOOKS[3].name
    shutil.copy(NOTEBOOKS[3], copy)
    notebook = nbformat.read(copy, as_version=4)
    notebook.cells[0].source = notebook.cells[0].source.replace("at `smoke`", "at `smoke` (old)")
    nbformat.write(notebook, copy)
    assert stale_cost_paragraphs([copy], write=True) == [copy]
    assert stale_cost_paragraphs([copy]) == []
    assert nbformat.read(copy, as_version=4).cells[0].source.count(MARKER) == 1


def test_a_notebook_that_trains_at_cpu_states_its_runs_time_in_the_cpu_study(monkeypatch) -> None:
    """03 trains byol, byol_ss, cvsa, cvsa_sigmoid_max and the dual stage: their study times with the run's localiser
    (the method's other arms where the study has none), not a stale figure."""
    import fgssl_lib.study
    from fgssl_lib.cost import cpu_training_seconds

    assert f"about {round(cpu_training_seconds('03_train_cvsa') / 60)} min" in cost_paragraph("03_train_cvsa")
    rows = [("byol", "none", 100), ("byol", "none", 120), ("byol_ss", "spectral_residual", 200),
            ("byol_ss", "annotation", 999), ("cvsa", "annotation", 300), ("cvsa", "self", 500),
            ("cvsa_sigmoid_max", "annotation", 400), ("byol", "none", 5000)]
    study = pd.DataFrame(rows, columns=["method", "localiser", "train_seconds"]).assign(init="scratch")
    study.loc[7, "init"] = "coarse_dual_stage"
    monkeypatch.setattr(fgssl_lib.study, "read_study", lambda: study)
    epochs = TrainConfig.preset("cpu").epochs
    assert cpu_training_seconds("03_train_cvsa") == pytest.approx(110 + 200 + 400 + 400 + (110 + 400) * 2 / epochs)
