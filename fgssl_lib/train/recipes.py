"""Recipes: the training configs built from the presets (:meth:`TrainConfig.preset`) for a set of methods, CVSA's
short dual-stage recipe, the coarse-world stage-1 runs and the runs that reproduce the papers' numbers. They build
configs only; :mod:`fgssl_lib.runs` trains or loads the runs they describe.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from fgssl_lib.config import GPU_PRESETS, check_choice, check_preset
from fgssl_lib.data import coarse
from fgssl_lib.data.synthetic import SyntheticConfig
from fgssl_lib.methods import evaluated_from, variant
from fgssl_lib.paper_numbers import INIT as REPORTED_INIT
from fgssl_lib.train.config import INITS, PAPER_INIT, TrainConfig


def method_configs(methods: Sequence[str], preset: str, dataset: str = "synthetic", data_root: str | None = None,
                   **settings: Any) -> dict[str, TrainConfig]:
    """One :class:`TrainConfig` per name of ``methods``: ``preset`` on ``dataset`` with ``settings``
    (any :class:`TrainConfig` field, e.g. ``seed``, ``device``, ``epochs``, ``batch_size``, ``num_images``,
    ``precision``, ``checkpoint_minutes``; a value of ``None`` keeps the preset's). A name evaluated from another's
    run (:func:`fgssl_lib.methods.evaluated_from`) gets that run's config.

    ``dataset`` always wins over the preset's (``paper`` names CUB): a real dataset drops the synthetic benchmark's
    options, and the synthetic benchmark asked for at a real-data preset is rendered at the preset's image size. A
    name trained on uninformative backgrounds (``supervised_oracle``) gets ``rho = 1 / num_classes``.
    """
    if not methods:
        raise ValueError("methods is empty: name at least one method, e.g. ['byol', 'cvsa']")
    overrides = {key: value for key, value in settings.items() if value is not None}
    configs = {}
    for name in methods:
        config = TrainConfig.preset(preset, method=evaluated_from(name), **overrides)
        if dataset != config.dataset or dataset != "synthetic":
            options = {"image_size": config.image_size} if dataset == "synthetic" else {}
            config = dataclasses.replace(config, dataset=dataset, data_root=data_root,
                                         dataset_options={**options, **overrides.get("dataset_options", {})})
        if variant(name).uninformative_backgrounds:
            config = _uninformative(config, name)
        configs[name] = config
    return configs


def _uninformative(config: TrainConfig, name: str) -> TrainConfig:
    """``config`` on the synthetic benchmark drawn with ``rho = 1 / num_classes``: each image's habitat is drawn
    uniformly, whatever its class (the ceiling ``name`` stands for); a clear error on other data."""
    if config.dataset != "synthetic":
        raise ValueError(f"{name} trains on the synthetic benchmark with backgrounds that say nothing about the class; "
                         f"{config.dataset!r} has its own backgrounds: use 'supervised' there")
    classes = config.dataset_options.get("num_classes", SyntheticConfig.num_classes)
    return dataclasses.replace(config, dataset_options={**config.dataset_options, "rho": 1.0 / classes})


def dual_stage_configs(preset: str, stage2: TrainConfig, stage_epochs: int,
                       **settings: Any) -> tuple[TrainConfig, TrainConfig]:
    """A short dual-stage recipe (CVSA Sec. 4) for :func:`fgssl_lib.runs.train_or_load` (``stage1=``): stage 1 BYOL
    from random weights on another draw of the synthetic benchmark (benchmark seed + 1: other images of the same
    world, standing in for the coarse dataset), stage 2 the CVSA config ``stage2``; both
    ``min(stage_epochs, stage2.epochs)`` epochs. ``settings`` as for :func:`method_configs` (their ``epochs`` is the
    single-stage runs')."""
    epochs = min(stage_epochs, stage2.epochs)
    stage1 = method_configs(["byol"], preset, "synthetic", **{**settings, "epochs": epochs})["byol"]
    # stage 1 trains the whole network from random weights (at paper, byol's own preset is already a second stage)
    stage1 = dataclasses.replace(stage1.with_init("scratch"),
                                 dataset_options={**stage1.dataset_options, "seed": stage1.seed + 1})
    return stage1, dataclasses.replace(stage2, epochs=epochs)


def stage1_config(init: str, preset: str, **settings: Any) -> TrainConfig:
    """The stage-1 run of the coarse-world init ``init`` (:data:`~fgssl_lib.train.config.INITS`, e.g.
    ``coarse_dual_stage``): its ``stage1`` method (supervised, or BYOL) at ``preset`` trained from random weights on
    the coarse world (:mod:`fgssl_lib.data.coarse`) rendered at the preset's image size, as many images as the preset
    trains on. ``settings`` as for :func:`method_configs` (they must give stage 2's backbone and image size)."""
    method = INITS[check_choice("initialisation", init, INITS)].get("stage1")
    if method is None:
        raise ValueError(f"initialisation {init!r} has no stage-1 run; the ones with one: "
                         f"{', '.join(name for name, init in INITS.items() if 'stage1' in init)}")
    overrides = {key: value for key, value in settings.items() if value is not None}
    config = TrainConfig.preset(preset, method=method, **{**overrides, "dataset": "coarse", "data_root": None})
    options = {"image_size": config.image_size, "num_images": config.num_images or coarse.DEFAULT_NUM_IMAGES["train"],
               **overrides.get("dataset_options", {})}
    return dataclasses.replace(config.with_init("scratch"), dataset_options=options)


def reproduction_preset(preset: str) -> str:
    """The preset a reproduction of the papers' numbers trains and evaluates at: ``colab`` or ``paper``
    (:data:`~fgssl_lib.config.GPU_PRESETS`), else the ``smoke`` settings (the papers' schedules are far beyond a CPU,
    and a half-trained ResNet-50 would only mislead)."""
    return preset if check_preset(preset) in GPU_PRESETS else "smoke"


def reproduction_configs(methods: Sequence[str], preset: str, dataset: str, init: str = "reported",
                         data_root: str | None = None, **settings: Any) -> dict[str, TrainConfig]:
    """The runs that reproduce the papers' numbers: at ``paper`` (or ``colab``), each method with its paper's settings
    on ``dataset`` (FGVC-Aircraft on train + val, the standard protocol), started as ``init`` says: ``"reported"`` as the runs behind
    the papers' numbers (:data:`fgssl_lib.paper_numbers.INIT`), ``"paper"`` as each method's own paper
    (:data:`~fgssl_lib.train.PAPER_INIT`). Below ``paper`` (:func:`reproduction_preset`), the ``smoke`` settings on
    the synthetic benchmark from random weights. ``settings``: :class:`TrainConfig` fields, ``None`` keeps the
    preset's."""
    check_choice("initialisation", init, ("reported", "paper"))
    overrides = {key: value for key, value in settings.items() if value is not None}
    if reproduction_preset(preset) == "smoke":
        return {m: TrainConfig.preset("smoke", method=m, **overrides) for m in methods}
    if dataset == "aircraft":
        overrides["split"] = "trainval"
    configs = {m: TrainConfig.preset(preset, method=m, dataset=dataset, data_root=data_root, **overrides)
               for m in methods}
    return {m: c.with_init(REPORTED_INIT if init == "reported" else PAPER_INIT[m]) for m, c in configs.items()}
