"""Saliency: where the object is, as a map ``S`` in ``[0, 1]`` and the box derived from it (the DiLo and CVSA theory
pages).

- :mod:`~fgssl_lib.saliency.maps`: :class:`MapSource`, the one map interface (eval mode without gradients, the mode
  restored, bicubic upsampling, min-max per image) of Grad-CAM, CVSA's intensity, LCR's branch map and the sources;
- :mod:`~fgssl_lib.saliency.sources`: ``SaliencySource`` and its subclasses (ground-truth box and mask, OpenCV
  spectral residual and fine-grained saliency, centre prior, any model's map), built by name with
  :func:`build_saliency`;
- :mod:`~fgssl_lib.saliency.best_box`: :func:`best_box`, the contrast-form box search of CVSA Eq. 2 over a grid,
  exact via an integral image and vectorised;
- :mod:`~fgssl_lib.saliency.cache`: maps of a whole dataset cached on disk, and :class:`SaliencyDataset`, which puts
  them (and the derived box and mask) into the samples.
"""

from fgssl_lib.saliency.best_box import (
    DEFAULT_GRID,
    OBJECTIVES,
    best_box,
    best_boxes,
    box_scores,
    grid_boxes,
    grid_edges,
)
from fgssl_lib.saliency.cache import SaliencyCache, SaliencyDataset, cache_root, dataset_fingerprint
from fgssl_lib.saliency.maps import MapSource, evaluating, normalise_per_image, resize_maps
from fgssl_lib.saliency.sources import (
    SOURCES,
    BoxSaliency,
    CentrePrior,
    FineGrainedSaliency,
    MaskSaliency,
    ModelSaliency,
    SaliencySource,
    SpectralResidualSaliency,
    build_saliency,
    min_max_normalise,
)

__all__ = [
    "DEFAULT_GRID",
    "OBJECTIVES",
    "SOURCES",
    "BoxSaliency",
    "CentrePrior",
    "FineGrainedSaliency",
    "MapSource",
    "MaskSaliency",
    "ModelSaliency",
    "SaliencyCache",
    "SaliencyDataset",
    "SaliencySource",
    "SpectralResidualSaliency",
    "best_box",
    "best_boxes",
    "build_saliency",
    "cache_root",
    "box_scores",
    "dataset_fingerprint",
    "evaluating",
    "grid_boxes",
    "grid_edges",
    "min_max_normalise",
    "normalise_per_image",
    "resize_maps",
]
