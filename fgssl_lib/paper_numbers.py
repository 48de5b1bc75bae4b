"""Numbers the papers report, so a notebook can show ours beside them.

Source: LCR (Shu et al., CVPR 2023), Table 2 (linear probe at 100/50/20 % labels and retrieval, ResNet-50 initialised
from ImageNet-supervised weights, MoCo v2 training) and Table 4 (linear top-1 and retrieval rank-1 of alternatives,
including DiLo and CVSA re-run by the LCR authors on CUB). The CVSA paper's own tables were lost in our text copy, and
DiLo reports ImageNet/VOC results only, so their fine-grained numbers are the ones LCR lists. Method names are fgssl
registry names; metric names are the vocabulary of :mod:`fgssl_lib.reports`.
"""

from __future__ import annotations

import pandas as pd

from fgssl_lib.config import check_choice

# (dataset, method, metric) -> value in %, named as fgssl_lib.reports names ours (``original``: the test split as it
# is; ``_50`` / ``_20``: label fractions).
_TABLE2 = {
    "cub": {
        "mocov2": (68.30, 90.85, 60.96, 87.00, 46.91, 76.59, 17.07, 41.46, 8.13),
        "lcr": (71.31, 92.03, 66.52, 90.06, 55.33, 83.52, 49.69, 75.23, 24.01),
    },
    "cars": {
        "mocov2": (58.43, 84.85, 50.17, 77.38, 35.14, 64.10, 10.94, 29.57, 3.12),
        "lcr": (60.75, 86.44, 53.87, 81.72, 40.88, 69.18, 34.56, 60.75, 8.87),
    },
    "aircraft": {
        "mocov2": (52.54, 80.74, 45.52, 73.85, 35.17, 65.08, 19.38, 39.90, 6.30),
        "lcr": (55.87, 84.73, 48.22, 77.14, 38.55, 68.53, 34.33, 61.09, 15.43),
    },
}
_TABLE2_METRICS = (
    "linear_original", "linear_original_top5", "linear_original_50", "linear_original_50_top5", "linear_original_20",
    "linear_original_20_top5", "retrieval_rank1", "retrieval_rank5", "retrieval_map",
)
# LCR Table 4: linear top-1 and retrieval rank-1 per dataset (None: not reported; DualPooling "collapse").
_TABLE4 = {
    "lcr_multitask": {"cub": (68.56, 17.62), "cars": (58.55, 13.98), "aircraft": (52.87, 22.23)},
    "byol_dilo": {"cub": (64.14, None)},
    "cvsa": {"cub": (65.02, None)},
}
# LCR Table 3 (batch 128): linear top-1 of the BYOL family.
_TABLE3 = {
    "byol": {"cub": 39.27, "cars": 45.21, "aircraft": 37.62},
    "byol_lcr": {"cub": 51.20, "cars": 50.64, "aircraft": 45.94},
    "simclr": {"cub": 38.39, "cars": 49.41, "aircraft": 45.22},
    "supervised": {"cub": 81.34, "cars": 91.02, "aircraft": 87.13},
}


def _rows() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for dataset, methods in _TABLE2.items():
        for method, values in methods.items():
            rows += [dict(dataset=dataset, method=method, metric=m, value=v, source="LCR Table 2")
                     for m, v in zip(_TABLE2_METRICS, values)]
    for method, per_dataset in _TABLE4.items():
        for dataset, (top1, rank1) in per_dataset.items():
            rows.append(dict(dataset=dataset, method=method, metric="linear_original", value=top1, source="LCR Table 4"))
            if rank1 is not None:
                rows.append(dict(dataset=dataset, method=method, metric="retrieval_rank1", value=rank1,
                                 source="LCR Table 4"))
    for method, per_dataset in _TABLE3.items():
        rows += [dict(dataset=d, method=method, metric="linear_original", value=v, source="LCR Table 3")
                 for d, v in per_dataset.items()]
    return rows


INIT = "imagenet"
"""How the runs behind every number here started: ImageNet-supervised ResNet-50 weights (LCR Sec. 4, stated for
Tables 2 and 3; Table 4's re-runs of DiLo and CVSA are taken to share the setting). An
:data:`~fgssl_lib.train.config.INITS` key, so a run can start the same way."""

REPORTED = pd.DataFrame(_rows())
"""One row per reported number: ``dataset, method, metric, value, source``."""


def reported(dataset: str, methods: list[str] | None = None) -> pd.DataFrame:
    """The papers' numbers for ``dataset`` as a ``method x metric`` table (NaN where a paper reports nothing)."""
    check_choice("dataset with reported numbers", dataset, REPORTED["dataset"].unique())
    rows = REPORTED[REPORTED["dataset"] == dataset]
    if methods is not None:
        rows = rows[rows["method"].isin(methods)]
    return rows.pivot_table(index="method", columns="metric", values="value", aggfunc="first")
