"""ByteTrack on hand-made sequences (crossing faces, short and long gaps, low-score boxes, frame rates), and the
Kalman filter it runs on."""

import time

import numpy as np
import pytest

from app.tracking import kalman
from app.tracking.bytetrack import ByteTracker, TrackResult, iou_matrix

NONE = (np.zeros((0, 4)), np.zeros(0))


def box(cx: float, cy: float, w: float = 60, h: float = 80) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def ids_by_det(result: TrackResult) -> dict[int, int]:
    """{input detection index: track id}."""
    return {int(d): int(t) for d, t in zip(result.det_index, result.track_ids)}


# -- Kalman filter ---------------------------------------------------------------------------------------

def _random_spd(rng, n: int) -> np.ndarray:
    a = rng.normal(size=(n, 8, 8))
    return a @ a.transpose(0, 2, 1) + 8 * np.eye(8)


def test_batched_kalman_steps_match_the_textbook_formulas():
    rng = np.random.default_rng(0)
    means = np.c_[rng.uniform(50, 500, (5, 2)), rng.uniform(0.5, 1, 5), rng.uniform(40, 200, 5),
                  rng.normal(size=(5, 4))]
    covs = _random_spd(rng, 5)
    f = np.eye(8)
    f[:4, 4:] = np.eye(4)
    h_mat = np.eye(4, 8)
    pm, pc = kalman.multi_predict(means, covs)
    z = means[:, :4] + rng.normal(size=(5, 4))
    um, uc = kalman.multi_update(means, covs, z)
    for i in range(5):
        h = means[i, 3]
        q = np.diag(np.array([h / 20, h / 20, 1e-2, h / 20, h / 160, h / 160, 1e-5, h / 160]) ** 2)
        np.testing.assert_allclose(pm[i], f @ means[i])
        np.testing.assert_allclose(pc[i], f @ covs[i] @ f.T + q)
        r = np.diag(np.array([h / 20, h / 20, 1e-1, h / 20]) ** 2)
        s = h_mat @ covs[i] @ h_mat.T + r
        k = covs[i] @ h_mat.T @ np.linalg.inv(s)
        np.testing.assert_allclose(um[i], means[i] + k @ (z[i] - means[i, :4]), rtol=1e-9)
        np.testing.assert_allclose(uc[i], covs[i] - k @ s @ k.T, rtol=1e-7, atol=1e-9)


def test_kalman_learns_a_constant_velocity_and_gates_outliers():
    mean, cov = kalman.initiate(np.array([[100.0, 200.0, 0.75, 80.0]]))
    mean, cov = mean[0], cov[0]
    for k in range(1, 30):
        mean, cov = kalman.predict(mean, cov)
        mean, cov = kalman.update(mean, cov, np.array([100 + 5 * k, 200 - 2 * k, 0.75, 80.0]))
    np.testing.assert_allclose(mean[4:6], [5, -2], atol=0.2)
    mean, cov = kalman.predict(mean, cov)
    near, far = kalman.gating_distance(mean, cov, np.array([[250, 140, 0.75, 80], [400, 140, 0.75, 80]]))
    assert near < kalman.GATE_4 < far


def test_box_conversions_round_trip():
    boxes = np.array([box(100, 200), box(10, 20, 30, 50)])
    np.testing.assert_allclose(kalman.xyah_to_xyxy(kalman.xyxy_to_xyah(boxes)), boxes)
    np.testing.assert_allclose(kalman.xyxy_to_xyah(boxes)[0], [100, 200, 0.75, 80])


# -- IoU and association -----------------------------------------------------------------------------------

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
    first, both = None, 0
    for f in range(60):
        x_a = 100 + f * 8  # left to right
        x_b = 572 - f * 8  # right to left; they overlap almost fully around frame 29
        boxes = np.array([box(x_a, 200), box(x_b, 215)])
        ids = ids_by_det(t.update(boxes, np.array([0.9, 0.9])))
        if f == 0:
            first = ids
            assert len(ids) == 2
        elif 0 in ids and 1 in ids:
            both += 1
            assert ids == first, f"ids swapped at frame {f}: {ids} vs {first}"
    assert both >= 55  # both faces were followed through the crossing, not dropped


def test_face_lost_for_fewer_than_track_buffer_frames_comes_back_with_its_id():
    t = ByteTracker(fps=30, track_buffer=30)
    tid = int(t.update(np.array([box(200, 200)]), np.array([0.9])).track_ids[0])
    for f in range(1, 10):
        t.update(np.array([box(200 + f, 200)]), np.array([0.9]))
    lost = t.update(*NONE)
    assert lost.lost_ids == [tid] and len(lost.track_ids) == 0
    for _ in range(24):  # hidden for 25 frames in all (< 30)
        r = t.update(*NONE)
        assert len(r.track_ids) == 0 and not r.removed_ids
    r = t.update(np.array([box(212, 200)]), np.array([0.9]))
    assert r.track_ids.tolist() == [tid]  # shown at once: a lost track needs no second hit


def _gap_recovers(fps: float, gap: int) -> bool:
    t = ByteTracker(fps=fps, track_buffer=30)
    tid = None
    for _ in range(5):
        r = t.update(np.array([box(300, 300)]), np.array([0.9]))
        tid = int(r.track_ids[0]) if len(r.track_ids) else tid
    for _ in range(gap):
        t.update(*NONE)
    for _ in range(2):  # a new track needs two hits to show; a recovered one shows at once
        r = t.update(np.array([box(300, 300)]), np.array([0.9]))
        if len(r.track_ids):
            return int(r.track_ids[0]) == tid
    return False


def test_long_gap_gives_a_new_id_and_reports_the_old_one_removed():
    t = ByteTracker(fps=30, track_buffer=30)
    for _ in range(3):
        tid = int(t.update(np.array([box(300, 300)]), np.array([0.9])).track_ids[0])
    removed = []
    for _ in range(40):
        removed += t.update(*NONE).removed_ids
    assert removed == [tid]  # reported once, when the buffer ran out
    t.update(np.array([box(300, 300)]), np.array([0.9]))
    new = t.update(np.array([box(300, 300)]), np.array([0.9])).track_ids.tolist()
    assert len(new) == 1 and new[0] != tid


def test_track_buffer_scales_with_the_frame_rate():
    assert _gap_recovers(fps=30, gap=25)
    assert _gap_recovers(fps=30, gap=30) and not _gap_recovers(fps=30, gap=31)  # the buffer's exact edge
    assert not _gap_recovers(fps=30, gap=45)  # 45 frames at 30 fps: longer than the buffer
    assert _gap_recovers(fps=60, gap=45)  # the same 45 frames at 60 fps: 0.75 s, within 60 frames
    assert ByteTracker(fps=25, track_buffer=30).max_lost == 25
    assert ByteTracker(fps=29.97, track_buffer=30).max_lost == 29  # int(), as the reference


def test_frame_index_gaps_count_as_elapsed_frames():
    def recovers(indices: list[int]) -> bool:
        t = ByteTracker(fps=30, track_buffer=30)
        tid = int(t.update(np.array([box(300, 300)]), np.array([0.9]), frame_index=indices[0]).track_ids[0])
        for i in indices[1:-1]:
            t.update(*NONE, frame_index=i)
        r = t.update(np.array([box(300, 300)]), np.array([0.9]), frame_index=indices[-1])
        return r.track_ids.tolist() == [tid]

    assert recovers([100, 101, 125])  # unseen for 24 frames
    assert not recovers([100, 101, 140])  # two calls, but 39 frames dropped between them: past the buffer
    assert recovers([100, 101, 102])
    assert recovers([7, 7, 3, 4])  # an index that does not increase (source restarted) counts as one frame


def test_low_score_boxes_continue_a_track_but_never_start_one():
    t = ByteTracker()
    assert len(t.update(np.array([box(500, 300)]), np.array([0.45])).track_ids) == 0  # not even on frame 1
    t.update(np.array([box(100, 100)]), np.array([0.9]))
    tid = int(t.update(np.array([box(100, 100)]), np.array([0.9])).track_ids[0])  # second hit: shown
    seen = set()
    for f in range(1, 8):  # the face turns away: its score falls to 0.3; a stranger stays at 0.3 too
        r = t.update(np.array([box(100 + 2 * f, 100), box(500, 300)]), np.array([0.3, 0.3]))
        assert ids_by_det(r) == {0: tid}
        seen |= set(r.track_ids.tolist())
    assert seen == {tid}
    for _ in range(3):  # boxes above track_thresh but below track_thresh + 0.1 do not start tracks either
        assert ids_by_det(t.update(np.array([box(100, 100), box(500, 300)]), np.array([0.55, 0.55]))) == {0: tid}


def test_new_track_needs_two_hits_except_on_the_first_frame():
    t = ByteTracker()
    assert len(t.update(np.array([box(100, 100)]), np.array([0.9])).track_ids) == 1  # frame 1: at once
    r = t.update(np.array([box(100, 100), box(400, 100)]), np.array([0.9, 0.9]))
    assert ids_by_det(r).keys() == {0}  # the newcomer is not shown yet
    r = t.update(np.array([box(100, 100), box(400, 100)]), np.array([0.9, 0.9]))
    assert ids_by_det(r).keys() == {0, 1}
    # a one-hit box that does not come back is dropped silently: never shown, never reported
    r1 = t.update(np.array([box(100, 100), box(400, 100), box(700, 100)]), np.full(3, 0.9))
    r2 = t.update(np.array([box(100, 100), box(400, 100)]), np.full(2, 0.9))
    assert ids_by_det(r1).keys() == {0, 1} and not r2.removed_ids and not r2.lost_ids


def test_det_index_maps_tracks_back_to_their_detections():
    t = ByteTracker()
    rng = np.random.default_rng(3)
    centres = np.array([[100, 100], [300, 120], [500, 150]], float)
    names: dict[int, int] = {}
    for f in range(20):
        order = rng.permutation(3)  # detections arrive in a different order every frame, among weak clutter
        boxes = np.array([box(*centres[k] + f) for k in order] + [box(900, 900 + 100 * k) for k in range(2)])
        scores = np.r_[np.full(3, 0.9), 0.2, 0.05]
        r = t.update(boxes, scores)
        assert np.all(np.diff(r.det_index) > 0)  # rows follow the input order
        assert r.scores.tolist() == pytest.approx(scores[r.det_index].tolist())
        for tid, d, tb in zip(r.track_ids, r.det_index, r.boxes):
            assert d < 3
            assert iou_matrix(tb[None].astype(float), boxes[d][None])[0, 0] > 0.8
            face = int(order[d])
            assert names.setdefault(int(tid), face) == face  # a track id always names the same face


def test_random_frames_keep_ids_unique_and_never_reuse_them():
    t = ByteTracker()
    rng = np.random.default_rng(7)
    removed: set[int] = set()
    for _ in range(400):
        n = rng.integers(0, 12)
        xy = rng.uniform(0, 600, (n, 2))
        boxes = np.c_[xy, xy + rng.uniform(1, 120, (n, 2))].astype(np.float32)
        r = t.update(boxes, rng.uniform(0, 1, n).astype(np.float32))
        ids = r.track_ids.tolist()
        assert len(set(ids)) == len(ids) and len(set(r.det_index.tolist())) == len(ids)
        assert set(r.det_index.tolist()) <= set(range(n))
        assert not set(ids) & removed  # a removed id never comes back
        assert r.track_ids.dtype == np.int64 and r.det_index.dtype == np.int64 and r.boxes.shape == (len(ids), 4)
        assert np.isfinite(r.boxes).all()
        removed |= set(r.removed_ids)
        assert min(ids, default=1) >= 1


def test_reset_forgets_tracks_but_never_reuses_ids():
    t = ByteTracker()
    first = int(t.update(np.array([box(100, 100)]), np.array([0.9])).track_ids[0])
    t.reset()
    assert len(t) == 0
    again = t.update(np.array([box(100, 100)]), np.array([0.9])).track_ids.tolist()
    assert len(again) == 1 and again[0] != first  # shown at once: frame 1 again


def test_update_for_twenty_faces_is_fast():
    rng = np.random.default_rng(0)
    centres, velocity = rng.uniform(100, 1800, (20, 2)), rng.normal(0, 3, (20, 2))
    t = ByteTracker()
    times = []
    for _ in range(300):
        centres += velocity
        keep = rng.uniform(size=20) > 0.05
        boxes = np.c_[centres - 30, centres + 40][keep]
        start = time.perf_counter()
        t.update(boxes, rng.uniform(0.3, 0.99, 20)[keep])
        times.append(time.perf_counter() - start)
    assert np.median(times) < 0.003  # about 0.35 ms on a laptop core; per-pair Python loops cost several ms


# -- continuity: how well a box continues its track ------------------------------------------------------

def test_continuity_is_high_for_a_steady_face_low_for_a_jump_and_zero_for_new_or_refound_tracks():
    from app.stages.embed_track import JUMP_IOU

    t = ByteTracker()
    first = t.update(np.array([box(200, 200)]), np.array([0.95]))
    assert first.continuity.tolist() == [0.0]  # new
    for _ in range(5):
        steady = t.update(np.array([box(200, 200)]), np.array([0.95]))
    assert steady.continuity[0] > 0.95
    jumped = t.update(np.array([box(225, 200)]), np.array([0.95]))  # moved 25 px of its 60
    assert ids_by_det(jumped) == ids_by_det(steady)  # still matched (IoU about 0.41)
    assert jumped.continuity[0] < JUMP_IOU
    for _ in range(3):
        t.update(*NONE)  # lost
    refound = t.update(np.array([box(225, 200)]), np.array([0.95]))
    assert ids_by_det(refound) == ids_by_det(steady) and refound.continuity.tolist() == [0.0]
