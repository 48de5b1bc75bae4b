"""Reports: every evaluation protocol of the book on trained runs, in one metric vocabulary, and the tables.

:func:`splits` owns the choice between the synthetic benchmark and a real dataset: the training split (as trained
on, the kNN gallery and the probes' training set) and the test **variants**: the five of the synthetic benchmark
(``original``, ``only_fg``, ``only_bg``, ``mixed_same``, ``mixed_rand``; Xiao et al. 2020), or a real dataset's test
images as they are (``original``), cropped to their box (``foreground``) and with the box blacked out
(``blackout``). :func:`evaluate` runs the protocols of :mod:`fgssl_lib.eval` on one run and names every number
(percentages) with one vocabulary:

- ``knn_<variant>``: DINO kNN top-1 (k = 20), the training split as the gallery;
- ``linear_<variant>``: linear-probe top-1 with all training labels; ``linear_<probe>_<pct>`` with ``pct`` % of
  them and ``..._top5`` the top-5, on the probe variant (``mixed_rand``, where the background says nothing about the
  class; on a real dataset ``original``);
- ``bg_gap`` = ``knn_mixed_same - knn_mixed_rand`` (synthetic) or ``fg_gap`` = ``knn_foreground - knn_blackout``
  (real), and ``linear_bg_gap`` / ``linear_fg_gap`` the same with the probe;
- ``retrieval_rank1`` / ``retrieval_rank5`` / ``retrieval_map`` on the probe variant (leave-one-out, LCR protocol);
- ``maxboxacc`` (V1) on ``original`` of the method's own map or of its Grad-CAM (``maxboxacc_source``);
- ``train_seconds``: the run's training wall time.

The tables and readings the notebooks show are built here from those dicts: :func:`bias_table`,
:func:`difference_lines`, :func:`collapse_table`, :func:`bias_lines`, :func:`beside_reported`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from matplotlib.figure import Figure
from torch.utils.data import Dataset, Subset

from fgssl_lib.config import check_choice, check_preset
from fgssl_lib.data import load_dataset
from fgssl_lib.eval import (
    Features,
    class_balanced_subset,
    extract_features,
    knn_accuracy,
    localization_maps,
    max_box_acc,
    retrieval_metrics,
    select_linear,
    top_k_neighbours,
)
from fgssl_lib.eval.background_bias import BOX_VARIANTS, SYNTHETIC_VARIANTS, BoxVariant
from fgssl_lib.paper_numbers import REPORTED, reported
from fgssl_lib.runs import Run
from fgssl_lib.train import TrainConfig
from fgssl_lib.train.fit import training_set
from fgssl_lib.views import eval_view
from fgssl_lib.viz import neighbour_panel

PROTOCOLS = ("knn", "linear", "retrieval", "maxboxacc")
LABEL_FRACTIONS = (1.0, 0.5, 0.2)
SYNTHETIC_TEST_IMAGES = {"smoke": 64, "cpu": None, "colab": None, "paper": None}
"""Test-set sizes of the synthetic benchmark per preset (``None``: the benchmark's own)."""
Metrics = dict[str, Any]


@dataclass(frozen=True)
class Variants:
    """The test variants of one kind of data, the probe variant, and the gap between two of them."""

    names: tuple[str, ...]
    probe: str  # linear probe at label fractions and retrieval
    gap: str  # the kNN gap's name (``linear_<gap>`` for the probe's)
    gap_between: tuple[str, str]  # gap = acc(first) - acc(second)
    gap_label: str  # its column in :func:`bias_table`


SYNTHETIC = Variants(SYNTHETIC_VARIANTS, "mixed_rand", "bg_gap", ("mixed_same", "mixed_rand"), "BG-Gap")
BOXES = Variants(BOX_VARIANTS, "original", "fg_gap", ("foreground", "blackout"), "FG-Gap")


def variants(config: TrainConfig) -> Variants:
    """The test variants of ``config``'s data: the synthetic benchmark's, else a real dataset's box variants."""
    return SYNTHETIC if config.dataset == "synthetic" else BOXES


def linear_epochs(preset: str) -> int:
    """Epochs of the linear probes: 100 (the papers' protocol), 5 at ``smoke``."""
    return 5 if check_preset(preset) == "smoke" else 100


def splits(config: TrainConfig, preset: str, stream: str = "test", num_images: int | None = None
           ) -> dict[str, Dataset]:
    """``{"train": the training split as trained on, <variant>: test images}`` for ``config``'s data, on its
    ``test`` stream or, to choose a setting without reading test, its ``val`` stream. ``num_images``: images per
    variant of the synthetic benchmark's stream (default :data:`SYNTHETIC_TEST_IMAGES` of ``preset``); a real
    dataset's split is used whole."""
    check_preset(preset)
    check_choice("evaluation stream", stream, ("val", "test"))
    if num_images is not None and config.dataset != "synthetic":
        raise ValueError(f"num_images={num_images} sizes the synthetic benchmark's {stream} stream; {config.dataset!r}"
                         f"'s {stream} split is used whole: pass num_images=None")
    train = training_set(config)
    if config.dataset == "synthetic":
        size = num_images if num_images is not None else SYNTHETIC_TEST_IMAGES[preset]
        return {"train": train, **{v: load_dataset("synthetic", split=f"{stream}_{v}", num_images=size,
                                                   **config.dataset_options) for v in SYNTHETIC_VARIANTS}}
    test = load_dataset(config.dataset, root=config.data_root, split=stream, **config.dataset_options)
    return {"train": train, **{v: BoxVariant(test, v) for v in BOX_VARIANTS}}


def view_set(dataset: str, data_root: str | None = None, image_size: int = 64, num_images: int = 500,
             seed: int = 0) -> Dataset:
    """A few training images to look at: the synthetic benchmark's first ``num_images`` drawn at ``image_size``
    with benchmark ``seed``, or a real dataset's training split as it is."""
    if dataset == "synthetic":
        return load_dataset(dataset, split="train", image_size=image_size, num_images=num_images, seed=seed)
    return load_dataset(dataset, root=data_root, split="train")


def linear_name(variant: str, fraction: float = 1.0, top: int = 1) -> str:
    """``linear_<variant>[_<pct>][_top5]``: the vocabulary's name of a linear-probe accuracy."""
    pct = "" if fraction == 1.0 else f"_{round(100 * fraction)}"
    return f"linear_{variant}{pct}" + ("" if top == 1 else f"_top{top}")


def _linear(train: Features, tests: Mapping[str, Features], probe: str, fractions: Sequence[float], epochs: int,
            device: str) -> Metrics:
    """One probe per label fraction (class-balanced subset, lr / weight decay chosen on a split of it), scored on
    every variant with all labels and on the probe variant at every fraction."""
    num_classes = int(max([train.labels.max()] + [t.labels.max() for t in tests.values()])) + 1
    out: Metrics = {}
    for fraction in fractions:
        subset = class_balanced_subset(train.labels, fraction)
        classifier, _ = select_linear(train.feats[subset], train.labels[subset], num_classes, epochs=epochs,
                                      device=device)
        scored = tests if fraction == 1.0 else {probe: tests[probe]}
        for variant, test in scored.items():
            accuracy = classifier.accuracy(test.feats, test.labels)  # {"top1", "top5"}
            out[linear_name(variant, fraction)] = accuracy["top1"]
            if variant == probe:
                out[linear_name(variant, fraction, top=5)] = accuracy["top5"]
    return out


def feature_dir(run: Run) -> Path:
    """Where the features and localization maps of ``run`` are cached: ``<run>/features``, one file per (weights
    and method settings, split, view), so names evaluated from one run (LCR's MultiTask) keep their own."""
    return Path(run.path) / "features"


def evaluate(run: Run, config: TrainConfig, preset: str, protocols: Sequence[str] = PROTOCOLS,
             fractions: Sequence[float] = (1.0,), probe: str | None = None, stream: str = "test",
             cache_dir: str | os.PathLike | None = None, num_images: int | None = None) -> Metrics:
    """Every protocol of ``protocols`` on ``run`` (trained with ``config``), named as the module says.

    ``fractions``: label fractions of the linear probe (1.0 always included); ``probe``: the variant of the probe's
    fractions and of retrieval (default the data's, :func:`variants`); ``stream``: ``test``, or ``val`` to choose
    settings; ``cache_dir``: keeps the features and the localization maps, keyed by the weights, the method's
    settings and the data (default :func:`feature_dir`, so every notebook and the study extract them once per run
    and split); ``num_images``: the synthetic stream's size (:func:`splits`).
    """
    for protocol in protocols:
        check_choice("protocol", protocol, PROTOCOLS)
    kind = variants(config)
    probe = check_choice("probe variant", probe or kind.probe, kind.names)
    data = splits(config, preset, stream, num_images)
    cache_dir = cache_dir if cache_dir is not None else feature_dir(run)
    out: Metrics = {}
    if {"knn", "linear", "retrieval"} & set(protocols):
        extract = dict(image_size=config.image_size, device=config.device, cache_dir=cache_dir)
        feats = {name: extract_features(run.method, dataset, **extract) for name, dataset in data.items()}
        train, tests = feats.pop("train"), feats
    if "knn" in protocols:
        for v, test in tests.items():
            out[f"knn_{v}"] = knn_accuracy(train.feats, train.labels, test.feats, test.labels)["top1"]
    if "linear" in protocols:
        fractions = (1.0, *(f for f in fractions if f != 1.0))
        out.update(_linear(train, tests, probe, fractions, linear_epochs(preset), config.device))
    high, low = kind.gap_between
    for prefix in ("knn", "linear"):
        if f"{prefix}_{high}" in out:
            out[kind.gap if prefix == "knn" else f"linear_{kind.gap}"] = out[f"{prefix}_{high}"] - out[f"{prefix}_{low}"]
    if "retrieval" in protocols:
        found = retrieval_metrics(tests[probe].feats, tests[probe].labels)
        out.update(retrieval_rank1=found["rank1"], retrieval_rank5=found["rank5"], retrieval_map=found["mAP"])
    if "maxboxacc" in protocols:
        maps, boxes, source = localization_maps(run.method, data["original"], config.image_size, device=config.device,
                                                cache_dir=cache_dir)
        out.update(maxboxacc=max_box_acc(maps, boxes, version=1)[0], maxboxacc_source=source)
    return {**out, "train_seconds": run.train_seconds}


def evaluate_runs(runs: Mapping[str, Run], configs: Mapping[str, TrainConfig], preset: str,
                  protocols: Sequence[str] = PROTOCOLS, fractions: Sequence[float] = (1.0,), probe: str | None = None,
                  log: Callable[[str], None] = print) -> dict[str, Metrics]:
    """:func:`evaluate` of every run (``runs`` and ``configs`` keyed by name, as from
    :func:`fgssl_lib.runs.train_methods`): ``{name: metrics}``, one printed line per name as it finishes (features
    and maps cached in :func:`feature_dir`).
    """
    if not runs:
        raise ValueError("evaluate_runs got no runs; pass train_methods(method_configs([...], preset))")
    missing = sorted(set(runs) - set(configs))
    if missing:
        raise KeyError(f"no config for {missing}; pass the configs the runs were trained with (method_configs)")
    results = {}
    for name, run in runs.items():
        results[name] = evaluate(run, configs[name], preset, protocols, fractions, probe)
        log(f"{name}: {', '.join(f'{k} {v:.1f}' for k, v in results[name].items() if isinstance(v, float))}")
    return results


def table_metrics(config: TrainConfig, fractions: Sequence[float] = (1.0,), probe: str | None = None,
                  headline: bool = False) -> list[str]:
    """The columns of a comparison table on ``config``'s data: linear top-1 at each fraction, kNN on ``original``
    and the two variants of the gap, the gap, retrieval and MaxBoxAcc. ``headline``: one number per question (linear
    and kNN on the probe variant, the gap, retrieval rank-1, MaxBoxAcc)."""
    kind = variants(config)
    probe = probe or kind.probe
    if headline:
        return [linear_name(probe), f"knn_{probe}", kind.gap, "retrieval_rank1", "maxboxacc"]
    knn = [f"knn_{v}" for v in dict.fromkeys(("original", *kind.gap_between))]
    return [linear_name(probe, f) for f in fractions] + knn + [kind.gap, "retrieval_rank1", "retrieval_map", "maxboxacc"]


def bias_table(results: Mapping[str, Metrics], decimals: int = 1) -> pd.DataFrame:
    """Background-bias reports of several methods (``{method: evaluate(...)}``) as one DataFrame: one row per
    ``(method, protocol)`` (``knn``, ``linear``), one column per test variant, plus the gap (``BG-Gap`` /
    ``FG-Gap``) when the results have it."""
    rows = {}
    for method, metrics in results.items():
        for protocol in ("knn", "linear"):
            row = {v: metrics[f"{protocol}_{v}"] for v in dict.fromkeys(SYNTHETIC_VARIANTS + BOX_VARIANTS)
                   if f"{protocol}_{v}" in metrics}
            for kind in (SYNTHETIC, BOXES):
                gap = kind.gap if protocol == "knn" else f"linear_{kind.gap}"
                if row and gap in metrics:
                    row[kind.gap_label] = metrics[gap]
            if row:
                rows[(method, protocol)] = row
    if not rows:
        raise ValueError("bias_table got no kNN or linear results; pass {method: evaluate(..., protocols=('knn', "
                         "'linear'))} with at least one method")
    table = pd.DataFrame.from_dict(rows, orient="index").round(decimals)
    table.index = pd.MultiIndex.from_tuples(table.index, names=["method", "protocol"])
    return table


def difference_lines(results: Mapping[str, Metrics], baseline: str, method: str, metrics: Sequence[str]) -> list[str]:
    """``"<metric>: <method> <value> vs <baseline> <value> (<signed difference>)"`` for each of ``metrics`` both
    have: the comparison a notebook prints under its table, so that its reading follows the numbers."""
    for name in (baseline, method):
        if name not in results:
            raise KeyError(f"no results for {name!r}; the results have {sorted(results)}")
    return [f"{m}: {method} {results[method][m]:.1f} vs {baseline} {results[baseline][m]:.1f} "
            f"({results[method][m] - results[baseline][m]:+.1f})"
            for m in metrics if m in results[method] and m in results[baseline]]


def training_table(runs: Mapping[str, Run]) -> pd.DataFrame:
    """Per run, its epochs, training time in whole seconds and run folder: what a notebook shows after training."""
    return pd.DataFrame.from_dict({name: {"epochs": len(run.history), "training (s)": round(run.train_seconds),
                                          "run": run.path.name} for name, run in runs.items()},
                                  orient="index").rename_axis("method")


def collapse_table(runs: Mapping[str, Run], threshold: float) -> pd.DataFrame:
    """Per run, the collapse monitor's ``embedding_std`` (per-epoch means of the history; about 1 for embeddings
    spread over the sphere, 0 for a constant one) in the first and last epoch and its minimum, the last loss, and
    ``collapsed`` (minimum below ``threshold``; ``None`` where the monitor measured nothing)."""
    rows = {}
    for name, run in runs.items():
        history = run.history
        std = history["embedding_std"].dropna() if "embedding_std" in history else pd.Series(dtype=float)
        first, last, low = (float(std.iloc[0]), float(std.iloc[-1]), float(std.min())) if len(std) else (math.nan,) * 3
        rows[name] = {"embedding_std_first": first, "embedding_std_last": last, "embedding_std_min": low,
                      "loss_last": float(history["loss"].iloc[-1]) if "loss" in history else math.nan,
                      "collapsed": None if math.isnan(low) else low < threshold}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("method")


def bias_lines(results: Mapping[str, Metrics], baseline: str, reference: str,
               num_classes: int) -> tuple[list[str], dict[str, float]]:
    """The reading of the background-bias table, from the numbers: lines to print and the numbers to record.

    Synthetic: each method's BG-Gap (kNN and linear), ``mixed_rand`` against chance and whether it leans on the bird
    (``only_fg``) or the background (``only_bg``), then whether the baseline's gap is larger than the reference's;
    ``bg_gap_<method>``. Real: ``blackout_drop_<method>`` = ``knn_original - knn_blackout``.
    """
    if not all("bg_gap" in metrics for metrics in results.values()):
        return (["no background variants here (a property of the synthetic benchmark); the table compares the test "
                 "images with their box crops and with the box blacked out"],
                {f"blackout_drop_{m}": r["knn_original"] - r["knn_blackout"] for m, r in results.items()})
    lines = []
    for m, r in results.items():
        leans = "the background" if r["knn_only_bg"] > r["knn_only_fg"] else "the bird"
        lines.append(f"{m}: BG-Gap {r['bg_gap']:.1f} points (kNN), {r['linear_bg_gap']:.1f} (linear); mixed_rand "
                     f"{r['knn_mixed_rand']:.1f} % vs chance {100 / num_classes:.0f} %; only_bg {r['knn_only_bg']:.1f} "
                     f"% vs only_fg {r['knn_only_fg']:.1f} %: leans on {leans}")
    gap, ref = results[baseline]["bg_gap"], results[reference]["bg_gap"]
    lines.append(f"the {baseline} BG-Gap is {'larger' if gap > ref else 'not larger'} than the {reference} "
                 f"reference's ({gap:.1f} vs {ref:.1f} points)")
    return lines, {f"bg_gap_{m}": r["bg_gap"] for m, r in results.items()}


def eval_images(dataset: Dataset, indices: Iterable[int], image_size: int) -> tuple[torch.Tensor, torch.Tensor,
                                                                                     list[torch.Tensor]]:
    """Samples ``indices`` of ``dataset`` as the evaluation sees them (:func:`fgssl_lib.views.eval_view`): images
    ``N x 3 x S x S`` in [0, 1], masks ``N x S x S`` and boxes (4,) in the view frame."""
    view = eval_view(image_size)
    shown = [view(dataset[i]) for i in indices]
    return torch.stack([s["image"] for s in shown]), torch.stack([s["mask"] for s in shown]), [s["box"] for s in shown]


def mass_on_object(maps: torch.Tensor, masks: torch.Tensor) -> float:
    """Mean share of each map's mass (``N x S x S``, non-negative) inside the object's mask (``N x S x S``): 1 for
    maps on the object only; a map blind to the object scores the share of the image the object covers."""
    return ((maps * masks).sum((1, 2)) / maps.sum((1, 2)).clamp_min(1e-8)).mean().item()


@dataclass
class Neighbours:
    """The ``k`` nearest training images (cosine) of the first queries of a test variant, for one method."""

    queries: Dataset
    gallery: Dataset
    query: Features
    train: Features
    ids: torch.Tensor  # Q x k gallery indices
    image_size: int

    def agreement(self) -> dict[str, float]:
        """Share (%) of the neighbours with the query's ``species`` (its label) and, where the samples know their
        habitat (the synthetic benchmark), drawn on the ``habitat`` behind the query."""
        out = {"species": (self.train.labels[self.ids] == self.query.labels[:, None]).float().mean().item() * 100}
        if "habitat" in self.queries[0]:
            behind = torch.tensor([self.queries[i]["habitat"] for i in range(len(self.queries))])
            found = torch.tensor([[self.gallery[j]["habitat"] for j in row] for row in self.ids.tolist()])
            out["habitat"] = (found == behind[:, None]).float().mean().item() * 100
        return out

    def panel(self, num_show: int) -> Figure:
        """The first ``num_show`` queries and their neighbours (DiLo Fig. 2), through
        :func:`fgssl_lib.viz.neighbour_panel`; only the training images it shows are drawn."""
        drawn = self.ids[:num_show].unique()
        query_images = eval_images(self.queries, range(num_show), self.image_size)[0]
        gallery_images = eval_images(self.gallery, drawn.tolist(), self.image_size)[0]
        return neighbour_panel(query_images, self.query.feats[:num_show], self.query.labels[:num_show],
                               gallery_images, self.train.feats[drawn], self.train.labels[drawn], k=self.ids.shape[1])


def neighbours(run: Run, config: TrainConfig, data: Mapping[str, Dataset], num_queries: int, k: int) -> Neighbours:
    """The :class:`Neighbours` of the first ``num_queries`` images of the probe variant of ``data``
    (:func:`splits`), the training split as the gallery (features of both splits cached in :func:`feature_dir`, as
    :func:`evaluate` caches them)."""
    probe = data[variants(config).probe]
    queries = Subset(probe, range(min(num_queries, len(probe))))
    extract = dict(image_size=config.image_size, device=config.device, cache_dir=feature_dir(run))
    train = extract_features(run.method, data["train"], **extract)
    query = Features(*(t[:len(queries)] for t in extract_features(run.method, probe, **extract)))
    return Neighbours(queries, data["train"], query, train, top_k_neighbours(query.feats, train.feats, k)[1],
                      config.image_size)


def beside_reported(ours: Mapping[str, Metrics], dataset: str, metrics: Sequence[str]) -> pd.DataFrame:
    """Our ``metrics`` beside the papers' (:data:`fgssl_lib.paper_numbers.REPORTED`, empty where a dataset has none):
    one column pair ``(metric, paper | ours)`` per metric, one row per method of ``ours``."""
    methods = list(ours)
    papers = reported(dataset, methods) if dataset in set(REPORTED["dataset"]) else pd.DataFrame()
    table = pd.concat({"paper": papers.reindex(index=methods, columns=metrics),
                       "ours": pd.DataFrame(ours).T.reindex(index=methods, columns=metrics).astype(float)}, axis=1)
    return table.swaplevel(axis=1).sort_index(axis=1, level=0, sort_remaining=False).round(2)
