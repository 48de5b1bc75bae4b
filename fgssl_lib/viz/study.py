"""The CPU study's figures: its chart (kNN ``mixed_rand`` and the BG-Gap per arm, each seed a dot), the maps its runs
recorded while training, and the book's problem-and-fix grid, written as PNG files beside the study's CSV."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch.utils.data import Dataset, Subset

from fgssl_lib.eval import localization_maps
from fgssl_lib.train import TrainConfig
from fgssl_lib.train.localiser import ANNOTATION, NO_LOCALISER
from fgssl_lib.train.snapshots import TrainedRun, run_snapshot_images, training_snapshots
from fgssl_lib.views import eval_view
from fgssl_lib.viz.cam_grid import cam_grid
from fgssl_lib.viz.charts import Results, spread_chart
from fgssl_lib.viz.training import snapshot_grid

Arm = tuple[str, str]
"""``(method, init)``: a method and how its runs start (``scratch`` or a coarse-world init)."""
StudyArm = tuple[str, str, str]
"""``(method, init, localiser)``: an :data:`Arm` and where its views' box and map come from (``none`` for views
without one)."""
SCRATCH = "scratch"
MAP_ARMS: tuple[StudyArm, ...] = (("cvsa", "scratch", ANNOTATION), ("cvsa", "coarse_dual_stage", ANNOTATION),
                                  ("lcr", "scratch", NO_LOCALISER), ("lcr", "coarse_supervised", NO_LOCALISER))
"""The arms whose per-epoch maps the study draws: the methods with a map of their own, from both starts."""
PROBLEM_AND_FIX: tuple[StudyArm, StudyArm] = (("byol", "scratch", NO_LOCALISER),
                                              ("cvsa", "coarse_dual_stage", ANNOTATION))
"""The book's opening figure: a baseline's Grad-CAM beside a fixed method's own map, on the same test images."""
CEILING = "supervised_oracle"
"""The arm whose mean ``mixed_rand`` the chart draws as the ceiling."""


def arm_label(method: str, init: str, localiser: str | None = None) -> str:
    """The row label of an arm in tables and charts: the method, with its init when it is not ``scratch`` and, when
    its views use one, its localiser in braces (``{annotation}``: the dataset's box and mask, an upper bound)."""
    label = method if init == SCRATCH else f"{method} [{init}]"
    return label if localiser in (None, NO_LOCALISER) else f"{label} {{{localiser}}}"


def arm_init(label: str) -> str:
    """The init of an :func:`arm_label`."""
    label = label.split(" {")[0]
    return label[label.index(" [") + 2:-1] if label.endswith("]") else SCRATCH


def save_figure(figure: Figure, path: str | os.PathLike) -> Path:
    """Write ``figure`` to ``path`` (PNG, 110 dpi) through a temporary file, close it, return the path."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    os.replace(tmp, path)
    return path


def study_figures(runs: Mapping[StudyArm, tuple[TrainedRun, TrainConfig]], test: Dataset, seed: int,
                  directory: str | os.PathLike, images: int = 6) -> list[Path]:
    """The figures drawn from the study's finished ``runs`` of ``seed`` (``{arm: (run, config)}``) as PNG files in
    ``directory``: ``maps_<method>_<init>.png``, the map each arm of :data:`MAP_ARMS` recorded on its first training
    images before training and after each epoch; ``problem_and_fix.png`` (:data:`PROBLEM_AND_FIX`, when both arms
    are in ``runs``): the baseline's Grad-CAM and the fixed method's map on the first ``images`` images of ``test``
    (the ``original`` test variant), GT boxes in green."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for method, init, localiser in (arm for arm in MAP_ARMS if arm in runs):
        run, config = runs[method, init, localiser]
        shown, boxes = run_snapshot_images(config)
        figure = snapshot_grid(shown, training_snapshots(run, config, shown), boxes, max_rows=5)
        figure.suptitle(f"{arm_label(method, init, localiser)}, seed {seed}: its map during training", fontsize=9)
        figure.tight_layout()
        written.append(save_figure(figure, directory / f"maps_{method}_{init}.png"))
    if set(PROBLEM_AND_FIX) <= set(runs):
        test = Subset(test, range(images))
        view = eval_view(runs[PROBLEM_AND_FIX[0]][1].image_size)  # both arms train and test on the same data
        shown = torch.stack([view(test[i])["image"] for i in range(len(test))])
        cams, boxes = {}, None
        for arm, what in zip(PROBLEM_AND_FIX, ("Grad-CAM", "its map")):
            run, config = runs[arm]
            maps, boxes, _ = localization_maps(run.method, test, config.image_size, device=config.device)
            cams[f"{arm_label(*arm)}\n{what}".replace(" [", "\n[").replace(" {", "\n{")] = maps
        written.append(save_figure(cam_grid(shown, cams, boxes), directory / "problem_and_fix.png"))
    return written


def study_chart(results: Results, num_classes: int = 10) -> Figure:
    """Per arm (``{arm label: {metric: [value per seed]}}``), kNN top-1 on ``mixed_rand`` and the BG-Gap, each seed
    a dot, bars coloured by init (:func:`arm_init`); the chance line (``100 / num_classes``) and the ceiling (the
    mean ``mixed_rand`` of :data:`CEILING`, when the results have it)."""
    lines = {"knn_mixed_rand": {"chance": 100.0 / num_classes}}
    if CEILING in results:
        values = list(results[CEILING]["knn_mixed_rand"])
        lines["knn_mixed_rand"]["ceiling"] = sum(values) / len(values)
    return spread_chart(results, {"knn_mixed_rand": "kNN top-1 on mixed_rand (%)", "bg_gap": "BG-Gap (points)"},
                        {label: arm_init(label) for label in results}, lines)
