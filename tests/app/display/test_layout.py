"""Label geometry: inside the frame, never overlapping, and no landmark dot drawn on a label."""

from __future__ import annotations

import numpy as np
import pytest

from app.display.annotate import Renderer
from app.display.layout import overlaps, place_labels, visible_dots
from app.types import Faces

W, H = 640, 360


def check(rects, width=W, height=H):
    shown = [r for r in rects if r is not None]
    for x, y, w, h in shown:
        assert 0 <= x <= width - w and 0 <= y <= height - h, (x, y, w, h)
    for i, a in enumerate(shown):
        for b in shown[i + 1:]:
            assert not overlaps(a, b), (a, b)


def test_overlaps_counts_shared_pixels_not_touching_edges():
    assert overlaps((0, 0, 10, 10), (9, 9, 10, 10))
    assert not overlaps((0, 0, 10, 10), (10, 0, 10, 10))
    assert not overlaps((0, 0, 10, 10), (0, 10, 10, 10))


def test_a_lone_label_sits_above_its_box():
    assert place_labels([(100, 80, 180, 190)], [(90, 16)], W, H) == [(100, 64, 90, 16)]


@pytest.mark.parametrize("box", [(-40, -30, 60, 50), (600, 100, 700, 200), (580, 330, 660, 420), (-10, 340, 50, 400),
                                 (300, 0, 360, 60)])
def test_labels_of_faces_at_or_past_the_edges_stay_inside_the_frame(box):
    (rect,) = place_labels([box], [(120, 18)], W, H)
    assert rect is not None
    check([rect])


def test_labels_of_overlapping_faces_are_pushed_apart():
    boxes = [(100, 100, 200, 220), (110, 105, 210, 225), (120, 95, 215, 215), (130, 110, 230, 230)]
    rects = place_labels(boxes, [(150, 18)] * 4, W, H)
    assert all(r is not None for r in rects)
    check(rects)
    # each stays near its own face, not thrown across the frame
    for (x1, y1, _, _), (x, y, _, _) in zip(boxes, rects):
        assert abs(x - x1) + abs(y - y1) < 120


def test_a_crowd_at_the_top_edge_never_overlaps():
    boxes = [(40 * i, 0, 40 * i + 50, 50) for i in range(14)]  # labels wider than the faces, all on row 0
    rects = place_labels(boxes, [(110, 18)] * len(boxes), W, H)
    assert all(r is not None for r in rects)  # the frame has room for all of them
    check(rects)


def test_random_scenes_keep_every_rule():
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(1, 25))
        x1 = rng.integers(-60, W, n)
        y1 = rng.integers(-60, H, n)
        side = rng.integers(12, 160, n)
        boxes = np.stack([x1, y1, x1 + side, y1 + side], axis=1).tolist()
        sizes = [(int(w), int(h)) for w, h in zip(rng.integers(40, 220, n), rng.integers(12, 30, n))]
        rects = place_labels(boxes, sizes, W, H)
        check(rects)
        for rect, size in zip(rects, sizes):
            assert rect is None or rect[2:] == size


def test_a_label_that_cannot_fit_is_left_out_rather_than_overlapping():
    rects = place_labels([(0, 0, 10, 10)] * 3, [(60, 20)] * 3, 60, 40)  # room for two only
    assert sum(r is not None for r in rects) == 2
    check(rects, 60, 40)


def test_dots_under_a_label_are_hidden():
    labels = [(100, 64, 90, 16), None]
    shown = visible_dots([(120, 70), (120, 81), (150, 120), (98, 70), (97, 70)], 2, labels)  # radius 2: 5 px wide
    assert shown == [False, False, True, False, True]


def test_drawn_faces_show_no_landmark_dot_on_a_label():
    """Through the renderer: landmarks of one face that sit where the other face's label goes are not drawn
    there (the dots are what differs between drawing with and without landmarks)."""
    boxes = np.array([[100, 120, 220, 260], [105, 60, 215, 118]], np.float32)
    # the second face's landmarks fall in the band just above the first box, where its label goes
    marks = np.array([[[130, 110], [150, 108], [170, 112], [190, 105], [200, 100]],
                      [[130, 80], [150, 80], [160, 95], [140, 105], [170, 105]]], np.float32)
    faces = Faces(boxes, np.array([0.9, 0.9], np.float32), marks, track_ids=np.array([1, 2]))
    faces.names, faces.similarities = ["obama", "biden"], np.array([0.7, 0.6], np.float32)
    with_dots, without = np.zeros((H, W, 3), np.uint8), np.zeros((H, W, 3), np.uint8)
    renderer = Renderer(overlay="off")
    renderer.draw(with_dots, faces)
    Renderer(show_landmarks=False, overlay="off").draw(without, faces)
    patches = list(renderer._labels.values())  # one per face, in face order
    rects = place_labels(np.rint(boxes).astype(int).tolist(), [(p.shape[1], p.shape[0]) for p in patches], W, H)
    check(rects)
    dots = (with_dots != without).any(axis=2)
    for x, y, w, h in rects:
        assert not dots[y:y + h, x:x + w].any()
        assert np.array_equal(with_dots[y:y + h, x:x + w], without[y:y + h, x:x + w])
    assert dots.sum() > 20  # the other dots are drawn
