"""ByteTrack: two-stage association (high-score boxes first, then low-score ones) with a Kalman motion model.

Follows the reference semantics: a new track starts only from a box above ``track_thresh + 0.1``, is
confirmed by a second hit (or at once on the very first frame), survives ``track_buffer`` frames unseen
(scaled by the source's real frame rate), and low-score boxes may continue a track but never start one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lap
import numpy as np

from app.tracking import kalman

NEW, TRACKED, LOST, REMOVED = range(4)


@dataclass
class TrackResult:
    """Tracks seen on this frame: ids, Kalman-corrected boxes, and which input detection each came from."""

    track_ids: np.ndarray  # (M,) int64
    boxes: np.ndarray  # (M, 4) float32
    det_index: np.ndarray  # (M,) int64, index into the boxes given to update()
    removed_ids: list[int] = field(default_factory=list)  # tracks forgotten on this frame


class _Track:
    __slots__ = ("mean", "cov", "track_id", "state", "activated", "score", "frame", "start", "det_index")

    def __init__(self, box: np.ndarray, score: float) -> None:
        self.mean, self.cov = kalman.initiate(kalman.xyxy_to_xyah(box)[0])
        self.track_id = 0
        self.state = NEW
        self.activated = False
        self.score = score
        self.frame = 0
        self.start = 0
        self.det_index = -1

    def box(self) -> np.ndarray:
        return kalman.xyah_to_xyxy(self.mean[:4])[0]

    def update(self, box: np.ndarray, score: float, frame: int, det_index: int) -> None:
        self.mean, self.cov = kalman.update(self.mean, self.cov, kalman.xyxy_to_xyah(box)[0])
        self.state, self.activated = TRACKED, True
        self.score, self.frame, self.det_index = score, frame, det_index


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def assign(cost: np.ndarray, thresh: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Min-cost matching with ``lap.lapjv``; pairs costing more than ``thresh`` stay unmatched."""
    if cost.size == 0:
        return [], list(range(cost.shape[0])), list(range(cost.shape[1]))
    _, x, y = lap.lapjv(cost, extend_cost=True, cost_limit=thresh)
    matches = [(i, int(j)) for i, j in enumerate(x) if j >= 0]
    return matches, [i for i, j in enumerate(x) if j < 0], [j for j, i in enumerate(y) if i < 0]


class ByteTracker:
    def __init__(self, fps: float = 30.0, track_thresh: float = 0.5, match_thresh: float = 0.8,
                 track_buffer: int = 30, low_thresh: float = 0.1, fuse_score: bool = True) -> None:
        self.track_thresh = track_thresh
        self.match_thresh = match_thresh
        self.low_thresh = low_thresh
        self.new_thresh = track_thresh + 0.1
        self.fuse_score = fuse_score
        self.max_lost = max(1, int(round(fps / 30.0 * track_buffer)))
        self.reset()

    def reset(self) -> None:
        self.tracked: list[_Track] = []
        self.lost: list[_Track] = []
        self.frame = 0
        self._next_id = 1

    def _cost(self, tracks: list[_Track], boxes: np.ndarray, scores: np.ndarray, fuse: bool) -> np.ndarray:
        tb = np.array([t.box() for t in tracks]).reshape(-1, 4)
        iou = iou_matrix(tb, boxes)
        return 1.0 - (iou * scores[None, :] if fuse else iou)

    def update(self, boxes: np.ndarray, scores: np.ndarray, frame_index: int | None = None) -> TrackResult:
        """Associate this frame's detections (x1y1x2y2 boxes, scores) with the tracks."""
        self.frame += 1
        f = self.frame
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        high = np.flatnonzero(scores >= self.track_thresh)
        low = np.flatnonzero((scores > self.low_thresh) & (scores < self.track_thresh))

        confirmed = [t for t in self.tracked if t.activated]
        unconfirmed = [t for t in self.tracked if not t.activated]
        pool = confirmed + self.lost
        if pool:
            means, covs = kalman.multi_predict(np.stack([t.mean for t in pool]), np.stack([t.cov for t in pool]))
            for t, m, c in zip(pool, means, covs):
                if t.state != TRACKED:
                    m[7] = 0.0  # a lost track keeps its place, not its height velocity (reference behaviour)
                t.mean, t.cov = m, c
        activated, refound, lost_now, removed = [], [], [], []

        # 1st association: every confirmed or lost track against the high-score boxes
        cost = self._cost(pool, boxes[high], scores[high], self.fuse_score)
        matches, u_track, u_high = assign(cost, self.match_thresh)
        for ti, di in matches:
            t = pool[ti]
            was = t.state
            t.update(boxes[high[di]], scores[high[di]], f, int(high[di]))
            (activated if was == TRACKED else refound).append(t)

        # 2nd association: tracks still unmatched (and being tracked) against the low-score boxes
        remaining = [pool[i] for i in u_track if pool[i].state == TRACKED]
        cost = self._cost(remaining, boxes[low], scores[low], False)
        matches, u_rem, _ = assign(cost, 0.5)
        for ti, di in matches:
            remaining[ti].update(boxes[low[di]], scores[low[di]], f, int(low[di]))
            activated.append(remaining[ti])
        for i in u_rem:
            remaining[i].state = LOST
            lost_now.append(remaining[i])

        # unconfirmed (one-hit) tracks against the high boxes left over
        left = high[u_high]
        cost = self._cost(unconfirmed, boxes[left], scores[left], self.fuse_score)
        matches, u_unc, u_left = assign(cost, 0.7)
        for ti, di in matches:
            unconfirmed[ti].update(boxes[left[di]], scores[left[di]], f, int(left[di]))
            activated.append(unconfirmed[ti])
        for i in u_unc:
            unconfirmed[i].state = REMOVED
            removed.append(unconfirmed[i])

        # new tracks from confident, unexplained boxes
        for di in left[u_left]:
            if scores[di] < self.new_thresh:
                continue
            t = _Track(boxes[di], float(scores[di]))
            t.track_id, self._next_id = self._next_id, self._next_id + 1
            t.state, t.frame, t.start, t.det_index = TRACKED, f, f, int(di)
            t.activated = f == 1
            activated.append(t)

        for t in self.lost:
            if t.state == LOST and f - t.frame > self.max_lost:
                t.state = REMOVED
                removed.append(t)

        tracked = [t for t in self.tracked if t.state == TRACKED] + activated + refound
        seen: set[int] = set()
        self.tracked = [t for t in tracked if not (id(t) in seen or seen.add(id(t)))]
        ids_tracked = {id(t) for t in self.tracked}
        self.lost = [t for t in self.lost + lost_now if t.state == LOST and id(t) not in ids_tracked]
        self._remove_duplicates()

        out = [t for t in self.tracked if t.activated and t.frame == f]
        return TrackResult(
            track_ids=np.array([t.track_id for t in out], np.int64),
            boxes=np.array([t.box() for t in out], np.float32).reshape(-1, 4),
            det_index=np.array([t.det_index for t in out], np.int64),
            removed_ids=[t.track_id for t in removed if t.track_id and t.activated],
        )

    def _remove_duplicates(self) -> None:
        """A lost track overlapping a tracked one (IoU > 0.85) is the same face: keep the older of the two."""
        if not self.tracked or not self.lost:
            return
        iou = iou_matrix(np.array([t.box() for t in self.tracked]), np.array([t.box() for t in self.lost]))
        drop_t, drop_l = set(), set()
        for i, j in zip(*np.nonzero(iou > 0.85)):
            a, b = self.tracked[i], self.lost[j]
            if a.frame - a.start > b.frame - b.start:
                drop_l.add(j)
            else:
                drop_t.add(i)
        self.tracked = [t for i, t in enumerate(self.tracked) if i not in drop_t]
        self.lost = [t for j, t in enumerate(self.lost) if j not in drop_l]
