"""Weighted k-nearest-neighbour classification of DINO (Caron et al. 2021, ``eval_knn.py``; Wu et al. 2018).

Train features are the gallery, test features the queries. With cosine similarities ``s_j`` of a query to its ``k``
nearest gallery items, class ``c`` scores ``sum_j exp(s_j / T) * [y_j = c]``; the prediction is the top-scoring class
(top-5: the five best). Constants of the protocol: ``k = 20``, ``T = 0.07``.
"""

from __future__ import annotations

import torch

from fgssl_lib.config import resolve_device
from fgssl_lib.eval.features import check_features
from fgssl_lib.eval.retrieval import top_k_neighbours

K = 20
TEMPERATURE = 0.07


def knn_scores(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    k: int = K,
    T: float = TEMPERATURE,
    num_classes: int | None = None,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Class scores ``Q x C``: the ``exp(s / T)``-weighted one-hot votes of the ``k`` nearest train items."""
    num_classes = int(train_labels.max()) + 1 if num_classes is None else num_classes
    sims, indices = top_k_neighbours(test_feats, train_feats, min(k, len(train_feats)), chunk_size=chunk_size)  # Qxk
    scores = torch.zeros(len(sims), num_classes, device=sims.device)  # QxC
    return scores.scatter_add_(1, train_labels[indices], (sims / T).exp())  # QxC


def knn_accuracy(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    k: int = K,
    T: float = TEMPERATURE,
    chunk_size: int = 1024,
    device: str | torch.device = "auto",
) -> dict[str, float]:
    """DINO's weighted kNN: ``{"top1", "top5"}`` percentages of the test queries against the train gallery."""
    check_features(train_feats, train_labels, "knn_accuracy (train)")
    check_features(test_feats, test_labels, "knn_accuracy (test)")
    if k < 1 or T <= 0:
        raise ValueError(f"knn_accuracy needs k >= 1 and T > 0; got k={k}, T={T}")
    device = resolve_device(device)
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    scores = knn_scores(
        train_feats.to(device), train_labels.to(device), test_feats.to(device), k, T, num_classes, chunk_size
    )  # QxC
    return top_k_accuracy(scores, test_labels.to(device))


def top_k_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """``{"top1", "top5"}``: percentage of rows whose label is among the ``k`` highest scores (``N x C``, ``N``)."""
    ranked = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices  # Nxk
    correct = ranked == labels[:, None]
    return {f"top{k}": 100.0 * float(correct[:, :k].any(dim=1).float().mean()) for k in ks}
