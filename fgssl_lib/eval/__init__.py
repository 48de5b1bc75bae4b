"""Evaluation protocols of the three papers (the book's benchmark page), as plain functions over tensors.

Features: :func:`extract_features` (cached). Classification: :func:`linear_probe`, :func:`knn_accuracy`,
:func:`fine_tune`. Retrieval: :func:`retrieval_metrics`. Localisation: :func:`max_box_acc` over CAMs from
:func:`gradcam_maps` or :func:`saliency_maps`, over a split by :func:`localization_maps`. Background bias:
:func:`background_bias_report`, :func:`box_background_report`. Every function returns plain numbers or dicts
(percentages).
"""

from fgssl_lib.eval.background_bias import BoxVariant, background_bias_report, box_background_report
from fgssl_lib.eval.cams import GradCAMMap, gradcam_maps, localization_maps, saliency_maps
from fgssl_lib.eval.features import Features, check_features, extract_features
from fgssl_lib.eval.finetune import fine_tune
from fgssl_lib.eval.knn import knn_accuracy, top_k_accuracy
from fgssl_lib.eval.linear import class_balanced_subset, fit_linear, linear_probe, select_linear
from fgssl_lib.eval.maxboxacc import max_box_acc
from fgssl_lib.eval.retrieval import retrieval_metrics, top_k_neighbours

__all__ = [
    "BoxVariant",
    "Features",
    "GradCAMMap",
    "background_bias_report",
    "box_background_report",
    "check_features",
    "class_balanced_subset",
    "extract_features",
    "fine_tune",
    "fit_linear",
    "gradcam_maps",
    "knn_accuracy",
    "linear_probe",
    "localization_maps",
    "max_box_acc",
    "retrieval_metrics",
    "saliency_maps",
    "select_linear",
    "top_k_accuracy",
    "top_k_neighbours",
]
