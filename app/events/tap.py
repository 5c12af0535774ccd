"""The identify stage's tap: each labelled frame becomes ``FrameDecisions`` for the ``Deriver``; the events it
causes go to the publisher process through the spool (app/events/spool.py), and the face counts and
time-to-name marks go to the metrics row and the parent.

It lives beside the identify stage (one call per frame), so the ``Identify`` class stays about the gallery.
Writing to the spool never waits on the publisher: a broker or receiver that is down never stalls identify;
the publisher persists every event in the outbox at once, and the outbox's bound (EVENTS_MAX_MB) is what
limits a long outage.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from app.events.derive import Deriver, FaceDecision, FrameDecisions
from app.events.outbox import announced_lookup
from app.events.spool import MarkLog, SpoolWriter
from app.observe import counters
from app.settings import Settings
from app.types import UNKNOWN, Faces, FrameRef

log = logging.getLogger("facestream.events")

NAMED_MARK, UNNAMED_MARK, PUBLISHED_MARK = "named", "unnamed", "published"
UNKNOWN_AFTER = 3  # gallery answers that said unknown before a face is worth an unknown.appeared
LOOKBACK = 90  # frames per stream whose untracked faces are kept, to find when a new track's face first showed


@dataclass
class EventsLink:
    """What the parent hands the identify stage and the publisher (plain data, picklable at spawn): the run id,
    the events spool folder (None: no sink configured, nothing derived) and the folder of time-to-name marks
    the parent reads at the end (None: not kept)."""

    run: str
    events: str | None = None
    marks: str | None = None


@dataclass
class _Seen:
    first: float  # capture time of the track's first frame here
    queries: int = 0  # gallery answers while it was unknown
    named: bool = False


class EventTap:
    """Per identify process. ``frame`` once per labelled frame; ``finish`` at the end of the stream."""

    def __init__(self, settings: Settings, link: EventsLink, metrics=None,
                 people: Callable[[], int] | None = None) -> None:
        self.link = link
        self.metrics = metrics
        self.people = people  # the gallery's number of people, for the gauge
        self.spool = SpoolWriter(link.events) if link.events is not None else None
        self.marks = MarkLog(link.marks) if link.marks is not None else None
        self.deriver = None
        if link.events is not None:
            self.deriver = Deriver(link.run, unknown_after=UNKNOWN_AFTER,
                                   announced=announced_lookup(settings.events_dir),
                                   full_frame=settings.events_full_frame)
        self.seen: dict[tuple[int, int], _Seen] = {}
        self.untracked: dict[int, deque[tuple[float, np.ndarray]]] = {}  # stream -> (capture time, boxes)
        self.next_gallery = 0.0

    @property
    def wants_frame(self) -> bool:
        """Whether ``frame`` can use the picture (snapshots): only when events are derived."""
        return self.deriver is not None

    def labelled(self, faces: Faces, view: np.ndarray | None, intact: Callable[[FrameRef], bool] | None) -> None:
        """One labelled record of the identify stage: ``view`` its frame in the ring (None when the stage does
        not read frames), ``intact`` the runtime's torn-frame check. The snapshot source is a copy taken only
        when a face is there, and kept only if the frame was still intact after the copy."""
        image = None
        if intact is None:  # already a private copy, checked intact by the caller (identify's hidden_copy)
            image = view
        elif self.wants_frame and view is not None and len(faces):
            image = np.array(view)
            if not intact(faces.frame):
                image = None  # overwritten while copied: no snapshot from torn pixels
        ref = faces.frame
        self.frame(ref.stream, ref.index, ref.ts, faces, faces.removed, image)
        if self.people is not None:
            self.gallery_size(self.people)

    def frame(self, stream: int, index: int, ts: float, faces: Faces, removed: list[int] | None = None,
              image: np.ndarray | None = None) -> None:
        """``faces`` as identify labelled them (before their embeddings are dropped: ``query`` says which
        tracks the gallery answered this frame); ``image`` the frame (BGR) for snapshots, None when it could not
        be read intact."""
        self._count(faces)
        decisions = FrameDecisions(stream=stream, frame=index, captured_at=ts, ended=list(removed or ()))
        queried = {int(faces.track_ids[r]) for r in (faces.query if faces.query is not None else ())
                   } if faces.track_ids is not None else set()
        for i in range(len(faces)):
            tid = int(faces.track_ids[i]) if faces.track_ids is not None else -1
            if tid < 0:
                continue
            seen = self.seen.get((stream, tid))
            if seen is None:
                seen = self.seen[stream, tid] = _Seen(first=self._first_detected(stream, faces.boxes[i], ts))
            name = faces.names[i] if i < len(faces.names) else UNKNOWN
            pid = faces.person_ids[i] if i < len(faces.person_ids) else ""
            known = name != UNKNOWN and bool(pid)
            if not known and tid in queried:
                seen.queries += 1
            if known and not seen.named:
                seen.named = True
                self._mark(NAMED_MARK, stream, tid, seen.first, ts)
            near = faces.nearest[i] if i < len(faces.nearest) else ""
            sim = float(faces.similarities[i]) if faces.similarities is not None else None
            decisions.faces.append(FaceDecision(track=tid, box=faces.boxes[i].tolist(), name=name if known else None,
                                                person_id=pid or None, similarity=sim,
                                                nearest=("", near) if near and not known else None,
                                                votes=seen.queries))
        for tid in decisions.ended:
            self._close(stream, int(tid))
        self._keep_untracked(stream, ts, faces)
        if self.deriver is not None:
            self._send(self.deriver.update(decisions, image))

    def gallery_size(self, size: Callable[[], int]) -> None:
        """Refresh the gallery-size gauge every GALLERY_EVERY seconds (people can be enrolled while it runs)."""
        now = time.monotonic()
        if self.metrics is None or now < self.next_gallery:
            return
        self.next_gallery = now + counters.GALLERY_EVERY
        try:
            self.metrics.set_counter(counters.GALLERY, int(size()))
        except Exception as exc:  # noqa: BLE001 - a gauge is not worth failing a frame for (server away)
            log.debug("gallery size not read: %s", exc)

    def finish(self) -> None:
        """The end of the stream: ``person.left`` for every open track, then the publisher's end mark."""
        for stream, tid in list(self.seen):
            self._close(stream, tid)
        if self.deriver is not None:
            self._send(self.deriver.finish())
            self.spool.put(None, self.link.run)

    # ------------------------------------------------------------------
    def _count(self, faces: Faces) -> None:
        if self.metrics is None or not len(faces):
            return
        named = sum(1 for i, n in enumerate(faces.names) if n != UNKNOWN and i < len(faces.person_ids)
                    and faces.person_ids[i])
        self.metrics.count(counters.FACES, len(faces))
        self.metrics.count(counters.NAMED, named)
        self.metrics.count(counters.UNKNOWN, len(faces) - named)

    def _keep_untracked(self, stream: int, ts: float, faces: Faces) -> None:
        """The faces not (yet) tracked in this frame: the tracker shows a track from its second hit, and a face
        may be detected a while below the score that starts a track."""
        if faces.track_ids is None:
            boxes = np.asarray(faces.boxes, np.float32).reshape(-1, 4)
        else:
            boxes = np.asarray(faces.boxes, np.float32).reshape(-1, 4)[np.asarray(faces.track_ids) < 0]
        self.untracked.setdefault(stream, deque(maxlen=LOOKBACK)).append((ts, boxes))

    def _first_detected(self, stream: int, box: np.ndarray, ts: float) -> float:
        """Capture time of the first frame in which this new track's face was detected: walk back through the
        frames just before while each holds an untracked face overlapping the one after it (IoU > 0.3)."""
        first, box = ts, np.asarray(box, np.float32)
        for when, boxes in reversed(self.untracked.get(stream, ())):
            if not len(boxes):
                break
            overlap = _iou(box, boxes)
            k = int(np.argmax(overlap))
            if overlap[k] <= 0.3:
                break
            first, box = when, boxes[k]
        return first

    def _close(self, stream: int, tid: int) -> None:
        seen = self.seen.pop((stream, tid), None)
        if seen is not None and not seen.named:
            self._mark(UNNAMED_MARK, stream, tid, seen.first, None)

    def _mark(self, kind: str, stream: int, tid: int, first: float, at: float | None) -> None:
        if self.marks is not None:
            self.marks.put((kind, self.link.run, str(stream), tid, first, at))

    def _send(self, events) -> None:
        for event in events:
            self.spool.put(event.to_dict())


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1, y1 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x2, y2 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area - inter, 1e-9)
