"""best_box: the contrast-form box search (CVSA Eq. 2) against a brute-force reference over the same grid."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from fgssl_lib.saliency import OBJECTIVES, best_box, best_boxes, box_scores, grid_boxes, grid_edges


def brute_force(
    saliency: np.ndarray, grid: int, objective: str = "contrast"
) -> tuple[tuple[int, int, int, int], dict]:
    """Score every grid box with explicit pixel means; the best box under the documented tie rule, and all scores."""
    s = saliency.astype(np.float64)
    s = (s - s.min()) / (s.max() - s.min()) if s.max() > s.min() else np.zeros_like(s)
    height, width = s.shape
    ys, xs = grid_edges(height, grid).tolist(), grid_edges(width, grid).tolist()
    scores, best, best_key = {}, None, None
    for y0, y1, x0, x1 in itertools.product(ys, ys, xs, xs):
        if y0 >= y1 or x0 >= x1:
            continue
        inside = np.zeros_like(s, dtype=bool)
        inside[y0:y1, x0:x1] = True
        if inside.all():
            score = 0.0
        elif objective == "contrast":
            score = s[inside].mean() - s[~inside].mean()
        else:  # covariance of S and the box indicator
            score = np.mean((s - s.mean()) * (inside - inside.mean()))
        scores[(x0, y0, x1, y1)] = score
        key = (round(score, 9), (y1 - y0) * (x1 - x0))
        if best_key is None or key > best_key:
            best, best_key = (x0, y0, x1, y1), key
    return best, scores


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize(("height", "width", "grid"), [(12, 12, 4), (9, 14, 5), (23, 17, 6), (5, 7, 8), (31, 10, 3)])
def test_matches_brute_force_on_random_maps(height: int, width: int, grid: int, objective: str) -> None:
    rng = np.random.default_rng(height * 100 + width)
    for _ in range(3):
        saliency = rng.random((height, width)) ** 3  # skewed so that a compact box stands out
        expected, scores = brute_force(saliency, grid, objective)
        assert best_box(saliency, grid=grid, objective=objective) == expected
        table = box_scores(torch.from_numpy(saliency)[None], grid, objective)[0]
        boxes = [tuple(b) for b in grid_boxes(height, width, grid).tolist()]
        assert sorted(boxes) == sorted(scores) and len(set(boxes)) == len(boxes)
        assert table.tolist() == pytest.approx([scores[b] for b in boxes], abs=1e-12)


def test_grid_edges_include_borders_and_drop_duplicates() -> None:
    assert grid_edges(10, 4).tolist() == [0, 2, 5, 7, 10]
    assert grid_edges(3, 16).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="grid"):
        grid_edges(10, 0)


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("box", [(8, 16, 40, 48), (0, 0, 24, 64), (56, 56, 64, 64)])
def test_box_indicator_returns_that_box(box: tuple[int, int, int, int], objective: str) -> None:
    x0, y0, x1, y1 = box
    saliency = torch.zeros(64, 64)
    saliency[y0:y1, x0:x1] = 1
    assert best_box(saliency, grid=8, objective=objective) == box
    assert best_box(saliency.numpy() * 7 - 3, grid=8, objective=objective) == box  # invariant to S -> a S + b, a > 0


def test_non_square_indicator() -> None:
    saliency = np.zeros((30, 50))
    saliency[6:24, 20:40] = 0.8  # edges of grid=5: y 0,6,12,18,24,30; x 0,10,20,30,40,50
    assert best_box(saliency, grid=5) == (20, 6, 40, 24)


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("value", [0.0, 0.37, 1.0, 255.0])
def test_constant_or_empty_map_returns_whole_image(value: float, objective: str) -> None:
    assert best_box(np.full((13, 21), value), objective=objective) == (0, 0, 21, 13)
    assert best_box(torch.full((13, 21), value, dtype=torch.float32), objective=objective) == (0, 0, 21, 13)


def test_covariance_objective_covers_a_smooth_blob_where_contrast_shrinks() -> None:
    v, u = torch.meshgrid(torch.linspace(-1, 1, 48), torch.linspace(-1, 1, 64), indexing="ij")
    blob = torch.exp(-(u**2 + v**2) / (2 * 0.3**2))  # a smooth CAM-like peak in the centre
    narrow, wide = best_box(blob, objective="contrast"), best_box(blob, objective="covariance")
    area = [(x1 - x0) * (y1 - y0) / (48 * 64) for x0, y0, x1, y1 in (narrow, wide)]
    assert area[0] < 0.05 and 0.15 < area[1] < 0.6
    for x0, y0, x1, y1 in (narrow, wide):
        assert x0 < 32 < x1 and y0 < 24 < y1


def test_ties_prefer_the_largest_box() -> None:
    # Hand-checked exact tie at contrast 0.625 between (0, 0, 4, 4): 10/16 - 0/4, (3, 0, 4, 4): 4/4 - 6/16 and
    # (0, 2, 2, 4): 4/4 - 6/16; the largest one wins.
    saliency = np.array(
        [[1, 0, 0, 1, 0], [0, 0, 1, 1, 0], [1, 1, 0, 1, 0], [1, 1, 0, 1, 0]],
        dtype=np.float64,
    )
    _, scores = brute_force(saliency, grid=5)
    assert {box for box, score in scores.items() if score == pytest.approx(0.625)} == {
        (0, 0, 4, 4), (3, 0, 4, 4), (0, 2, 2, 4)
    }
    assert max(scores.values()) == pytest.approx(0.625)
    assert best_box(saliency, grid=5) == (0, 0, 4, 4)


def test_numpy_and_torch_inputs_agree() -> None:
    rng = np.random.default_rng(0)
    saliency = rng.random((40, 28)).astype(np.float32)
    assert best_box(saliency) == best_box(torch.from_numpy(saliency)) == best_box(saliency.astype(np.float64))
    assert all(isinstance(v, int) for v in best_box(saliency))


def test_batched_matches_single() -> None:
    maps = torch.rand(5, 20, 24) ** 4
    boxes = best_boxes(maps, grid=6)
    assert boxes.shape == (5, 4) and boxes.dtype == torch.int64
    assert [tuple(b) for b in boxes.tolist()] == [best_box(m, grid=6) for m in maps]
    assert best_boxes(torch.zeros(0, 20, 24)).shape == (0, 4)


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="2-D"):
        best_box(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="NaN"):
        best_box(np.full((4, 4), np.nan))
    with pytest.raises(TypeError, match="numpy array or torch tensor"):
        best_box([[0.0, 1.0]])
    with pytest.raises(ValueError, match="valid best-box objectives: contrast, covariance"):
        best_box(np.ones((4, 4)), objective="area")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    maps = torch.rand(4, 32, 48) ** 3
    assert torch.equal(best_boxes(maps.cuda()), best_boxes(maps))
