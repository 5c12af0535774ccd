"""What the identify process records as sightings: per live track, its first/last seen, its name and its best face;
at track end one ``Sighting`` goes to a writer thread that owns the store.

The best face is the queried embedding whose decision scored highest (the similarity identify gave that frame: to
the person named, or to the nearest one for an unknown face), with the crop of that frame as its snapshot. The
writer thread keeps the store's short turns (≈40 ms a write, app/gallery/sightings_edge.py) off the stage's frame
loop, prunes at start and hourly (SIGHTINGS_DAYS), and is drained at the end of the stream.

SIGHTINGS=off records nothing; ``known`` only tracks named as an enrolled person; ``all`` strangers too, unless
PRIVACY_BLUR is on: privacy wins, unknown faces are never stored (one warning at start). The picture given to
``frame`` has already had PRIVACY_BLUR applied by the identify stage (the same copy the events' snapshots are cut
from), so with PRIVACY_BLUR=all the named snapshots are blurred as well, as on screen.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from app.gallery.sightings import Sighting, SightingStore, sightings_from_settings
from app.redact import redact
from app.types import UNKNOWN, Faces

log = logging.getLogger("facestream.sightings")

PRUNE_EVERY_S = 3600.0
WRITE_EVERY_S = 5.0  # sightings are written in one turn on the store at most this often (finish: at once)
CROP_MARGIN = 0.2  # around the face box: a snapshot shows the whole head
JPEG_QUALITY = 85


def stores_unknown(settings) -> bool:
    """Whether unknown faces become sightings: SIGHTINGS=all without PRIVACY_BLUR."""
    return settings.sightings == "all" and settings.privacy_blur == "none"


def policy_warning(settings) -> str | None:
    """The one line said at start when privacy overrides SIGHTINGS=all."""
    if settings.sightings == "all" and settings.privacy_blur != "none":
        return (f"PRIVACY_BLUR={settings.privacy_blur} wins over SIGHTINGS=all: unknown faces are not stored as "
                "sightings (only enrolled people's are)")
    return None


@dataclass
class _Track:
    first_seen: float
    first_frame: int
    last_seen: float
    last_frame: int
    person_id: str = ""
    name: str = UNKNOWN
    nearest: str = ""
    best: float = -2.0  # similarity of the best embedding so far
    embedding: np.ndarray | None = None
    snapshot: bytes | None = None


class SightingRecorder:
    """Per identify process: ``frame`` once per labelled frame (with the frame picture when ``wants_image`` said
    so), ``finish`` at the end of the stream, ``close`` at teardown."""

    def __init__(self, settings, run_id: str = "", sources: list[str] | None = None,
                 open_store: Callable[[], SightingStore] | None = None) -> None:
        self.mode = settings.sightings
        self.unknown = stores_unknown(settings)
        self.days = settings.sightings_days
        self.run_id = run_id
        self.sources = [redact(s) for s in sources or []]  # as shown to users: credentials masked
        self.tracks: dict[tuple[int, int], _Track] = {}
        self.written = 0
        self.write_every = WRITE_EVERY_S
        self._open = open_store or (lambda: sightings_from_settings(settings))
        self._queue: queue.Queue[Sighting | tuple[Sighting, bytes | None] | None] = queue.Queue()
        self._writer: threading.Thread | None = None
        if self.enabled:
            self._writer = threading.Thread(target=self._write_loop, name="sightings-writer", daemon=True)
            self._writer.start()

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def wants_image(self, stream: int, faces: Faces) -> bool:
        """Whether this frame improves some track's best face (then its picture is needed for the snapshot)."""
        if not self.enabled or faces.query is None or not len(faces.query) or faces.similarities is None:
            return False
        for row in faces.query:
            track = self.tracks.get((stream, int(faces.track_ids[row])))
            if track is None or float(faces.similarities[row]) > track.best:
                return True
        return False

    def labelled(self, faces: Faces, image: np.ndarray | None = None) -> None:
        """One record as identify labelled it (its header says stream, frame and time; ``removed`` what ended)."""
        ref = faces.frame
        self.frame(ref.stream, ref.index, ref.ts, faces, faces.removed, image)

    def frame(self, stream: int, index: int, ts: float, faces: Faces, removed: list[int] | None = None,
              image: np.ndarray | None = None) -> None:
        """Follow this frame's tracks (``faces`` as identify labelled them, embeddings still on); end ``removed``."""
        if not self.enabled:
            return
        if faces.track_ids is not None:
            for i in range(len(faces)):
                tid = int(faces.track_ids[i])
                if tid < 0:
                    continue
                t = self.tracks.get((stream, tid))
                if t is None:
                    t = self.tracks[(stream, tid)] = _Track(ts, index, ts, index)
                t.last_seen, t.last_frame = ts, index
                name = faces.names[i] if i < len(faces.names) else UNKNOWN
                pid = faces.person_ids[i] if i < len(faces.person_ids) else ""
                # the track's latest decision: a person removed or a correction made while it is on screen
                # un-names it, and its sighting must not name them then
                t.person_id, t.name = (pid, name) if name != UNKNOWN and pid else ("", UNKNOWN)
            self._embeddings(stream, faces, image)
        for tid in removed or ():
            self._end(stream, int(tid))

    def _embeddings(self, stream: int, faces: Faces, image: np.ndarray | None) -> None:
        if faces.query is None or faces.embeddings is None or faces.similarities is None:
            return
        for k, row in enumerate(faces.query):
            t = self.tracks.get((stream, int(faces.track_ids[row])))
            score = float(faces.similarities[row])
            if t is None or score <= t.best or k >= len(faces.embeddings):
                continue
            t.best, t.embedding = score, np.array(faces.embeddings[k], np.float32)
            if not t.person_id:
                t.nearest = faces.nearest[row] if row < len(faces.nearest) else ""
            if image is not None:
                t.snapshot = self._snapshot(image, faces.boxes[row])

    def _snapshot(self, image: np.ndarray, box) -> bytes | None:
        h, w = image.shape[:2]
        x1, y1, x2, y2 = (float(v) for v in box[:4])
        mx, my = (x2 - x1) * CROP_MARGIN, (y2 - y1) * CROP_MARGIN
        x0, y0 = max(0, int(x1 - mx)), max(0, int(y1 - my))
        x3, y3 = min(w, int(x2 + mx) + 1), min(h, int(y2 + my) + 1)
        if x3 - x0 < 2 or y3 - y0 < 2:
            return None
        crop = np.ascontiguousarray(image[y0:y3, x0:x3])
        ok, jpeg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        return jpeg.tobytes() if ok else None

    def _end(self, stream: int, tid: int) -> None:
        t = self.tracks.pop((stream, tid), None)
        if t is None or t.embedding is None:
            return
        if not t.person_id and not self.unknown:
            return
        source = self.sources[stream] if stream < len(self.sources) else ""
        sighting = Sighting(stream=stream, track_id=tid, first_seen=t.first_seen, last_seen=t.last_seen,
                            embedding=t.embedding, person_id=t.person_id, name=t.name if t.person_id else UNKNOWN,
                            nearest="" if t.person_id else t.nearest, similarity=max(t.best, -1.0),
                            first_frame=t.first_frame, last_frame=t.last_frame, source=source, run_id=self.run_id)
        self._queue.put((sighting, t.snapshot))

    def finish(self, timeout: float = 30.0) -> int:
        """The end of the stream: every open track becomes a sighting; waits for them to be written."""
        for stream, tid in list(self.tracks):
            self._end(stream, tid)
        if self._drain(timeout):
            self._writer = threading.Thread(target=self._write_loop, name="sightings-writer", daemon=True)
            self._writer.start()  # frames after the end (a file played again) still record
        return self.written

    def close(self, timeout: float = 30.0) -> None:
        """Stop the writer once what waits is written (tracks still open are not: they have not ended)."""
        self._drain(timeout)

    def _drain(self, timeout: float) -> bool:
        """Wait until everything queued is written; True if the writer has stopped."""
        if self._writer is None or not self._writer.is_alive():
            return False
        self._queue.put(None)
        self._writer.join(timeout)
        if self._writer.is_alive():
            log.warning("sightings: %d still waiting to be written after %g s", self._queue.qsize(), timeout)
            return False
        self._writer = None
        return True

    def _add(self, store: SightingStore, sighting: Sighting, jpeg: bytes | None) -> None:
        try:
            store.add(sighting, jpeg)
            self.written += 1
        except Exception as exc:  # noqa: BLE001 - one lost sighting must not end the identify stage
            log.warning("sightings: track %d of stream %d not stored: %s", sighting.track_id, sighting.stream, exc)

    def _write_loop(self) -> None:
        store = None
        next_prune = 0.0
        try:
            store = self._open()
            while True:
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + PRUNE_EVERY_S
                    try:
                        store.prune(self.days)
                    except Exception as exc:  # noqa: BLE001 - pruning is housekeeping, never worth a sighting
                        log.warning("sightings: pruning failed: %s", exc)
                try:
                    item = self._queue.get(timeout=60.0)
                except queue.Empty:
                    continue
                batch = [item]
                # what comes within WRITE_EVERY_S goes in the same turn: each turn loads the embedded shard
                # (40 ms at 2k sightings, ~1 s at 10k), and a turn per ended track starved identify's frames
                # of the GIL on a busy stream (the GPU every-frame rate halved)
                deadline = time.monotonic() + self.write_every
                while batch[-1] is not None:
                    try:
                        batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                    except queue.Empty:
                        break
                with _turn(store):
                    for one in batch:
                        if one is not None:
                            self._add(store, *one)
                if batch[-1] is None:
                    return
        except Exception as exc:  # noqa: BLE001 - the store cannot open: say so once, keep identifying
            log.warning("sightings: not recorded this run: %s", exc)
        finally:
            if store is not None:
                store.close()


def _turn(store: SightingStore):
    """One turn on an embedded store for several writes (a server needs none)."""
    hold = getattr(store, "hold", None)
    return hold() if hold is not None else contextlib.nullcontext()
