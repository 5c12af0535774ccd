"""Recent faces: per (stream, track) its best crop, name, similarity and nearest person, first and last seen.

Kept in the display process, which has the frames, boxes and names. Crops are cut from the raw frame (before the
boxes are drawn) at most ``crop_hz`` times a second per track, and only kept when sharper or larger than the
ones held, so following many faces costs little.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from app.types import UNKNOWN, Faces, FrameRef

KEEP_CROPS = 3  # best crops kept per track: the photos an enrolment from this track stores


@dataclass
class Sighting:
    """One track as the page shows it."""

    stream: int
    track_id: int
    name: str = UNKNOWN
    person_id: str = ""
    similarity: float = 0.0
    nearest: str = ""
    first_seen: float = 0.0
    last_seen: float = 0.0
    version: int = 0  # steps up when the best crop changes (cache-busting crop URLs)
    crops: list[tuple[float, bytes]] = field(default_factory=list)  # (quality, JPEG), best first
    next_crop: float = 0.0
    dismissed: bool = False

    def as_json(self, now: float, live_s: float) -> dict:
        return {"stream": self.stream, "track_id": self.track_id, "name": self.name,
                "person_id": self.person_id or None, "similarity": round(self.similarity, 3),
                "nearest": self.nearest or None, "first_seen": round(self.first_seen, 3),
                "last_seen": round(self.last_seen, 3), "live": now - self.last_seen <= live_s,
                "crop_url": f"/api/tracks/{self.stream}/{self.track_id}/crop.jpg?v={self.version}"
                if self.crops else None}


def cut_crop(frame: np.ndarray, box: np.ndarray, pad: float = 0.25) -> np.ndarray | None:
    """The face's box grown by ``pad`` on each side, clipped to the frame (a copy: the frame's slot is reused)."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    bw, bh = x2 - x1, y2 - y1
    if bw < 4 or bh < 4:
        return None
    x1, x2 = max(0, int(x1 - pad * bw)), min(w, int(x2 + pad * bw))
    y1, y2 = max(0, int(y1 - pad * bh)), min(h, int(y2 + pad * bh))
    if x2 - x1 < 4 or y2 - y1 < 4:
        return None
    return frame[y1:y2, x1:x2].copy()


def quality(crop: np.ndarray) -> float:
    """Larger and sharper is better: area times the variance of the Laplacian (on a small grey copy: cheap)."""
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(grey, (64, 64), interpolation=cv2.INTER_AREA)
    sharp = float(cv2.Laplacian(small, cv2.CV_32F).var())
    return crop.shape[0] * crop.shape[1] * (1.0 + sharp)


class RecentFaces:
    """Thread-safe: the display thread calls ``observe``; the web server's threads read."""

    def __init__(self, window_s: float = 300.0, crop_hz: float = 4.0, max_tracks: int = 500,
                 live_s: float = 2.0, clock: Callable[[], float] = time.time) -> None:
        self.window_s = window_s
        self.crop_every = 1.0 / crop_hz
        self.max_tracks = max_tracks
        self.live_s = live_s
        self.clock = clock
        self._lock = threading.Lock()
        self._tracks: dict[tuple[int, int], Sighting] = {}

    def observe(self, ref: FrameRef, frame: np.ndarray | None, faces: Faces,
                still_valid: Callable[[], bool] | None = None) -> None:
        """Note every tracked face of this frame; cut a crop where one is due (``frame`` raw, before drawing)."""
        if faces.track_ids is None or not len(faces):
            return
        now = self.clock()
        due: list[tuple[Sighting, np.ndarray]] = []
        with self._lock:
            for i, tid in enumerate(faces.track_ids.tolist()):
                if tid < 0:
                    continue
                key = (ref.stream, int(tid))
                s = self._tracks.get(key)
                if s is None:
                    s = self._tracks[key] = Sighting(ref.stream, int(tid), first_seen=now)
                s.last_seen = now
                s.name = faces.names[i] if i < len(faces.names) else UNKNOWN
                s.person_id = faces.person_ids[i] if i < len(faces.person_ids) else ""
                s.nearest = faces.nearest[i] if i < len(faces.nearest) else ""
                if faces.similarities is not None:
                    s.similarity = float(faces.similarities[i])
                if frame is not None and now >= s.next_crop:
                    s.next_crop = now + self.crop_every
                    due.append((s, faces.boxes[i]))
            self._forget(now)
        crops = [(s, c) for s, box in due if (c := cut_crop(frame, box)) is not None]
        if not crops or (still_valid is not None and not still_valid()):
            return  # the frame's slot was rewritten while we cut: those crops may show another frame
        scored = []
        for s, crop in crops:
            q = quality(crop)
            if len(s.crops) < KEEP_CROPS or q > s.crops[-1][0]:
                ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
                if ok:
                    scored.append((s, q, buf.tobytes()))
        with self._lock:
            for s, q, jpeg in scored:
                best = s.crops[0][0] if s.crops else None
                s.crops = sorted([*s.crops, (q, jpeg)], key=lambda c: -c[0])[:KEEP_CROPS]
                if s.crops[0][0] != best:
                    s.version += 1

    def _forget(self, now: float) -> None:
        old = [k for k, s in self._tracks.items() if now - s.last_seen > self.window_s]
        for k in old:
            del self._tracks[k]
        if len(self._tracks) > self.max_tracks:
            for k, _ in sorted(self._tracks.items(), key=lambda kv: kv[1].last_seen)[:len(self._tracks)
                                                                                      - self.max_tracks]:
                del self._tracks[k]

    def tracks(self, stream: int | None = None, include_dismissed: bool = True) -> list[dict]:
        """Newest first."""
        now = self.clock()
        with self._lock:
            rows = [s.as_json(now, self.live_s) | {"dismissed": s.dismissed} for s in self._tracks.values()
                    if (stream is None or s.stream == stream) and (include_dismissed or not s.dismissed)]
        return sorted(rows, key=lambda r: -r["last_seen"])

    def get(self, stream: int, track_id: int) -> dict | None:
        with self._lock:
            s = self._tracks.get((stream, track_id))
            return s.as_json(self.clock(), self.live_s) if s else None

    def crops(self, stream: int, track_id: int) -> list[bytes]:
        """The track's best crops as JPEG, best first (empty for a track never seen or seen without a crop)."""
        with self._lock:
            s = self._tracks.get((stream, track_id))
            return [jpeg for _, jpeg in s.crops] if s else []

    def name(self, stream: int, track_id: int, name: str, person_id: str = "") -> None:
        """What the library just did to a track (enrolled as someone, or "not" someone): shown at once, and an
        enrolled track leaves the review queue; the pipeline's next frames of a live track say the same."""
        with self._lock:
            s = self._tracks.get((stream, track_id))
            if s is not None:
                s.name, s.person_id = name, person_id
                s.similarity = 1.0 if person_id else s.similarity
                s.nearest = "" if person_id else s.nearest

    def dismiss(self, stream: int, track_id: int) -> bool:
        with self._lock:
            s = self._tracks.get((stream, track_id))
            if s is not None:
                s.dismissed = True
            return s is not None
