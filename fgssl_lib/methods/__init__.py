"""Methods registry: ``build(name, **options) -> SSLMethod``.

Each name is a :class:`Variant`: its class (``"module:Class"``, imported lazily, so a name whose module is not
importable fails only when it is built), the views it trains on, its options, and, for a variant that differs from
another only at test time, the name whose run it is evaluated from. The papers' variants are data here: DiLo is not a
class but a baseline trained on copy-paste views; BYOL+SS is BYOL trained on SaliencySwap views; LCR's MultiTask and
DualPooling (LCR Table 1) are LCR with one pooling option changed.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import torch

from fgssl_lib.config import check_choice
from fgssl_lib.methods.base import Encoding, MomentumEncoder, MomentumMethod, PairOutput, SSLMethod, momentum_copy


@dataclass(frozen=True)
class Variant:
    """One registry entry: ``target`` (``"module:Class"``), ``views`` (the view generator it trains on), ``options``
    (added to the class's defaults), ``evaluated_from`` (the registry name whose run it is evaluated from, with
    ``options`` applied at test time; ``None``: it is trained as itself) and ``uninformative_backgrounds`` (trained
    on the synthetic benchmark drawn with ``rho = 1 / num_classes``, where the habitat says nothing about the class:
    the study's supervised ceiling)."""

    target: str
    views: str = "rrc"
    options: dict[str, Any] = field(default_factory=dict)
    evaluated_from: str | None = None
    uninformative_backgrounds: bool = False


_REGISTRY: dict[str, Variant] = {
    "byol": Variant("fgssl_lib.methods.byol:BYOL"),
    "byol_dilo": Variant("fgssl_lib.methods.byol:BYOL", views="copy_paste"),
    "mocov2": Variant("fgssl_lib.methods.mocov2:MoCoV2"),
    "mocov2_dilo": Variant("fgssl_lib.methods.mocov2:MoCoV2", views="copy_paste"),
    "simclr": Variant("fgssl_lib.methods.simclr:SimCLR"),
    "supervised": Variant("fgssl_lib.methods.supervised:Supervised"),
    "supervised_oracle": Variant("fgssl_lib.methods.supervised:Supervised", uninformative_backgrounds=True),
    "byol_ss": Variant("fgssl_lib.methods.byol:BYOL", views="saliency_swap"),
    "cvsa": Variant("fgssl_lib.methods.cvsa:CVSA", views="saliency_swap"),
    "cvsa_sigmoid_max": Variant("fgssl_lib.methods.cvsa:CVSA", views="saliency_swap",
                                options={"intensity": "sigmoid_max"}),
    "lcr": Variant("fgssl_lib.methods.lcr:MoCoV2LCR"),
    "lcr_multitask": Variant("fgssl_lib.methods.lcr:MoCoV2LCR", options={"test_pooling": False},
                             evaluated_from="lcr"),
    "lcr_dual_pooling": Variant("fgssl_lib.methods.lcr:MoCoV2LCR", options={"train_pooling": True}),
    "byol_lcr": Variant("fgssl_lib.methods.lcr:BYOLLCR"),
}
METHODS = tuple(_REGISTRY)

TRAINING_VERSION = 3
"""Version of what the methods train: part of every run key, so a run trained by older method code is never loaded
as this code's. Bump it with any change that alters a method's trained weights. 2: LCR's normalised fitting target,
DiLo's soft paste before the crop, MoCo's split BatchNorm. 3: BYOL+SS is BYOL on SaliencySwap views (no CVSA modules),
BYOL-LCR's ``fitting="authors"`` divides by the authors' tau = 0.4, LCR's fitting branch shares MoCo's BatchNorm
groups, DiLo's grey levels run 0-254."""

MOMENTUM_OPTIONS = ("momentum_start", "momentum_end")
"""The options of :class:`MomentumMethod`. Checkpoints of every method written before the plain / momentum split
record them, so :func:`build` leaves them out for a method without a momentum encoder (which never read them)."""


def variant(name: str) -> Variant:
    """The registry entry of ``name`` (one of :data:`METHODS`)."""
    return _REGISTRY[check_choice("method", name, _REGISTRY)]


def method_class(name: str) -> type[SSLMethod]:
    """The class behind registry name ``name`` (imports its module)."""
    module_name, class_name = variant(name).target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def method_defaults(name: str) -> dict[str, Any]:
    """The options that registry name ``name`` adds to its class's defaults, its views included
    (e.g. ``views="copy_paste"``)."""
    spec = variant(name)
    return {**spec.options, "views": spec.views}


def evaluated_from(name: str) -> str:
    """The registry name whose trained run ``name`` is evaluated from: itself, or for a test-time variant (LCR's
    MultiTask) the method it trains as."""
    return variant(name).evaluated_from or name


def build(name: str, **options: Any) -> SSLMethod:
    """Build method ``name`` (one of :data:`METHODS`); ``options`` override the registry's and the class's defaults
    (``views=None`` keeps the registry's views)."""
    cls = method_class(name)
    options = {**method_defaults(name), **{k: v for k, v in options.items() if not (k == "views" and v is None)}}
    if not issubclass(cls, MomentumMethod):
        options = {k: v for k, v in options.items() if k not in MOMENTUM_OPTIONS}
    method = cls(**options)
    method.method_name = name
    return method


def evaluated_as(method: SSLMethod, name: str) -> SSLMethod:
    """``method``, trained as :func:`evaluated_from` ``(name)``, as variant ``name``: rebuilt with ``name``'s options
    (e.g. LCR MultiTask's ``test_pooling=False``) and ``method``'s weights, on its device, in eval mode."""
    source = evaluated_from(name)
    if method.method_name != source:
        raise ValueError(f"{name!r} is evaluated from a {source!r} run, not from {method.method_name!r}; train or "
                         f"load the {source!r} run of the same config")
    if source == name:
        return method
    with torch.random.fork_rng(devices=[]):  # the throw-away initialisation leaves the seeded stream as it was
        rebuilt = build(name, **{**method.hparams, **variant(name).options, "pretrained": None})
    rebuilt.load_state_dict(method.state_dict())
    return rebuilt.to(method.device).eval()


__all__ = ["METHODS", "MOMENTUM_OPTIONS", "TRAINING_VERSION", "Encoding", "MomentumEncoder", "MomentumMethod",
           "PairOutput", "SSLMethod", "Variant", "build", "evaluated_as", "evaluated_from", "method_class",
           "method_defaults", "momentum_copy", "variant"]
