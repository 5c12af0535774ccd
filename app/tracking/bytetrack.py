"""ByteTrack: two-stage association (high-score boxes first, then low-score ones) with a Kalman motion model.

Reference semantics (ByteTrack's ``BYTETracker``, MOT17 settings):

- boxes scoring above ``track_thresh`` are matched first against every confirmed and lost track, on IoU
  distance fused with the detection score (``1 - IoU * score``: a blurred, low-confidence face needs more
  overlap to claim a track), assignment by ``lap.lapjv`` with ``cost_limit = match_thresh``;
- tracks left over (and still being tracked) get a second chance on the boxes scoring between
  ``low_thresh`` and ``track_thresh``, on plain IoU distance with a 0.5 limit: a face turning away or
  half occluded keeps its track, but such a box never starts one;
- tracks born on the previous frame (unconfirmed) are matched against the high boxes still free
  (fused, 0.7 limit); an unconfirmed track that misses is dropped at once;
- a free high box scoring at least ``track_thresh + 0.1`` starts a track; it is shown from its second hit,
  except on the tracker's first frame, where every new track is shown at once;
- a track unseen for more than ``track_buffer`` frames, scaled to the source's real frame rate
  (``int(fps / 30 * track_buffer)``), is removed; a lost track overlapping a tracked one (IoU > 0.85)
  is a duplicate and the younger of the two goes.

Two departures, both deliberate: a track unseen for exactly ``max_lost`` frames can still be matched,
one more cannot (the reference, by the order it updates its lists, lets a removed track be matched one
frame longer); and IoU is computed on continuous coordinates, without the reference's +1 pixel. With
those two aligned, this tracker gives the reference's ids and boxes frame for frame.

Two additions: ``update`` takes the frame's index in the source, so frames dropped upstream (a live
source under load) still count as elapsed time for the motion model and the buffer; and each match reports
how well the box continues its track (IoU with the track's predicted box; 0 for a track re-found after
being lost, or new), so the caller can re-check the face of a box that jumped.

Fusing the score is the reference's default (it is switched off only for MOT20's dense crowds); faces
in a frame are few and rarely overlap, so the stricter match for weak boxes costs nothing and keeps a
passer-by's weak box from stealing a track.

Tracks are kept as arrays (struct of arrays) rather than objects, so a frame with twenty faces is a
handful of vectorised numpy calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import lap
import numpy as np

from app.tracking import kalman

TRACKED, LOST = 0, 1
UNCONFIRMED_MATCH = 0.7  # cost limit for one-hit tracks (reference)
LOW_MATCH = 0.5  # cost limit for the second, low-score association (reference)
DUPLICATE_IOU = 0.85  # a lost track this close to a tracked one is the same face (reference: distance < 0.15)


@dataclass
class TrackResult:
    """Tracks matched on this frame: ids, Kalman-corrected boxes, and which input detection each came from.

    Rows are in the order of ``det_index`` (the order of the detections given to ``update``).
    """

    track_ids: np.ndarray  # (M,) int64, unique over the tracker's lifetime, from 1
    boxes: np.ndarray  # (M, 4) float32 x1y1x2y2, the filtered box of each track
    det_index: np.ndarray  # (M,) int64, row of the detection each track was matched to
    scores: np.ndarray  # (M,) float32, that detection's score
    continuity: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # (M,) IoU with the
    # predicted box; 0 where the track was lost until this frame or is new (nothing says it is the same face)
    lost_ids: list[int] = field(default_factory=list)  # shown tracks that went unseen on this frame
    removed_ids: list[int] = field(default_factory=list)  # shown tracks forgotten on this frame: never come back


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU between x1y1x2y2 boxes ``a`` (N, 4) and ``b`` (M, 4)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    wh = np.maximum(np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2]), 0.0)
    inter = wh[..., 0] * wh[..., 1]
    size_a = np.maximum(a[:, 2:] - a[:, :2], 0.0)
    size_b = np.maximum(b[:, 2:] - b[:, :2], 0.0)
    area_a, area_b = size_a[:, 0] * size_a[:, 1], size_b[:, 0] * size_b[:, 1]
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def iou_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) IoU of each row of ``a`` (N, 4) with the same row of ``b``."""
    wh = np.maximum(np.minimum(a[:, 2:], b[:, 2:]) - np.maximum(a[:, :2], b[:, :2]), 0.0)
    inter = wh[:, 0] * wh[:, 1]
    size_a, size_b = np.maximum(a[:, 2:] - a[:, :2], 0.0), np.maximum(b[:, 2:] - b[:, :2], 0.0)
    return inter / np.maximum(size_a[:, 0] * size_a[:, 1] + size_b[:, 0] * size_b[:, 1] - inter, 1e-9)


def assign(cost: np.ndarray, thresh: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Min-cost matching with ``lap.lapjv``; pairs costing more than ``thresh`` stay unmatched.

    Returns (matched rows, matched columns, unmatched rows, unmatched columns) as int64 arrays.
    """
    rows, cols = cost.shape
    if rows == 0 or cols == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.arange(rows), np.arange(cols)
    _, x, y = lap.lapjv(cost, extend_cost=True, cost_limit=thresh)
    x, y = np.asarray(x), np.asarray(y)
    r = np.flatnonzero(x >= 0)
    return r, x[r].astype(np.int64), np.flatnonzero(x < 0), np.flatnonzero(y < 0)


class ByteTracker:
    """One video stream's tracker; ``update`` once per frame, in order, with that frame's detections."""

    def __init__(self, fps: float = 30.0, track_thresh: float = 0.5, match_thresh: float = 0.8,
                 track_buffer: int = 30, low_thresh: float = 0.1, fuse_score: bool = True) -> None:
        self.track_thresh = track_thresh
        self.match_thresh = match_thresh
        self.low_thresh = low_thresh
        self.new_thresh = track_thresh + 0.1
        self.fuse_score = fuse_score
        self.fps = fps if fps and fps > 0 else 30.0
        self.max_lost = max(1, int(self.fps / 30.0 * track_buffer))
        self.reset()

    def reset(self) -> None:
        """Forget every track and start again at frame 1 (track ids keep counting up, so none is reused)."""
        self.frame = 0
        self._last_index: int | None = None
        if not hasattr(self, "_next_id"):
            self._next_id = 1
        self.mean = np.zeros((0, 8))
        self.cov = np.zeros((0, 8, 8))
        self.ids = np.zeros(0, np.int64)
        self.state = np.zeros(0, np.int8)
        self.confirmed = np.zeros(0, bool)
        self.score = np.zeros(0)
        self.last = np.zeros(0, np.int64)  # frame of the last match
        self.start = np.zeros(0, np.int64)  # frame the track was born
        self.det = np.zeros(0, np.int64)  # detection row of the last match
        self.cont = np.zeros(0)  # continuity of the last match (see TrackResult)

    def __len__(self) -> int:
        """Tracks alive: tracked, unconfirmed or lost."""
        return len(self.ids)

    @staticmethod
    def _cost(track_boxes: np.ndarray, boxes: np.ndarray, scores: np.ndarray, fuse: bool) -> np.ndarray:
        iou = iou_matrix(track_boxes, boxes)
        return 1.0 - (iou * scores[None, :] if fuse else iou)

    def _steps(self, frame_index: int | None) -> int:
        """Frames elapsed since the last update: more than one when the caller dropped frames."""
        last, self._last_index = self._last_index, frame_index
        if frame_index is None or last is None or frame_index <= last:
            return 1
        return int(frame_index - last)

    def update(self, boxes: np.ndarray, scores: np.ndarray, frame_index: int | None = None) -> TrackResult:
        """Associate this frame's detections (N, 4) x1y1x2y2 boxes and (N,) scores with the tracks.

        ``frame_index`` is the frame's number in the source: when frames were dropped upstream, the gap
        counts (motion is predicted across it and it counts toward ``track_buffer``). Without it, or when
        it does not increase, each call is one frame.
        """
        steps = self._steps(frame_index)
        self.frame += steps
        f = self.frame
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        high = np.flatnonzero(scores > self.track_thresh)
        low = np.flatnonzero((scores > self.low_thresh) & (scores < self.track_thresh))

        # lost tracks whose buffer ran out during frames never given to update (dropped upstream)
        expired = (self.state == LOST) & (f - self.last > self.max_lost + 1)
        removed_ids = self.ids[expired].tolist()
        if removed_ids:
            self._keep(~expired)

        # predict confirmed and lost tracks (one-hit tracks stay where they were seen, as in the reference)
        pool = np.flatnonzero(self.confirmed)
        if len(pool):
            mean, cov = self.mean[pool], self.cov[pool]
            for _ in range(min(steps, self.max_lost + 1)):
                mean[self.state[pool] != TRACKED, 7] = 0.0  # a lost track keeps its height (reference)
                mean, cov = kalman.multi_predict(mean, cov)
            self.mean[pool], self.cov[pool] = mean, cov
        tb = kalman.xyah_to_xyxy(self.mean[:, :4])  # every track's box for this frame, before correction
        match_t: list[np.ndarray] = []
        match_d: list[np.ndarray] = []

        # 1st association: confirmed and lost tracks against the high-score boxes
        cost = self._cost(tb[pool], boxes[high], scores[high], self.fuse_score)
        r, c, u_pool, u_high = assign(cost, self.match_thresh)
        match_t.append(pool[r])
        match_d.append(high[c])

        # 2nd association: tracks still unmatched (and tracked until now) against the low-score boxes
        remaining = pool[u_pool][self.state[pool[u_pool]] == TRACKED]
        r, c, u_rem, _ = assign(self._cost(tb[remaining], boxes[low], scores[low], False), LOW_MATCH)
        match_t.append(remaining[r])
        match_d.append(low[c])
        went_lost = remaining[u_rem]

        # one-hit tracks against the high boxes left over; a one-hit track that misses is dropped
        unconfirmed = np.flatnonzero(~self.confirmed)
        left = high[u_high]
        r, c, u_unc, u_left = assign(self._cost(tb[unconfirmed], boxes[left], scores[left], self.fuse_score),
                                     UNCONFIRMED_MATCH)
        match_t.append(unconfirmed[r])
        match_d.append(left[c])

        # correct every matched track in one batched Kalman step
        mt, md = np.concatenate(match_t), np.concatenate(match_d)
        if len(mt):
            iou = iou_pairs(tb[mt], boxes[md])
            self.cont[mt] = np.where((self.state[mt] == TRACKED) & self.confirmed[mt], iou, 0.0)
            self.mean[mt], self.cov[mt] = kalman.multi_update(self.mean[mt], self.cov[mt],
                                                              kalman.xyxy_to_xyah(boxes[md]))
            self.state[mt] = TRACKED
            self.confirmed[mt] = True
            self.score[mt], self.last[mt], self.det[mt] = scores[md], f, md
        self.state[went_lost] = LOST

        keep = np.ones(len(self.ids), bool)
        keep[unconfirmed[u_unc]] = False
        removed = (self.state == LOST) & (f - self.last > self.max_lost)
        keep &= ~removed

        # new tracks from confident, unexplained boxes
        fresh = left[u_left]
        fresh = fresh[scores[fresh] >= self.new_thresh]
        if len(fresh):
            n = len(fresh)
            mean, cov = kalman.initiate(kalman.xyxy_to_xyah(boxes[fresh]))
            self.mean = np.concatenate([self.mean, mean])
            self.cov = np.concatenate([self.cov, cov])
            self.ids = np.concatenate([self.ids, np.arange(self._next_id, self._next_id + n, dtype=np.int64)])
            self._next_id += n
            self.state = np.concatenate([self.state, np.full(n, TRACKED, np.int8)])
            self.confirmed = np.concatenate([self.confirmed, np.full(n, f == 1)])
            self.score = np.concatenate([self.score, scores[fresh]])
            self.last = np.concatenate([self.last, np.full(n, f, np.int64)])
            self.start = np.concatenate([self.start, np.full(n, f, np.int64)])
            self.det = np.concatenate([self.det, fresh])
            self.cont = np.concatenate([self.cont, np.zeros(n)])
            keep = np.concatenate([keep, np.ones(n, bool)])

        tb = kalman.xyah_to_xyxy(self.mean[:, :4])
        keep &= ~self._duplicates(keep, tb)
        gone = ~keep & self.confirmed  # tracks that were shown and will never come back
        removed_ids += self.ids[gone].tolist()
        lost_ids = self.ids[went_lost][keep[went_lost]].tolist()
        if not keep.all():
            self._keep(keep)
            tb = tb[keep]

        out = np.flatnonzero((self.state == TRACKED) & self.confirmed & (self.last == f))
        out = out[np.argsort(self.det[out], kind="stable")]
        return TrackResult(
            track_ids=self.ids[out].copy(),
            boxes=tb[out].astype(np.float32),
            det_index=self.det[out].copy(),
            scores=self.score[out].astype(np.float32),
            continuity=self.cont[out].astype(np.float32),
            lost_ids=lost_ids,
            removed_ids=removed_ids,
        )

    def _keep(self, keep: np.ndarray) -> None:
        for name in ("mean", "cov", "ids", "state", "confirmed", "score", "last", "start", "det", "cont"):
            setattr(self, name, getattr(self, name)[keep])

    def _duplicates(self, alive: np.ndarray, tb: np.ndarray) -> np.ndarray:
        """Mask of tracks to drop: of a tracked and a lost track overlapping past DUPLICATE_IOU, the younger."""
        drop = np.zeros(len(self.ids), bool)
        tracked = np.flatnonzero(alive & (self.state == TRACKED))
        lost = np.flatnonzero(alive & (self.state == LOST))
        if not len(tracked) or not len(lost):
            return drop
        i, j = np.nonzero(iou_matrix(tb[tracked], tb[lost]) > DUPLICATE_IOU)
        t, lo = tracked[i], lost[j]
        age_t = self.last[t] - self.start[t]
        age_l = self.last[lo] - self.start[lo]
        drop[lo[age_t > age_l]] = True
        drop[t[age_t <= age_l]] = True
        return drop
