"""Comparison bar chart and results table over runs: ``results[method][metric]`` is a number or a list of numbers
(one per seed); both show the mean and the standard deviation over seeds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

Results = Mapping[str, Mapping[str, float | Sequence[float]]]


def _values(value: float | Sequence[float]) -> np.ndarray:
    return np.atleast_1d(np.asarray(value, dtype=np.float64))


def _metrics(results: Results, metrics: Sequence[str] | None) -> list[str]:
    if metrics is not None:
        return list(metrics)
    return list(dict.fromkeys(m for per_method in results.values() for m in per_method))


def results_table(results: Results, metrics: Sequence[str] | None = None, decimals: int = 1) -> pd.DataFrame:
    """A DataFrame (methods x metrics) of ``"mean ± std"`` strings (just the mean for a single run; ``-`` if absent).

    It renders as an HTML table in the book (Jupyter shows a DataFrame as HTML).
    """
    metrics = _metrics(results, metrics)
    rows = {}
    for method, per_method in results.items():
        row = {}
        for metric in metrics:
            if metric not in per_method:
                row[metric] = "-"
                continue
            v = _values(per_method[metric])
            mean = f"{v.mean():.{decimals}f}"
            row[metric] = mean if len(v) == 1 else f"{mean} ± {v.std(ddof=1):.{decimals}f}"
        rows[method] = row
    table = pd.DataFrame.from_dict(rows, orient="index", columns=metrics)
    table.index.name = "method"
    return table


def comparison_bar_chart(
    results: Results, metrics: Sequence[str] | None = None, ylabel: str = "accuracy (%)", title: str | None = None
) -> Figure:
    """Grouped bars: one group per metric, one bar per method, error bars = std over seeds."""
    metrics = _metrics(results, metrics)
    methods = list(results)
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(metrics))
    fig, ax = plt.subplots(figsize=(min(12.0, max(4.0, 0.6 * len(metrics) * max(1, len(methods)) + 2)), 3.5))
    for i, method in enumerate(methods):
        stats = [_values(results[method][m]) if m in results[method] else np.array([np.nan]) for m in metrics]
        means = [v.mean() for v in stats]
        stds = [v.std(ddof=1) if len(v) > 1 else 0.0 for v in stats]
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=method)
    ax.set_xticks(x, metrics)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(frameon=False, fontsize=8, ncol=max(1, (len(methods) + 3) // 4), loc="upper left",
              bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def spread_chart(results: Results, metrics: Mapping[str, str], groups: Mapping[str, str] | None = None,
                 lines: Mapping[str, Mapping[str, float]] | None = None) -> Figure:
    """One panel per metric (``{metric: axis label}``), one horizontal bar per method: the mean over seeds, its
    standard deviation as an error bar and each seed as a dot, so the spread is read beside the mean.

    ``groups`` colours the bars (``{method: group}``, e.g. how each run started) with a legend in the lower right
    of the first panel; ``lines`` draws reference values per metric (``{metric: {label: value}}``, e.g. chance and a
    ceiling) as labelled vertical lines.
    """
    methods = list(results)
    groups = dict(groups or {})
    colours = {g: plt.get_cmap("tab10")(k) for k, g in enumerate(dict.fromkeys(groups.get(m, "") for m in methods))}
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.4 * len(metrics) + 1.6, 0.28 * len(methods) + 1.2),
                             sharey=True, squeeze=False)
    y = np.arange(len(methods))[::-1]
    for ax, (metric, label) in zip(axes[0], metrics.items()):
        for yi, method in zip(y, methods):
            v = _values(results[method].get(metric, np.nan))
            colour = colours[groups.get(method, "")]
            ax.barh(yi, v.mean(), 0.7, xerr=v.std(ddof=1) if len(v) > 1 else 0.0, color=colour, alpha=0.55,
                    capsize=2, error_kw={"elinewidth": 0.8})
            ax.plot(v, np.full(len(v), yi), "o", ms=2.5, color="black")
        for k, (name, value) in enumerate((lines or {}).get(metric, {}).items()):
            ax.axvline(value, color="dimgray", linestyle=("--", ":", "-.")[k % 3], linewidth=1)
            ax.text(value, len(methods) - 0.35, f" {name}", fontsize=7, color="dimgray", va="bottom")
        ax.set_xlabel(label)
        ax.set_ylim(-0.7, len(methods) + 0.3)
    axes[0, 0].set_yticks(y, methods, fontsize=8)
    if len(colours) > 1:
        handles = [plt.Rectangle((0, 0), 1, 1, color=c, alpha=0.55) for c in colours.values()]
        axes[0, 0].legend(handles, list(colours), fontsize=7, loc="lower right", frameon=True)
    fig.tight_layout()
    return fig
