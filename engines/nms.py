"""Greedy non-maximum suppression in numpy.

Boxes are x1y1x2y2 in continuous coordinates: area is (x2 - x1) * (y2 - y1), no "+1". A box is
suppressed when its IoU with an already kept, higher-scoring box is strictly greater than the
threshold. Equal scores keep input order (stable sort), so results are deterministic.
"""

from __future__ import annotations

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU between boxes ``a`` (N, 4) and ``b`` (M, 4)."""
    a = np.asarray(a, dtype=np.float32).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float32).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int | None = None) -> np.ndarray:
    """Indices of the boxes greedy NMS keeps, highest score first (int64 array).

    One vectorised IoU row per kept box: O(N * kept), no Python loop over suppressed boxes.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"nms: {len(boxes)} boxes but {len(scores)} scores")
    if len(boxes) == 0:
        return np.zeros((0,), dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = (boxes[order, i] for i in range(4))
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    limit = len(order) if max_keep is None else max_keep
    keep: list[int] = []
    rest = np.arange(len(order))  # positions in ``order`` still alive
    while rest.size and len(keep) < limit:
        i = rest[0]
        keep.append(i)
        others = rest[1:]
        if not others.size:
            break
        w = np.clip(np.minimum(x2[i], x2[others]) - np.maximum(x1[i], x1[others]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[others]) - np.maximum(y1[i], y1[others]), 0, None)
        inter = w * h
        union = areas[i] + areas[others] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        rest = others[iou <= iou_threshold]
    return order[np.asarray(keep, dtype=np.int64)]
