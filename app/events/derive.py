"""Turn the identify stage's per-frame decisions into events: once per track, never from one frame's guess.

A track is *named* only when the identify stage's decision (its vote over gallery answers) names it; a face
is an *unknown* worth announcing only after ``unknown_after`` gallery answers said unknown. Every announced
track gets one ``person.left`` when it ends, or at ``finish()`` for tracks still open at the end of a file.
A deriver started again (a restarted identify stage) asks ``announced`` which events the publisher already
accepted, so a track it meets again is not announced twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from app.events.schema import APPEARED, LEFT, UNKNOWN_APPEARED, Event, dedup_key, stream_name
from app.types import UNKNOWN

log = logging.getLogger("facestream.events")
Announced = Callable[[str], "dict | None"]  # dedup key -> the accepted event's summary, or None


@dataclass
class FaceDecision:
    """What the identify stage decided for one face of one frame. ``name`` None (or "unknown"): unknown;
    ``nearest`` (person_id, name) is the closest enrolled person for an unknown face; ``votes`` the gallery
    answers behind the decision."""

    track: int
    box: Sequence[float]
    name: str | None = None
    person_id: str | None = None
    similarity: float | None = None
    nearest: tuple[str, str] | None = None
    votes: int = 0

    @property
    def known(self) -> bool:
        return bool(self.name) and self.name != UNKNOWN and bool(self.person_id)


@dataclass
class FrameDecisions:
    """One frame's decisions: its stream, index and capture time, its faces, and the tracks that ended."""

    stream: int | str
    frame: int
    captured_at: float
    faces: list[FaceDecision] = field(default_factory=list)
    ended: Iterable[int] = ()


@dataclass
class _Track:
    first_seen: float
    last_seen: float
    last_frame: int
    last_box: list[float]
    sent: set[str] = field(default_factory=set)
    identity: tuple[str, str] | None = None  # (person_id, name) of its latest named decision
    similarity: float | None = None
    nearest: tuple[str, str] | None = None
    best_similarity: float | None = None
    best_quality: tuple[int, float] = (-1, 0.0)  # what picked the snapshot: named frames by similarity first,
    # then (for a track never named) the largest face
    crop_jpeg: bytes | None = None
    frame_jpeg: bytes | None = None


class Deriver:
    """Stateful per pipeline run. ``update`` takes one frame's decisions (and optionally the frame, BGR,
    for snapshots) and returns the events it causes; ``finish`` closes every open track."""

    def __init__(self, run: str, unknown_after: int = 3, announced: Announced | None = None,
                 full_frame: bool = False, jpeg_quality: int = 90) -> None:
        self.run = run
        self.unknown_after = max(1, unknown_after)
        self.announced = announced
        self.full_frame = full_frame
        self.jpeg_quality = jpeg_quality
        self.tracks: dict[tuple[str, int], _Track] = {}

    def update(self, decisions: FrameDecisions, image: np.ndarray | None = None) -> list[Event]:
        stream = stream_name(decisions.stream)
        ts, index = float(decisions.captured_at), int(decisions.frame)
        events: list[Event] = []
        for face in decisions.faces:
            key = (stream, int(face.track))
            track = self.tracks.get(key)
            if track is None:
                track = self.tracks[key] = self._open(stream, int(face.track), ts, index, face)
            track.last_seen, track.last_frame, track.last_box = ts, index, [float(v) for v in face.box]
            track.similarity = None if face.similarity is None else float(face.similarity)
            if face.known:
                track.identity = (str(face.person_id), str(face.name))
                track.nearest = None
                quality = (1, track.similarity if track.similarity is not None else -1.0)
                if track.similarity is not None:
                    track.best_similarity = max(track.best_similarity or -1.0, track.similarity)
            else:
                track.nearest = face.nearest
                quality = (0, _area(face.box)) if track.identity is None else (-1, 0.0)  # named: keeps its face
            if quality > track.best_quality and image is not None:
                track.best_quality = quality
                track.crop_jpeg, track.frame_jpeg = self._snapshot(image, face.box)
            if face.known and APPEARED not in track.sent:
                events.append(self._event(APPEARED, stream, int(face.track), track, index, ts, image, face.box))
            elif (not face.known and track.identity is None and face.votes >= self.unknown_after
                  and not track.sent & {APPEARED, UNKNOWN_APPEARED}):
                events.append(self._event(UNKNOWN_APPEARED, stream, int(face.track), track, index, ts, image,
                                          face.box))
        for tid in decisions.ended:
            track = self.tracks.pop((stream, int(tid)), None)
            if track is not None:
                events.extend(self._left(stream, int(tid), track))
        return events

    def finish(self) -> list[Event]:
        """``person.left`` for every announced track still open (the end of a file or of the run)."""
        events: list[Event] = []
        for (stream, tid), track in sorted(self.tracks.items(), key=lambda kv: kv[1].first_seen):
            events.extend(self._left(stream, tid, track))
        self.tracks.clear()
        return events

    # ------------------------------------------------------------------
    def _open(self, stream: str, tid: int, ts: float, index: int, face: FaceDecision) -> _Track:
        track = _Track(first_seen=ts, last_seen=ts, last_frame=index, last_box=list(face.box))
        if self.announced is None:
            return track
        for type in (APPEARED, UNKNOWN_APPEARED, LEFT):
            summary = self.announced(dedup_key(self.run, stream, tid, type))
            if summary is None:
                continue
            track.sent.add(type)
            track.first_seen = min(track.first_seen, float(summary["first_seen"]))
            if summary.get("known"):
                track.identity = (summary["person_id"], summary["name"])
            if summary.get("similarity") is not None and summary.get("known"):
                track.best_similarity = max(track.best_similarity or -1.0, float(summary["similarity"]))
        if track.sent:
            log.info("track %s of stream %s was announced before this restart: not announcing it again", tid,
                     stream)
        return track

    def _event(self, type: str, stream: str, tid: int, track: _Track, index: int, ts: float,
               image: np.ndarray | None, box: Sequence[float]) -> Event:
        track.sent.add(type)
        crop, frame = self._snapshot(image, box) if image is not None else (track.crop_jpeg, track.frame_jpeg)
        known = type == APPEARED
        return Event(type=type, run=self.run, stream=stream, track=tid, known=known,
                     name=track.identity[1] if known else None, person_id=track.identity[0] if known else None,
                     similarity=track.similarity, nearest=_nearest(None if known else track.nearest),
                     box=[float(v) for v in box], frame=index, captured_at=ts, first_seen=track.first_seen,
                     crop_jpeg=crop, frame_jpeg=frame)

    def _left(self, stream: str, tid: int, track: _Track) -> list[Event]:
        if not track.sent & {APPEARED, UNKNOWN_APPEARED} or LEFT in track.sent:
            return []  # never announced (a flicker, or not yet decided): nothing to close
        track.sent.add(LEFT)
        known = track.identity is not None
        return [Event(type=LEFT, run=self.run, stream=stream, track=tid, known=known,
                      name=track.identity[1] if known else None, person_id=track.identity[0] if known else None,
                      similarity=track.similarity, nearest=_nearest(None if known else track.nearest),
                      box=track.last_box, frame=track.last_frame, captured_at=track.last_seen,
                      first_seen=track.first_seen, last_seen=track.last_seen,
                      duration=max(0.0, track.last_seen - track.first_seen), best_similarity=track.best_similarity,
                      crop_jpeg=track.crop_jpeg, frame_jpeg=track.frame_jpeg)]

    def _snapshot(self, image: np.ndarray, box: Sequence[float]) -> tuple[bytes | None, bytes | None]:
        crop = _encode(_crop(image, box), self.jpeg_quality)
        return crop, _encode(image, self.jpeg_quality) if self.full_frame else None


def _nearest(nearest: tuple[str, str] | None) -> dict[str, str | None] | None:
    """``person_id`` null when the decision knew only the nearest person's name."""
    return None if nearest is None else {"person_id": str(nearest[0]) or None, "name": str(nearest[1])}


def _area(box: Sequence[float]) -> float:
    return max(0.0, float(box[2]) - float(box[0])) * max(0.0, float(box[3]) - float(box[1]))


def _crop(image: np.ndarray, box: Sequence[float], margin: float = 0.2) -> np.ndarray:
    """The face with a margin around it (clipped to the frame), so a snapshot shows the whole head."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    l, t = int(max(0, min(w - 1, x1 - mx))), int(max(0, min(h - 1, y1 - my)))
    r, b = int(max(l + 1, min(w, x2 + mx))), int(max(t + 1, min(h, y2 + my)))
    return image[t:b, l:r]


def _encode(image: np.ndarray, quality: int) -> bytes | None:
    import cv2

    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return data.tobytes() if ok else None
