"""MaxBoxAcc and MaxBoxAccV2 (Choe et al. 2020, "Evaluating Weakly Supervised Object Localization Methods Right").

Same semantics as the reference code (clovaai/wsolevaluation, ``evaluation.py``), step by step:

1. each CAM (at image size) is min-max normalised per image: ``(c - min c) / max(c - min c)``; a constant or
   non-finite map becomes all zeros;
2. it is quantised to ``uint8`` as ``floor(255 * c)``; at CAM threshold ``t`` the foreground is
   ``{p : c8(p) > floor(t * max c8)}`` (OpenCV's ``THRESH_BINARY``);
3. boxes are the bounding rectangles of ``cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)``: V1 keeps the contour of
   largest ``cv2.contourArea`` (first one on ties), V2 keeps all of them; a box is ``(x, y, x + w, y + h)`` with
   ``x1``/``y1`` clipped to ``W - 1``/``H - 1``; no foreground gives the box ``(0, 0, 0, 0)``;
4. IoU is the inclusive-pixel IoU of the reference (``+1`` on widths and heights) against every GT box; an image is
   correct at ``t`` when its best (estimated box, GT box) pair reaches the IoU threshold (any of several GT boxes);
5. accuracy per ``t`` over the split; the result is the maximum over ``t`` (one threshold for the whole split).
   V1 uses IoU >= 0.5; V2 averages the per-IoU maxima over IoU 0.3 / 0.5 / 0.7 (each IoU picks its own ``t``, as in
   the reference's ``compute``).

GT boxes come in our exclusive ``(x0, y0, x1, y1)`` convention. The reference stores CUB boxes as ``(x, y, x + w, y + h)``
(e.g. CUB's ``60 27 325 304`` becomes ``60,27,385,331`` in its metadata) and truncates them to ints when resizing, so
our exclusive boxes are used with the same numbers, truncated with ``int``; a CAM equal to a box's indicator then
scores IoU 1 (unless the box touches the right or bottom border, where the reference's ``W - 1`` clip costs a pixel).
The reference's default threshold step is 0.001 in ``evaluation.py``; the paper's experiments and ours use 0.01.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch

from fgssl_lib.config import check_choice

DEFAULT_THRESHOLDS = np.arange(0.0, 1.0, 0.01)
"""CAM thresholds ``0, 0.01, ..., 0.99`` (the reference's ``np.arange(0, 1, cam_curve_interval)``)."""
IOU_THRESHOLDS = {1: (0.5,), 2: (0.3, 0.5, 0.7)}
"""IoU thresholds of MaxBoxAcc (V1) and MaxBoxAccV2."""


def normalize_cam(cam: np.ndarray) -> np.ndarray:
    """Per-image min-max normalisation of an ``H x W`` map to ``[0, 1]``; constant or non-finite maps give zeros."""
    cam = np.asarray(cam, dtype=np.float64)
    if not np.isfinite(cam).all() or cam.min() == cam.max():
        return np.zeros_like(cam)
    cam = cam - cam.min()
    return cam / cam.max()


def cam_boxes(cam: np.ndarray, thresholds: Sequence[float], all_contours: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Estimated boxes of one ``H x W`` CAM at each threshold, with the reference's semantics.

    Thresholds that select the same pixels share one trace (the foregrounds are nested, so equal pixel counts mean
    equal sets), and contours are traced on the crop that holds the foreground (``findContours`` with an offset gives
    the same contours). Returns ``K x 4`` int boxes ``(x0, y0, x1, y1)`` of the ``M`` distinct foregrounds, the index of
    each foreground's first box (``M``, increasing) and the foreground of each threshold (``T``).
    """
    height, width = cam.shape
    cam8 = (normalize_cam(cam) * 255).astype(np.uint8)  # HxW, floor(255 c)
    n_above = np.append(np.bincount(cam8.ravel(), minlength=256)[::-1].cumsum()[::-1], 0)  # n_above[v] = #(c8 >= v)
    levels = (np.asarray(thresholds, dtype=np.float64) * int(cam8.max())).astype(np.int64)  # T, int(t * max c8)
    counts, first, of_threshold = np.unique(n_above[levels + 1], return_index=True, return_inverse=True)  # M, M, T
    levels = levels[first]  # M, one level per distinct foreground
    rows_on = cam8.max(axis=1)[None, :] > levels[:, None]  # MxH
    cols_on = cam8.max(axis=0)[None, :] > levels[:, None]  # MxW
    y0s, y1s = rows_on.argmax(axis=1), height - rows_on[:, ::-1].argmax(axis=1)
    x0s, x1s = cols_on.argmax(axis=1), width - cols_on[:, ::-1].argmax(axis=1)
    rects: list[tuple[int, int, int, int]] = []  # (x, y, w, h)
    starts = []
    for level, count, x0, y0, x1, y1 in zip(*(a.tolist() for a in (levels, counts, x0s, y0s, x1s, y1s))):
        starts.append(len(rects))
        if count == 0:  # no foreground: the reference's box (0, 0, 0, 0)
            rects.append((0, 0, 0, 0))
            continue
        binary = cv2.threshold(cam8[y0:y1, x0:x1], level, 1, cv2.THRESH_BINARY)[1]  # crop, c8 > level
        contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE, offset=(x0, y0))[0]
        if all_contours:
            rects.extend(map(cv2.boundingRect, contours))
        else:
            rects.append(cv2.boundingRect(max(contours, key=cv2.contourArea)))
    x, y, w, h = np.array(rects, dtype=np.int64).T  # K each
    boxes = np.stack([x, y, np.minimum(x + w, width - 1), np.minimum(y + h, height - 1)], axis=1)  # Kx4
    return boxes, np.array(starts), of_threshold.reshape(-1)


def inclusive_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of ``A x 4`` and ``B x 4`` boxes, counting pixels inclusively (``+1``) as the reference does; ``A x B``."""
    a, b = boxes_a[:, None, :].astype(np.float64), boxes_b[None, :, :].astype(np.float64)
    inter_w = np.maximum(0.0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    inter_h = np.maximum(0.0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = inter_w * inter_h
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _gt_array(boxes: object, index: int) -> np.ndarray:
    """One image's GT boxes (a 4-vector, a list of them or a ``B x 4`` tensor) as a ``B x 4`` int array."""
    array = np.asarray(torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4))
    if array.shape[0] == 0 or (array < 0).any() or (array[:, 2:] < array[:, :2]).any():
        raise ValueError(
            f"gt_boxes[{index}] = {array.tolist()} is not a non-empty list of (x0, y0, x1, y1) boxes with "
            "0 <= x0 <= x1 and 0 <= y0 <= y1 (exclusive ends, pixels at CAM size)"
        )
    return array.astype(np.int64)  # int() truncation, as the reference's resize_bbox


def best_iou_per_threshold(cam: np.ndarray, gt_boxes: np.ndarray, thresholds: Sequence[float], all_contours: bool) -> np.ndarray:
    """For one image, the best IoU over (estimated box, GT box) pairs at each CAM threshold; ``T``."""
    boxes, starts, of_threshold = cam_boxes(cam, thresholds, all_contours)
    ious = inclusive_iou(boxes, gt_boxes).max(axis=1)  # K
    return np.maximum.reduceat(ious, starts)[of_threshold]  # T


def max_box_acc(
    cams: torch.Tensor | np.ndarray,
    gt_boxes: Sequence[object],
    version: int = 1,
    thresholds: Sequence[float] | np.ndarray = DEFAULT_THRESHOLDS,
    iou: Sequence[float] | None = None,
    workers: int = 2,
) -> tuple[float, float] | tuple[float, float, dict[float, float]]:
    """MaxBoxAcc (``version=1``) or MaxBoxAccV2 (``version=2``) of ``cams`` against ``gt_boxes``.

    Args:
        cams: ``N x H x W`` class activation maps at image size (any range; normalised per image).
        gt_boxes: ``N`` per-image boxes, each a ``(x0, y0, x1, y1)`` box or a list of them (exclusive ends, in CAM
            pixels); an image counts as correct if any of its boxes is matched.
        version: 1 (largest contour, IoU 0.5) or 2 (all contours, mean over IoU 0.3 / 0.5 / 0.7).
        thresholds: CAM threshold grid in ``[0, 1)``.
        iou: overrides the IoU thresholds of ``version``.
        workers: threads over images (OpenCV releases the GIL).

    Returns:
        V1: ``(percentage, best_threshold)``; V2: ``(percentage, best_threshold at IoU 0.5 or the middle IoU,
        {iou: percentage})``.
    """
    check_choice("MaxBoxAcc version", str(version), ("1", "2"))
    if isinstance(cams, torch.Tensor):  # float64 per image in normalize_cam, not a float64 copy of the whole split
        cams = cams.detach().cpu().to(torch.float64 if cams.dtype == torch.float64 else torch.float32).numpy()
    cams = np.asarray(cams)
    if cams.ndim != 3:
        raise ValueError(f"cams must be N x H x W at image size; got shape {cams.shape}")
    if len(gt_boxes) != len(cams):
        raise ValueError(f"got {len(cams)} CAMs but {len(gt_boxes)} GT box lists; give one box list per CAM")
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.ndim != 1 or len(thresholds) == 0 or (thresholds < 0).any() or (thresholds >= 1).any():
        raise ValueError("thresholds must be a non-empty 1-d grid in [0, 1), e.g. numpy.arange(0, 1, 0.01)")
    iou_thresholds = tuple(IOU_THRESHOLDS[version] if iou is None else iou)
    gts = [_gt_array(boxes, i) for i, boxes in enumerate(gt_boxes)]

    def one(i: int) -> np.ndarray:
        return best_iou_per_threshold(cams[i], gts[i], thresholds, all_contours=version == 2)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        best = np.stack(list(pool.map(one, range(len(cams)))))  # NxT
    per_iou: dict[float, float] = {}
    best_threshold: dict[float, float] = {}
    for threshold in iou_thresholds:
        accuracy = (best >= threshold).mean(axis=0) * 100.0  # T
        per_iou[threshold] = float(accuracy.max())
        best_threshold[threshold] = float(thresholds[int(accuracy.argmax())])
    reported = iou_thresholds[len(iou_thresholds) // 2]
    if version == 1:
        return per_iou[reported], best_threshold[reported]
    return float(np.mean(list(per_iou.values()))), best_threshold[reported], per_iou
