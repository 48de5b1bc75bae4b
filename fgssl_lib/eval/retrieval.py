"""Retrieval metrics of LCR (Shu et al. 2023): the test set queried against itself, leave-one-out, cosine similarity.

For a query ``q`` the gallery is every other test image, ranked by cosine similarity. ``rank-k`` is the percentage of
queries with at least one same-class image among the top ``k``; ``mAP`` is the mean over queries of the average
precision ``AP(q) = (1 / R_q) * sum_j P@j * rel_j`` (``R_q`` same-class images in the gallery, ``P@j`` the precision of
the top ``j``). Queries without any same-class image have no AP and are left out of the mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from fgssl_lib.config import resolve_device


def _check_pair(feats: torch.Tensor, labels: torch.Tensor, name: str) -> None:
    if feats.ndim != 2 or labels.ndim != 1 or len(feats) != len(labels):
        raise ValueError(
            f"{name}: expected features N x D and labels N; got {tuple(feats.shape)} and {tuple(labels.shape)}"
        )


def top_k_neighbours(
    queries: torch.Tensor, gallery: torch.Tensor, k: int, exclude_self: bool = False, chunk_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarities and indices of the ``k`` nearest gallery items of each query: ``Q x k`` each.

    ``exclude_self`` drops gallery item ``i`` for query ``i`` (the test set against itself).
    """
    queries, gallery = F.normalize(queries.float(), dim=1), F.normalize(gallery.float(), dim=1)
    sims, indices = [], []
    for start in range(0, len(queries), chunk_size):
        sim = queries[start : start + chunk_size] @ gallery.T  # CxG
        if exclude_self:
            rows = torch.arange(len(sim), device=sim.device)
            sim[rows, rows + start] = -float("inf")
        top = sim.topk(k, dim=1)
        sims.append(top.values)
        indices.append(top.indices)
    return torch.cat(sims), torch.cat(indices)


def retrieval_metrics(
    feats: torch.Tensor,
    labels: torch.Tensor,
    ranks: Sequence[int] = (1, 5),
    chunk_size: int = 512,
    device: str | torch.device = "auto",
) -> dict[str, float]:
    """``{"rank1", "rank5", "mAP"}`` (percentages) of ``feats`` (``N x D``) with ``labels`` (``N``), leave-one-out.

    Queries are processed ``chunk_size`` at a time (a ``chunk_size x N`` similarity block and its sort), so 50k x 2048
    features fit in memory; AP is computed from the sorted relevance per chunk, vectorised.
    """
    _check_pair(feats, labels, "retrieval_metrics")
    if len(feats) < 2:
        raise ValueError("retrieval_metrics needs at least two items (each query is ranked against the others)")
    device = resolve_device(device)
    feats = F.normalize(feats.to(device).float(), dim=1)  # NxD
    labels = labels.to(device)
    n = len(feats)
    hits = {k: 0 for k in ranks}
    ap_sum, n_with_positives = 0.0, 0
    positions = torch.arange(1, n, device=device, dtype=torch.float32)  # 1..N-1, rank positions in the gallery
    for start in range(0, n, chunk_size):
        sim = feats[start : start + chunk_size] @ feats.T  # CxN
        rows = torch.arange(len(sim), device=device)
        sim[rows, rows + start] = -float("inf")  # leave the query out
        order = sim.argsort(dim=1, descending=True)[:, : n - 1]  # Cx(N-1), the query itself sorts last
        relevant = (labels[order] == labels[start : start + chunk_size, None]).float()  # Cx(N-1)
        for k in ranks:
            hits[k] += int(relevant[:, :k].any(dim=1).sum())
        n_relevant = relevant.sum(dim=1)  # C
        precision_at = relevant.cumsum(dim=1) / positions  # Cx(N-1)
        ap = (precision_at * relevant).sum(dim=1) / n_relevant.clamp(min=1)  # C
        ap_sum += float(ap[n_relevant > 0].sum())
        n_with_positives += int((n_relevant > 0).sum())
    metrics = {f"rank{k}": 100.0 * hits[k] / n for k in ranks}
    metrics["mAP"] = 100.0 * ap_sum / max(n_with_positives, 1)
    return metrics
