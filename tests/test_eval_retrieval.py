import pytest
import torch
from sklearn.metrics import average_precision_score

from fgssl_lib.eval import knn_accuracy, retrieval_metrics


def _data(n=60, d=8, classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    feats = torch.randn(n, d, generator=g) + 1.5 * torch.randn(classes, d, generator=g)[labels]
    return feats, labels


def test_map_matches_sklearn_per_query_and_ranks_match_loop():
    feats, labels = _data()
    result = retrieval_metrics(feats, labels, chunk_size=7)  # chunks that do not divide N
    f = torch.nn.functional.normalize(feats, dim=1)
    aps, r1, r5 = [], 0, 0
    for q in range(len(f)):
        others = [j for j in range(len(f)) if j != q]
        sim = (f[others] @ f[q]).numpy()
        rel = (labels[others] == labels[q]).numpy()
        aps.append(average_precision_score(rel, sim))
        top = torch.tensor(sim).argsort(descending=True)
        r1 += bool(rel[top[0]])
        r5 += bool(rel[top[:5]].any())
    assert result["mAP"] == pytest.approx(100 * sum(aps) / len(aps), abs=1e-4)
    assert result["rank1"] == pytest.approx(100 * r1 / len(f))
    assert result["rank5"] == pytest.approx(100 * r5 / len(f))


def test_queries_without_positives_are_left_out_and_perfect_clusters_score_100():
    feats = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, -1.0]])
    labels = torch.tensor([0, 0, 1, 1, 2])  # class 2 has a single image
    result = retrieval_metrics(feats, labels)
    assert result["mAP"] == pytest.approx(100.0)
    assert result["rank1"] == pytest.approx(80.0)


def test_knn_matches_brute_force_loop():
    train, train_labels = _data(50, seed=1)
    test, test_labels = _data(23, seed=2)
    k, T, classes = 7, 0.07, 5
    result = knn_accuracy(train, train_labels, test, test_labels, k=k, T=T, chunk_size=5)
    tr, te = torch.nn.functional.normalize(train, dim=1), torch.nn.functional.normalize(test, dim=1)
    top1 = top5 = 0
    for q in range(len(te)):
        sims = [(float(tr[j] @ te[q]), j) for j in range(len(tr))]
        sims.sort(reverse=True)
        votes = [0.0] * classes
        for s, j in sims[:k]:
            votes[int(train_labels[j])] += float(torch.exp(torch.tensor(s / T)))
        ranked = sorted(range(classes), key=lambda c: -votes[c])
        top1 += ranked[0] == int(test_labels[q])
        top5 += int(test_labels[q]) in ranked[:5]
    assert result["top1"] == pytest.approx(100 * top1 / len(te))
    assert result["top5"] == pytest.approx(100 * top5 / len(te))
    assert result["top1"] < 100  # the case is not trivial


def test_bad_shapes_are_reported():
    with pytest.raises(ValueError, match="N x D"):
        retrieval_metrics(torch.randn(4, 3), torch.zeros(5, dtype=torch.long))
