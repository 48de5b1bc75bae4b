"""Backbones: ResNets with named stage maps (see :mod:`fgssl_lib.models.backbones`)."""

from fgssl_lib.models.backbones import (
    BACKBONES,
    EARLY_STAGES,
    NARROW_WIDTHS,
    STAGES,
    Backbone,
    build_backbone,
    small_input_stem,
    split_batchnorm,
)

__all__ = ["BACKBONES", "EARLY_STAGES", "NARROW_WIDTHS", "STAGES", "Backbone", "build_backbone",
           "small_input_stem", "split_batchnorm"]
