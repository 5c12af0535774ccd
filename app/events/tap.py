"""The identify stage's tap: each labelled frame becomes ``FrameDecisions`` for the ``Deriver``; the events it
causes go to the publisher process through a queue, and the face counts and time-to-name marks go to the
metrics row and the parent.

It lives beside the identify stage (one call per frame), so the ``Identify`` class stays about the gallery.
The queue is a ``multiprocessing`` queue whose ``put`` never blocks (a feeder thread writes it): a broker or
receiver that is down never stalls identify; the publisher persists every event on disk at once and the
outbox's bound (EVENTS_MAX_MB) is what limits a long outage, not this queue.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.events.derive import Deriver, FaceDecision, FrameDecisions
from app.events.outbox import announced_lookup
from app.observe import counters
from app.settings import Settings
from app.types import UNKNOWN, Faces

log = logging.getLogger("facestream.events")

NAMED_MARK, UNNAMED_MARK, PUBLISHED_MARK = "named", "unnamed", "published"
UNKNOWN_AFTER = 3  # gallery answers that said unknown before a face is worth an unknown.appeared


@dataclass
class EventsLink:
    """What the parent hands the identify stage and the publisher (picklable at spawn): the run id, the events
    queue (None: no sink configured, nothing derived) and the queue of time-to-name marks for the parent."""

    run: str
    events: Any = None
    marks: Any = None


@dataclass
class _Seen:
    first: float  # capture time of the track's first frame here
    queries: int = 0  # gallery answers while it was unknown
    named: bool = False


class EventTap:
    """Per identify process. ``frame`` once per labelled frame; ``finish`` at the end of the stream."""

    def __init__(self, settings: Settings, link: EventsLink, metrics=None) -> None:
        self.link = link
        self.metrics = metrics
        self.deriver = None
        if link.events is not None:
            self.deriver = Deriver(link.run, unknown_after=UNKNOWN_AFTER,
                                   announced=announced_lookup(settings.events_dir),
                                   full_frame=settings.events_full_frame)
        self.seen: dict[tuple[int, int], _Seen] = {}
        self.next_gallery = 0.0

    @property
    def wants_frame(self) -> bool:
        """Whether ``frame`` can use the picture (snapshots): only when events are derived."""
        return self.deriver is not None

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
            seen = self.seen.setdefault((stream, tid), _Seen(first=ts))
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
            self.link.events.put(None)

    # ------------------------------------------------------------------
    def _count(self, faces: Faces) -> None:
        if self.metrics is None or not len(faces):
            return
        named = sum(1 for i, n in enumerate(faces.names) if n != UNKNOWN and i < len(faces.person_ids)
                    and faces.person_ids[i])
        self.metrics.count(counters.FACES, len(faces))
        self.metrics.count(counters.NAMED, named)
        self.metrics.count(counters.UNKNOWN, len(faces) - named)

    def _close(self, stream: int, tid: int) -> None:
        seen = self.seen.pop((stream, tid), None)
        if seen is not None and not seen.named:
            self._mark(UNNAMED_MARK, stream, tid, seen.first, None)

    def _mark(self, kind: str, stream: int, tid: int, first: float, at: float | None) -> None:
        if self.link.marks is not None:
            self.link.marks.put((kind, self.link.run, str(stream), tid, first, at))

    def _send(self, events) -> None:
        for event in events:
            self.link.events.put(event.to_dict())


def intact_copy(ring, seq: int) -> np.ndarray | None:
    """A copy of frame ``seq`` from its ring for snapshots, or None when it was overwritten before or while it
    was copied (never a torn picture in an event)."""
    view = ring.view(seq)
    if view is None:
        return None
    image = np.array(view)
    return image if ring.still_valid(seq) else None
