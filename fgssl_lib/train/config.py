"""Typed training configuration with the named presets ``smoke``, ``cpu``, ``paper`` and ``colab``.

``TrainConfig.preset(name, method=..., **overrides)`` returns the preset for a method; any field can be overridden.
``paper`` follows the papers (sources in the comments of :func:`_paper_settings`), ``colab`` shortens it to a free
Colab T4 session (:func:`_colab_settings`), ``cpu`` is sized so one run of
the synthetic benchmark takes a few minutes on a 2-core CPU, ``smoke`` runs in seconds (numbers meaningless).
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from typing import Any

from fgssl_lib.config import check_choice, check_preset, matches_type, resolve_device, type_name
from fgssl_lib.models import BACKBONES, small_input_stem
from fgssl_lib.precision import PRECISIONS, cpu_bf16, resolve_precision
from fgssl_lib.train.localiser import DEFAULT_LOCALISER, LOCALISERS, uses_localiser


NOT_IN_IDENTITY = frozenset({
    "effective_batch_size", "device", "precision", "devices", "num_nodes", "strategy", "num_workers", "progress_bar",
    "checkpoint_dir", "resume", "checkpoint_every", "checkpoint_minutes", "log_every", "collapse_every",
    "collapse_threshold"})
""":class:`TrainConfig` fields that do not change the trained weights (see :meth:`TrainConfig.identity`)."""
VIEW_PIPELINES = ("auto", "batched", "per_sample")
"""Where the two views are made (``TrainConfig.view_pipeline``): ``batched``, in batches on the training device from
the uint8 training store (:mod:`fgssl_lib.train.store`); ``per_sample``, one sample at a time in ``DataLoader``
workers (the reference); ``auto``, batched wherever the view generator and the data allow it."""


@dataclass
class TrainConfig:
    """Everything :func:`fgssl_lib.train.fit` needs.

    Method: ``method`` (registry name), ``method_options`` (constructor options, e.g. ``queue_size``,
    ``align_weight``), ``view_params`` (override the method's view parameters). Data: ``dataset``, ``data_root``,
    ``split``, ``dataset_options`` (e.g. ``image_size`` / ``rho`` for ``synthetic``), ``num_images`` (a seeded
    random subset; ``None`` = all), ``image_size`` (side of the views). Model and optimisation: ``backbone``,
    ``pretrained``, ``epochs``, ``batch_size`` (the micro-batch: images per forward pass on each device, or
    ``"auto"``: the largest that fits the device, :mod:`fgssl_lib.train.memory`), ``effective_batch_size`` (images
    per optimizer step on each device, reached by gradient accumulation; ``None``: ``batch_size``; it, not the
    micro-batch, is part of the run's identity), ``optimizer``, ``lr`` (not scaled with the number of devices),
    ``weight_decay``, ``warmup_epochs``. Views: ``view_pipeline`` (:data:`VIEW_PIPELINES`; it changes the views, so a run resumes only
    with its own) and ``store_side`` (the shorter side of the stored images of the batched pipeline; ``None``: as
    decoded); ``localiser`` (:data:`~fgssl_lib.train.localiser.LOCALISERS`: where SaliencySwap's box and DiLo's map
    come from; default the label-free ``spectral_residual``, ``annotation`` only by name, an upper bound;
    :mod:`fgssl_lib.train.localiser`). Hardware: ``device`` (``auto``/``cpu``/``cuda``), ``precision`` (``auto``:
    ``bf16-mixed`` on GPUs with bf16 hardware, compute capability >= 8.0, else ``16-mixed`` on CUDA, ``32-true`` on CPU), ``devices``, ``num_nodes``, ``strategy``,
    ``sync_batchnorm``, ``num_workers``. Run: ``seed``, ``checkpoint_dir`` (run directory with ``last.ckpt`` and
    ``logs/version_<n>/metrics.csv``; ``None`` = ``runs/<method>``), ``resume``, ``checkpoint_every`` (write
    ``last.ckpt`` every N epochs) or ``checkpoint_minutes`` (instead: at the first epoch end N minutes after the last
    write; e.g. 20 on Google Drive), always at the last epoch, ``max_steps`` (-1 = no limit), ``log_every`` (steps),
    ``collapse_every`` / ``collapse_threshold`` (collapse monitor), ``progress_bar``.
    """

    method: str = "byol"
    method_options: dict[str, Any] = field(default_factory=dict)
    view_params: dict[str, Any] = field(default_factory=dict)
    dataset: str = "synthetic"
    data_root: str | None = None
    split: str = "train"
    dataset_options: dict[str, Any] = field(default_factory=dict)
    num_images: int | None = None
    image_size: int = 64
    view_pipeline: str = "auto"
    store_side: int | None = None
    localiser: str = DEFAULT_LOCALISER
    backbone: str = "resnet_narrow"
    pretrained: str | None = None
    epochs: int = 8
    batch_size: int | str = 64
    effective_batch_size: int | None = None
    optimizer: str = "sgd"
    lr: float = 0.05
    weight_decay: float = 1e-4
    warmup_epochs: int = 0
    num_workers: int = 0
    device: str = "auto"
    precision: str = "auto"
    devices: int | str | list[int] = 1
    num_nodes: int = 1
    strategy: str = "auto"
    sync_batchnorm: bool = False
    seed: int = 0
    checkpoint_dir: str | None = None
    resume: bool = False
    checkpoint_every: int = 1
    checkpoint_minutes: float | None = None
    max_steps: int = -1
    log_every: int = 10
    collapse_every: int = 25
    collapse_threshold: float = 0.1
    progress_bar: bool = True

    def __post_init__(self) -> None:
        for name, expected in typing.get_type_hints(TrainConfig).items():
            value = getattr(self, name)
            if isinstance(value, os.PathLike) and matches_type("", expected):
                setattr(self, name, value := os.fspath(value))  # a pathlib.Path where a str path is expected
            if not matches_type(value, expected):
                raise TypeError(f"TrainConfig.{name} must be {type_name(expected)}, got {value!r} "
                                f"({type(value).__name__})")
        check_choice("backbone", self.backbone, BACKBONES)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("view pipeline", self.view_pipeline, VIEW_PIPELINES)
        check_choice("localiser", self.localiser, LOCALISERS)
        if self.store_side is not None and self.store_side < 1:
            raise ValueError(f"TrainConfig.store_side is the stored images' shorter side in pixels (or None: as "
                             f"decoded), got {self.store_side!r}")
        for name in ("epochs", "image_size", "log_every", "collapse_every", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        self._check_optimisation()
        self._check_batch()

    def _check_optimisation(self) -> None:
        """Refuse settings that would train nothing or fail only once training has started, naming the field and
        its allowed range."""
        if isinstance(self.batch_size, int) and self.batch_size < 2:
            raise ValueError(f"TrainConfig.batch_size must be >= 2 (BatchNorm needs at least 2 images per batch to "
                             f"normalise), got {self.batch_size!r}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be > 0 (the learning rate; an lr of 0 trains nothing), got "
                             f"{self.lr!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.warmup_epochs < 0:
            raise ValueError(f"TrainConfig.warmup_epochs must be >= 0, got {self.warmup_epochs!r}")
        if self.max_steps != -1 and self.max_steps < 1:
            raise ValueError(f"TrainConfig.max_steps must be >= 1, or -1 for no limit (the epochs decide), got "
                             f"{self.max_steps!r}")

    def _check_batch(self) -> None:
        """``batch_size`` is ``"auto"`` (with an ``effective_batch_size``) or a positive int that divides it."""
        if self.batch_size == "auto":
            if self.effective_batch_size is None:
                raise ValueError("batch_size='auto' picks the micro-batch that fits the device and accumulates "
                                 "gradients up to effective_batch_size: set effective_batch_size (e.g. 256), or give "
                                 "batch_size as a number")
        elif isinstance(self.batch_size, str) or self.batch_size < 1:
            raise ValueError(f"TrainConfig.batch_size must be a number >= 1 or 'auto', got {self.batch_size!r}")
        effective = self.effective_batch()
        if effective < 1 or (self.batch_size != "auto" and effective % self.batch_size):
            raise ValueError(f"effective_batch_size={self.effective_batch_size} must be a multiple of batch_size="
                             f"{self.batch_size} (the optimizer steps every effective_batch_size // batch_size "
                             "micro-batches): change one of them, or set effective_batch_size=None (no accumulation)")

    def effective_batch(self) -> int:
        """Images per optimizer step on each device: ``effective_batch_size``, else ``batch_size``."""
        return int(self.effective_batch_size if self.effective_batch_size is not None else self.batch_size)

    @classmethod
    def preset(cls, name: str, method: str = "byol", **overrides: Any) -> TrainConfig:
        """The preset ``name`` (``smoke``, ``cpu``, ``paper``, ``colab``) for ``method``, with ``overrides`` applied.

        The preset's batch is its effective batch; on a CUDA device the micro-batch is ``"auto"`` (the largest that
        fits, gradients accumulated up to the effective batch). A ``batch_size`` number given without an
        ``effective_batch_size`` is the whole batch (no accumulation)."""
        check_preset(name)
        settings = {"smoke": _smoke_settings, "cpu": _cpu_settings, "paper": _paper_settings,
                    "colab": _colab_settings}[name](method)
        settings["effective_batch_size"] = settings["batch_size"]
        if _on_cuda(overrides.get("device", settings.get("device", "auto"))):
            settings["batch_size"] = "auto"
        if overrides.get("batch_size", "auto") != "auto" and "effective_batch_size" not in overrides:
            overrides["effective_batch_size"] = overrides["batch_size"]
        if overrides.get("dataset", settings.get("dataset")) != settings.get("dataset"):
            settings.pop("dataset_options", None)  # the preset's dataset options are its own dataset's
        for key in ("method_options", "dataset_options", "view_params"):  # merge dicts instead of replacing them
            if key in overrides:
                overrides[key] = {**settings.get(key, {}), **overrides[key]}
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise TypeError(f"unknown TrainConfig fields {unknown}; valid fields: "
                            f"{', '.join(f.name for f in dataclasses.fields(cls))}")
        config = cls(**{"method": method, **settings, **overrides})
        if "bn_splits" in settings.get("method_options", {}) and "bn_splits" not in overrides.get("method_options", {}):
            config.method_options["bn_splits"] = moco_bn_splits(config.effective_batch())  # follows a resized batch
        return config

    def with_init(self, init: str, stage1: str | None = None) -> TrainConfig:
        """This config started as :data:`INITS` ``[init]`` says (``imagenet``, ``dual_stage``, ``scratch``, or a
        coarse-world init, which needs ``stage1``: the run key of its finished stage-1 run, recorded in
        ``pretrained`` as ``"run:<key>"``; :func:`fgssl_lib.runs.start_from` trains or finds it)."""
        settings = INITS[check_choice("initialisation", init, INITS)]
        if ("stage1" in settings) != (stage1 is not None):
            raise ValueError(f"initialisation {init!r} " + ("starts from a stage-1 run: pass stage1=<its run key>, or "
                             "use fgssl_lib.runs.start_from, which trains it" if "stage1" in settings else
                             f"takes no stage-1 run, got stage1={stage1!r}"))
        pretrained = settings["pretrained"] if stage1 is None else STAGE1_PREFIX + stage1
        return dataclasses.replace(self, pretrained=pretrained,
                                   method_options={**self.method_options, **settings["method_options"]})

    def identity(self) -> dict[str, Any]:
        """The settings that make the trained weights what they are (not the hardware, the logging, or where the
        data lies): the run key hashes them with the data's content (:func:`fgssl_lib.runs.run_key`) and a resumed
        run must match them. ``data_root`` never counts: data may move (Drive to local disk); ``store_side`` only
        where the views may be batched (the per-sample views never read the store); ``localiser`` only where the
        views read a box or map (:meth:`localised`). The batch is the effective batch (``batch_size``), not the
        micro-batch: a run trained on a large card resumes and loads on a small one."""
        ignored = NOT_IN_IDENTITY | {"data_root"}
        ignored |= {"store_side"} if self.view_pipeline == "per_sample" else set()
        ignored |= set() if self.localised() else {"localiser"}
        identity = {k: v for k, v in dataclasses.asdict(self).items() if k not in ignored}
        return {**identity, "batch_size": self.effective_batch()}

    def localised(self) -> bool:
        """Whether this run's views read the object box or map, i.e. use :attr:`localiser` (SaliencySwap, DiLo)."""
        from fgssl_lib.methods import variant

        return uses_localiser(self.method_options.get("views") or variant(self.method).views)

    def backbone_options(self) -> dict[str, Any]:
        """Constructor options of the method's :class:`SSLMethod` base that come from this config."""
        return {
            "backbone": self.backbone,
            **small_input_stem(self.image_size),
            "pretrained": self.pretrained,
            "optimizer": self.optimizer,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "warmup_epochs": self.warmup_epochs,
        }

    def resolved_precision(self) -> str:
        """``precision`` with ``auto`` resolved for :meth:`accelerator`."""
        return resolve_precision(self.precision, self.accelerator(), resolve_device(self.device).index)

    def accelerator(self) -> str:
        """Lightning accelerator name for ``device``."""
        return "gpu" if resolve_device(self.device).type == "cuda" else "cpu"


def _on_cuda(device: Any) -> bool:
    """Whether ``device`` (a :class:`TrainConfig` ``device``) trains on a GPU, asked without initialising CUDA."""
    import torch

    return str(device).startswith("cuda") or (device == "auto" and torch.cuda.is_available())


def data_workers(most: int = 8) -> int:
    """DataLoader workers for a GPU run: one per CPU this process may use (2 on Colab), at most ``most``."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(most, cpus))


def method_family(method: str) -> str:
    """``moco`` for the MoCo v2 family (MoCo v2, its DiLo variant, LCR on MoCo), ``supervised`` for the supervised
    references (trained on labels, with no heads), else ``byol``."""
    if method.startswith("supervised"):
        return "supervised"
    return "moco" if method.startswith(("mocov2", "lcr")) else "byol"


def _method_options(method: str, hidden_dim: int, proj_dim: int, queue_size: int) -> dict[str, Any]:
    """Head sizes (and queue) for the method's family; SimCLR / supervised take no momentum options."""
    if method_family(method) == "supervised":
        return {}
    if method_family(method) == "moco":
        return {"hidden_dim": hidden_dim, "proj_dim": proj_dim, "queue_size": queue_size}
    return {"hidden_dim": hidden_dim, "proj_dim": proj_dim}


def _smoke_settings(method: str) -> dict[str, Any]:
    """CI: 32 px, 128 images, one epoch of batch 32, tiny heads; seconds on a CPU."""
    return {
        "dataset": "synthetic",
        "dataset_options": {"image_size": 32},
        "num_images": 128,
        "image_size": 32,
        "backbone": "resnet_narrow",
        "epochs": 1,
        "batch_size": 32,
        "lr": 0.05,
        "method_options": _method_options(method, hidden_dim=64, proj_dim=32, queue_size=256),
        "log_every": 1,
        "collapse_every": 2,
        "progress_bar": False,
    }


def _cpu_settings(method: str) -> dict[str, Any]:
    """This machine (2 cores): the synthetic benchmark at 64 px (its first 9,600 train images), narrow ResNet, 8 epochs
    of batch 64 (1,200 steps) in bf16 where the CPU has it (:func:`cpu_precision`). The budget was chosen on the
    validation split (``fgssl_lib/results/calibration.json``, the benchmark page): at 2,400 images x 6 epochs, or 4,800 x
    8, not even labels read the species off the bird. lr 0.05 at batch 64 with SGD for the self-supervised methods
    (MoCo v2's 0.03 at 256 scaled up for the short schedule, as in lightly's CIFAR-10 benchmarks: 0.06 x batch/128);
    0.2 for the supervised references (chosen on ``val``: 76.8 % on ``mixed_rand`` against 66.2 % at 0.05)."""
    return {
        "dataset": "synthetic",
        "dataset_options": {"image_size": 64},
        "num_images": 9600,
        "image_size": 64,
        "backbone": "resnet_narrow",
        "epochs": 8,
        "batch_size": 64,
        "optimizer": "sgd",
        "lr": 0.2 if method_family(method) == "supervised" else 0.05,
        "weight_decay": 5e-4,
        "num_workers": 1,  # views (~0.4 s per batch of 64 on one core) overlap the step instead of adding to it
        "precision": cpu_precision(),
        "method_options": _method_options(method, hidden_dim=512, proj_dim=128, queue_size=4096),
    }


def cpu_precision() -> str:
    """The ``cpu`` preset's precision: ``bf16-mixed`` where this machine trains on a CPU with bf16 in hardware
    (:func:`~fgssl_lib.precision.cpu_bf16`; about 1.6 times faster, same accuracy on the benchmark's validation
    split), else ``auto``."""
    import torch

    return "bf16-mixed" if cpu_bf16() and not torch.cuda.is_available() else "auto"


INITS: dict[str, dict[str, Any]] = {
    "imagenet": {"pretrained": "imagenet", "method_options": {"freeze_early": False}},
    "dual_stage": {"pretrained": "imagenet", "method_options": {"freeze_early": True}},
    "scratch": {"pretrained": None, "method_options": {"freeze_early": False}},
    "coarse_supervised": {"stage1": "supervised", "method_options": {"freeze_early": False}},
    "coarse_dual_stage": {"stage1": "byol", "method_options": {"freeze_early": True}},
}
"""How a run starts: torchvision's ImageNet-supervised weights; CVSA's dual stage (stage 1 on a coarse dataset,
then stem + layer1 + layer2 frozen; at ``paper`` the ImageNet-supervised weights stand in for CVSA's stage-1 BYOL on
ImageNet, which no single GPU session trains); random weights; or the backbone of a stage-1 run on the coarse world
(:mod:`fgssl_lib.data.coarse`, the stand-in for ImageNet): its ``stage1`` method trained from random weights, then the
whole network fine-tuned (``coarse_supervised``, as from ImageNet) or its early stages frozen (``coarse_dual_stage``,
CVSA's dual stage). :meth:`TrainConfig.with_init` applies one."""
STAGE1_PREFIX = "run:"
"""``pretrained`` of a run started from a stage-1 run: ``"run:<run key of the stage-1 run>"``, so the stage-1 run's
identity is part of the run's own (:meth:`TrainConfig.identity`)."""
COARSE_INIT: dict[str, str] = {"imagenet": "coarse_supervised", "dual_stage": "coarse_dual_stage",
                               "scratch": "scratch"}
"""The coarse world's stand-in for each paper initialisation of :data:`PAPER_INIT`."""

PAPER_INIT: dict[str, str] = {
    # LCR Sec. 4 and Tables 2-4: LCR, its variants and every baseline it reports start from ImageNet weights
    **dict.fromkeys(("lcr", "lcr_multitask", "lcr_dual_pooling", "byol_lcr", "mocov2", "simclr", "supervised"),
                    "imagenet"),
    # CVSA Sec. 4: BYOL, BYOL+SS and CVSA as its dual-stage second stage
    **dict.fromkeys(("byol", "byol_ss", "cvsa", "cvsa_sigmoid_max"), "dual_stage"),
    # DiLo trains from scratch (its Sec. 4: MoCo / BYOL pre-training from random weights)
    **dict.fromkeys(("byol_dilo", "mocov2_dilo"), "scratch"),
    # the synthetic benchmark's ceiling (supervised on backgrounds that say nothing): no paper, from random weights
    "supervised_oracle": "scratch",
}
"""The initialisation of each method at the ``paper`` preset: the one its paper starts from (an :data:`INITS` key)."""


MOCO_GPU_BATCH = 32
"""Images per BatchNorm group in MoCo's runs (256 on 8 GPUs; LCR's 128 on 4): the ``paper`` preset's ``bn_splits``
is the batch over this, so one GPU normalises as they did."""


def moco_bn_splits(batch_size: int) -> int:
    """The most BatchNorm groups of at least :data:`MOCO_GPU_BATCH` images that split ``batch_size`` evenly; 0 (one
    group) when fewer than two fit."""
    return next((g for g in range(batch_size // MOCO_GPU_BATCH, 1, -1) if batch_size % g == 0), 0)


def _paper_settings(method: str) -> dict[str, Any]:
    """GPU: ResNet-50 at 224 px with the papers' hyper-parameters.

    - MoCo v2 family: MoCo v2 (Chen et al. 2020b) and LCR Sec. 4 ("Implementation details"): SGD lr 0.03,
      momentum 0.9, weight decay 1e-4, momentum encoder 0.999, queue K = 65536, tau = 0.2, cosine schedule; LCR
      uses batch 128, 100 epochs, its head 2048-2048-256. Shuffled BatchNorm in groups of 32 (:data:`MOCO_GPU_BATCH`).
    - Initialisation: :data:`PAPER_INIT` (ImageNet weights for LCR and what it compares with, CVSA's dual stage,
      DiLo from scratch).
    - BYOL family: CVSA Sec. 4 / App. A ("we follow the exact experimental setup in BYOL", 800 epochs on the
      small fine-grained datasets, MoCo v2 augmentations); BYOL (Grill et al. 2020): heads 4096/256, target momentum
      0.996 -> 1 (cosine). BYOL's LARS at batch 4096 is replaced by SGD (lr 0.05 x batch/256, weight decay 1e-4 as
      in MoCo v2): the fine-grained training sets hold ~6-10k images, so batch 256 keeps ~25-40 steps per epoch.
    - Batched views crop the training images stored at a shorter side of 256 px (``store_side``): CUB, Cars or
      Aircraft then take 1-2 GB and stay on the GPU.
    """
    init = INITS[PAPER_INIT[check_choice("method with a paper initialisation", method, PAPER_INIT)]]
    common = {"dataset": "cub", "image_size": 224, "store_side": 256, "backbone": "resnet50", "optimizer": "sgd",
              "weight_decay": 1e-4, "num_workers": data_workers(), "log_every": 50, "collapse_every": 200,
              "pretrained": init["pretrained"]}
    if method_family(method) == "moco":
        lcr = method.startswith("lcr")
        batch_size = 128 if lcr else 256
        options = {"hidden_dim": 2048, "proj_dim": 256 if lcr else 128, "queue_size": 65536, "temperature": 0.2,
                   "momentum_start": 0.999, "bn_splits": moco_bn_splits(batch_size)}
        return {**common, "epochs": 100 if lcr else 200, "batch_size": batch_size, "lr": 0.03,
                "method_options": {**options, **init["method_options"]}}
    if method_family(method) == "supervised":
        return {**common, "epochs": 100, "batch_size": 256, "lr": 0.1, "method_options": init["method_options"]}
    options = {} if method == "simclr" else {"hidden_dim": 4096, "proj_dim": 256, "momentum_start": 0.996}
    return {**common, "epochs": 800, "batch_size": 256, "lr": 0.05, "warmup_epochs": 10,
            "method_options": {**options, **init["method_options"]}}


COLAB_EPOCHS: dict[str, int] = {"byol": 24, "moco": 50, "supervised": 50}
"""Epochs of the ``colab`` preset per :func:`method_family` (BYOL, CVSA, DiLo and SimCLR; MoCo v2 and LCR; the
supervised references): the most that keep every training notebook at ``colab`` within two hours of a T4 by the
cost model (``python -m fgssl_lib.cost``), every run it trains by default counted."""


def _colab_settings(method: str) -> dict[str, Any]:
    """A free Colab session (one T4, 16 GB, a few hours): the ``paper`` preset (CUB at 224 px, ResNet-50, the papers'
    batches, heads and learning rates; batches that do not fit the card are accumulated, :mod:`fgssl_lib.train.memory`)
    shortened to :data:`COLAB_EPOCHS` (paper: 800 BYOL-family epochs, 200 MoCo v2, 100 LCR and supervised) with one
    warm-up epoch where the paper warms up (paper: 10 of 800). Every run starts from ImageNet-supervised weights
    (downloaded on first use): as its paper does (:data:`PAPER_INIT`, CVSA's dual stage included) except DiLo, whose
    paper trains from scratch, which no two-hour schedule can."""
    settings = _paper_settings(method)
    init = INITS["imagenet" if PAPER_INIT[method] == "scratch" else PAPER_INIT[method]]
    return {**settings, "epochs": COLAB_EPOCHS[method_family(method)], "pretrained": init["pretrained"],
            "warmup_epochs": min(settings.get("warmup_epochs", 0), 1),
            "method_options": {**settings["method_options"], **init["method_options"]}}
