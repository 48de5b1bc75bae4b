import cv2
import numpy as np
import pytest
import torch

from fgssl_lib.eval import max_box_acc
from fgssl_lib.eval.maxboxacc import (
    DEFAULT_THRESHOLDS,
    IOU_THRESHOLDS,
    best_iou_per_threshold,
    inclusive_iou,
    normalize_cam,
)


def _indicator(box, size=32):
    cam = torch.zeros(size, size)
    x0, y0, x1, y1 = box
    cam[y0:y1, x0:x1] = 1
    return cam


def test_box_indicator_scores_100_and_its_complement_0():
    boxes = [(4, 5, 20, 25), (10, 2, 30, 12), (0, 0, 8, 8)]
    cams = torch.stack([_indicator(b) for b in boxes])
    accuracy, threshold = max_box_acc(cams, [[b] for b in boxes])
    assert accuracy == pytest.approx(100.0)
    assert threshold == pytest.approx(0.0)
    accuracy, _ = max_box_acc(1 - cams, [[b] for b in boxes])
    assert accuracy == pytest.approx(0.0)


def test_any_of_several_gt_boxes_counts():
    cam = _indicator((4, 4, 12, 12))[None]
    assert max_box_acc(cam, [[(20, 20, 30, 30), (4, 4, 12, 12)]])[0] == pytest.approx(100.0)
    assert max_box_acc(cam, [[(20, 20, 30, 30)]])[0] == pytest.approx(0.0)


def test_thresholds_edges_and_the_best_threshold_is_shared_by_the_split():
    # Two nested levels: at t < 0.5 the foreground is the big box, at t >= 0.5 the small one (c8 = 127 is not > 127).
    big, small = (2, 2, 30, 30), (10, 10, 18, 18)
    cam = 0.5 * _indicator(big) + 0.5 * _indicator(small)
    cams = torch.stack([cam, cam])
    assert max_box_acc(cams, [[big], [big]], thresholds=[0.49])[0] == pytest.approx(100.0)
    assert max_box_acc(cams, [[big], [big]], thresholds=[0.5])[0] == pytest.approx(0.0)
    accuracy, threshold = max_box_acc(cams, [[big], [small]], thresholds=[0.2, 0.6])
    assert accuracy == pytest.approx(50.0) and threshold == pytest.approx(0.2)
    # A constant map has no foreground at any threshold: box (0, 0, 0, 0), never correct.
    assert max_box_acc(torch.ones(1, 32, 32), [[big]])[0] == pytest.approx(0.0)


def test_iou_is_inclusive_and_border_boxes_are_clipped_like_the_reference():
    assert inclusive_iou(np.array([[0, 0, 9, 9]]), np.array([[0, 0, 9, 9]]))[0, 0] == pytest.approx(1.0)
    assert inclusive_iou(np.array([[0, 0, 0, 0]]), np.array([[1, 1, 1, 1]]))[0, 0] == pytest.approx(0.0)
    assert inclusive_iou(np.array([[0, 0, 1, 0]]), np.array([[0, 0, 0, 0]]))[0, 0] == pytest.approx(0.5)
    full = torch.ones(1, 32, 32)
    full[0, 0, 0] = 0  # not constant: everything but one pixel is foreground
    iou = best_iou_per_threshold(full[0].double().numpy(), np.array([[0, 0, 32, 32]]), [0.5], False)[0]
    assert iou == pytest.approx(32 * 32 / 33 / 33)  # predicted (0,0,31,31) inclusive vs GT (0,0,32,32)


def _reference_best_iou(cam, gt, all_contours, thresholds=DEFAULT_THRESHOLDS):
    """Straight transcription of the reference's per-threshold loop, on the full image."""
    image = (normalize_cam(cam) * 255).astype(np.uint8)
    height, width = image.shape
    out = []
    for t in thresholds:
        _, binary = cv2.threshold(image, int(t * np.max(image)), 255, cv2.THRESH_BINARY)
        contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
        if len(contours) == 0:
            boxes = [[0, 0, 0, 0]]
        else:
            if not all_contours:
                contours = [max(contours, key=cv2.contourArea)]
            boxes = []
            for c in contours:
                x, y, w, h = cv2.boundingRect(c)
                boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
        out.append(inclusive_iou(np.array(boxes), gt).max())
    return np.array(out)


@pytest.mark.parametrize("all_contours", [False, True])
def test_fast_path_equals_the_reference_loop_on_random_cams(all_contours):
    g = torch.Generator().manual_seed(0)
    cams = torch.nn.functional.interpolate(torch.rand(6, 1, 5, 5, generator=g), size=40, mode="bilinear")[:, 0]
    gt = np.array([[3, 4, 25, 30], [10, 10, 40, 40]])
    for cam in cams.double().numpy():
        fast = best_iou_per_threshold(cam, gt, DEFAULT_THRESHOLDS, all_contours)
        np.testing.assert_allclose(fast, _reference_best_iou(cam, gt, all_contours))


def _structured_cams(g):
    """CAMs that stress the shortcuts: plateaus and ties, rings with holes and blobs inside them, thin lines,
    single pixels, flat and non-finite maps, border-touching blobs, non-square sizes."""
    cams = []
    cams.append(torch.randint(0, 4, (23, 31), generator=g).double())  # few levels: ties, many components and holes
    cams.append(torch.rand(29, 19, generator=g).double())  # pixel noise: tiny components, holes in holes
    ring = torch.zeros(30, 30, dtype=torch.float64)
    ring[5:25, 5:25], ring[8:22, 8:22], ring[12:18, 12:18] = 1.0, 0.0, 0.5  # ring, hole, blob inside the hole
    ring[0:3, 27:30] = 0.8  # a corner blob on the border
    cams.append(ring)
    lines = torch.zeros(25, 40, dtype=torch.float64)
    lines[3, 2:38], lines[5:20, 10], lines[20, 0:40] = 0.7, 0.9, 0.4  # 1-pixel lines: contours of area 0
    idx = torch.arange(12)
    lines[idx + 8, idx + 20] = 1.0  # a diagonal line (8-connected only)
    cams.append(lines)
    single = torch.zeros(16, 16, dtype=torch.float64)
    single[7, 9] = 1.0
    cams.append(single)
    two_equal = torch.zeros(20, 32, dtype=torch.float64)
    two_equal[4:10, 3:9], two_equal[12:18, 20:26] = 1.0, 1.0  # equal areas: V1 keeps the first contour
    cams.append(two_equal)
    cams.append(torch.full((12, 14), 0.3, dtype=torch.float64))  # flat
    nan = torch.rand(12, 14, generator=g).double()
    nan[2, 3] = float("nan")
    cams.append(nan)
    cams.append(torch.linspace(0, 1, 17 * 21, dtype=torch.float64).reshape(17, 21))  # one level per pixel
    return [c.numpy() for c in cams]


def _random_cams(g, count=12):
    """Smooth random CAMs of mixed sizes, as in the benchmark (several blobs and holes per threshold)."""
    cams = []
    for i in range(count):
        grid, height, width = 3 + i % 5, 24 + 7 * (i % 3), 40 - 5 * (i % 4)
        coarse = torch.rand(1, 1, grid, grid, generator=g)
        cams.append(torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear")[0, 0].double().numpy())
    return cams


def _random_gt(g, height, width):
    """One to three random GT boxes (exclusive ends) inside an ``height x width`` image."""
    boxes = []
    for _ in range(int(torch.randint(1, 4, (1,), generator=g))):
        x0, x1 = sorted(torch.randint(0, width + 1, (2,), generator=g).tolist())
        y0, y1 = sorted(torch.randint(0, height + 1, (2,), generator=g).tolist())
        boxes.append([x0, y0, x1, y1])
    return np.array(boxes)


@pytest.mark.parametrize("all_contours", [False, True])
@pytest.mark.parametrize("thresholds", [DEFAULT_THRESHOLDS, np.arange(0, 1, 0.0025)], ids=["step0.01", "step0.0025"])
def test_fast_path_equals_the_reference_loop(all_contours, thresholds):
    g = torch.Generator().manual_seed(0)
    for cam in _random_cams(g) + _structured_cams(g):
        gt = _random_gt(g, *cam.shape)
        fast = best_iou_per_threshold(cam, gt, thresholds, all_contours)
        np.testing.assert_array_equal(fast, _reference_best_iou(cam, gt, all_contours, thresholds))


@pytest.mark.parametrize("version", [1, 2])
def test_max_box_acc_equals_the_reference_on_a_split(version):
    g = torch.Generator().manual_seed(1)
    coarse = torch.rand(40, 1, 6, 6, generator=g)
    cams = torch.nn.functional.interpolate(coarse, size=(36, 44), mode="bilinear")[:, 0]
    gts = [_random_gt(g, 36, 44) for _ in cams]
    best = np.stack([_reference_best_iou(c, gt, version == 2) for c, gt in zip(cams.double().numpy(), gts)])
    accuracy = {iou: (best >= iou).mean(axis=0) * 100 for iou in IOU_THRESHOLDS[version]}  # iou -> T
    out = max_box_acc(cams, [gt.tolist() for gt in gts], version=version, workers=3)
    assert out[1] == DEFAULT_THRESHOLDS[accuracy[0.5].argmax()]
    if version == 1:
        assert out[0] == pytest.approx(accuracy[0.5].max())
    else:
        assert out[2] == pytest.approx({iou: a.max() for iou, a in accuracy.items()})
        assert out[0] == pytest.approx(np.mean([a.max() for a in accuracy.values()]))


def test_v2_uses_all_contours_and_averages_three_ious():
    a, b = (2, 2, 10, 10), (20, 20, 30, 30)
    cam = _indicator(a) + _indicator(b)  # two equal blobs; V1 keeps one contour
    v1, _ = max_box_acc(cam[None], [[b]], version=1)
    v2, _, per_iou = max_box_acc(cam[None], [[b]], version=2)
    assert set(per_iou) == {0.3, 0.5, 0.7}
    assert v2 == pytest.approx(100.0) and all(v == pytest.approx(100.0) for v in per_iou.values())
    v1_other, _ = max_box_acc(cam[None], [[a]], version=1)
    assert v1 + v1_other == pytest.approx(100.0)  # exactly one of the two blobs is V1's box


def test_bad_input_is_reported():
    with pytest.raises(ValueError, match="one box list per CAM"):
        max_box_acc(torch.rand(2, 8, 8), [[(0, 0, 4, 4)]])
    with pytest.raises(ValueError, match="exclusive"):
        max_box_acc(torch.rand(1, 8, 8), [[(5, 0, 4, 4)]])
    with pytest.raises(ValueError, match="version"):
        max_box_acc(torch.rand(1, 8, 8), [[(0, 0, 4, 4)]], version=3)
