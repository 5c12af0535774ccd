"""Identify: ask the gallery about the tracks that are due, keep a vote per track, name every face.

Only tracks embed+track sent are asked about, and a track's votes end with it (embed+track ends tracks at a
scene cut and when a face stops resembling its track), so a name is only ever shown on the face it was
confirmed for. The query asks for the best match at any similarity: below MATCH_THRESHOLD it is an unknown
answer that still says how near the nearest person came (logged for tuning the threshold).

Strangers are no longer enrolled under generated names (the retired STORE_UNKNOWN): with SIGHTINGS=all their
tracks are kept as searchable sightings instead (app/gallery/sightings.py)."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

import numpy as np

from app.gallery import Embedder, GalleryUnavailable, open_gallery
from app.gallery.outage import status_text
from app.protocol import Context, Health, Stage
from app.settings import Settings
from app.tracking.identity import Label, NameVote
from app.types import UNKNOWN, Faces

log = logging.getLogger("facestream.identify")
KEEP_EMBEDDINGS = 8  # queried embeddings kept per track for enrolling it from the face library
KEEP_ENDED_S = 300.0  # how long an ended track can still be enrolled or corrected


def gallery_from_settings(settings: Settings, check_embedder: bool = True, connect: bool = True):
    """The configured gallery; with ``check_embedder``, tied to EMBEDDER_MODEL (a gallery filled by another model
    is refused, EmbedderMismatch). Managing names (people list/rename/remove) needs no model and skips that.
    ``connect=False``: a server is not asked until ``connect()`` (see ``open_gallery``)."""
    return open_gallery(url=settings.qdrant_url or None, path=settings.qdrant_path,
                        collection=settings.qdrant_collection, api_key=settings.qdrant_api_key or None,
                        prefer_grpc=settings.qdrant_grpc,
                        embedder=embedder_of(settings) if check_embedder else None, connect=connect)


def embedder_of(settings: Settings) -> Embedder:
    """EMBEDDER_MODEL and the sha256 of its file: the manifest's for a model we ship (its file is verified against
    it at start-up), else the file's own."""
    from engines.fetch import manifest, require, sha256_file
    from engines.model_zoo import get_info

    onnx = get_info(settings.embedder_model, "embedder").onnx
    entry = manifest().get(onnx)
    digest = entry["sha256"] if entry else sha256_file(require(settings.checkpoint_dir, onnx))
    return Embedder(settings.embedder_model, digest)


class TrackMemory:
    """The last few embeddings identify queried per track, kept while the track lives and ``keep_s`` after it
    ends, so a face just seen can be enrolled by its track (``enrol_track``) or corrected."""

    def __init__(self, per_track: int = KEEP_EMBEDDINGS, keep_s: float = KEEP_ENDED_S,
                 clock=time.time) -> None:
        self.per_track = per_track
        self.keep_s = keep_s
        self.clock = clock
        self.embeddings: dict[tuple[int, int], deque] = {}
        self.last_seen: dict[tuple[int, int], float] = {}
        self.ended: dict[tuple[int, int], tuple[float, Label]] = {}  # when, and the name it had then
        self._next_purge = 0.0

    def add(self, stream: int, tid: int, embedding: np.ndarray) -> None:
        key = (stream, tid)
        rows = self.embeddings.get(key)
        if rows is None:
            rows = self.embeddings[key] = deque(maxlen=self.per_track)
        rows.append(np.asarray(embedding, np.float32).copy())

    def seen(self, stream: int, tids, now: float) -> None:
        for tid in tids:
            self.last_seen[(stream, int(tid))] = now

    def end(self, stream: int, tids, labels: dict[int, Label]) -> None:
        now = self.clock()
        for tid in tids:
            key = (stream, int(tid))
            if key in self.embeddings or key in self.last_seen:
                self.ended[key] = (now, labels.get(int(tid), Label(None, None, 0.0, 0)))
        if now >= self._next_purge:
            self._next_purge = now + 5.0
            for key in [k for k, (t, _) in self.ended.items() if now - t > self.keep_s]:
                self.ended.pop(key, None)
                self.embeddings.pop(key, None)
                self.last_seen.pop(key, None)

    def relabel(self, fn, only: tuple[int, int] | None = None) -> None:
        """Apply a library change to the names ended tracks had (what ``tracks()`` shows of them)."""
        for key, (when, label) in list(self.ended.items()):
            if only is None or key == only:
                self.ended[key] = (when, fn(label))

    def live(self) -> list[tuple[int, int]]:
        return [k for k in self.embeddings if k not in self.ended]

    def get(self, stream: int, tid: int) -> np.ndarray:
        rows = self.embeddings.get((stream, tid))
        if not rows:
            raise KeyError((stream, tid))
        return np.stack(list(rows))


class Identify:
    """The name vote per stream over the gallery's answers, and (for the face library) what a running
    pipeline's owner must offer: the tracks' kept embeddings and the reactions to library changes.

    ``lock`` guards the gallery and the votes: the control socket's thread takes it per request, ``__call__``
    per frame, so a change is seen whole by the next frame."""

    def __init__(self, settings: Settings, gallery=None) -> None:
        from app.library.negatives import Negatives
        from app.library.owner import negatives_path

        self.settings = settings
        self.gallery = gallery if gallery is not None else gallery_from_settings(settings)
        self.votes: dict[int, NameVote] = {}
        self.memory = TrackMemory()
        self.negatives = Negatives(negatives_path(settings) if gallery is None else None)
        self.lock = threading.RLock()
        self.queries = 0
        self.retry_at = 0.0

    def _votes(self, stream: int) -> NameVote:
        votes = self.votes.get(stream)
        if votes is None:
            votes = self.votes[stream] = NameVote()
        return votes

    def __call__(self, faces: Faces, stream: int = 0, removed: list[int] | None = None) -> Faces:
        with self.lock:
            return self._identify(faces, stream, removed)

    def _identify(self, faces: Faces, stream: int, removed: list[int] | None) -> Faces:
        votes = self._votes(stream)
        if faces.query is not None and len(faces.query):
            tids = [int(faces.track_ids[row]) for row in faces.query]
            for tid, emb in zip(tids, faces.embeddings):  # kept even while the gallery is down: still enrollable
                self.memory.add(stream, tid, emb)
            if time.monotonic() >= self.retry_at:
                self._ask(stream, tids, faces.embeddings)
        if faces.track_ids is not None:
            self.memory.seen(stream, faces.track_ids[faces.track_ids >= 0].tolist(), time.time())
        if removed:
            self.memory.end(stream, removed, {int(t): votes.label(int(t)) for t in removed})
            votes.forget(removed)
        names, pids, nearest, sims = [], [], [], np.zeros(len(faces), np.float32)
        for i in range(len(faces)):
            tid = int(faces.track_ids[i]) if faces.track_ids is not None else -1
            label = votes.label(tid) if tid >= 0 else None
            if label is None:
                names.append(UNKNOWN)
                pids.append("")
                nearest.append("")
                continue
            names.append(UNKNOWN if label.name is None else label.name)
            pids.append(label.person_id or "")
            nearest.append(label.nearest or "")
            sims[i] = label.score
        faces.names, faces.person_ids, faces.nearest, faces.similarities = names, pids, nearest, sims
        return faces

    def _ask(self, stream: int, tids: list[int], embeddings: np.ndarray) -> None:
        """One gallery query for these tracks' embeddings; each answer goes into the track's vote."""
        votes = self._votes(stream)
        try:
            matches = self.gallery.search(embeddings, threshold=-1.0)  # nearest, even if unknown
        except GalleryUnavailable as exc:  # keep showing the last votes; ask again in a while
            log.warning("%s; names are kept from earlier results, retrying in 5 s", exc)
            self.retry_at = time.monotonic() + 5.0
            matches = []
        self.queries += len(matches)
        threshold = self.settings.match_threshold
        for k, (tid, match) in enumerate(zip(tids, matches)):
            if match is not None and self.negatives.refused(match.person_id, embeddings[k], match.score):
                match = None  # a correction said this face is not that person
            if match is None or match.score < threshold:
                votes.record(tid, None, match and match.name, match.score if match else 0.0)
            else:
                votes.record(tid, match.person_id, match.name, match.score)

    # -- what the face library's owner calls (under ``lock``) ------------------------------------------
    def track_embeddings(self, stream: int, track_id: int) -> np.ndarray:
        """The track's kept embeddings (KeyError: no such track, live or ended in the last minutes)."""
        return self.memory.get(stream, track_id)

    def tracks(self) -> list:
        from app.library.views import TrackView

        out = []
        for (stream, tid), rows in list(self.memory.embeddings.items()):
            ended_at, label = self.memory.ended.get((stream, tid), (0.0, None))
            if label is None:
                label = self._votes(stream).label(tid)
            out.append(TrackView(stream, tid, label.name, label.person_id, float(label.score), label.nearest,
                                 len(rows), self.memory.last_seen.get((stream, tid), 0.0), ended_at))
        return sorted(out, key=lambda t: -t.last_seen)

    def enrolled(self) -> None:
        """Someone was enrolled: every live track's unknown answers predate them, so they go, and the tracks
        left unnamed are asked again now with their latest embedding (named on their next frame)."""
        for votes in self.votes.values():
            votes.clear_unknown()
        by_stream: dict[int, list[int]] = {}
        for stream, tid in self.memory.live():
            if self._votes(stream).label(tid).name is None:
                by_stream.setdefault(stream, []).append(tid)
        for stream, tids in by_stream.items():
            self._ask(stream, tids, np.stack([self.memory.get(stream, t)[-1] for t in tids]))

    def renamed(self, person_id: str, name: str) -> None:
        for votes in self.votes.values():
            votes.rename(person_id, name)
        self.memory.relabel(lambda lb: Label(name, person_id, lb.score, lb.votes) if lb.person_id == person_id
                            else lb)

    def merged(self, person_id: str, into_id: str, name: str) -> None:
        for votes in self.votes.values():
            votes.move(person_id, into_id, name)
        self.memory.relabel(lambda lb: Label(name, into_id, lb.score, lb.votes) if lb.person_id == person_id
                            else lb)

    def removed(self, person_id: str) -> None:
        for votes in self.votes.values():
            votes.drop_person(person_id)
        self.memory.relabel(lambda lb: Label(None, None, 0.0, 0) if lb.person_id == person_id else lb)

    def corrected(self, stream: int, track_id: int, person_id: str) -> None:
        self._votes(stream).clear(track_id)
        self.memory.relabel(lambda lb: Label(None, None, 0.0, 0), only=(stream, track_id))

    def status(self) -> dict:
        from app.gallery.outage import status_text

        return {"live_tracks": len(self.memory.live()), "queries": self.queries,
                "gallery_status": status_text(getattr(self.gallery, "outage", None))}

    def close(self) -> None:
        with self.lock:
            self.gallery.close()


class IdentifyStage(Stage):
    """Owns the gallery (the embedded Qdrant folder can be open in one process only)."""

    def __init__(self, settings: Settings, link=None) -> None:
        self.settings = settings
        self.link = link  # app.events.tap.EventsLink: run id, events spool, time-to-name marks
        # snapshots for the events and the sightings
        self.reads_frames = (link is not None and link.events is not None) or settings.sightings != "off"
        self.identify: Identify | None = None
        self.control = None
        self.tap = None  # app.events.tap.EventTap, made in setup (in the stage's process)
        self.sightings = None  # app.gallery.sightings_feed.SightingRecorder, made in setup
        self._shown = ""

    def setup(self, ctx: Context) -> None:
        from app.events.tap import EventsLink, EventTap
        from app.gallery.sightings_feed import SightingRecorder
        from app.library.serve import serve_library

        self.ctx = ctx
        self.identify = Identify(self.settings)
        self.control = serve_library(self.identify, self.settings)  # the face library, for other processes
        self.tap = EventTap(self.settings, self.link or EventsLink(run="-"), getattr(ctx, "metrics", None),
                            people=lambda: len(self.identify.gallery.people()))
        self.sightings = SightingRecorder(self.settings, self.tap.link.run, self.settings.sources)

    def process(self, frame: np.ndarray | None, rec: Faces) -> Faces:
        faces = self.identify(rec, stream=rec.frame.stream, removed=rec.removed)
        from app.display.blur import hidden_copy

        wanted = self.tap.wants_frame or self.sightings.wants_image(rec.frame.stream, faces)
        # snapshots (events, sightings) are cut from a copy that hides what PRIVACY_BLUR hides on screen
        full = self.tap.wants_frame and self.settings.events_full_frame
        image = hidden_copy(frame, faces, self.settings.privacy_blur, self.ctx.frame_valid, full) if wanted else None
        self.tap.labelled(faces, image, None)  # events, face counts, time-to-name marks (image: checked intact)
        self.sightings.labelled(faces, image)
        # the display needs no embeddings: after a scene cut every face is queried at once, and 64 faces' worth
        # (128 KB) would not fit the queue's slot (sized for names and boxes)
        faces.embeddings = faces.query = None
        self.report_gallery()
        return faces

    def report_gallery(self) -> None:
        """A gallery server's outage in the health column (the display's red line, the summary's blind time)."""
        outage = self.identify.gallery.outage  # None for the embedded engine: only a server can be unreachable
        text = status_text(outage)
        if text != self._shown:
            state = Health.OK if not text else Health.DOWN if outage.unreachable else Health.RECOVERED
            self.ctx.health(state, text, outage.blind_s() if outage else 0.0)
            self._shown = text

    def finish(self) -> list[Faces]:
        """The end of the stream: tracks still open get their ``person.left``."""
        if self.tap is not None:
            self.tap.finish()
        if self.sightings is not None:
            self.sightings.finish()
        return []

    def teardown(self) -> None:
        if self.control is not None:
            self.control.stop()
        if self.sightings is not None:
            self.sightings.close()
        if self.identify is not None:
            self.identify.close()
