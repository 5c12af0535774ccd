"""Where face labels go: inside the frame, never on top of each other, and which landmark dots they hide.

Pure geometry on (x, y, w, h) rectangles, so it is tested without drawing. A label sits on its box's top-left
corner (above the box when there is room); one that would leave the frame is moved in, and one that would
cover a label already placed moves to the nearest free place (labels of larger faces are placed first).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Rect = tuple[int, int, int, int]  # x, y, width, height


def overlaps(a: Rect, b: Rect) -> bool:
    """Whether two rectangles share any pixel (touching edges do not)."""
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _nearest_free(want: tuple[int, int], w: int, h: int, placed: np.ndarray, width: int,
                  height: int) -> tuple[int, int] | None:
    """The free position for a w x h label closest to ``want`` (L1 distance, vertical moves first on ties).

    Every free position can slide up and left until it touches the frame or a placed label on both sides, so
    the free places with x in {0, right edges} and y in {0, bottom edges} (plus the wanted position and those
    just left of / above each label) always include one if any exists.
    """
    px, py = want
    xs = np.concatenate(([px, 0, width - w], placed[:, 0] + placed[:, 2], placed[:, 0] - w))
    ys = np.concatenate(([py, 0, height - h], placed[:, 1] + placed[:, 3], placed[:, 1] - h))
    xs = np.unique(xs[(xs >= 0) & (xs <= width - w)])
    ys = np.unique(ys[(ys >= 0) & (ys <= height - h)])
    if not len(xs) or not len(ys):
        return None
    cx, cy = (a.ravel() for a in np.meshgrid(xs, ys))
    hit = ((cx[:, None] < placed[:, 0] + placed[:, 2]) & (placed[:, 0] < cx[:, None] + w)
           & (cy[:, None] < placed[:, 1] + placed[:, 3]) & (placed[:, 1] < cy[:, None] + h)).any(axis=1)
    if hit.all():
        return None
    cost = np.abs(cx - px) * 1.001 + np.abs(cy - py)  # ties: move vertically, the label stays over its face
    cost[hit] = np.inf
    k = int(np.argmin(cost))
    return int(cx[k]), int(cy[k])


def place_labels(boxes: Sequence[Sequence[int]], sizes: Sequence[tuple[int, int]], width: int,
                 height: int) -> list[Rect | None]:
    """A rectangle per label (``sizes``: (w, h) of each; ``boxes``: x1, y1, x2, y2 of each face) inside a
    ``width`` x ``height`` frame, pairwise disjoint; None for a label that fits nowhere (or not in the frame)."""
    out: list[Rect | None] = [None] * len(boxes)
    placed: list[Rect] = []
    order = sorted(range(len(boxes)), key=lambda i: -(boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1]))
    for i in order:
        x1, y1 = boxes[i][0], boxes[i][1]
        w, h = sizes[i]
        if w > width or h > height:
            continue
        want = (min(max(x1, 0), width - w), min(max(y1 - h, 0), height - h))  # above the box, moved into the frame
        rect = (*want, w, h)
        if any(overlaps(rect, p) for p in placed):
            pos = _nearest_free(want, w, h, np.asarray(placed, np.int64).reshape(-1, 4), width, height)
            if pos is None:
                continue
            rect = (*pos, w, h)
        out[i] = rect
        placed.append(rect)
    return out


def visible_dots(points: Sequence[tuple[int, int]], radius: int, labels: Sequence[Rect | None]) -> list[bool]:
    """For each landmark dot (centre, ``radius``): whether it stays clear of every label."""
    rects = [r for r in labels if r is not None]
    return [not any(overlaps((x - radius, y - radius, 2 * radius + 1, 2 * radius + 1), r) for r in rects)
            for x, y in points]
