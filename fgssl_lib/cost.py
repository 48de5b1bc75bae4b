"""What each notebook costs, stated in its title cell: measured at ``smoke`` and ``cpu``, estimated at ``colab`` and
``paper``.

The ``smoke`` and ``cpu`` times were measured on this project's 2-core CPU (``smoke``: ``pytest --durations`` of
the notebook tests, the runs shared as in ``make test``; ``cpu``: ``make book`` with no trained runs, the README's
figures), except for the notebooks that train at ``cpu`` (:data:`CPU_TRAINING`): their runs' training time is read
from the committed CPU study (:func:`cpu_training_seconds`), which trained the same configurations. No GPU has
measured a ``colab`` or ``paper`` run yet (``python -m fgssl_lib.bench gpu`` will), so those figures are FLOP
estimates on CUB-200-2011 (5,994 training images): a ResNet-50 forward pass at 224 px is
:data:`~fgssl_lib.train.flops.RESNET50_FORWARD_FLOPS`, a training pass (forward and backward) three times
that, and each method makes :data:`~fgssl_lib.train.flops.PASSES` per image; epochs are the preset's. Divided by
an effective throughput per GPU (:data:`GPU_FLOPS`:
ResNet-50 mixed-precision training at about 250 images/s on a T4 and 2,500 on an A100). Every run a notebook
trains with its default parameters counts (:func:`trained_runs`, from the run plan: ablations and the dual stage
included); frozen early stages (CVSA's dual stage) are counted as trained, so those runs are over-estimated.
``python -m fgssl_lib.cost`` writes the paragraph into every notebook's title cell and prints the
:func:`cost_table`; it fails when a training notebook exceeds :data:`COLAB_HOURS` at ``colab``, and a test fails
while a paragraph is stale.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pandas as pd

from fgssl_lib.methods import variant
from fgssl_lib.train import TrainConfig
from fgssl_lib.train.config import method_family
from fgssl_lib.train.flops import CUB_TRAIN_IMAGES, training_flops, training_images
from fgssl_lib.train.localiser import NO_LOCALISER, uses_localiser

ROOT = Path(__file__).resolve().parents[1]
GPU_FLOPS = {"T4": 3e12, "A100": 3e13}
"""Effective FLOP/s of ResNet-50 mixed-precision training (about 250 and 2,500 images/s x 12.3 GFLOPs)."""
SMOKE_SECONDS = {"00_quickstart": 19, "01_background_bias": 26, "02_views": 22, "03_train_cvsa": 41,
                 "04_train_lcr": 30, "05_evaluate": 30, "06_reproduce_on_gpu": 18, "07_cpu_study": 101}
CPU_SECONDS = {"00_quickstart": 16, "02_views": 22, "05_evaluate": 166, "06_reproduce_on_gpu": 24, "07_cpu_study": 7}
"""Measured at ``cpu`` (``make book``), for the notebooks that train no ``cpu`` run of their own."""
CPU_TRAINING = ("01_background_bias", "03_train_cvsa", "04_train_lcr")
"""The notebooks that train ``cpu`` runs with their default parameters: their ``cpu`` cost is their runs' training
time in the CPU study."""
COLAB_HOURS = 2.0
"""The ``colab`` preset's budget: every training notebook within this many T4-hours (a free Colab session)."""
MARKER = "**Cost.**"


@dataclass(frozen=True)
class Training:
    """One training run a notebook makes: ``method`` for ``epochs`` on ``images`` images; ``stage`` 1 or 2 in CVSA's
    dual-stage recipe, else ``None``; where its views' box and map come from (``none`` for views without one)."""

    method: str
    epochs: int
    images: int = CUB_TRAIN_IMAGES
    stage: int | None = None
    localiser: str = NO_LOCALISER


@functools.lru_cache(maxsize=None)
def trained_runs(stem: str, preset: str = "colab") -> tuple[Training, ...]:
    """Every run notebook ``stem`` trains at ``preset`` on CUB with its default parameters: its entry of the run plan
    (:data:`fgssl_lib.plan.NOTEBOOK_RUNS`, the library calls the notebook makes), each distinct run once (a name
    evaluated from another's run trains nothing of its own), both stages of a dual-stage pair."""
    from fgssl_lib.plan import NOTEBOOK_RUNS  # the plan imports the study, which imports much more than the cost
    from fgssl_lib.reproduce import parameter_values

    if stem not in NOTEBOOK_RUNS:
        return ()
    parameters = {**parameter_values(ROOT / "notebooks" / f"{stem}.ipynb"), "preset": preset, "dataset": "cub",
                  "data_root": None}
    runs: dict[str, Training] = {}
    for planned in NOTEBOOK_RUNS[stem](parameters):
        stages = [(1, planned.stage1), (2, planned.config)] if planned.stage1 is not None else [(None, planned.config)]
        for stage, config in stages:
            key = json.dumps([stage, config.identity()], sort_keys=True, default=str)
            localiser = config.localiser if uses_localiser(variant(config.method).views) else NO_LOCALISER
            runs.setdefault(key, Training(config.method, config.epochs, training_images(config), stage, localiser))
    return tuple(runs.values())


def training_notebooks() -> tuple[str, ...]:
    """The notebooks that train at ``colab`` with their default parameters (05 and 07 only evaluate and read
    there)."""
    return tuple(stem for stem in SMOKE_SECONDS if trained_runs(stem))


def notebook_flops(stem: str, preset: str) -> float:
    """FLOPs of every run :func:`trained_runs` of ``stem`` at ``preset``."""
    return sum(training_flops(r.method, r.images, epochs=r.epochs) for r in trained_runs(stem, preset))


def gpu_hours(stem: str, preset: str, gpu: str = "T4") -> float:
    """Estimated hours of notebook ``stem`` at ``preset`` on ``gpu`` (a :data:`GPU_FLOPS` key)."""
    return notebook_flops(stem, preset) / GPU_FLOPS[gpu] / 3600


def cpu_training_seconds(stem: str) -> float:
    """Seconds notebook ``stem`` trains at ``cpu`` with no trained runs: for each of its :func:`trained_runs`, the
    committed CPU study's mean training time of that method from scratch with the run's localiser (the same
    configuration; over the method's localisers where the study has no such arm: a detector's views cost what the
    annotation's do), scaled by the run's epochs where it trains fewer than the preset's (the dual-stage recipe)."""
    from fgssl_lib.study import SCRATCH, read_study

    rows = read_study()
    scratch = rows[rows["init"] == SCRATCH]
    total = 0.0
    for run in trained_runs(stem, "cpu"):
        same = scratch[(scratch["method"] == run.method) & (scratch["localiser"] == run.localiser)]
        seconds = (same if len(same) else scratch[scratch["method"] == run.method])["train_seconds"].mean()
        epochs = TrainConfig.preset("cpu", method=run.method).epochs
        total += float(seconds) * min(1.0, run.epochs / epochs)
    return total


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _hours(hours: float) -> str:
    return f"{hours:.0f}" if hours >= 10 else f"{hours:.1f}"


def _run_names(runs: tuple[Training, ...]) -> str:
    single = [r.method for r in runs if r.stage is None]
    stages = [r for r in runs if r.stage is not None]
    recipe = (f" and the dual-stage recipe ({' + '.join(str(r.epochs) for r in stages)} epochs)" if stages else "")
    return ", ".join(single) + recipe


def cost_paragraph(stem: str) -> str:
    """The title cell's cost paragraph of notebook ``stem``."""
    if stem in CPU_TRAINING:
        measured = (f"{MARKER} On a 2-core CPU: {_duration(SMOKE_SECONDS[stem])} at `smoke` (measured); at `cpu` its "
                    f"runs train for about {_duration(cpu_training_seconds(stem))} (their float32 times in the CPU "
                    "study).")
    else:
        measured = (f"{MARKER} Measured on a 2-core CPU: {_duration(SMOKE_SECONDS[stem])} at `smoke`, "
                    f"{_duration(CPU_SECONDS[stem])} at `cpu`.")
    runs = trained_runs(stem)
    if not runs:
        return measured + " At `colab` and `paper` it trains nothing: minutes on any GPU."
    epochs = {family: (TrainConfig.preset("colab", method=m).epochs, TrainConfig.preset("paper", method=m).epochs)
              for family, m in (("BYOL-family", "byol"), ("MoCo v2", "mocov2"), ("LCR", "lcr"),
                                ("supervised", "supervised"))
              if any(method_label(r.method) == family for r in runs if r.stage is None)}
    shortened = ", ".join(f"{family} {colab} instead of {paper}" for family, (colab, paper) in epochs.items())
    paper = ", ".join(f"~{_hours(gpu_hours(stem, 'paper', gpu))} GPU-hours on a{'n' if gpu[0] == 'A' else ''} {gpu}"
                      for gpu in GPU_FLOPS)
    return (f"{measured} At `colab` and `paper` on CUB it trains {_run_names(runs)}. `colab`: "
            f"~{gpu_hours(stem, 'colab'):.1f} T4-hours, within the {COLAB_HOURS:.0f} of a free Colab session: to fit, "
            f"the papers' schedules are shortened (epochs: {shortened}) and every run starts from ImageNet-supervised "
            f"weights. `paper`: {paper}. Both are estimates from FLOPs ({notebook_flops(stem, 'paper'):.1e} at "
            "`paper`), not measurements; see `fgssl_lib.cost`.")


def method_label(method: str) -> str:
    """The schedule family of ``method`` as :data:`fgssl_lib.train.config.COLAB_EPOCHS` names it in prose."""
    family = method_family(method)
    if family == "moco":
        return "LCR" if method.startswith("lcr") else "MoCo v2"
    return "supervised" if family == "supervised" else "BYOL-family"


def cost_table() -> pd.DataFrame:
    """Per training notebook: the runs it trains and its estimated hours at ``colab`` (T4) and ``paper``."""
    rows = {stem: {"runs": len(trained_runs(stem)), "colab T4-h": gpu_hours(stem, "colab"),
                   "paper T4-h": gpu_hours(stem, "paper"), "paper A100-h": gpu_hours(stem, "paper", "A100")}
            for stem in training_notebooks()}
    return pd.DataFrame.from_dict(rows, orient="index").round(2)


def stale_cost_paragraphs(notebooks: list[Path], write: bool = False) -> list[Path]:
    """The notebooks whose title cell lacks :func:`cost_paragraph` (as its last paragraph); with ``write``, put it
    there (replacing an older one)."""
    stale = []
    for path in notebooks:
        notebook = nbformat.read(path, as_version=4)
        title = notebook.cells[0]
        if title.cell_type != "markdown" or not title.source.startswith("# "):
            raise ValueError(f"{path}: the first cell must be the markdown title cell")
        paragraphs = [p for p in title.source.split("\n\n") if not p.startswith(MARKER)]
        expected = "\n\n".join([*paragraphs, cost_paragraph(path.stem)])
        if title.source != expected:
            stale.append(path)
            if write:
                title.source = expected
                nbformat.write(notebook, path)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fgssl_lib.cost", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only list the notebooks whose cost paragraph is stale")
    args = parser.parse_args(argv)
    stale = stale_cost_paragraphs(sorted((ROOT / "notebooks").glob("*.ipynb")), write=not args.check)
    for path in stale:
        print(f"{'stale' if args.check else 'rewrote'}: {path.relative_to(ROOT)}")
    table = cost_table()
    print(table.to_string())
    over = table.index[table["colab T4-h"] > COLAB_HOURS].tolist()
    print(f"every training notebook at colab within {COLAB_HOURS:.0f} T4-hours" if not over else
          f"over {COLAB_HOURS:.0f} T4-hours at colab: {', '.join(over)}")
    return 1 if (args.check and stale) or over else 0


if __name__ == "__main__":
    sys.exit(main())
