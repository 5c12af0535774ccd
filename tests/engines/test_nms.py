import numpy as np
import pytest

from engines.nms import iou_matrix, nms


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _reference_nms(boxes, scores, thr):
    """Textbook greedy NMS, pure Python."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # sorted() is stable
    suppressed = set()
    keep = []
    for pos, i in enumerate(order):
        if i in suppressed:
            continue
        keep.append(i)
        for j in order[pos + 1:]:
            if j not in suppressed and _iou(boxes[i], boxes[j]) > thr:
                suppressed.add(j)
    return keep


def _random_boxes(rng, n):
    xy = rng.uniform(0, 200, (n, 2))
    wh = rng.uniform(5, 80, (n, 2))
    return np.concatenate([xy, xy + wh], 1).astype(np.float32), rng.uniform(0, 1, n).astype(np.float32)


@pytest.mark.parametrize("thr", [0.3, 0.4, 0.5, 0.7])
def test_matches_brute_force_on_random_boxes(thr):
    for seed in range(40):
        rng = np.random.default_rng(seed)
        boxes, scores = _random_boxes(rng, int(rng.integers(1, 120)))
        got = nms(boxes, scores, thr)
        want = _reference_nms(boxes.tolist(), scores.tolist(), thr)
        assert got.tolist() == want, f"seed {seed}"
        assert got.dtype == np.int64
        assert (np.diff(scores[got]) <= 0).all()


def test_iou_matrix_matches_brute_force():
    rng = np.random.default_rng(3)
    a, _ = _random_boxes(rng, 20)
    b, _ = _random_boxes(rng, 15)
    want = np.array([[_iou(x, y) for y in b.tolist()] for x in a.tolist()])
    np.testing.assert_allclose(iou_matrix(a, b), want, atol=1e-6)


def test_empty_and_single():
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []
    assert nms(np.array([[0, 0, 10, 10]]), np.array([0.3]), 0.5).tolist() == [0]


def test_identical_boxes_keep_only_the_best():
    boxes = np.tile(np.array([[10, 10, 50, 60]], np.float32), (5, 1))
    assert nms(boxes, np.array([0.1, 0.9, 0.5, 0.9, 0.2]), 0.5).tolist() == [1]  # tie: first index wins
    # IoU of identical boxes is exactly 1, which is not above a threshold of 1
    assert sorted(nms(boxes, np.arange(5.0), 1.0).tolist()) == [0, 1, 2, 3, 4]


def test_disjoint_boxes_all_kept_in_score_order():
    boxes = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], np.float32)
    assert nms(boxes, np.array([0.2, 0.9, 0.5]), 0.1).tolist() == [1, 2, 0]


def test_max_keep_stops_early():
    rng = np.random.default_rng(5)
    boxes, scores = _random_boxes(rng, 100)
    full = nms(boxes, scores, 0.4)
    assert nms(boxes, scores, 0.4, max_keep=3).tolist() == full[:3].tolist()


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError):
        nms(np.zeros((3, 4)), np.zeros(2), 0.5)
