"""ByteTrack on hand-made sequences: crossing faces, short and long gaps, low-score boxes, frame rates."""

import numpy as np
import pytest

from app.tracking.bytetrack import ByteTracker, iou_matrix


def box(cx: float, cy: float, w: float = 60, h: float = 80) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def ids_by_position(result, boxes) -> dict[int, int]:
    """{input detection index: track id}."""
    return {int(d): int(t) for d, t in zip(result.det_index, result.track_ids)}


def test_iou_matrix_against_brute_force():
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 100, (7, 2))
    a = np.c_[a, a + rng.uniform(1, 50, (7, 2))]
    b = rng.uniform(0, 100, (5, 2))
    b = np.c_[b, b + rng.uniform(1, 50, (5, 2))]
    got = iou_matrix(a, b)
    for i in range(7):
        for j in range(5):
            iw = max(0, min(a[i, 2], b[j, 2]) - max(a[i, 0], b[j, 0]))
            ih = max(0, min(a[i, 3], b[j, 3]) - max(a[i, 1], b[j, 1]))
            inter = iw * ih
            union = np.prod(a[i, 2:] - a[i, :2]) + np.prod(b[j, 2:] - b[j, :2]) - inter
            assert got[i, j] == pytest.approx(inter / union)


def test_two_faces_crossing_keep_their_ids():
    t = ByteTracker()
    first = None
    for f in range(60):
        x_a = 100 + f * 8  # left → right
        x_b = 572 - f * 8  # right → left; they overlap around frame 29
        boxes = np.array([box(x_a, 200), box(x_b, 215)])
        r = t.update(boxes, np.array([0.9, 0.9]))
        ids = ids_by_position(r, boxes)
        if f == 0:
            first = ids
            assert len(ids) == 2
        elif 0 in ids and 1 in ids:
            assert ids == first, f"ids swapped at frame {f}: {ids} vs {first}"
    assert t._next_id == 3  # no track was ever split or re-created


def test_face_lost_for_fewer_than_track_buffer_frames_comes_back_with_its_id():
    t = ByteTracker(fps=30, track_buffer=30)
    r = t.update(np.array([box(200, 200)]), np.array([0.9]))
    tid = int(r.track_ids[0])
    for f in range(1, 10):
        t.update(np.array([box(200 + f, 200)]), np.array([0.9]))
    for _ in range(25):  # hidden for 25 frames (< 30)
        assert len(t.update(np.zeros((0, 4)), np.zeros(0)).track_ids) == 0
    r = t.update(np.array([box(212, 200)]), np.array([0.9]))
    assert r.track_ids.tolist() == [tid]


def _gap_recovers(fps: float, gap: int) -> bool:
    t = ByteTracker(fps=fps, track_buffer=30)
    tid = None
    for _ in range(5):
        r = t.update(np.array([box(300, 300)]), np.array([0.9]))
        tid = int(r.track_ids[0]) if len(r.track_ids) else tid
    for _ in range(gap):
        t.update(np.zeros((0, 4)), np.zeros(0))
    for _ in range(2):  # a new track needs two hits to show; a recovered one shows at once
        r = t.update(np.array([box(300, 300)]), np.array([0.9]))
        if len(r.track_ids):
            return int(r.track_ids[0]) == tid
    return False


def test_track_buffer_scales_with_the_frame_rate():
    assert _gap_recovers(fps=30, gap=25)
    assert not _gap_recovers(fps=30, gap=45)  # 45 frames at 30 fps: longer than the buffer
    assert _gap_recovers(fps=60, gap=45)  # the same 45 frames at 60 fps: 0.75 s, within 60 frames


def test_low_score_boxes_continue_a_track_but_never_start_one():
    t = ByteTracker()
    r = t.update(np.array([box(100, 100)]), np.array([0.9]))
    tid = int(r.track_ids[0])
    for f in range(1, 6):  # the face turns away: scores fall to 0.3
        r = t.update(np.array([box(100 + 2 * f, 100), box(500, 300)]), np.array([0.3, 0.3]))
        assert ids_by_position(r, None) == {0: tid}  # continued; the stranger at 500 never gets a track
    assert t._next_id == 2


def test_new_track_needs_two_hits_except_on_the_first_frame():
    t = ByteTracker()
    assert len(t.update(np.array([box(100, 100)]), np.array([0.9])).track_ids) == 1  # frame 1: at once
    r = t.update(np.array([box(100, 100), box(400, 100)]), np.array([0.9, 0.9]))
    assert ids_by_position(r, None).keys() == {0}  # the newcomer is not shown yet
    r = t.update(np.array([box(100, 100), box(400, 100)]), np.array([0.9, 0.9]))
    assert ids_by_position(r, None).keys() == {0, 1}


def test_det_index_maps_tracks_back_to_their_detections():
    t = ByteTracker()
    rng = np.random.default_rng(3)
    centres = np.array([[100, 100], [300, 120], [500, 150]], float)
    for f in range(20):
        order = rng.permutation(3)  # detections arrive in a different order every frame
        boxes = np.array([box(*centres[k] + f) for k in order])
        r = t.update(boxes, np.full(3, 0.9))
        for d, tb in zip(r.det_index, r.boxes):
            assert iou_matrix(tb[None], boxes[d][None])[0, 0] > 0.8


def test_random_frames_keep_ids_unique_and_never_crash():
    t = ByteTracker()
    rng = np.random.default_rng(7)
    for _ in range(300):
        n = rng.integers(0, 12)
        xy = rng.uniform(0, 600, (n, 2))
        boxes = np.c_[xy, xy + rng.uniform(10, 120, (n, 2))]
        r = t.update(boxes, rng.uniform(0, 1, n))
        assert len(set(r.track_ids.tolist())) == len(r.track_ids)
        assert set(r.det_index.tolist()) <= set(range(n))


def test_removed_tracks_are_reported_once():
    t = ByteTracker(track_buffer=5)
    for _ in range(3):
        r = t.update(np.array([box(100, 100)]), np.array([0.9]))
    tid = int(r.track_ids[0])
    removed = []
    for _ in range(12):
        removed += t.update(np.zeros((0, 4)), np.zeros(0)).removed_ids
    assert removed == [tid]
