"""Methods registry: ``build(name, **options) -> SSLMethod``.

Each name maps to ``"module:Class"`` plus default options; modules are imported lazily, so a name whose module is
not importable fails only when it is built. DiLo is not a class: it is a baseline trained on copy-paste views.
"""

from __future__ import annotations

import importlib
from typing import Any

from fgssl_lib.config import check_choice
from fgssl_lib.methods.base import MomentumEncoder, PairOutput, SSLMethod, momentum_copy

_REGISTRY: dict[str, tuple[str, dict[str, Any]]] = {
    "byol": ("fgssl_lib.methods.byol:BYOL", {}),
    "byol_dilo": ("fgssl_lib.methods.byol:BYOL", {"views": "copy_paste"}),
    "mocov2": ("fgssl_lib.methods.mocov2:MoCoV2", {}),
    "mocov2_dilo": ("fgssl_lib.methods.mocov2:MoCoV2", {"views": "copy_paste"}),
    "simclr": ("fgssl_lib.methods.simclr:SimCLR", {}),
    "supervised": ("fgssl_lib.methods.supervised:Supervised", {}),
    "byol_ss": ("fgssl_lib.methods.cvsa:CVSA", {"align_weight": 0.0}),
    "cvsa": ("fgssl_lib.methods.cvsa:CVSA", {}),
    "cvsa_sigmoid_max": ("fgssl_lib.methods.cvsa:CVSA", {"intensity": "sigmoid_max"}),
    "lcr": ("fgssl_lib.methods.lcr:MoCoV2LCR", {}),
    "lcr_multitask": ("fgssl_lib.methods.lcr:MoCoV2LCR", {"test_pooling": False}),
    "lcr_dual_pooling": ("fgssl_lib.methods.lcr:MoCoV2LCR", {"train_pooling": True}),
    "byol_lcr": ("fgssl_lib.methods.lcr:BYOLLCR", {}),
}
METHODS = tuple(_REGISTRY)

TRAINING_VERSION = 2
"""Version of what the methods train: part of every run key, so a run trained by older method code is never loaded
as this code's. Bump it with any change that alters a method's trained weights. 2: LCR's normalised fitting target,
DiLo's soft paste before the crop, MoCo's split BatchNorm."""


def method_class(name: str) -> type[SSLMethod]:
    """The class behind registry name ``name`` (imports its module)."""
    module_name, class_name = _REGISTRY[check_choice("method", name, _REGISTRY)][0].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def method_defaults(name: str) -> dict[str, Any]:
    """The options that registry name ``name`` adds to its class's defaults (e.g. ``views="copy_paste"``)."""
    return dict(_REGISTRY[check_choice("method", name, _REGISTRY)][1])


def build(name: str, **options: Any) -> SSLMethod:
    """Build method ``name`` (one of :data:`METHODS`); ``options`` override the registry's and the class's defaults."""
    method = method_class(name)(**{**method_defaults(name), **options})
    method.method_name = name
    return method


__all__ = ["METHODS", "TRAINING_VERSION", "MomentumEncoder", "PairOutput", "SSLMethod", "build", "method_class", "method_defaults",
           "momentum_copy"]
